//! The MemberAccount reconciler on the test bed: every account probed through its member
//! role, Blocked ones named with their reason and fix, and nothing written when nothing
//! changed.

mod support;

use support::operator::{connected_reason, phase};

use support::scenario::Scenario;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use orgconnect::api::member_account::{MemberPhase, PROBE_ANNOTATION};
use orgconnect::api::{
    AwsOrgConnection, ConditionStatus, ConditionType, MemberAccount, find_condition,
};
use orgconnect::controller::Diagnostics;
use support::aws::AwsBed;
use support::eventually;
use support::iam::{delete_role, deploy_managing_role};
use support::kube::TestNamespace;
use support::operator::{
    apply_connection, in_namespace, managing_role, members, patch_spec, start, wait_connection,
};
use support::org::{OrgSpec, OuSpec, seed};

/// Waits until every MemberAccount satisfies `check`, returning them by account id.
async fn wait_all(
    api: &Api<MemberAccount>,
    count: usize,
    what: &str,
    check: impl Fn(&MemberAccount) -> bool,
) -> BTreeMap<String, MemberAccount> {
    let check = &check;
    eventually(what, Duration::from_secs(90), || async move {
        let listed = members(api).await;
        (listed.len() == count && listed.iter().all(check)).then(|| {
            listed
                .into_iter()
                .map(|m| (m.spec.account_id.clone(), m))
                .collect()
        })
    })
    .await
}

/// Waits until no `operation` call has reached the proxy for two seconds: the operator's
/// probes in flight (retries included) have ended.
async fn quiesce(bed: &AwsBed, operation: &str) {
    let mut last = (bed.proxy.calls(operation), tokio::time::Instant::now());
    eventually(
        &format!("no {operation} calls for 2 s"),
        Duration::from_secs(60),
        || {
            let calls = bed.proxy.calls(operation);
            if calls != last.0 {
                last = (calls, tokio::time::Instant::now());
            }
            let quiet = last.1.elapsed() >= Duration::from_secs(2);
            async move { quiet.then_some(()) }
        },
    )
    .await;
}

async fn annotate_probe_now(api: &Api<MemberAccount>, name: &str) {
    let patch = serde_json::json!({ "metadata": { "annotations": { PROBE_ANNOTATION: "now" } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate probe=now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_accounts_are_named_with_the_fix_and_quiet_cycles_write_nothing() {
    let bed = AwsBed::new().await;
    // 50 accounts with the managing one; one suspended.
    let spec = OrgSpec {
        root_accounts: 4,
        ous: vec![
            OuSpec::new("Prod")
                .accounts(20)
                .child(OuSpec::new("Payments").accounts(10)),
            OuSpec::new("Dev").accounts(14).suspended(1),
        ],
    };
    let org = seed(&bed.sdk_config(), &spec).await;
    assert_eq!(org.accounts.len(), 50);
    let suspended = org
        .accounts
        .iter()
        .find(|a| a.suspended)
        .expect("suspended")
        .id
        .clone();
    let blocked: BTreeSet<String> = org
        .member_accounts()
        .filter(|a| !a.suspended)
        .take(5)
        .map(|a| a.id.clone())
        .collect();
    bed.proxy.deny_assume_role(blocked.iter().cloned());
    // The strict bed, with the managing role from its template.
    let external_id = format!("ext-{}", support::unique_suffix());
    deploy_managing_role(&bed, &external_id, "OrganizationAccountAccessRole", |_| {}).await;
    bed.proxy.enforce_iam();

    let ns = TestNamespace::new("probes").await;
    let operator = start(
        ns.client.clone(),
        bed.operator_config(bed.credentials.clone()),
        in_namespace(&ns.name),
    );
    let connections: Api<AwsOrgConnection> = ns.api();
    let member_api: Api<MemberAccount> = ns.api();
    apply_connection(
        &connections,
        "acme",
        serde_json::json!({
            "roleArn": managing_role(&org.managing_account_id),
            "externalId": external_id,
        }),
    )
    .await;

    let settled = wait_all(&member_api, 50, "every account has a final phase", |m| {
        matches!(
            phase(m),
            Some(MemberPhase::Connected | MemberPhase::Blocked | MemberPhase::Suspended)
        )
    })
    .await;
    for (id, member) in &settled {
        let expected = if blocked.contains(id) {
            MemberPhase::Blocked
        } else if *id == suspended {
            MemberPhase::Suspended
        } else {
            MemberPhase::Connected
        };
        assert_eq!(phase(member), Some(expected), "account {id}");
    }
    for id in &blocked {
        let member = &settled[id];
        assert_eq!(
            connected_reason(member).as_deref(),
            Some("AssumeRoleDenied")
        );
        let fix = member
            .status
            .as_ref()
            .and_then(|s| s.remediation.clone())
            .expect("remediation");
        assert!(fix.contains("StackSet") && fix.contains(id), "{fix}");
    }
    assert_eq!(
        connected_reason(&settled[&org.managing_account_id]).as_deref(),
        Some("ManagingAccount")
    );
    assert_eq!(
        connected_reason(&settled[&suspended]).as_deref(),
        Some("AccountSuspended")
    );
    assert!(
        bed.proxy
            .assumed_roles()
            .iter()
            .all(|role| !role.contains(&suspended)),
        "a suspended account is never probed"
    );
    wait_connection(
        &connections,
        "acme",
        "counts of 44 connected, 5 blocked, 1 suspended",
        Duration::from_secs(30),
        |c| {
            c.status
                .as_ref()
                .and_then(|s| s.accounts.as_ref())
                .is_some_and(|a| (a.total, a.connected, a.blocked, a.suspended) == (50, 44, 5, 1))
        },
    )
    .await;
    let connection = connections.get("acme").await.expect("connection");
    let members_connected = find_condition(
        &connection.status.expect("status").conditions,
        ConditionType::MembersConnected,
    )
    .expect("condition")
    .clone();
    assert_eq!(
        (members_connected.status, members_connected.reason.as_str()),
        (ConditionStatus::False, "AccountsBlocked")
    );

    // A second cycle with nothing changed writes no MemberAccount.
    quiesce(&bed, "AssumeRole").await;
    let versions: BTreeMap<String, Option<String>> = members(&member_api)
        .await
        .iter()
        .map(|m| (m.name_any(), m.resource_version()))
        .collect();
    let probes_before = Diagnostics::get(&operator.diagnostics.probes_applied);
    let writes_before = Diagnostics::get(&operator.diagnostics.member_status_writes);
    patch_spec(
        &connections,
        "acme",
        serde_json::json!({ "memberAccess": { "probeInterval": "31m" } }),
    )
    .await;
    eventually(
        "a second probe of every probed account, applied",
        Duration::from_secs(60),
        || async {
            (Diagnostics::get(&operator.diagnostics.probes_applied) >= probes_before + 49)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        Diagnostics::get(&operator.diagnostics.member_status_writes),
        writes_before,
        "a quiet cycle writes no MemberAccount status"
    );
    let after: BTreeMap<String, Option<String>> = members(&member_api)
        .await
        .iter()
        .map(|m| (m.name_any(), m.resource_version()))
        .collect();
    assert_eq!(after, versions, "a quiet cycle writes nothing");

    // A throttling storm on STS leaves every Connected account Connected.
    bed.proxy.throttle("AssumeRole", 1.0);
    bed.proxy.throttle("GetCallerIdentity", 1.0);
    patch_spec(
        &connections,
        "acme",
        serde_json::json!({ "memberAccess": { "probeInterval": "32m" } }),
    )
    .await;
    let stormed = wait_all(&member_api, 50, "every probe throttled", |m| {
        phase(m) == Some(MemberPhase::Suspended)
            || blocked.contains(&m.spec.account_id)
            || connected_reason(m).as_deref() == Some("Throttled")
    })
    .await;
    for (id, member) in &stormed {
        let expected = settled[id].status.as_ref().and_then(|s| s.phase);
        assert_eq!(
            phase(member),
            expected,
            "account {id} kept its phase under throttling"
        );
    }
    for id in &blocked {
        assert!(
            stormed[id]
                .status
                .as_ref()
                .is_some_and(|s| s.remediation.is_some()),
            "blocked account {id} keeps its fix while AWS throttles"
        );
    }
    let (_, metrics) = support::operator::http_get(&operator, "/metrics").await;
    let throttles = support::metric_value(
        &metrics,
        "orgconnect_aws_throttles_total{service=\"STS\",operation=\"AssumeRole\"}",
    );
    assert!(
        throttles.is_some_and(|n| n >= 40.0),
        "every throttled AssumeRole is counted: {throttles:?}"
    );
    bed.proxy.stop_throttling();
    // The throttled probes back off (10 s, doubling); a spec change probes every account now,
    // and the blocked ones are still denied.
    patch_spec(
        &connections,
        "acme",
        serde_json::json!({ "memberAccess": { "probeInterval": "33m" } }),
    )
    .await;
    let calm = wait_all(&member_api, 50, "every account probed again", |m| {
        matches!(
            phase(m),
            Some(MemberPhase::Connected | MemberPhase::Blocked | MemberPhase::Suspended)
        ) && connected_reason(m).as_deref() != Some("Throttled")
    })
    .await;
    for id in &blocked {
        assert_eq!(phase(&calm[id]), Some(MemberPhase::Blocked), "account {id}");
    }

    // Probes of the storm still retrying inside the SDK finish before anything is unblocked.
    quiesce(&bed, "AssumeRole").await;

    // Unblock at the proxy: nothing probes again for 33 minutes but probe=now.
    bed.proxy.clear_faults();
    let assumed = bed.proxy.assumed_roles().len();
    for id in &blocked {
        annotate_probe_now(&member_api, &format!("acme-{id}")).await;
    }
    // Every account comes back, the blocked ones through probe=now.
    let healed = wait_all(&member_api, 50, "every account Connected", |m| {
        matches!(
            phase(m),
            Some(MemberPhase::Connected | MemberPhase::Suspended)
        ) && connected_reason(m).as_deref() != Some("Throttled")
            && !m.annotations().contains_key(PROBE_ANNOTATION)
    })
    .await;
    for id in &blocked {
        assert!(
            !healed[id].annotations().contains_key(PROBE_ANNOTATION),
            "probe=now is cleared"
        );
        assert!(
            healed[id]
                .status
                .as_ref()
                .is_some_and(|s| s.remediation.is_none())
        );
    }
    let since: Vec<String> = bed.proxy.assumed_roles().split_off(assumed);
    for id in &blocked {
        assert!(
            since.iter().any(|role| role.contains(&format!(":{id}:"))),
            "probe=now probed {id}: {since:?}"
        );
    }
    wait_connection(
        &connections,
        "acme",
        "counts of 49 connected",
        Duration::from_secs(30),
        |c| {
            c.status
                .as_ref()
                .and_then(|s| s.accounts.as_ref())
                .is_some_and(|a| (a.connected, a.blocked) == (49, 0))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invited_paused_and_custom_role_accounts() {
    let scenario = Scenario::start("member-kinds", &OrgSpec::flat(4)).await;
    let (bed, ns) = (&scenario.bed, &scenario.ns);
    let mut ids = scenario.org.member_accounts().map(|a| a.id.clone());
    let (invited, paused, custom) = (
        ids.next().expect("account"),
        ids.next().expect("account"),
        ids.next().expect("account"),
    );
    // An invited account has no OrganizationAccountAccessRole.
    bed.proxy.report_invited([invited.clone()]);
    delete_role(bed, &invited, "OrganizationAccountAccessRole").await;

    let member_api: Api<MemberAccount> = scenario.members();
    scenario.connect("acme", serde_json::json!({})).await;
    let settled = wait_all(&member_api, 5, "every account probed", |m| {
        matches!(
            phase(m),
            Some(MemberPhase::Connected | MemberPhase::Blocked)
        )
    })
    .await;
    let member = &settled[&invited];
    assert_eq!(phase(member), Some(MemberPhase::Blocked));
    assert_eq!(
        connected_reason(member).as_deref(),
        Some("RoleMissingForInvitedAccount")
    );
    ns.wait_event(&format!("acme-{invited}"), "Warning", "Blocked")
        .await;

    // A user pauses one account and gives another its own role.
    let patch = serde_json::json!({ "spec": { "paused": true } });
    member_api
        .patch(
            &format!("acme-{paused}"),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("pause");
    let patch = serde_json::json!({ "spec": { "roleName": "AuditRole" } });
    member_api
        .patch(
            &format!("acme-{custom}"),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("custom role");
    let custom_arn = format!("arn:aws:iam::{custom}:role/AuditRole");
    eventually(
        "the custom role to be assumed",
        Duration::from_secs(30),
        || async {
            bed.proxy
                .assumed_roles()
                .contains(&custom_arn)
                .then_some(())
        },
    )
    .await;
    let audits: Vec<String> = bed
        .proxy
        .assumed_roles()
        .into_iter()
        .filter(|role| role.ends_with("role/AuditRole"))
        .collect();
    assert!(
        audits.iter().all(|role| role == &custom_arn),
        "AuditRole only for its account: {audits:?}"
    );
    // The managing role's template allows assuming OrganizationAccountAccessRole only.
    let refused = wait_all(
        &member_api,
        5,
        "AuditRole refused by the managing policy",
        |m| {
            m.spec.account_id != custom
                || connected_reason(m).as_deref() == Some("ManagingRolePolicyDenied")
        },
    )
    .await;
    let fix = refused[&custom]
        .status
        .as_ref()
        .and_then(|s| s.remediation.clone())
        .unwrap_or_default();
    assert!(fix.contains("--member-role AuditRole"), "{fix}");
    let paused_member = wait_all(&member_api, 5, "the paused account Paused", |m| {
        m.spec.account_id != paused || phase(m) == Some(MemberPhase::Paused)
    })
    .await;
    assert_eq!(
        connected_reason(&paused_member[&paused]).as_deref(),
        Some("Paused")
    );
    let probes_of_paused = bed
        .proxy
        .assumed_roles()
        .iter()
        .filter(|r| r.contains(&paused))
        .count();
    annotate_probe_now(&member_api, &format!("acme-{paused}")).await;
    eventually(
        "probe=now cleared on the paused account",
        Duration::from_secs(30),
        || async {
            let member = member_api.get(&format!("acme-{paused}")).await.ok()?;
            (!member.annotations().contains_key(PROBE_ANNOTATION)).then_some(())
        },
    )
    .await;
    assert_eq!(
        bed.proxy
            .assumed_roles()
            .iter()
            .filter(|r| r.contains(&paused))
            .count(),
        probes_of_paused,
        "a paused account is not probed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_are_served() {
    let scenario = Scenario::start("metrics", &OrgSpec::flat(2)).await;
    bad_request_paths_are_404(&scenario).await;
    let (status, body) = support::operator::http_get(&scenario.operator, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    eventually(
        "ready once the caches are synced",
        Duration::from_secs(30),
        || async {
            (support::operator::http_get(&scenario.operator, "/readyz")
                .await
                .0
                == 200)
                .then_some(())
        },
    )
    .await;
    let member_api = scenario.members();
    scenario.connect("acme", serde_json::json!({})).await;
    wait_all(&member_api, 3, "every account Connected", |m| {
        phase(m) == Some(MemberPhase::Connected)
    })
    .await;
    let namespace = &scenario.ns.name;
    let expected = format!(
        "orgconnect_member_accounts{{namespace=\"{namespace}\",connection=\"acme\",phase=\"Connected\"}} 3"
    );
    let body = eventually("the account gauge", Duration::from_secs(30), || async {
        let (_, body) = support::operator::http_get(&scenario.operator, "/metrics").await;
        body.contains(&expected).then_some(body)
    })
    .await;
    assert!(
        body.contains("orgconnect_reconciles_total{kind=\"AwsOrgConnection\"}"),
        "{body}"
    );
    assert!(
        body.contains("orgconnect_probes_total{outcome=\"RoleAssumed\"} 2"),
        "{body}"
    );
    assert!(
        body.contains("orgconnect_reconcile_duration_seconds_bucket"),
        "{body}"
    );
    // Every AWS attempt is counted by operation: the managing role and two member probes.
    for (call, at_least) in [
        ("service=\"STS\",operation=\"AssumeRole\"", 3.0),
        (
            "service=\"Organizations\",operation=\"ListAccountsForParent\"",
            1.0,
        ),
    ] {
        let count = support::metric_value(&body, &format!("orgconnect_aws_calls_total{{{call}}}"));
        assert!(count.is_some_and(|n| n >= at_least), "{call}: {count:?}");
    }
}

async fn bad_request_paths_are_404(scenario: &Scenario) {
    assert_eq!(
        support::operator::http_get(&scenario.operator, "/nope")
            .await
            .0,
        404
    );
}

/// 12 members probed through a proxy that holds each call 150 ms, under `settings` and a
/// connection with `memberAccess.concurrency`: the most AssumeRole calls ever in flight.
async fn probes_in_flight(prefix: &str, global: usize, per_connection: u32) -> u64 {
    let scenario = Scenario::start_with(prefix, &OrgSpec::flat(12), |bed, settings| {
        bed.proxy.latency(Duration::from_millis(150));
        settings.probe_concurrency = global;
    })
    .await;
    scenario
        .connect(
            "acme",
            serde_json::json!({ "memberAccess": { "concurrency": per_connection } }),
        )
        .await;
    wait_all(&scenario.members(), 13, "every account Connected", |m| {
        phase(m) == Some(MemberPhase::Connected)
    })
    .await;
    scenario.bed.proxy.max_in_flight("AssumeRole")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_bounded_per_connection_and_across_the_operator() {
    let per_connection = probes_in_flight("bounded", 64, 3).await;
    assert!(
        (2..=3).contains(&per_connection),
        "memberAccess.concurrency 3: {per_connection} in flight"
    );
    let global = probes_in_flight("global", 2, 10).await;
    assert!(
        (1..=2).contains(&global),
        "--probe-concurrency 2: {global} in flight"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_credentials_probe_every_account_again() {
    let scenario = Scenario::build("rotated", &OrgSpec::flat(4))
        .operator_without_access()
        .start()
        .await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = scenario.ns.api();
    support::operator::create_key_secret(&secrets, "aws-keys", &scenario.bed.credentials).await;
    scenario
        .connect(
            "acme",
            serde_json::json!({
                "credentials": { "source": "Secret", "secretRef": { "name": "aws-keys" } },
                "memberAccess": { "probeInterval": "2h" },
            }),
        )
        .await;
    wait_all(&scenario.members(), 5, "every account Connected", |m| {
        phase(m) == Some(MemberPhase::Connected)
    })
    .await;
    quiesce(&scenario.bed, "AssumeRole").await;
    let before = scenario.bed.proxy.assumed_roles().len();

    // The keys rotate: new keys of the managing account's IAM user, which the managing
    // role trusts.
    let rotated = aws_sdk_sts::config::Credentials::new(
        format!("AKIAROTATED{}", support::unique_suffix().to_uppercase()),
        "rotated-secret",
        None,
        None,
        "orgconnect-tests",
    );
    scenario.bed.proxy.map_principal(
        rotated.access_key_id(),
        rotated.secret_access_key(),
        &scenario.org.managing_account_id,
    );
    let keys = serde_json::json!({ "stringData": {
        "AWS_ACCESS_KEY_ID": rotated.access_key_id(),
        "AWS_SECRET_ACCESS_KEY": rotated.secret_access_key(),
    } });
    secrets
        .patch("aws-keys", &PatchParams::default(), &Patch::Merge(&keys))
        .await
        .expect("rotate the keys");

    let members: Vec<String> = scenario
        .org
        .member_accounts()
        .map(|a| a.id.clone())
        .collect();
    eventually(
        "every member probed with the new session",
        Duration::from_secs(60),
        || async {
            let since = scenario.bed.proxy.assumed_roles().split_off(before);
            members
                .iter()
                .all(|id| since.iter().any(|role| role.contains(&format!(":{id}:"))))
                .then_some(())
        },
    )
    .await;
}
