//! Errors a reconcile returns to the controller, which retries it with backoff. Problems
//! the user can fix are not errors: they are written to status as conditions.

use crate::aws::AwsFailure;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("AWS: {0}")]
    Aws(#[from] AwsFailure),

    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    #[error("serializing {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("object has no {0}")]
    MissingField(&'static str),

    #[error("revoking is in progress: {0}")]
    RevokeInProgress(String),

    /// Revoking could not reach AWS; tried again after `retry_in`.
    #[error("revoking is blocked: {problem}; retrying in {}s", retry_in.as_secs())]
    RevokeBlocked {
        problem: String,
        retry_in: std::time::Duration,
    },
}

impl Error {
    /// A short, stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Aws(_) => "aws",
            Self::Finalizer(_) => "finalizer",
            Self::Serialize { .. } => "serialize",
            Self::MissingField(_) => "missing_field",
            Self::RevokeInProgress(_) => "revoke_in_progress",
            Self::RevokeBlocked { .. } => "revoke_blocked",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
