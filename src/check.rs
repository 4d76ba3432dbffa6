//! `orgconnect check`: the "Test connection" button from a terminal, before anything is
//! applied and without a cluster. With the caller's own AWS credentials it assumes the
//! managing role, describes and lists the organization, and probes member accounts,
//! reporting each step with the fix when it fails.

use aws_config::SdkConfig;
use serde::Serialize;

use crate::api::member_account::AwsAccountStatus;
use crate::aws::FailureKind;
use crate::aws::arn::{RoleArn, assume_role_statement, trust_statement};
use crate::aws::discovery::{OrganizationHeader, describe_organization, list_organization};
use crate::aws::probe::{probe_member, whoami};
use crate::aws::session::{AssumeRequest, BaseCredentials, ManagingSession, SessionCache};
use crate::organization::OrganizationSnapshot;
use crate::templates::delegation_policy;

/// What to check.
#[derive(Clone, Debug)]
pub struct CheckRequest {
    pub role_arn: String,
    pub external_id: Option<String>,
    pub member_role: String,
    pub member_external_id: Option<String>,
    /// How many member accounts to probe; `None` probes all.
    pub sample: Option<usize>,
    pub region: String,
}

/// One step's result.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every step, and whether all passed.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub steps: Vec<Step>,
}

impl Report {
    fn push(&mut self, name: &str, ok: bool, detail: String, fix: Option<String>) {
        self.ok &= ok;
        self.steps.push(Step {
            name: name.to_owned(),
            ok,
            detail,
            fix,
        });
    }

    /// One line per step, with the fix indented beneath a failed one.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            let mark = if step.ok { "PASS" } else { "FAIL" };
            out.push_str(&format!("{mark}  {}: {}\n", step.name, step.detail));
            if let Some(fix) = &step.fix {
                out.push_str(&format!("      fix: {fix}\n"));
            }
        }
        out.push_str(if self.ok {
            "the connection works\n"
        } else {
            "the connection does not work yet; apply the fixes above\n"
        });
        out
    }
}

/// Runs every step it can; a failed step stops the ones that depend on it.
pub async fn run(base: SdkConfig, request: &CheckRequest) -> Report {
    let mut report = Report {
        ok: true,
        steps: Vec::new(),
    };
    let role: RoleArn = match request.role_arn.parse() {
        Ok(role) => role,
        Err(err) => {
            report.push("role ARN", false, format!("{err}"), None);
            return report;
        }
    };
    let Some(session) = assume_role(&mut report, base, request, &role).await else {
        return report;
    };
    let organizations = crate::aws::clients::organizations(&session.config);
    let Some(header) = describe(&mut report, &organizations, &role).await else {
        return report;
    };
    let Some(org) = list(&mut report, &organizations, header, &role).await else {
        return report;
    };
    probe_members(&mut report, &session.config, request, &role, &org).await;
    report
}

/// Assumes the managing role with the ExternalId.
async fn assume_role(
    report: &mut Report,
    base: SdkConfig,
    request: &CheckRequest,
    role: &RoleArn,
) -> Option<ManagingSession> {
    let sessions = SessionCache::new(base);
    let assume = AssumeRequest {
        role_arn: role.clone(),
        external_id: request.external_id.clone().unwrap_or_default(),
        session_name: "orgconnect-check".to_owned(),
        region: request.region.clone(),
        base: BaseCredentials::DefaultChain,
    };
    match sessions.session("check", &assume).await {
        Ok(session) => {
            report.push("assume role", true, format!("assumed {role}"), None);
            Some(session)
        }
        Err(failure) => {
            let fix = if failure.failure.denied_by_identity_policy() {
                Some(format!(
                    "the caller's own policies must allow assuming the role; attach this \
                     statement to it: {}",
                    assume_role_statement(role)
                ))
            } else {
                (failure.failure.kind == FailureKind::AccessDenied).then(|| {
                    format!(
                        "the role's trust policy must contain this statement: {}",
                        trust_statement(
                            failure.principal.as_deref(),
                            role,
                            request.external_id.as_deref()
                        )
                    )
                })
            };
            let caller = failure.principal.as_deref().unwrap_or("the caller");
            report.push(
                "assume role",
                false,
                format!("{caller} could not assume {role}: {}", failure.failure),
                fix,
            );
            None
        }
    }
}

/// Describes the organization, and says whether the role is in its management account.
async fn describe(
    report: &mut Report,
    organizations: &aws_sdk_organizations::Client,
    role: &RoleArn,
) -> Option<OrganizationHeader> {
    match describe_organization(organizations).await {
        Ok(header) => {
            let how = if header.managing_account_id == role.account_id {
                "from its management account".to_owned()
            } else {
                format!(
                    "as a delegated administrator (management account {})",
                    header.managing_account_id
                )
            };
            report.push(
                "describe organization",
                true,
                format!(
                    "organization {} (feature set {}), {how}",
                    header.id, header.feature_set
                ),
                None,
            );
            Some(header)
        }
        Err(failure) => {
            report.push("describe organization", false, failure.to_string(), None);
            None
        }
    }
}

/// Lists every OU and account.
async fn list(
    report: &mut Report,
    organizations: &aws_sdk_organizations::Client,
    header: OrganizationHeader,
    role: &RoleArn,
) -> Option<OrganizationSnapshot> {
    let delegated = header.managing_account_id != role.account_id;
    match list_organization(organizations, header.clone(), 8, None, &mut |_, _| {}).await {
        Ok(org) => {
            report.push(
                "list organization",
                true,
                format!(
                    "{} organizational units, {} accounts",
                    org.units.len(),
                    org.accounts.len()
                ),
                None,
            );
            Some(org)
        }
        Err(failure) => {
            let fix = if delegated && failure.kind == FailureKind::AccessDenied {
                format!(
                    "account {} is not a delegated administrator of organization {}: in the \
                     management account {}, attach this delegation policy with `aws organizations \
                     put-resource-policy --content '<policy>'`: {}",
                    role.account_id,
                    header.id,
                    header.managing_account_id,
                    delegation_policy(&role.to_string())
                )
            } else {
                format!(
                    "the role needs {}",
                    crate::templates::DISCOVERY_ACTIONS.join(", ")
                )
            };
            report.push("list organization", false, failure.to_string(), Some(fix));
            None
        }
    }
}

/// The fix for a member probe that failed, when it is not the one every blocked account
/// shares.
fn probe_fix(
    failure: &crate::aws::AwsFailure,
    account: &crate::organization::Account,
    request: &CheckRequest,
    org: &OrganizationSnapshot,
    role: &RoleArn,
) -> Option<String> {
    if failure.kind == FailureKind::RegionDisabled {
        Some(format!(
            "activate STS in {} for account {} (IAM console > Account settings), or check \
             with --region of a region active in every account",
            request.region, account.id
        ))
    } else if account.id == org.managing_account_id {
        Some(format!(
            "the management account {} has no OrganizationAccountAccessRole and no StackSet \
             reaches it: create {} in it by hand, trusting {role}",
            account.id, request.member_role
        ))
    } else {
        None
    }
}

/// The accounts left out because they are not ACTIVE, for the probe step's detail.
fn not_probed(inactive: &[&crate::organization::Account]) -> String {
    if inactive.is_empty() {
        return String::new();
    }
    let listed: Vec<String> = inactive
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a.id,
                a.status.map(|s| s.as_aws_str()).unwrap_or_default()
            )
        })
        .collect();
    format!(
        "; {} not ACTIVE, not probed ({})",
        inactive.len(),
        listed.join(", ")
    )
}

/// Assumes the member role in every active account (or a sample of them).
async fn probe_members(
    report: &mut Report,
    managing: &SdkConfig,
    request: &CheckRequest,
    role: &RoleArn,
    org: &OrganizationSnapshot,
) {
    let (candidates, inactive): (Vec<_>, Vec<_>) = org
        .accounts
        .iter()
        .partition(|a| a.status.is_none_or(|s| s == AwsAccountStatus::Active));
    let take = request
        .sample
        .unwrap_or(candidates.len())
        .min(candidates.len());
    let mut blocked = Vec::new();
    let mut fixes = Vec::new();
    for account in candidates.into_iter().take(take) {
        let result = if account.id == role.account_id {
            whoami(managing).await
        } else {
            let member_role = role.sibling(&account.id, &request.member_role);
            probe_member(
                managing,
                &member_role,
                request.member_external_id.as_deref(),
                "orgconnect-check",
            )
            .await
        };
        match result {
            Ok(reached) if reached.account_id == account.id => {}
            Ok(reached) => blocked.push(format!(
                "{} ({}): the role answered as account {}",
                account.id, account.name, reached.account_id
            )),
            Err(failure) => {
                fixes.extend(probe_fix(&failure, account, request, org, role));
                blocked.push(format!("{} ({}): {}", account.id, account.name, failure));
            }
        }
    }
    let skipped = not_probed(&inactive);
    if blocked.is_empty() {
        report.push(
            "probe members",
            true,
            format!(
                "{take} of {} accounts reached through {}{skipped}",
                org.accounts.len(),
                request.member_role
            ),
            None,
        );
    } else {
        fixes.push(format!(
            "create {} in each blocked account trusting {role}; for every account at once, deploy \
             it with a service-managed StackSet targeting the organization root with automatic \
             deployment enabled",
            request.member_role
        ));
        report.push(
            "probe members",
            false,
            format!(
                "{} of {take} probed accounts are blocked: {}{skipped}",
                blocked.len(),
                blocked.join("; ")
            ),
            Some(fixes.join("; ")),
        );
    }
}
