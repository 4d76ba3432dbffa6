//! The AWS boundary: every call the operator makes to AWS goes through this module.

mod http;

pub use http::https_client;
