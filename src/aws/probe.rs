//! Probing a member account: one chained AssumeRole from the managing-role session into
//! the member role. AssumeRole's answer names the account the session landed in
//! (`AssumedRoleUser.Arn`, `arn:aws:sts::<account>:assumed-role/<role>/<session>`), so no
//! second call is needed to confirm it; the credentials it mints are never used and are
//! dropped at once.

use aws_config::SdkConfig;

use super::arn::RoleArn;
use super::error::{AwsFailure, FailureKind, classify};

/// Member sessions last the shortest time STS allows; they are never used.
const PROBE_SESSION_SECONDS: i32 = 900;

/// What a successful probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSuccess {
    /// The account the assumed session acts in.
    pub account_id: String,
}

/// Assumes `role` from `managing` (with `external_id` when given); the account the
/// session acts in, as AssumeRole reported it.
pub async fn probe_member(
    managing: &SdkConfig,
    role: &RoleArn,
    external_id: Option<&str>,
    session_name: &str,
) -> Result<ProbeSuccess, AwsFailure> {
    let assumed = super::clients::sts(managing)
        .assume_role()
        .role_arn(role.to_string())
        .role_session_name(session_name)
        .set_external_id(external_id.map(str::to_owned))
        .duration_seconds(PROBE_SESSION_SECONDS)
        .send()
        .await
        .map_err(|e| classify("AssumeRole", &e))?;
    let arn = assumed
        .assumed_role_user()
        .map(|user| user.arn())
        .unwrap_or_default();
    match assumed_account(arn) {
        Some(account_id) => Ok(ProbeSuccess { account_id }),
        None => Err(AwsFailure {
            operation: "AssumeRole",
            kind: FailureKind::Other,
            code: None,
            message: format!("the response named no assumed-role ARN with an account ({arn:?})"),
        }),
    }
}

/// The account of an assumed-role ARN (`arn:<partition>:sts::<account>:assumed-role/…`).
pub fn assumed_account(arn: &str) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("sts"), Some(_region), Some(account), Some(rest)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let valid = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    (valid && rest.starts_with("assumed-role/")).then(|| account.to_owned())
}

/// GetCallerIdentity with `config`: the account holding the managing role is probed this
/// way, with the managing-role session itself (proving the session still works).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_account_of_an_assumed_role() {
        assert_eq!(
            assumed_account(
                "arn:aws:sts::222233334444:assumed-role/OrganizationAccountAccessRole/s"
            )
            .as_deref(),
            Some("222233334444")
        );
        assert_eq!(
            assumed_account("arn:aws-cn:sts::222233334444:assumed-role/team/r/s").as_deref(),
            Some("222233334444")
        );
        for bad in [
            "",
            "arn:aws:iam::222233334444:role/r",
            "arn:aws:sts::2222:assumed-role/r/s",
            "arn:aws:sts::222233334444:federated-user/u",
        ] {
            assert_eq!(assumed_account(bad), None, "{bad}");
        }
    }
}
