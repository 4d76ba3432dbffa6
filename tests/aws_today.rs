//! Organizations and STS as AWS answers today, on the test bed: accounts carry `State` (the
//! retired `Status` only when asked for) in all five states, STS answers
//! `RegionDisabledException`, a member account lists the organization only as a delegated
//! administrator, and a probe is one AssumeRole.

mod support;

use support::operator::{connected_reason, phase};

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_cloudformation::types::CallAs;
use kube::ResourceExt;
use kube::api::Api;
use orgconnect::api::member_account::{AwsAccountStatus, MemberPhase};
use orgconnect::api::{ConditionStatus, ConditionType, MemberAccount, find_condition};
use orgconnect::controller::Diagnostics;
use support::eventually;
use support::iam::deploy_managing_role_in;
use support::operator::{managing_role, members, patch_spec, wait_condition, wait_connection};
use support::org::{OrgSpec, OuSpec};
use support::scenario::Scenario;

fn remediation(member: &MemberAccount) -> String {
    member
        .status
        .as_ref()
        .and_then(|s| s.remediation.clone())
        .unwrap_or_default()
}

/// The id of the organization's first member account.
fn first_member(scenario: &Scenario) -> String {
    scenario
        .org
        .member_accounts()
        .next()
        .expect("a member")
        .id
        .clone()
}

/// Waits until `count` MemberAccounts exist and none is Pending, by account id.
async fn settled(api: &Api<MemberAccount>, count: usize) -> BTreeMap<String, MemberAccount> {
    eventually(
        &format!("{count} MemberAccounts with a settled phase"),
        Duration::from_secs(90),
        || async {
            let listed = members(api).await;
            (listed.len() == count
                && listed
                    .iter()
                    .all(|m| !matches!(phase(m), None | Some(MemberPhase::Pending))))
            .then(|| {
                listed
                    .into_iter()
                    .map(|m| (m.spec.account_id.clone(), m))
                    .collect()
            })
        },
    )
    .await
}

/// Five active accounts and one moto suspends; the bed reports one CLOSED, one
/// PENDING_ACTIVATION and one PENDING_CLOSURE, with or without the retired `Status`.
async fn every_state(retired_status: bool) {
    let spec = OrgSpec {
        root_accounts: 0,
        ous: vec![OuSpec::new("Prod").accounts(5).suspended(1)],
    };
    let scenario = Scenario::start("states", &spec).await;
    let proxy = &scenario.bed.proxy;
    let active: Vec<String> = scenario
        .org
        .member_accounts()
        .filter(|a| !a.suspended)
        .map(|a| a.id.clone())
        .collect();
    let suspended = scenario
        .org
        .member_accounts()
        .find(|a| a.suspended)
        .expect("a suspended account")
        .id
        .clone();
    let (closed, pending_activation, pending_closure) = (&active[0], &active[1], &active[2]);
    proxy.account_state([closed.clone()], "CLOSED");
    proxy.account_state([pending_activation.clone()], "PENDING_ACTIVATION");
    proxy.account_state([pending_closure.clone()], "PENDING_CLOSURE");
    proxy.serve_retired_status(retired_status);
    scenario.connect("acme", serde_json::json!({})).await;

    let found = settled(&scenario.members(), 7).await;
    let expect = |id: &str| -> (AwsAccountStatus, MemberPhase, &'static str) {
        if id == closed {
            (
                AwsAccountStatus::Closed,
                MemberPhase::Closed,
                "AccountClosed",
            )
        } else if id == pending_activation {
            (
                AwsAccountStatus::PendingActivation,
                MemberPhase::PendingActivation,
                "AccountPendingActivation",
            )
        } else if id == pending_closure {
            (
                AwsAccountStatus::PendingClosure,
                MemberPhase::Suspended,
                "AccountSuspended",
            )
        } else if id == suspended {
            (
                AwsAccountStatus::Suspended,
                MemberPhase::Suspended,
                "AccountSuspended",
            )
        } else if id == scenario.org.managing_account_id {
            (
                AwsAccountStatus::Active,
                MemberPhase::Connected,
                "ManagingAccount",
            )
        } else {
            (
                AwsAccountStatus::Active,
                MemberPhase::Connected,
                "RoleAssumed",
            )
        }
    };
    for (id, member) in &found {
        let (state, want_phase, want_reason) = expect(id);
        assert_eq!(member.spec.aws_status, Some(state), "awsStatus of {id}");
        assert_eq!(phase(member), Some(want_phase), "phase of {id}");
        assert_eq!(
            connected_reason(member).as_deref(),
            Some(want_reason),
            "reason of {id}"
        );
    }
    let not_active: BTreeSet<&str> = [
        closed.as_str(),
        pending_activation,
        pending_closure,
        &suspended,
    ]
    .into_iter()
    .collect();
    let assumed = proxy.assumed_roles();
    assert!(
        assumed
            .iter()
            .all(|role| not_active.iter().all(|id| !role.contains(id))),
        "no account that is not ACTIVE is probed: {assumed:?}"
    );
    for member in found
        .values()
        .filter(|m| not_active.contains(m.spec.account_id.as_str()))
    {
        for reason in ["Blocked", "Closed", "Suspended", "PendingActivation"] {
            let events = scenario.ns.events(&member.name_any(), reason).await;
            assert!(
                events.iter().all(|e| e.type_.as_deref() != Some("Warning")),
                "no Warning Event about {}: {events:?}",
                member.name_any()
            );
        }
    }
    wait_connection(
        &scenario.connections(),
        "acme",
        "counts by state",
        Duration::from_secs(30),
        |c| {
            c.status
                .as_ref()
                .and_then(|s| s.accounts.as_ref())
                .is_some_and(|a| {
                    (
                        a.total,
                        a.connected,
                        a.suspended,
                        a.closed,
                        a.pending_activation,
                        a.blocked,
                    ) == (7, 3, 2, 1, 1, 0)
                })
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_in_every_state_without_the_retired_status() {
    every_state(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_in_every_state_with_both_fields_follow_state() {
    every_state(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_sts_region_blocks_the_account_with_the_region_and_the_fix() {
    let scenario = Scenario::start("region", &OrgSpec::flat(3)).await;
    let disabled = first_member(&scenario);
    scenario.bed.proxy.disable_region([disabled.clone()]);
    scenario
        .connect("acme", serde_json::json!({ "region": "eu-central-2" }))
        .await;
    let found = settled(&scenario.members(), 4).await;
    let member = &found[&disabled];
    assert_eq!(
        (phase(member), connected_reason(member).as_deref()),
        (Some(MemberPhase::Blocked), Some("RegionDisabled"))
    );
    let fix = remediation(member);
    assert!(
        fix.contains(&disabled) && fix.contains("eu-central-2") && fix.contains("Activate"),
        "{fix}"
    );
    let connected = found
        .values()
        .filter(|m| phase(m) == Some(MemberPhase::Connected))
        .count();
    assert_eq!(connected, 3, "the other accounts are reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_cycle_makes_one_sts_call_per_probed_account() {
    let scenario = Scenario::start("one-call", &OrgSpec::flat(8)).await;
    let proxy = &scenario.bed.proxy;
    proxy.reset_stats();
    scenario.connect("acme", serde_json::json!({})).await;
    let found = settled(&scenario.members(), 9).await;
    assert!(
        found
            .values()
            .all(|m| phase(m) == Some(MemberPhase::Connected)),
        "every account Connected"
    );
    let diagnostics = &scenario.operator.diagnostics;
    eventually("9 probes applied", Duration::from_secs(30), || async {
        (Diagnostics::get(&diagnostics.probes_applied) >= 9).then_some(())
    })
    .await;
    // The managing-role session (one AssumeRole, and one GetCallerIdentity naming the
    // operator for the trust policy), then one call per account: AssumeRole into each
    // member role, GetCallerIdentity with the managing session for its own account.
    assert_eq!(
        proxy.calls("AssumeRole"),
        1 + 8,
        "{:?}",
        proxy.call_counts()
    );
    assert_eq!(
        proxy.calls("GetCallerIdentity"),
        1 + 1,
        "{:?}",
        proxy.call_counts()
    );

    let (assumes, whoamis) = (proxy.calls("AssumeRole"), proxy.calls("GetCallerIdentity"));
    let applied = Diagnostics::get(&diagnostics.probes_applied);
    patch_spec(
        &scenario.connections(),
        "acme",
        serde_json::json!({ "memberAccess": { "probeInterval": "31m" } }),
    )
    .await;
    eventually(
        "a second probe of all 9 accounts",
        Duration::from_secs(60),
        || async { (Diagnostics::get(&diagnostics.probes_applied) >= applied + 9).then_some(()) },
    )
    .await;
    assert_eq!(
        (
            proxy.calls("AssumeRole") - assumes,
            proxy.calls("GetCallerIdentity") - whoamis
        ),
        (8, 1),
        "a probe cycle: one STS call per probed account"
    );
}

/// The delegation policy a `NotDelegatedAdministrator` message carries (its last part).
fn policy_in(message: &str) -> serde_json::Value {
    let start = message.rfind(": {").expect("a policy in the message") + 2;
    serde_json::from_str(&message[start..]).unwrap_or_else(|e| panic!("{e}: {message}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_administrator_lists_the_organization_once_the_delegation_policy_allows_it() {
    let scenario = Scenario::start("delegated", &OrgSpec::flat(3)).await;
    let management = scenario.org.managing_account_id.clone();
    let admin = first_member(&scenario);
    // The managing role, from the template, in the delegated administrator account. The
    // management account holds no OrganizationAccountAccessRole, as on AWS.
    deploy_managing_role_in(
        &scenario.bed,
        &admin,
        &scenario.external_id,
        "OrganizationAccountAccessRole",
    )
    .await;
    let connections = scenario.connections();
    support::operator::apply_connection(
        &connections,
        "acme",
        serde_json::json!({ "roleArn": managing_role(&admin), "externalId": scenario.external_id }),
    )
    .await;

    // Without a delegation policy, AWS refuses the List calls; the reason says what to attach.
    let refused = wait_condition(
        &connections,
        "acme",
        ConditionType::Discovered,
        ConditionStatus::False,
        "NotDelegatedAdministrator",
    )
    .await;
    let message = find_condition(
        &refused.status.expect("status").conditions,
        ConditionType::Discovered,
    )
    .expect("Discovered")
    .message
    .clone();
    assert!(message.contains(&management), "{message}");
    assert!(members(&scenario.members()).await.is_empty());
    let policy = policy_in(&message);
    assert_eq!(
        policy["Statement"][0]["Principal"]["AWS"],
        serde_json::Value::from(managing_role(&admin))
    );

    // The management account attaches exactly that policy; the next discovery lists all.
    aws_sdk_organizations::Client::new(&scenario.bed.sdk_config())
        .put_resource_policy()
        .content(policy.to_string())
        .send()
        .await
        .expect("PutResourcePolicy");
    patch_spec(
        &connections,
        "acme",
        serde_json::json!({ "discoveryInterval": "2h" }),
    )
    .await;
    let ready = wait_condition(
        &connections,
        "acme",
        ConditionType::Ready,
        ConditionStatus::True,
        "Connected",
    )
    .await;
    let organization = ready
        .status
        .and_then(|s| s.organization)
        .expect("organization");
    assert_eq!(organization.managing_account_id, management);
    assert_eq!(
        organization.delegated_administrator_account_id.as_deref(),
        Some(admin.as_str())
    );
    let found = settled(&scenario.members(), 4).await;
    assert_eq!(
        connected_reason(&found[&admin]).as_deref(),
        Some("ManagingAccount"),
        "the delegated administrator holds the managing role"
    );
    let managed = &found[&management];
    assert_eq!(
        (phase(managed), connected_reason(managed).as_deref()),
        (
            Some(MemberPhase::Blocked),
            Some("ManagementAccountRoleMissing")
        )
    );
    let fix = remediation(managed);
    assert!(
        fix.contains("management account") && fix.contains("aws cloudformation deploy"),
        "{fix}"
    );
    assert!(
        scenario
            .bed
            .proxy
            .assumed_roles()
            .iter()
            .any(|role| role
                == &format!("arn:aws:iam::{management}:role/OrganizationAccountAccessRole")),
        "the management account is probed like a member"
    );
    // OrganizationAccountAccessRole trusts the management account alone, so from a
    // delegated administrator the other members need a member role of their own.
    for member in found
        .keys()
        .filter(|id| **id != admin && **id != management)
    {
        let blocked = &found[member];
        assert_eq!(
            (phase(blocked), connected_reason(blocked).as_deref()),
            (Some(MemberPhase::Blocked), Some("AssumeRoleDenied")),
            "{member}"
        );
        let fix = remediation(blocked);
        assert!(
            fix.contains(&format!("--managing-account {admin}")) && fix.contains("StackSet"),
            "{fix}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_administrator_manages_the_stack_set_as_delegated_admin() {
    let scenario = Scenario::start("delegated-ss", &OrgSpec::flat(2)).await;
    let admin = first_member(&scenario);
    let organizations = aws_sdk_organizations::Client::new(&scenario.bed.sdk_config());
    let role = managing_role(&admin);
    organizations
        .put_resource_policy()
        .content(orgconnect::templates::delegation_policy(&role).to_string())
        .send()
        .await
        .expect("PutResourcePolicy");
    organizations
        .register_delegated_administrator()
        .account_id(&admin)
        .service_principal("member.org.stacksets.cloudformation.amazonaws.com")
        .send()
        .await
        .expect("RegisterDelegatedAdministrator");
    deploy_managing_role_in(
        &scenario.bed,
        &admin,
        &scenario.external_id,
        "OrgconnectMemberRole",
    )
    .await;
    let connections = scenario.connections();
    support::operator::apply_connection(
        &connections,
        "acme",
        serde_json::json!({
            "roleArn": role,
            "externalId": scenario.external_id,
            "memberAccess": { "roleName": "OrgconnectMemberRole" },
            "stackSet": { "enabled": true },
        }),
    )
    .await;
    let ready = wait_condition(
        &connections,
        "acme",
        ConditionType::StackSetReady,
        ConditionStatus::True,
        "Deployed",
    )
    .await;
    let name = ready
        .status
        .and_then(|s| s.stack_set)
        .expect("stackSet status")
        .name;
    // The StackSet belongs to the organization's management account, as on AWS.
    let described = aws_sdk_cloudformation::Client::new(&scenario.bed.sdk_config())
        .describe_stack_set()
        .stack_set_name(&name)
        .call_as(CallAs::SelfValue)
        .send()
        .await
        .expect("the management account holds the StackSet");
    assert!(described.stack_set().is_some());
    assert!(scenario.bed.proxy.calls("CreateStackSet") >= 1);
}
