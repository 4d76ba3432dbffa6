//! The operator-managed StackSet on the test bed: created service-managed with the member
//! role, deployed to the organization, Blocked accounts reached once it is deployed, moved
//! when its OUs or regions change, and removed when the connection is deleted, or let go
//! with `orgconnect.dev/revoke=skip`; the `Revoked` Event says which.

mod support;

use support::operator::{connected_reason, phase};

use support::scenario::Scenario;

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use aws_sdk_cloudformation::types::CallAs;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use orgconnect::api::member_account::MemberPhase;
use orgconnect::api::{AwsOrgConnection, ConditionStatus, ConditionType, find_condition};
use support::eventually;
use support::iam::{deploy_member_role, role_exists, without_action};
use support::kube::TestNamespace;
use support::operator::{
    apply_connection, managing_role, members, patch_spec, wait_all_connected, wait_condition,
};
use support::org::{OrgSpec, OuSpec};

/// The member role the StackSet makes (`OrganizationAccountAccessRole` exists already in
/// created accounts).
const MEMBER_ROLE: &str = "OrgconnectMemberRole";

/// Patches the connection's spec, then waits until `StackSetReady=True` (`Deployed`) at
/// the generation the patch made: the StackSet caught up with that very spec.
async fn patch_and_wait_deployed(
    api: &Api<AwsOrgConnection>,
    name: &str,
    spec: serde_json::Value,
) -> AwsOrgConnection {
    patch_spec(api, name, spec).await;
    let generation = api
        .get(name)
        .await
        .expect("connection")
        .metadata
        .generation
        .expect("generation");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let connection = api.get(name).await.expect("connection");
        let status = connection.status.clone().unwrap_or_default();
        let deployed = find_condition(&status.conditions, ConditionType::StackSetReady)
            .is_some_and(|c| {
                c.status == ConditionStatus::True
                    && c.reason == "Deployed"
                    && c.observed_generation == Some(generation)
            });
        if deployed {
            return connection;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "connection {name} never had StackSetReady=True (Deployed) at generation \
             {generation}; status: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The StackSet's instances as (account, region) pairs.
async fn instances(
    cloudformation: &aws_sdk_cloudformation::Client,
    name: &str,
) -> BTreeSet<(String, String)> {
    cloudformation
        .list_stack_instances()
        .stack_set_name(name)
        .call_as(CallAs::SelfValue)
        .send()
        .await
        .expect("instances")
        .summaries()
        .iter()
        .map(|s| {
            (
                s.account().unwrap_or_default().to_owned(),
                s.region().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Asserts DescribeStackSet answers with the StackSetNotFoundException code.
async fn assert_stack_set_gone(cloudformation: &aws_sdk_cloudformation::Client, name: &str) {
    let err = cloudformation
        .describe_stack_set()
        .stack_set_name(name)
        .call_as(CallAs::SelfValue)
        .send()
        .await
        .expect_err("the StackSet is gone");
    assert_eq!(
        err.code(),
        Some("StackSetNotFoundException"),
        "DescribeStackSet after revoke: {err:?}"
    );
}

/// Waits for the connection to be gone.
async fn wait_gone(api: &Api<AwsOrgConnection>, name: &str) {
    eventually(
        &format!("connection {name} gone"),
        Duration::from_secs(60),
        || async { api.get_opt(name).await.ok()?.is_none().then_some(()) },
    )
    .await;
}

/// The note of the one `Revoked` Event about connection `name`.
async fn revoked_event(ns: &TestNamespace, name: &str) -> k8s_openapi::api::events::v1::Event {
    eventually("the Revoked Event", Duration::from_secs(30), || async {
        let mut events = ns.events(name, "Revoked").await;
        (events.len() == 1).then(|| events.remove(0))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_set_connects_blocked_accounts_and_goes_on_revoke() {
    let scenario = Scenario::build(
        "stackset",
        &OrgSpec {
            root_accounts: 2,
            ous: vec![OuSpec::new("Prod").accounts(2)],
        },
    )
    .member_role(MEMBER_ROLE)
    .start()
    .await;
    let Scenario { bed, org, ns, .. } = &scenario;
    let prod = org
        .ous
        .iter()
        .find(|o| o.path.ends_with("Prod"))
        .expect("OU Prod")
        .id
        .clone();
    let blocked: BTreeSet<String> = org
        .accounts
        .iter()
        .filter(|a| a.parent_id == prod)
        .map(|a| a.id.clone())
        .collect();
    // The member role made by hand in the accounts of the root; Prod's have none yet.
    for account in org.member_accounts().filter(|a| !blocked.contains(&a.id)) {
        deploy_member_role(bed, &account.id, &scenario.role(), MEMBER_ROLE).await;
    }

    let connections = scenario.connections();
    let member_api = scenario.members();
    // First without the StackSet: the accounts without the member role are Blocked.
    scenario
        .connect(
            "acme",
            serde_json::json!({ "memberAccess": { "roleName": MEMBER_ROLE } }),
        )
        .await;
    eventually(
        "Prod's two accounts Blocked and the others Connected, before any StackSet",
        Duration::from_secs(60),
        || async {
            let listed = members(&member_api).await;
            let blocked_now: BTreeSet<String> = listed
                .iter()
                .filter(|m| phase(m) == Some(MemberPhase::Blocked))
                .map(|m| m.spec.account_id.clone())
                .collect();
            let connected = listed
                .iter()
                .filter(|m| phase(m) == Some(MemberPhase::Connected))
                .count();
            (listed.len() == 5 && blocked_now == blocked && connected == 3).then_some(())
        },
    )
    .await;
    assert_eq!(
        bed.proxy.calls("CreateStackInstances"),
        0,
        "no StackSet was deployed yet"
    );

    // Then the StackSet: its deployment is what unblocks them.
    let ready = patch_and_wait_deployed(
        &connections,
        "acme",
        serde_json::json!({ "stackSet": { "enabled": true, "organizationalUnits": [prod] } }),
    )
    .await;
    let name = ready
        .status
        .and_then(|s| s.stack_set)
        .expect("stack set status")
        .name;

    let cloudformation = aws_sdk_cloudformation::Client::new(&bed.sdk_config());
    let described = cloudformation
        .describe_stack_set()
        .stack_set_name(&name)
        .call_as(CallAs::SelfValue)
        .send()
        .await
        .expect("the StackSet exists")
        .stack_set
        .expect("stack set");
    assert_eq!(
        described.permission_model().map(|p| p.as_str()),
        Some("SERVICE_MANAGED")
    );
    let body: serde_json::Value =
        serde_json::from_str(described.template_body().unwrap_or_default()).expect("template");
    assert!(
        body["Resources"]["OrgconnectMemberRole"].is_object(),
        "the member-role template"
    );
    let instances = cloudformation
        .list_stack_instances()
        .stack_set_name(&name)
        .call_as(CallAs::SelfValue)
        .send()
        .await
        .expect("instances");
    let accounts: Vec<&str> = instances
        .summaries()
        .iter()
        .filter_map(|s| s.account())
        .collect();
    assert_eq!(
        accounts.iter().copied().collect::<BTreeSet<_>>(),
        blocked.iter().map(String::as_str).collect(),
        "an instance in each account of Prod"
    );

    wait_all_connected(&member_api, 5).await;

    // A new policy level updates the StackSet's template; Deployed is then reported for
    // the new generation.
    patch_and_wait_deployed(
        &connections,
        "acme",
        serde_json::json!({ "accessPolicy": "DataAndScheduling" }),
    )
    .await;
    let described = cloudformation
        .describe_stack_set()
        .stack_set_name(&name)
        .call_as(CallAs::SelfValue)
        .send()
        .await
        .expect("the StackSet exists")
        .stack_set
        .expect("stack set");
    assert!(
        described
            .template_body()
            .unwrap_or_default()
            .contains("ec2:StopInstances"),
        "the StackSet has the scheduling level's template"
    );

    // Revoke: the StackSet, its instances and the MemberAccounts go.
    connections
        .delete("acme", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&connections, "acme").await;
    assert!(members(&member_api).await.is_empty());
    assert_stack_set_gone(&cloudformation, &name).await;
    for account in &blocked {
        assert!(
            !role_exists(bed, account, MEMBER_ROLE).await,
            "the StackSet's member role left {account} with its instance"
        );
    }
    let event = revoked_event(ns, "acme").await;
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains(&format!(
            "deleted the member-role StackSet {name} and its stack instances"
        )),
        "{note}"
    );
    assert!(note.contains("removed 5 MemberAccounts"), "{note}");
    assert!(
        note.contains(&format!(
            "Remains on the AWS side: the managing-account role {}",
            scenario.role()
        )),
        "{note}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_ous_and_regions_move_the_stack_instances() {
    let Scenario {
        bed,
        external_id,
        org,
        ns,
        operator: _operator,
        ..
    } = Scenario::build(
        "stackset-targets",
        &OrgSpec {
            root_accounts: 1,
            ous: vec![
                OuSpec::new("Dev").accounts(2),
                OuSpec::new("Prod").accounts(1),
            ],
        },
    )
    .member_role(MEMBER_ROLE)
    .start()
    .await;
    let ou = |path: &str| {
        org.ous
            .iter()
            .find(|o| o.path.ends_with(path))
            .unwrap_or_else(|| panic!("OU {path}"))
            .id
            .clone()
    };
    let (dev, prod) = (ou("Dev"), ou("Prod"));
    let accounts_in = |ou_id: &str| -> Vec<String> {
        org.accounts
            .iter()
            .filter(|a| a.parent_id == ou_id)
            .map(|a| a.id.clone())
            .collect()
    };
    let expected = |ou_id: &str, regions: &[&str]| -> BTreeSet<(String, String)> {
        accounts_in(ou_id)
            .into_iter()
            .flat_map(|a| regions.iter().map(move |r| (a.clone(), (*r).to_owned())))
            .collect()
    };
    let connections: Api<AwsOrgConnection> = ns.api();
    apply_connection(
        &connections,
        "acme",
        serde_json::json!({
            "roleArn": managing_role(&org.managing_account_id),
            "externalId": external_id,
            "memberAccess": { "roleName": MEMBER_ROLE },
            "stackSet": {
                "enabled": true, "organizationalUnits": [dev], "regions": ["us-east-1"],
                "rollout": { "maxConcurrentPercentage": 50 },
            },
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
        .expect("stack set status")
        .name;
    let cloudformation = aws_sdk_cloudformation::Client::new(&bed.sdk_config());
    assert_eq!(
        instances(&cloudformation, &name).await,
        expected(&dev, &["us-east-1"])
    );

    // Another region: the instances move there (the old region's go first: the member
    // role is global, so two stacks of one account cannot both create it).
    patch_and_wait_deployed(
        &connections,
        "acme",
        serde_json::json!({ "stackSet": { "regions": ["eu-west-1"] } }),
    )
    .await;
    assert_eq!(
        instances(&cloudformation, &name).await,
        expected(&dev, &["eu-west-1"])
    );

    // Another OU instead: its accounts get instances, Dev's go.
    patch_and_wait_deployed(
        &connections,
        "acme",
        serde_json::json!({ "stackSet": { "organizationalUnits": [prod] } }),
    )
    .await;
    assert_eq!(
        instances(&cloudformation, &name).await,
        expected(&prod, &["eu-west-1"])
    );

    // Both OUs.
    let settled = patch_and_wait_deployed(
        &connections,
        "acme",
        serde_json::json!({ "stackSet": { "organizationalUnits": [dev, prod] } }),
    )
    .await;
    let mut both = expected(&dev, &["eu-west-1"]);
    both.extend(expected(&prod, &["eu-west-1"]));
    assert_eq!(instances(&cloudformation, &name).await, both);
    assert_eq!(
        settled
            .status
            .and_then(|s| s.stack_set)
            .map(|s| s.instances),
        Some(3)
    );
    // Every operation rolled out as the spec says (AWS's defaults would deploy one
    // account at a time and stop at the first failure).
    let created = bed.proxy.stack_set_settings("CreateStackSet");
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0]
            .get("ManagedExecution.Active")
            .map(String::as_str),
        Some("true")
    );
    let operations: Vec<_> = ["CreateStackInstances", "DeleteStackInstances"]
        .iter()
        .flat_map(|op| bed.proxy.stack_set_settings(op))
        .collect();
    assert!(operations.len() >= 4, "{operations:?}");
    for settings in &operations {
        let value = |key: &str| {
            settings
                .get(&format!("OperationPreferences.{key}"))
                .map(String::as_str)
        };
        assert_eq!(value("MaxConcurrentPercentage"), Some("50"), "{settings:?}");
        assert_eq!(
            value("FailureTolerancePercentage"),
            Some("10"),
            "{settings:?}"
        );
        assert_eq!(
            value("RegionConcurrencyType"),
            Some("PARALLEL"),
            "{settings:?}"
        );
        assert_eq!(
            value("ConcurrencyMode"),
            Some("SOFT_FAILURE_TOLERANCE"),
            "{settings:?}"
        );
    }

    connections
        .delete("acme", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&connections, "acme").await;
    assert_stack_set_gone(&cloudformation, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_aws_holds_the_revoke_until_skipped() {
    let Scenario {
        bed,
        external_id,
        org,
        ns,
        operator,
        ..
    } = Scenario::build("revoke-skip", &OrgSpec::flat(1))
        .member_role(MEMBER_ROLE)
        .start()
        .await;
    let connections: Api<AwsOrgConnection> = ns.api();
    apply_connection(
        &connections,
        "acme",
        serde_json::json!({
            "roleArn": managing_role(&org.managing_account_id),
            "externalId": external_id,
            "memberAccess": { "roleName": MEMBER_ROLE },
            "stackSet": { "enabled": true },
        }),
    )
    .await;
    wait_condition(
        &connections,
        "acme",
        ConditionType::StackSetReady,
        ConditionStatus::True,
        "Deployed",
    )
    .await;

    // AWS stops answering, and the managing-role session is no help for a new login.
    bed.proxy.server_errors("*", 1.0);
    connections
        .delete("acme", &DeleteParams::default())
        .await
        .expect("delete");
    let held = wait_condition(
        &connections,
        "acme",
        ConditionType::Ready,
        ConditionStatus::False,
        "RevokeBlocked",
    )
    .await;
    assert!(held.metadata.deletion_timestamp.is_some());
    let message = held
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, ConditionType::Ready))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("ServiceUnavailable"), "{message}");
    assert!(message.contains("orgconnect.dev/revoke=skip"), "{message}");

    // The retries back off (5 s, then 10 s, then 20 s: two attempts in the next 30 s,
    // where a fixed 5 s would make five), and waiting writes nothing.
    let attempts =
        || orgconnect::controller::Diagnostics::get(&operator.diagnostics.revoke_attempts);
    let before = attempts();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let retried = attempts() - before;
    assert!(
        (1..=2).contains(&retried),
        "{retried} revoke attempts in 30 s after the first failure"
    );
    let still = connections.get("acme").await.expect("still held");
    assert_eq!(
        still.metadata.resource_version, held.metadata.resource_version,
        "no writes while waiting to retry"
    );

    let patch =
        serde_json::json!({ "metadata": { "annotations": { "orgconnect.dev/revoke": "skip" } } });
    connections
        .patch("acme", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate revoke=skip");
    wait_gone(&connections, "acme").await;
    let event = revoked_event(&ns, "acme").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains("did not delete the member-role StackSet"),
        "{note}"
    );
    assert!(note.contains("orgconnect.dev/revoke=skip"), "{note}");
    assert!(note.contains("may remain in AWS"), "{note}");
    assert!(!note.contains("deleted the member-role"), "{note}");
    assert!(
        note.contains("Remains on the AWS side: the managing-account role"),
        "{note}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managing_role_without_a_stack_set_action_is_refused_naming_it() {
    let scenario = Scenario::build("stackset-denied", &OrgSpec::flat(1))
        .member_role(MEMBER_ROLE)
        .template(|template| without_action(template, "cloudformation:CreateStackSet"))
        .start()
        .await;
    scenario
        .connect(
            "acme",
            serde_json::json!({
                "memberAccess": { "roleName": MEMBER_ROLE },
                "stackSet": { "enabled": true },
            }),
        )
        .await;
    let refused = wait_condition(
        &scenario.connections(),
        "acme",
        ConditionType::StackSetReady,
        ConditionStatus::False,
        "StackSetPermissionDenied",
    )
    .await;
    let message = refused
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, ConditionType::StackSetReady))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("may not call cloudformation:CreateStackSet;"),
        "names the action: {message}"
    );
    assert!(
        scenario
            .bed
            .proxy
            .iam_denials()
            .iter()
            .any(|d| d.contains("cloudformation:CreateStackSet")),
        "the bed refused it: {:?}",
        scenario.bed.proxy.iam_denials()
    );
    assert_eq!(scenario.bed.proxy.calls("CreateStackInstances"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managing_role_with_a_path_deploys_the_stack_set_and_reaches_every_member() {
    let scenario = Scenario::build("stackset-path", &OrgSpec::flat(2))
        .member_role(MEMBER_ROLE)
        .managing_role_path("/platform/")
        .start()
        .await;
    assert!(scenario.role().ends_with(":role/platform/orgconnect"));
    scenario
        .connect(
            "acme",
            serde_json::json!({
                "memberAccess": { "roleName": MEMBER_ROLE },
                "stackSet": { "enabled": true },
            }),
        )
        .await;
    let ready = wait_condition(
        &scenario.connections(),
        "acme",
        ConditionType::StackSetReady,
        ConditionStatus::True,
        "Deployed",
    )
    .await;
    let name = ready
        .status
        .and_then(|s| s.stack_set)
        .expect("stack set status")
        .name;
    let described = aws_sdk_cloudformation::Client::new(&scenario.bed.sdk_config())
        .describe_stack_set()
        .stack_set_name(&name)
        .call_as(CallAs::SelfValue)
        .send()
        .await
        .expect("the StackSet")
        .stack_set
        .expect("stack set");
    let parameter = |key: &str| {
        described
            .parameters()
            .iter()
            .find(|p| p.parameter_key() == Some(key))
            .and_then(|p| p.parameter_value())
            .map(str::to_owned)
    };
    assert_eq!(parameter("ManagingRoleName").as_deref(), Some("orgconnect"));
    assert_eq!(parameter("ManagingRolePath").as_deref(), Some("/platform/"));
    // The member role the StackSet made trusts the pathed managing role: every member is
    // reached through it.
    wait_all_connected(&scenario.members(), 3).await;
    // Before the StackSet the member roles did not exist; never did the managing role's
    // own policy (its organization scope included) refuse a member role.
    let denials = scenario.bed.proxy.iam_denials();
    assert!(
        !denials.iter().any(|d| d.contains("identity-based policy")),
        "{denials:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_of_200_accounts_at_ten_percent_takes_ten_steps_and_two_failures_stop_nothing() {
    let scenario = Scenario::build(
        "stackset-rollout",
        &OrgSpec {
            root_accounts: 0,
            ous: vec![OuSpec::new("Fleet").accounts(200)],
        },
    )
    .member_role(MEMBER_ROLE)
    .prepare(|bed, _| bed.proxy.stack_set_step(Duration::from_millis(200)))
    .start()
    .await;
    let Scenario { bed, org, .. } = &scenario;
    let fleet = org.ous[0].id.clone();
    let failing: BTreeSet<String> = org
        .accounts
        .iter()
        .filter(|a| a.parent_id == fleet)
        .take(2)
        .map(|a| a.id.clone())
        .collect();
    bed.proxy.fail_stack_instances(
        failing.iter().cloned(),
        "Role OrgconnectMemberRole already exists",
    );
    scenario
        .connect(
            "acme",
            serde_json::json!({
                "memberAccess": { "roleName": MEMBER_ROLE },
                "stackSet": {
                    "enabled": true,
                    "organizationalUnits": [fleet],
                    "rollout": { "maxConcurrentPercentage": 10, "failureTolerancePercentage": 10 },
                },
            }),
        )
        .await;
    let reported = wait_condition(
        &scenario.connections(),
        "acme",
        ConditionType::StackSetReady,
        ConditionStatus::False,
        "InstancesFailed",
    )
    .await;

    // 200 instances, 20 at once: ten steps, where AWS's defaults would take 200 and stop
    // at the first failure.
    let steps = bed.proxy.stack_set_steps();
    let deploy = steps
        .iter()
        .find(|(call, _, _)| call == "CreateStackInstances")
        .expect("the deployment");
    println!(
        "StackSet rollout: {} stack instances at 10% in {} steps",
        deploy.1, deploy.2
    );
    assert_eq!((deploy.1, deploy.2), (200, 10));
    let status = reported.status.expect("status");
    let stack_set = status.stack_set.expect("stack set status");
    assert_eq!(stack_set.failed_instances, 2);
    assert_eq!(
        stack_set
            .failures
            .iter()
            .map(|f| f.account_id.clone())
            .collect::<BTreeSet<_>>(),
        failing
    );
    let message = find_condition(&status.conditions, ConditionType::StackSetReady)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("2 stack instances failed"), "{message}");

    // The other 198 got the member role; the two say why they did not.
    eventually(
        "198 Fleet accounts Connected and the two failed ones Blocked with the reason",
        Duration::from_secs(90),
        || async {
            let listed = members(&scenario.members()).await;
            let connected = listed
                .iter()
                .filter(|m| phase(m) == Some(MemberPhase::Connected))
                .count();
            let failed_ok = listed
                .iter()
                .filter(|m| failing.contains(&m.spec.account_id))
                .all(|m| {
                    phase(m) == Some(MemberPhase::Blocked)
                        && connected_reason(m).as_deref() == Some("StackInstanceFailed")
                        && m.status
                            .as_ref()
                            .and_then(|s| s.remediation.as_deref())
                            .is_some_and(|r| {
                                r.contains("already exists") && r.contains("update-stack-instances")
                            })
                });
            (listed.len() == 201 && connected == 199 && failed_ok).then_some(())
        },
    )
    .await;
}

/// Connections `a.b` and `a-b` of one namespace once shared a StackSet name (every
/// character CloudFormation forbids became `-`), so revoking one deleted the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_whose_names_differ_only_by_a_dot_keep_stack_sets_of_their_own() {
    let scenario = Scenario::build("stackset-names", &OrgSpec::flat(1))
        .member_role(MEMBER_ROLE)
        .start()
        .await;
    let cloudformation = aws_sdk_cloudformation::Client::new(&scenario.bed.sdk_config());
    let mut names = Vec::new();
    for (connection, role) in [
        ("a.b", "OrgconnectMemberRoleDot"),
        ("a-b", "OrgconnectMemberRoleDash"),
    ] {
        scenario
            .connect(
                connection,
                serde_json::json!({
                    "memberAccess": { "roleName": role },
                    "stackSet": { "enabled": true },
                }),
            )
            .await;
        let name = eventually(
            &format!("{connection}'s StackSet"),
            Duration::from_secs(60),
            || async {
                let status = scenario.connections().get(connection).await.ok()?.status?;
                let ready = find_condition(&status.conditions, ConditionType::StackSetReady)?;
                assert!(!ready.message.contains("  "), "{}", ready.message);
                (ready.status == ConditionStatus::True).then_some(status.stack_set?.name)
            },
        )
        .await;
        names.push(name);
    }
    assert_ne!(
        names[0], names[1],
        "each connection has a StackSet of its own"
    );
    scenario
        .connections()
        .delete("a.b", &DeleteParams::default())
        .await
        .expect("delete a.b");
    wait_gone(&scenario.connections(), "a.b").await;
    assert_stack_set_gone(&cloudformation, &names[0]).await;
    let kept = cloudformation
        .describe_stack_set()
        .stack_set_name(&names[1])
        .call_as(CallAs::SelfValue)
        .send()
        .await
        .expect("a-b's StackSet outlives a.b's revoke");
    assert!(kept.stack_set.is_some());
    assert!(!instances(&cloudformation, &names[1]).await.is_empty());
}

/// The `MemberRoleCurrent` condition of the MemberAccount of `account`, as (status,
/// reason, message).
fn member_role_of(
    listed: &[orgconnect::api::MemberAccount],
    account: &str,
) -> Option<(ConditionStatus, String, String)> {
    let member = listed.iter().find(|m| m.spec.account_id == account)?;
    let condition = find_condition(
        &member.status.as_ref()?.conditions,
        ConditionType::MemberRoleCurrent,
    )?;
    Some((
        condition.status,
        condition.reason.clone(),
        condition.message.clone(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drifted_and_outdated_member_roles_are_reported_on_their_accounts_and_counted() {
    let scenario = Scenario::build(
        "drift",
        &OrgSpec {
            root_accounts: 0,
            ous: vec![OuSpec::new("Prod").accounts(3)],
        },
    )
    .member_role(MEMBER_ROLE)
    .start()
    .await;
    let Scenario { bed, org, .. } = &scenario;
    let prod = org
        .ous
        .iter()
        .find(|o| o.path.ends_with("Prod"))
        .expect("OU Prod")
        .id
        .clone();
    let accounts: Vec<String> = org.member_accounts().map(|a| a.id.clone()).collect();
    let (drifted, outdated, fine) = (&accounts[0], &accounts[1], &accounts[2]);
    let connections = scenario.connections();
    let member_api = scenario.members();
    scenario
        .connect(
            "acme",
            serde_json::json!({
                "memberAccess": { "roleName": MEMBER_ROLE, "probeInterval": "1m" },
                "stackSet": { "enabled": true, "organizationalUnits": [prod] },
            }),
        )
        .await;
    // Right after the deployment, a drift detection: every instance in sync.
    let listed = eventually(
        "every member role InSync",
        Duration::from_secs(90),
        || async {
            let listed = members(&member_api).await;
            accounts
                .iter()
                .all(|a| {
                    member_role_of(&listed, a).is_some_and(|(s, reason, _)| {
                        s == ConditionStatus::True && reason == "InSync"
                    })
                })
                .then_some(listed)
        },
    )
    .await;
    // The management account has no stack instance, so no such condition.
    assert!(member_role_of(&listed, &org.managing_account_id).is_none());
    assert!(bed.proxy.calls("DetectStackSetDrift") >= 1);

    // One role changed by hand, one instance an operation left behind: the next look (the
    // probe interval later) and its drift detection say so on those accounts alone.
    bed.proxy.drift_member_roles([drifted.clone()], true);
    bed.proxy
        .stack_instance_status([outdated.clone()], "OUTDATED", "User initiated stop");
    let listed = eventually(
        "the drifted and the outdated role reported",
        Duration::from_secs(150),
        || async {
            let listed = members(&member_api).await;
            let drift = member_role_of(&listed, drifted)?;
            let behind = member_role_of(&listed, outdated)?;
            (drift.1 == "RoleDrifted" && behind.1 == "InstanceOutdated").then_some(listed)
        },
    )
    .await;
    let (status, _, message) = member_role_of(&listed, drifted).expect("condition");
    assert_eq!(status, ConditionStatus::False);
    assert!(
        message.contains("aws cloudformation create-stack-instances --stack-set-name"),
        "{message}"
    );
    assert!(
        message.contains(&format!("Accounts={drifted}")),
        "{message}"
    );
    let (_, _, message) = member_role_of(&listed, outdated).expect("condition");
    assert!(message.contains("User initiated stop"), "{message}");
    assert!(message.contains("update-stack-instances"), "{message}");
    assert_eq!(
        member_role_of(&listed, fine).map(|c| c.1),
        Some("InSync".to_owned())
    );
    // Drift is reported beside the phase: the role still lets the operator in.
    let member = listed
        .iter()
        .find(|m| m.spec.account_id == *drifted)
        .expect("member");
    assert_eq!(phase(member), Some(MemberPhase::Connected));
    let stack_set = eventually(
        "the connection's counts",
        Duration::from_secs(30),
        || async {
            let status = connections.get("acme").await.ok()?.status?.stack_set?;
            (status.drifted_instances == 1 && status.outdated_instances == 1).then_some(status)
        },
    )
    .await;
    assert_eq!(stack_set.inoperable_instances, 0);

    // Put right: the next look clears both.
    bed.proxy.drift_member_roles([drifted.clone()], false);
    bed.proxy
        .stack_instance_status([outdated.clone()], "CURRENT", "");
    eventually(
        "every member role InSync again",
        Duration::from_secs(150),
        || async {
            let listed = members(&member_api).await;
            let status = connections.get("acme").await.ok()?.status?.stack_set?;
            (accounts.iter().all(|a| {
                member_role_of(&listed, a).is_some_and(|(_, reason, _)| reason == "InSync")
            }) && status.drifted_instances == 0
                && status.outdated_instances == 0)
                .then_some(())
        },
    )
    .await;
}
