//! orgconnect: a Kubernetes operator that connects a cluster to AWS Organizations.

pub mod api;
pub mod aws;
pub mod check;
pub mod controller;
pub mod crds;
pub mod duration;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod organization;
pub mod schedule;
pub mod server;
pub mod templates;
pub mod tree;
