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

/// Locks `mutex`, taking the data even if a thread panicked while holding it: the maps
/// and counters behind the operator's mutexes are valid after any single update, so a
/// poisoned lock is no reason to stop serving.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
