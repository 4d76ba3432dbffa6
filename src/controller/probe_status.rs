//! Pure decisions about a MemberAccount: whether it is probed, and what a probe's
//! outcome means for its phase, its `Connected` condition and its remediation.

use crate::api::condition::ConditionStatus;
use crate::api::connection::{DEFAULT_ROLE_NAME, StackInstanceFailure};
use crate::api::member_account::{AwsAccountStatus, JoinedMethod, MemberAccountSpec, MemberPhase};
use crate::aws::arn::RoleArn;
use crate::aws::{AwsFailure, FailureKind};
use crate::templates::DEFAULT_MEMBER_ROLE;

use super::connection_status::Verdict;

/// The phase, `Connected` condition and remediation a MemberAccount should show.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberVerdict {
    pub phase: MemberPhase,
    pub connected: Verdict,
    pub remediation: Option<String>,
}

/// What a probe tried.
#[derive(Clone, Debug)]
pub struct Attempt<'a> {
    pub account_id: &'a str,
    /// The member role assumed.
    pub role_arn: &'a str,
    pub role_name: &'a str,
    /// The managing role the probe started from.
    pub managing_role_arn: &'a str,
    /// The region whose STS endpoint the probe called.
    pub region: &'a str,
    /// Whether this is the organization's management account probed from a delegated
    /// administrator: no StackSet ever reaches it, and it has no
    /// `OrganizationAccountAccessRole`, so its member role is made by hand.
    pub management_account: bool,
    /// The operator's StackSet failed to deploy the member role here: its name and
    /// CloudFormation's reason.
    pub stack_instance_failure: Option<(&'a str, &'a StackInstanceFailure)>,
}

/// How a probe ended.
#[derive(Clone, Debug)]
pub enum ProbeOutcome {
    /// AssumeRole landed in this account.
    Reached {
        account_id: String,
    },
    /// The account holding the managing role, reached with its session itself.
    ReachedManaging,
    Failed(AwsFailure),
}

/// Accounts that are not probed at all: not ACTIVE in AWS (suspended, closing, closed or
/// not yet activated), or paused by a user.
pub fn not_probed(spec: &MemberAccountSpec) -> Option<MemberVerdict> {
    if let Some(state) = spec.aws_status.filter(|s| *s != AwsAccountStatus::Active) {
        let (phase, reason, why) = match state {
            AwsAccountStatus::Suspended | AwsAccountStatus::PendingClosure => (
                MemberPhase::Suspended,
                "AccountSuspended",
                "no role in it can be assumed until AWS reinstates it",
            ),
            AwsAccountStatus::Closed => (
                MemberPhase::Closed,
                "AccountClosed",
                "AWS removes it from the organization within 90 days",
            ),
            AwsAccountStatus::PendingActivation | AwsAccountStatus::Active => (
                MemberPhase::PendingActivation,
                "AccountPendingActivation",
                "it is probed once AWS reports it ACTIVE (at the next discovery)",
            ),
        };
        return Some(MemberVerdict {
            phase,
            connected: (
                ConditionStatus::False,
                reason,
                format!(
                    "the account is {} in AWS Organizations and is not probed: {why}",
                    state.as_aws_str()
                ),
            ),
            remediation: None,
        });
    }
    if spec.paused == Some(true) {
        return Some(MemberVerdict {
            phase: MemberPhase::Paused,
            connected: (
                ConditionStatus::Unknown,
                "Paused",
                "spec.paused is true: the account is not probed and sync Jobs leave it out"
                    .to_owned(),
            ),
            remediation: None,
        });
    }
    None
}

/// The verdict while the connection has no managing-role session to probe from.
pub fn waiting_for_connection(previous: Option<MemberPhase>) -> MemberVerdict {
    MemberVerdict {
        phase: previous.unwrap_or(MemberPhase::Pending),
        connected: (
            ConditionStatus::Unknown,
            "ConnectionNotReady",
            "the connection has no managing-role session yet; see its Authenticated condition"
                .to_owned(),
        ),
        remediation: None,
    }
}

/// The fix for a Blocked account: the role by hand, or a member role for every account
/// from a service-managed StackSet, with the command that prints its template.
pub fn remediation(attempt: &Attempt<'_>) -> String {
    // The StackSet cannot create OrganizationAccountAccessRole where it already exists
    // (every created account has it), so that route brings a role of its own.
    let stack_set_role = if attempt.role_name == DEFAULT_ROLE_NAME {
        DEFAULT_MEMBER_ROLE
    } else {
        attempt.role_name
    };
    let managing = attempt.managing_role_arn.parse::<RoleArn>().ok();
    let template_command = format!(
        "orgconnect template member-stackset{}{} --member-role {stack_set_role}",
        managing
            .as_ref()
            .map(|arn| format!(" --managing-account {}", arn.account_id))
            .unwrap_or_default(),
        managing
            .as_ref()
            .map(|arn| format!(" --managing-role {}", arn.name))
            .unwrap_or_default(),
    );
    let switch_role = if stack_set_role == attempt.role_name {
        String::new()
    } else {
        format!(", then set the connection's spec.memberAccess.roleName to {stack_set_role}")
    };
    format!(
        "Create the role {role} in account {account}, trusting the managing role {managing}. \
         To fix every account at once, including accounts that join later, deploy a member role \
         from the managing account with a service-managed CloudFormation StackSet (deployment \
         target: the organization root; automatic deployment: enabled): `{template_command}` \
         prints its template{switch_role}; or set spec.stackSet.enabled on the connection and \
         the operator deploys it. Then annotate this MemberAccount orgconnect.dev/probe=now to \
         check again.",
        role = attempt.role_name,
        account = attempt.account_id,
        managing = attempt.managing_role_arn,
    )
}

/// The fix for the management account probed from a delegated administrator: StackSets
/// never deploy to it and it has no `OrganizationAccountAccessRole`, so the member role is
/// one stack made by hand from the same template.
pub fn management_remediation(attempt: &Attempt<'_>) -> String {
    let managing = attempt.managing_role_arn.parse::<RoleArn>().ok();
    let (account, role) = managing
        .as_ref()
        .map(|arn| (arn.account_id.as_str(), arn.name.as_str()))
        .unwrap_or(("ACCOUNT", "ROLE"));
    format!(
        "Account {management} is the organization's management account: it has no \
         OrganizationAccountAccessRole and no StackSet deploys to it, so its member role is \
         made by hand. In account {management}, deploy the member role as a stack of its own, \
         trusting the managing role {managing_arn}: `orgconnect template member-stackset \
         --managing-account {account} --managing-role {role} --member-role {member_role} > \
         member-role.yaml`, then `aws cloudformation deploy --template-file member-role.yaml \
         --stack-name orgconnect-member-role --capabilities CAPABILITY_NAMED_IAM`; or set \
         spec.roleName on this MemberAccount to a role that already trusts it. Then annotate \
         this MemberAccount orgconnect.dev/probe=now to check again.",
        management = attempt.account_id,
        managing_arn = attempt.managing_role_arn,
        member_role = attempt.role_name,
    )
}

/// The fix for an account the operator's StackSet failed to deploy to: CloudFormation's
/// reason, and the command that deploys this one instance again once it is fixed.
pub fn stack_instance_remediation(
    attempt: &Attempt<'_>,
    stack_set: &str,
    failed: &StackInstanceFailure,
    ou: Option<&str>,
) -> String {
    format!(
        "CloudFormation could not create the member role {role} in account {account} ({region}): \
         {reason}. Fix that in the account (for example delete a role of the same name made \
         by hand, or let a service control policy allow iam:CreateRole for StackSets), then \
         deploy this instance again: `aws cloudformation update-stack-instances \
         --stack-set-name {stack_set} --deployment-targets \
         OrganizationalUnitIds={ou},Accounts={account},AccountFilterType=INTERSECTION \
         --regions {region}`, and annotate this MemberAccount orgconnect.dev/probe=now.",
        role = attempt.role_name,
        account = attempt.account_id,
        region = failed.region,
        reason = failed.reason,
        ou = ou.unwrap_or("<its OU id>"),
    )
}

/// The fix for a member role the managing role's own policies do not let it assume (a
/// role name other than the one its template was made for).
pub fn policy_remediation(attempt: &Attempt<'_>) -> String {
    format!(
        "The managing role {managing} may assume only the member role its template names. \
         Update its stack with `orgconnect template managing-role --member-role {role}` (or \
         `--connection` when this is the connection's memberAccess.roleName), or add this \
         statement to its policy: {statement}. Then annotate this MemberAccount \
         orgconnect.dev/probe=now to check again.",
        managing = attempt.managing_role_arn,
        role = attempt.role_name,
        statement = serde_json::json!({
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Resource": format!("arn:aws:iam::*:role/{}", attempt.role_name),
        }),
    )
}

/// The fix for an account where STS is not active in the probe's region.
pub fn region_remediation(attempt: &Attempt<'_>) -> String {
    format!(
        "STS is not active in region {region} for account {account}. An administrator of account \
         {account} activates it in the IAM console (Account settings > Security Token Service \
         (STS) > Endpoints > {region} > Activate); or set the connection's spec.region to a \
         region whose STS endpoint is active in every account (us-east-1 always is). Then \
         annotate this MemberAccount orgconnect.dev/probe=now to check again.",
        region = attempt.region,
        account = attempt.account_id,
    )
}

/// The Event a phase change deserves: `(warning, reason)`. Blocked always warns; an
/// account's first settled phase other than Blocked (the normal outcome of discovery) is
/// left to status and the connection's counts, so a new organization of thousands of
/// accounts does not write thousands of Events.
pub fn phase_event(
    previous: Option<MemberPhase>,
    next: MemberPhase,
) -> Option<(bool, &'static str)> {
    if previous == Some(next) {
        return None;
    }
    let first = matches!(previous, None | Some(MemberPhase::Pending));
    match next {
        MemberPhase::Blocked => Some((true, "Blocked")),
        _ if first => None,
        other => Some((false, other.as_str())),
    }
}

impl MemberVerdict {
    /// A verdict that keeps an account Blocked without a new answer (AWS was slow, or the
    /// connection is not ready) keeps the fix the account was given.
    pub fn keeping_remediation(mut self, current: Option<&String>) -> Self {
        if self.phase == MemberPhase::Blocked && self.remediation.is_none() {
            self.remediation = current.cloned();
        }
        self
    }
}

/// What a probe's outcome means. Throttling and transient failures keep the previous
/// phase: an account never turns Blocked because AWS was slow.
///
/// Long on purpose: one match over every outcome a probe can have, each arm one reason
/// with its remediation, so the whole table of reasons is in one place.
pub fn verdict(
    spec: &MemberAccountSpec,
    previous: Option<MemberPhase>,
    attempt: &Attempt<'_>,
    outcome: ProbeOutcome,
) -> MemberVerdict {
    match outcome {
        ProbeOutcome::ReachedManaging => MemberVerdict {
            phase: MemberPhase::Connected,
            connected: (
                ConditionStatus::True,
                "ManagingAccount",
                format!(
                    "this account holds the managing role {}, reached with that role's session itself",
                    attempt.managing_role_arn
                ),
            ),
            remediation: None,
        },
        ProbeOutcome::Reached { account_id } if account_id == attempt.account_id => MemberVerdict {
            phase: MemberPhase::Connected,
            connected: (
                ConditionStatus::True,
                "RoleAssumed",
                format!(
                    "assumed {} from the managing role; the session acts in account {account_id}",
                    attempt.role_arn
                ),
            ),
            remediation: None,
        },
        ProbeOutcome::Reached { account_id } => MemberVerdict {
            phase: MemberPhase::Blocked,
            connected: (
                ConditionStatus::False,
                "WrongAccount",
                format!(
                    "assuming {} answered as account {account_id}, not {}",
                    attempt.role_arn, attempt.account_id
                ),
            ),
            remediation: Some(remediation(attempt)),
        },
        ProbeOutcome::Failed(failure) => match failure.kind {
            FailureKind::RegionDisabled => MemberVerdict {
                phase: MemberPhase::Blocked,
                connected: (
                    ConditionStatus::False,
                    "RegionDisabled",
                    format!(
                        "STS is not active in {} for account {}, so {} cannot be assumed there ({failure})",
                        attempt.region, attempt.account_id, attempt.role_arn
                    ),
                ),
                remediation: Some(region_remediation(attempt)),
            },
            FailureKind::AccessDenied
                if let Some((stack_set, failed)) = attempt.stack_instance_failure =>
            {
                MemberVerdict {
                    phase: MemberPhase::Blocked,
                    connected: (
                        ConditionStatus::False,
                        "StackInstanceFailed",
                        format!(
                            "the member-role StackSet {stack_set} could not deploy to account {} \
                             in {}: {}; so the managing role {} was denied assuming {} ({failure})",
                            attempt.account_id,
                            failed.region,
                            failed.reason,
                            attempt.managing_role_arn,
                            attempt.role_arn
                        ),
                    ),
                    remediation: Some(stack_instance_remediation(
                        attempt,
                        stack_set,
                        failed,
                        spec.organizational_unit.as_ref().map(|ou| ou.id.as_str()),
                    )),
                }
            }
            FailureKind::AccessDenied if failure.denied_by_identity_policy() => MemberVerdict {
                phase: MemberPhase::Blocked,
                connected: (
                    ConditionStatus::False,
                    "ManagingRolePolicyDenied",
                    format!(
                        "the managing role {} may not assume {}: its own policies do not allow \
                         it ({failure})",
                        attempt.managing_role_arn, attempt.role_arn
                    ),
                ),
                remediation: Some(policy_remediation(attempt)),
            },
            FailureKind::AccessDenied if attempt.management_account => MemberVerdict {
                phase: MemberPhase::Blocked,
                connected: (
                    ConditionStatus::False,
                    "ManagementAccountRoleMissing",
                    format!(
                        "account {} is the management account, which no StackSet reaches; the \
                         managing role {} was denied assuming {} ({failure})",
                        attempt.account_id, attempt.managing_role_arn, attempt.role_arn
                    ),
                ),
                remediation: Some(management_remediation(attempt)),
            },
            FailureKind::AccessDenied if spec.joined_method == Some(JoinedMethod::Invited) => {
                MemberVerdict {
                    phase: MemberPhase::Blocked,
                    connected: (
                        ConditionStatus::False,
                        "RoleMissingForInvitedAccount",
                        format!(
                            "account {} joined the organization by invitation, so it has no {} unless \
                         someone created it; the managing role {} was denied assuming {} ({failure})",
                            attempt.account_id,
                            attempt.role_name,
                            attempt.managing_role_arn,
                            attempt.role_arn
                        ),
                    ),
                    remediation: Some(remediation(attempt)),
                }
            }
            FailureKind::AccessDenied => MemberVerdict {
                phase: MemberPhase::Blocked,
                connected: (
                    ConditionStatus::False,
                    "AssumeRoleDenied",
                    format!(
                        "the managing role {} was denied assuming {} ({failure})",
                        attempt.managing_role_arn, attempt.role_arn
                    ),
                ),
                remediation: Some(remediation(attempt)),
            },
            FailureKind::Throttled => MemberVerdict {
                phase: previous.unwrap_or(MemberPhase::Pending),
                connected: (
                    ConditionStatus::Unknown,
                    "Throttled",
                    "AWS throttled the probe; the previous phase is kept and the probe is retried \
                     with backoff"
                        .to_owned(),
                ),
                remediation: None,
            },
            _ => MemberVerdict {
                phase: previous.unwrap_or(MemberPhase::Pending),
                connected: (
                    ConditionStatus::Unknown,
                    "ProbeFailed",
                    format!(
                        "the probe did not complete ({failure}); the previous phase is kept and the probe is retried"
                    ),
                ),
                remediation: None,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        joined: Option<JoinedMethod>,
        status: Option<AwsAccountStatus>,
        paused: Option<bool>,
    ) -> MemberAccountSpec {
        MemberAccountSpec {
            connection: "acme".into(),
            account_id: "222222222222".into(),
            name: "n".into(),
            email: "e".into(),
            organizational_unit: None,
            joined_method: joined,
            aws_status: status,
            management_account: None,
            paused,
            role_name: None,
        }
    }

    fn attempt() -> Attempt<'static> {
        Attempt {
            account_id: "222222222222",
            role_arn: "arn:aws:iam::222222222222:role/OrganizationAccountAccessRole",
            role_name: "OrganizationAccountAccessRole",
            managing_role_arn: "arn:aws:iam::111111111111:role/orgconnect",
            region: "eu-central-2",
            management_account: false,
            stack_instance_failure: None,
        }
    }

    fn failure(kind: FailureKind) -> ProbeOutcome {
        ProbeOutcome::Failed(AwsFailure {
            operation: "AssumeRole",
            kind,
            code: Some("X".into()),
            message: "m".into(),
        })
    }

    #[test]
    fn suspended_and_paused_accounts_are_not_probed() {
        let suspended =
            not_probed(&spec(None, Some(AwsAccountStatus::PendingClosure), None)).expect("skipped");
        assert_eq!(suspended.phase, MemberPhase::Suspended);
        assert_eq!(suspended.connected.1, "AccountSuspended");
        let paused =
            not_probed(&spec(None, Some(AwsAccountStatus::Active), Some(true))).expect("skipped");
        assert_eq!(paused.phase, MemberPhase::Paused);
        assert!(not_probed(&spec(None, Some(AwsAccountStatus::Active), Some(false))).is_none());
    }

    #[test]
    fn accounts_that_are_not_active_are_not_probed_and_say_why() {
        for (state, phase, reason) in [
            (
                AwsAccountStatus::Suspended,
                MemberPhase::Suspended,
                "AccountSuspended",
            ),
            (
                AwsAccountStatus::Closed,
                MemberPhase::Closed,
                "AccountClosed",
            ),
            (
                AwsAccountStatus::PendingActivation,
                MemberPhase::PendingActivation,
                "AccountPendingActivation",
            ),
        ] {
            let skipped = not_probed(&spec(None, Some(state), None)).expect("skipped");
            assert_eq!((skipped.phase, skipped.connected.1), (phase, reason));
            assert!(skipped.connected.2.contains(state.as_aws_str()));
            assert!(skipped.remediation.is_none());
        }
    }

    #[test]
    fn a_disabled_region_blocks_with_the_account_and_the_region() {
        let blocked = verdict(
            &spec(None, None, None),
            Some(MemberPhase::Connected),
            &attempt(),
            failure(FailureKind::RegionDisabled),
        );
        assert_eq!(
            (blocked.phase, blocked.connected.1),
            (MemberPhase::Blocked, "RegionDisabled")
        );
        let fix = blocked.remediation.expect("remediation");
        assert!(
            fix.contains("eu-central-2") && fix.contains("222222222222"),
            "{fix}"
        );
    }

    #[test]
    fn the_management_account_seen_from_a_delegated_administrator_is_fixed_by_hand() {
        let management = Attempt {
            management_account: true,
            ..attempt()
        };
        let blocked = verdict(
            &spec(Some(JoinedMethod::Created), None, None),
            None,
            &management,
            failure(FailureKind::AccessDenied),
        );
        assert_eq!(blocked.connected.1, "ManagementAccountRoleMissing");
        let fix = blocked.remediation.expect("remediation");
        assert!(
            fix.contains("management account")
                && fix.contains("aws cloudformation deploy")
                && !fix.contains("StackSet (deployment"),
            "{fix}"
        );
    }

    #[test]
    fn a_member_role_the_managing_policy_does_not_cover_names_the_statement() {
        let audit = Attempt {
            role_arn: "arn:aws:iam::222222222222:role/AuditRole",
            role_name: "AuditRole",
            ..attempt()
        };
        let blocked = verdict(
            &spec(Some(JoinedMethod::Created), None, None),
            None,
            &audit,
            ProbeOutcome::Failed(AwsFailure {
                operation: "AssumeRole",
                kind: FailureKind::AccessDenied,
                code: Some("AccessDenied".into()),
                message: "User: arn:aws:sts::111111111111:assumed-role/orgconnect/s is not \
                          authorized to perform: sts:AssumeRole on resource: \
                          arn:aws:iam::222222222222:role/AuditRole because no identity-based \
                          policy allows the sts:AssumeRole action"
                    .into(),
            }),
        );
        assert_eq!(
            (blocked.phase, blocked.connected.1),
            (MemberPhase::Blocked, "ManagingRolePolicyDenied")
        );
        let fix = blocked.remediation.expect("remediation");
        assert!(fix.contains("--member-role AuditRole"), "{fix}");
        assert!(
            fix.contains(r#""Resource":"arn:aws:iam::*:role/AuditRole""#),
            "{fix}"
        );
        // A trust policy's refusal says nothing of identity policies: the role's fix.
        let trust = verdict(
            &spec(Some(JoinedMethod::Created), None, None),
            None,
            &audit,
            failure(FailureKind::AccessDenied),
        );
        assert_eq!(trust.connected.1, "AssumeRoleDenied");
    }

    #[test]
    fn an_account_the_stack_set_failed_to_reach_says_why_and_how_to_redeploy() {
        let failed = StackInstanceFailure {
            account_id: "222222222222".into(),
            region: "us-east-1".into(),
            reason: "Role OrgconnectMemberRole already exists".into(),
        };
        let attempt = Attempt {
            stack_instance_failure: Some(("orgconnect-team-acme", &failed)),
            ..attempt()
        };
        let mut member = spec(Some(JoinedMethod::Created), None, None);
        member.organizational_unit = Some(crate::api::member_account::OrganizationalUnitRef {
            id: "ou-ab12-34cd56ef".into(),
            path: "Root/Prod".into(),
            lineage: Vec::new(),
        });
        let blocked = verdict(&member, None, &attempt, failure(FailureKind::AccessDenied));
        assert_eq!(
            (blocked.phase, blocked.connected.1),
            (MemberPhase::Blocked, "StackInstanceFailed")
        );
        assert!(blocked.connected.2.contains("already exists"));
        let fix = blocked.remediation.expect("remediation");
        assert!(
            fix.contains("--stack-set-name orgconnect-team-acme")
                && fix.contains("OrganizationalUnitIds=ou-ab12-34cd56ef,Accounts=222222222222"),
            "{fix}"
        );
    }

    #[test]
    fn denied_accounts_are_blocked_with_the_fix() {
        let created = verdict(
            &spec(Some(JoinedMethod::Created), None, None),
            None,
            &attempt(),
            failure(FailureKind::AccessDenied),
        );
        assert_eq!(created.phase, MemberPhase::Blocked);
        assert_eq!(created.connected.1, "AssumeRoleDenied");
        let fix = created.remediation.expect("remediation");
        assert!(
            fix.contains("StackSet") && fix.contains("automatic deployment"),
            "{fix}"
        );
        assert!(fix.contains("arn:aws:iam::111111111111:role/orgconnect"));
        assert!(
            fix.contains(
                "`orgconnect template member-stackset --managing-account 111111111111 \
                 --managing-role orgconnect --member-role OrgconnectMemberRole`"
            ) && fix.contains("spec.memberAccess.roleName to OrgconnectMemberRole"),
            "{fix}"
        );
        // A member role of the user's own is the one the StackSet deploys.
        let custom = Attempt {
            role_name: "AuditRole",
            ..attempt()
        };
        let fix = remediation(&custom);
        assert!(fix.contains("--member-role AuditRole`"), "{fix}");
        assert!(!fix.contains("roleName to"), "{fix}");
        let invited = verdict(
            &spec(Some(JoinedMethod::Invited), None, None),
            None,
            &attempt(),
            failure(FailureKind::AccessDenied),
        );
        assert_eq!(invited.connected.1, "RoleMissingForInvitedAccount");
        assert!(invited.connected.2.contains("invitation"));
    }

    #[test]
    fn a_blocked_account_keeps_its_fix_while_aws_is_slow() {
        let fix = "create the role".to_owned();
        for outcome in [
            failure(FailureKind::Throttled),
            failure(FailureKind::Transient),
        ] {
            let kept = verdict(
                &spec(None, None, None),
                Some(MemberPhase::Blocked),
                &attempt(),
                outcome,
            )
            .keeping_remediation(Some(&fix));
            assert_eq!(kept.phase, MemberPhase::Blocked);
            assert_eq!(kept.remediation.as_ref(), Some(&fix));
        }
        let waiting =
            waiting_for_connection(Some(MemberPhase::Blocked)).keeping_remediation(Some(&fix));
        assert_eq!(waiting.remediation.as_ref(), Some(&fix));
        // Once the account is reached, the fix goes.
        let reached = verdict(
            &spec(None, None, None),
            Some(MemberPhase::Blocked),
            &attempt(),
            ProbeOutcome::Reached {
                account_id: "222222222222".into(),
            },
        )
        .keeping_remediation(Some(&fix));
        assert_eq!(reached.remediation, None);
    }

    #[test]
    fn events_mark_blocked_accounts_and_changes_but_not_first_connections() {
        use MemberPhase::*;
        assert_eq!(phase_event(None, Blocked), Some((true, "Blocked")));
        assert_eq!(phase_event(Some(Pending), Blocked), Some((true, "Blocked")));
        assert_eq!(
            phase_event(Some(Connected), Blocked),
            Some((true, "Blocked"))
        );
        assert_eq!(phase_event(None, Connected), None);
        assert_eq!(phase_event(Some(Pending), Connected), None);
        assert_eq!(phase_event(Some(Pending), Suspended), None);
        assert_eq!(
            phase_event(Some(Blocked), Connected),
            Some((false, "Connected"))
        );
        assert_eq!(
            phase_event(Some(Connected), Suspended),
            Some((false, "Suspended"))
        );
        assert_eq!(
            phase_event(Some(Connected), Paused),
            Some((false, "Paused"))
        );
        assert_eq!(phase_event(Some(Blocked), Blocked), None);
        assert_eq!(phase_event(Some(Connected), Connected), None);
    }

    #[test]
    fn slow_aws_never_blocks_a_connected_account() {
        for kind in [FailureKind::Throttled, FailureKind::Transient] {
            let kept = verdict(
                &spec(None, None, None),
                Some(MemberPhase::Connected),
                &attempt(),
                failure(kind),
            );
            assert_eq!(kept.phase, MemberPhase::Connected);
            assert_eq!(kept.connected.0, ConditionStatus::Unknown);
            assert!(kept.remediation.is_none());
        }
        let first = verdict(
            &spec(None, None, None),
            None,
            &attempt(),
            failure(FailureKind::Throttled),
        );
        assert_eq!(
            (first.phase, first.connected.1),
            (MemberPhase::Pending, "Throttled")
        );
    }

    #[test]
    fn reaching_the_account_connects_it_and_another_account_blocks_it() {
        let reached = ProbeOutcome::Reached {
            account_id: "222222222222".into(),
        };
        assert_eq!(
            verdict(&spec(None, None, None), None, &attempt(), reached).phase,
            MemberPhase::Connected
        );
        let elsewhere = ProbeOutcome::Reached {
            account_id: "999999999999".into(),
        };
        let wrong = verdict(&spec(None, None, None), None, &attempt(), elsewhere);
        assert_eq!(
            (wrong.phase, wrong.connected.1),
            (MemberPhase::Blocked, "WrongAccount")
        );
        let managing = verdict(
            &spec(None, None, None),
            None,
            &attempt(),
            ProbeOutcome::ReachedManaging,
        );
        assert_eq!(managing.connected.1, "ManagingAccount");
    }
}
