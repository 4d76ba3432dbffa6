//! What went wrong in a call to AWS, classified by what the operator should do about it.

use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

/// How the operator treats a failed AWS call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The principal is not allowed to do this: a fact about IAM, reported in status.
    AccessDenied,
    /// The base credentials themselves are invalid or expired.
    InvalidCredentials,
    /// AWS Organizations is not enabled for the account.
    OrganizationsNotInUse,
    /// STS is not active in the region for the account whose role was asked for
    /// (`RegionDisabledException`): an administrator of that account must activate it.
    RegionDisabled,
    /// What the call named changed under it: an OU deleted while the organization was
    /// walked (`ParentNotFoundException`), another StackSet operation since the one asked
    /// about (`StaleRequestException`), a concurrent change (`ConcurrentModificationException`).
    /// Trying again sees the new state.
    Changed,
    /// A service quota was reached (`LimitExceededException`): raise it or remove
    /// something; trying again does not help.
    LimitExceeded,
    /// AWS asked us to slow down; retried later, never reported as a failure of the
    /// connection.
    Throttled,
    /// A 5xx, a timeout or a connection failure; retried later.
    Transient,
    /// Anything else.
    Other,
}

impl FailureKind {
    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Throttled | Self::Transient | Self::Changed)
    }
}

/// A failed AWS call: the operation, AWS's error code and message, and its kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct AwsFailure {
    pub operation: &'static str,
    pub kind: FailureKind,
    pub code: Option<String>,
    pub message: String,
}

impl AwsFailure {
    /// Whether AWS refused the call because the caller's own identity policies do not
    /// allow it (as opposed to the target's resource policy, such as a role's trust
    /// policy): AWS then says "no identity-based policy allows".
    pub fn denied_by_identity_policy(&self) -> bool {
        self.kind == FailureKind::AccessDenied
            && self
                .message
                .to_lowercase()
                .contains("no identity-based policy allows")
    }
}

/// Classifies by AWS error code and HTTP status; pure, so every rule is unit-tested.
pub fn classify_code(code: Option<&str>, http_status: Option<u16>) -> FailureKind {
    match code {
        Some(
            "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "EC2ThrottledException",
        ) => FailureKind::Throttled,
        Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation") => {
            FailureKind::AccessDenied
        }
        Some(
            "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "UnrecognizedClientException"
            | "IncompleteSignature"
            | "IncompleteSignatureException"
            | "InvalidSignatureException"
            | "MissingAuthenticationToken"
            | "MissingAuthenticationTokenException"
            | "InvalidAccessKeyId",
        ) => FailureKind::InvalidCredentials,
        Some("AWSOrganizationsNotInUseException") => FailureKind::OrganizationsNotInUse,
        Some("RegionDisabledException") => FailureKind::RegionDisabled,
        Some(
            "ParentNotFoundException" | "StaleRequestException" | "ConcurrentModificationException",
        ) => FailureKind::Changed,
        Some("LimitExceededException") => FailureKind::LimitExceeded,
        Some(
            "ServiceException"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "InternalFailure"
            | "InternalError"
            | "RequestTimeout"
            | "RequestTimeoutException"
            | "IDPCommunicationError",
        ) => FailureKind::Transient,
        _ => match http_status {
            Some(429) => FailureKind::Throttled,
            Some(500..=599) => FailureKind::Transient,
            _ => FailureKind::Other,
        },
    }
}

/// Classifies an SDK error from any AWS operation.
pub fn classify<E>(operation: &'static str, err: &SdkError<E, HttpResponse>) -> AwsFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().map(str::to_owned);
            let status = service.raw().status().as_u16();
            AwsFailure {
                operation,
                kind: classify_code(code.as_deref(), Some(status)),
                message: service
                    .err()
                    .message()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("HTTP {status}")),
                code,
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            AwsFailure {
                operation,
                kind: FailureKind::Transient,
                code: None,
                message: error_chain(err),
            }
        }
        _ => AwsFailure {
            operation,
            kind: FailureKind::Other,
            code: None,
            message: error_chain(err),
        },
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_codes_are_throttled_whatever_the_status() {
        for code in [
            "Throttling",
            "TooManyRequestsException",
            "ThrottlingException",
        ] {
            assert_eq!(classify_code(Some(code), Some(400)), FailureKind::Throttled);
        }
        assert_eq!(classify_code(None, Some(429)), FailureKind::Throttled);
    }

    #[test]
    fn access_and_credential_problems_are_not_transient() {
        assert_eq!(
            classify_code(Some("AccessDenied"), Some(403)),
            FailureKind::AccessDenied
        );
        assert_eq!(
            classify_code(Some("AccessDeniedException"), Some(400)),
            FailureKind::AccessDenied
        );
        assert_eq!(
            classify_code(Some("InvalidClientTokenId"), Some(403)),
            FailureKind::InvalidCredentials
        );
        assert!(!FailureKind::AccessDenied.is_transient());
    }

    #[test]
    fn regions_changes_and_quotas_are_named() {
        assert_eq!(
            classify_code(Some("RegionDisabledException"), Some(403)),
            FailureKind::RegionDisabled
        );
        assert!(!FailureKind::RegionDisabled.is_transient());
        for code in ["ParentNotFoundException", "StaleRequestException"] {
            assert_eq!(classify_code(Some(code), Some(400)), FailureKind::Changed);
        }
        assert!(FailureKind::Changed.is_transient());
        assert_eq!(
            classify_code(Some("LimitExceededException"), Some(400)),
            FailureKind::LimitExceeded
        );
        assert!(!FailureKind::LimitExceeded.is_transient());
    }

    #[test]
    fn server_errors_are_transient_and_organizations_not_in_use_is_named() {
        assert_eq!(
            classify_code(Some("ServiceUnavailable"), Some(503)),
            FailureKind::Transient
        );
        assert_eq!(classify_code(None, Some(502)), FailureKind::Transient);
        assert!(FailureKind::Transient.is_transient());
        assert_eq!(
            classify_code(Some("AWSOrganizationsNotInUseException"), Some(400)),
            FailureKind::OrganizationsNotInUse
        );
        assert_eq!(
            classify_code(Some("ValidationError"), Some(400)),
            FailureKind::Other
        );
    }
}
