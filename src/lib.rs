//! orgconnect: a Kubernetes operator that connects a cluster to AWS Organizations.

pub mod api;
pub mod aws;
pub mod crds;
