//! The AWS boundary: every call the operator makes to AWS goes through this module.

pub mod arn;
pub mod clients;
pub mod discovery;
pub mod error;
mod http;
pub mod probe;
pub mod session;
pub mod stackset;
pub mod trust;

pub use error::{AwsFailure, FailureKind};
pub use http::{https_client, retry_config, sdk_config_from_env};
