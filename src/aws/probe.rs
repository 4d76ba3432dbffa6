//! Probing a member account: a chained AssumeRole from the managing-role session into the
//! member role, then GetCallerIdentity with the member credentials, which must name the
//! account. The member credentials are used for that one call and dropped.

use aws_config::SdkConfig;
use aws_sdk_sts::config::{Credentials, SharedCredentialsProvider};

use super::arn::RoleArn;
use super::error::{AwsFailure, FailureKind, classify};

/// Member sessions last the shortest time STS allows; they are used for one call.
const PROBE_SESSION_SECONDS: i32 = 900;

/// What a successful probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSuccess {
    /// The account GetCallerIdentity named.
    pub account_id: String,
}

/// Assumes `role` from `managing` (with `external_id` when given) and asks who it is.
pub async fn probe_member(
    managing: &SdkConfig,
    role: &RoleArn,
    external_id: Option<&str>,
    session_name: &str,
) -> Result<ProbeSuccess, AwsFailure> {
    let sts = super::clients::sts(managing);
    let assumed = sts
        .assume_role()
        .role_arn(role.to_string())
        .role_session_name(session_name)
        .set_external_id(external_id.map(str::to_owned))
        .duration_seconds(PROBE_SESSION_SECONDS)
        .send()
        .await
        .map_err(|e| classify("AssumeRole", &e))?;
    let Some(credentials) = assumed.credentials else {
        return Err(AwsFailure {
            operation: "AssumeRole",
            kind: FailureKind::Other,
            code: None,
            message: "the response carried no credentials".to_owned(),
        });
    };
    let member = managing
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token().to_owned()),
            None,
            "orgconnect-member-probe",
        )))
        .build();
    whoami(&member).await
}

/// GetCallerIdentity with `config`: the managing account is probed this way, with the
/// managing-role session itself.
pub async fn whoami(config: &SdkConfig) -> Result<ProbeSuccess, AwsFailure> {
    let identity = super::clients::sts(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| classify("GetCallerIdentity", &e))?;
    Ok(ProbeSuccess {
        account_id: identity.account().unwrap_or_default().to_owned(),
    })
}
