//! The AwsOrgConnection reconciler on the test bed: a real API server, moto behind the
//! fault proxy, and the operator's controllers running in this process.

mod support;

use support::iam::{deploy_managing_role_as, deploy_managing_role_in};
use support::scenario::{Scenario, deploy_generated_role};

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use orgconnect::api::connection::ExternalIdSource;
use orgconnect::api::{
    AwsOrgConnection, ConditionStatus, ConditionType, MemberAccount, find_condition,
};
use orgconnect::controller::Diagnostics;
use orgconnect::controller::names::{ACCOUNT_LABEL, CONNECTION_LABEL, OU_LABEL};
use support::aws::AwsBed;
use support::kube::TestNamespace;
use support::operator::{
    apply_connection, apply_connection_with_labels, create_key_secret, has_condition, in_namespace,
    managing_assumes, managing_role, members, patch_spec, start, wait_condition, wait_connection,
    wait_members,
};
use support::org::{OrgSpec, OuSpec, seed};
use support::{eventually, unique_suffix};

use ConditionStatus::{False, True};
use ConditionType::{Authenticated, Discovered, MembersConnected, Ready};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_250_accounts_into_member_accounts_with_their_ou_paths() {
    let scenario = Scenario::build("discover", &OrgSpec::generated(245, 3, 2, 5))
        .generated_external_id()
        .start()
        .await;
    // No ExternalId in the spec: the operator generates one, and the role is made for it.
    let started = std::time::Instant::now();
    scenario
        .connect_generated("acme", serde_json::json!({}))
        .await;
    let Scenario {
        bed,
        org,
        ns,
        operator,
        ..
    } = &scenario;
    let connections: Api<AwsOrgConnection> = ns.api();
    let connection = wait_condition(&connections, "acme", Discovered, True, "Discovered").await;

    let status = connection.status.expect("status");
    let organization = status.organization.expect("organization");
    assert_eq!(organization.id, org.id);
    assert_eq!(organization.managing_account_id, org.managing_account_id);
    assert_eq!(organization.feature_set, "ALL");
    let external_id = status.external_id.expect("generated ExternalId");
    assert!(external_id.len() >= 32, "{external_id}");
    assert_eq!(status.external_id_source, Some(ExternalIdSource::Generated));
    let principal = status
        .operator_principal
        .clone()
        .expect("the operator principal");
    assert!(principal.starts_with("arn:aws:"), "{principal}");

    let member_api: Api<MemberAccount> = ns.api();
    let listed = wait_members(&member_api, 251).await;
    let expected: BTreeMap<_, _> = org.accounts.iter().map(|a| (a.id.clone(), a)).collect();
    for member in &listed {
        let seeded = expected
            .get(&member.spec.account_id)
            .unwrap_or_else(|| panic!("unexpected account {}", member.spec.account_id));
        assert_eq!(member.name_any(), format!("acme-{}", seeded.id));
        let ou = member.spec.organizational_unit.as_ref().expect("OU");
        assert_eq!(ou.path, seeded.path, "path of {}", seeded.id);
        assert_eq!(ou.id, seeded.parent_id);
        let labels = member.labels();
        assert_eq!(
            labels.get(CONNECTION_LABEL).map(String::as_str),
            Some("acme")
        );
        assert_eq!(labels.get(ACCOUNT_LABEL), Some(&seeded.id));
        assert_eq!(labels.get(OU_LABEL), Some(&seeded.parent_id));
        assert_eq!(member.owner_references()[0].name, "acme");
        if seeded.suspended {
            assert_eq!(
                member.spec.aws_status,
                Some(orgconnect::api::member_account::AwsAccountStatus::Suspended)
            );
        }
    }
    let deepest = listed
        .iter()
        .filter_map(|m| m.spec.organizational_unit.as_ref())
        .map(|ou| ou.path.matches('/').count())
        .max();
    assert_eq!(deepest, Some(3), "accounts sit three OUs deep");

    let connection = wait_connection(
        &connections,
        "acme",
        "counts of 251 accounts",
        Duration::from_secs(30),
        |c| {
            c.status
                .as_ref()
                .and_then(|s| s.accounts.as_ref())
                .is_some_and(|a| a.total == 251)
        },
    )
    .await;
    let counts = connection.status.and_then(|s| s.accounts).expect("counts");
    assert_eq!(counts.total, 251);
    // The probes' 251 phase changes reach the connection coalesced: at most one reconcile a
    // second for them, not one per MemberAccount status write (each of which counts every
    // account).
    wait_connection(
        &connections,
        "acme",
        "no account counted Pending",
        Duration::from_secs(60),
        |c| {
            c.status
                .as_ref()
                .and_then(|s| s.accounts.as_ref())
                .is_some_and(|a| a.total == 251 && a.pending == 0)
        },
    )
    .await;
    let seconds = started.elapsed().as_secs();
    let reconciles = Diagnostics::get(&operator.diagnostics.connection_reconciles);
    assert!(
        reconciles <= seconds + 10,
        "{reconciles} connection reconciles in {seconds} s"
    );
    assert_eq!(managing_assumes(&bed.proxy, &org.managing_account_id), 1);
    // Each parent's accounts in pages of 20, every parent asked once; no ListAccounts chain.
    let parents =
        std::iter::once(org.root_id.clone()).chain(org.ous.iter().map(|ou| ou.id.clone()));
    let pages: u64 = parents
        .map(|parent| {
            let accounts = org
                .accounts
                .iter()
                .filter(|a| a.parent_id == parent)
                .count();
            accounts.div_ceil(20).max(1) as u64
        })
        .sum();
    assert_eq!(bed.proxy.calls("ListAccountsForParent"), pages);
    assert_eq!(bed.proxy.calls("ListAccounts"), 0);
    assert_eq!(bed.proxy.calls("ListChildren"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_reconciles_assume_the_managing_role_once_and_write_nothing() {
    let Scenario {
        external_id,
        bed,
        org,
        ns,
        operator,
        ..
    } = Scenario::start("quiet", &OrgSpec::flat(3)).await;
    let connections: Api<AwsOrgConnection> = ns.api();
    apply_connection(
        &connections,
        "acme",
        serde_json::json!({
            "roleArn": managing_role(&org.managing_account_id),
            "externalId": external_id,
        }),
    )
    .await;
    wait_condition(&connections, "acme", Discovered, True, "Discovered").await;
    wait_connection(
        &connections,
        "acme",
        "4 accounts counted",
        Duration::from_secs(30),
        |c| {
            c.status
                .as_ref()
                .and_then(|s| s.accounts.as_ref())
                .is_some_and(|a| a.total == 4)
        },
    )
    .await;
    // Counts follow the MemberAccounts' phases as the probes set them.
    wait_connection(
        &connections,
        "acme",
        "4 accounts counted Connected",
        Duration::from_secs(30),
        |c| {
            c.status
                .as_ref()
                .and_then(|s| s.accounts.as_ref())
                .is_some_and(|a| a.connected == 4)
        },
    )
    .await;
    // Let the last status write's own watch event be reconciled before counting: quiet
    // means every reconcile started has finished, and none started for half a second.
    let diagnostics = &operator.diagnostics;
    let settled = eventually(
        "the operator to go quiet",
        Duration::from_secs(30),
        || async {
            let before = Diagnostics::get(&diagnostics.connection_reconciles);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let after = Diagnostics::get(&diagnostics.connection_reconciles);
            (after == before
                && Diagnostics::get(&diagnostics.connection_reconciles_finished) == after)
                .then_some(before)
        },
    )
    .await;
    let writes_before =
        Diagnostics::get(&diagnostics.status_writes) + Diagnostics::get(&diagnostics.member_writes);

    for i in 0..10 {
        let patch = serde_json::json!({ "metadata": { "annotations": { "test.orgconnect.dev/nudge": i.to_string() } } });
        connections
            .patch("acme", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate");
        let target = settled + i + 1;
        eventually(
            "a finished reconcile per change",
            Duration::from_secs(30),
            || async {
                (Diagnostics::get(&diagnostics.connection_reconciles_finished) >= target)
                    .then_some(())
            },
        )
        .await;
    }
    assert_eq!(
        managing_assumes(&bed.proxy, &org.managing_account_id),
        1,
        "the managing-role session is cached"
    );
    let writes_after =
        Diagnostics::get(&diagnostics.status_writes) + Diagnostics::get(&diagnostics.member_writes);
    assert_eq!(
        writes_after, writes_before,
        "nothing changed, so nothing was written"
    );
    assert_eq!(
        Diagnostics::get(&diagnostics.discoveries),
        1,
        "discovery waits for its interval"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_account_role_or_an_account_without_an_organization_is_not_discovered() {
    let Scenario {
        bed,
        external_id,
        org,
        ns,
        operator: _operator,
        ..
    } = Scenario::start("not-managing", &OrgSpec::flat(2)).await;
    let connections: Api<AwsOrgConnection> = ns.api();

    // The managing-role template deployed in a member account, with no delegation policy.
    let member = org.member_accounts().next().expect("a member").id.clone();
    deploy_managing_role_in(&bed, &member, &external_id, "OrganizationAccountAccessRole").await;
    apply_connection(
        &connections,
        "member",
        serde_json::json!({ "roleArn": managing_role(&member), "externalId": external_id }),
    )
    .await;
    let refused = wait_condition(
        &connections,
        "member",
        Discovered,
        False,
        "NotDelegatedAdministrator",
    )
    .await;
    let status = refused.status.expect("status");
    let message = &find_condition(&status.conditions, Discovered)
        .expect("condition")
        .message;
    assert!(
        message.contains(&org.managing_account_id),
        "names the managing account: {message}"
    );

    // And in an account of no organization.
    let (lonely_account, lonely) = bed.add_principal();
    deploy_managing_role_as(
        &bed,
        &bed.sdk_config_with(lonely),
        &external_id,
        "OrganizationAccountAccessRole",
    )
    .await;
    apply_connection(
        &connections,
        "lonely",
        serde_json::json!({ "roleArn": managing_role(&lonely_account), "externalId": external_id }),
    )
    .await;
    wait_condition(
        &connections,
        "lonely",
        Discovered,
        False,
        "OrganizationsNotInUse",
    )
    .await;
    assert!(members(&ns.api()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_external_id_is_denied_with_the_trust_statement_and_recovers_when_fixed() {
    let Scenario {
        bed,
        external_id: right,
        org,
        ns,
        operator: _operator,
        ..
    } = Scenario::start("extid", &OrgSpec::flat(2)).await;
    let connections: Api<AwsOrgConnection> = ns.api();
    let role = managing_role(&org.managing_account_id);
    apply_connection(
        &connections,
        "acme",
        serde_json::json!({ "roleArn": role, "externalId": "a-wrong-id" }),
    )
    .await;

    let denied = wait_condition(
        &connections,
        "acme",
        Authenticated,
        False,
        "AssumeRoleDenied",
    )
    .await;
    let status = denied.status.clone().expect("status");
    let message = &find_condition(&status.conditions, Authenticated)
        .expect("condition")
        .message;
    assert!(message.contains("access denied"), "{message}");
    assert!(message.contains(&role), "names the role: {message}");
    assert!(
        message.contains("a-wrong-id"),
        "names the ExternalId: {message}"
    );
    assert!(
        message.contains(r#""sts:ExternalId":"a-wrong-id""#),
        "shows the trust statement: {message}"
    );
    assert!(
        message.contains(r#""Action":"sts:AssumeRole""#),
        "{message}"
    );
    assert!(
        message.contains(&format!("arn:aws:sts::{}:", bed.managing_account_id)),
        "names the principal: {message}"
    );
    assert!(has_condition(&denied, Ready, False, "NotConnected"));
    assert!(
        members(&ns.api()).await.is_empty(),
        "nothing is discovered while denied"
    );
    ns.wait_event("acme", "Warning", "AssumeRoleDenied").await;

    patch_spec(
        &connections,
        "acme",
        serde_json::json!({ "externalId": right }),
    )
    .await;
    wait_condition(&connections, "acme", Authenticated, True, "RoleAssumed").await;
    wait_condition(&connections, "acme", Ready, True, "Connected").await;
    wait_members(&ns.api(), 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_chosen_external_ids_are_refused_when_the_operator_requires_generated_ones() {
    let bed = AwsBed::new().await;
    let ns = TestNamespace::new("strict").await;
    let mut settings = in_namespace(&ns.name);
    settings.require_generated_external_id = true;
    let _operator = start(
        ns.client.clone(),
        bed.operator_config(bed.credentials.clone()),
        settings,
    );
    let connections: Api<AwsOrgConnection> = ns.api();
    let role = managing_role(&bed.managing_account_id);
    apply_connection(
        &connections,
        "tenant",
        serde_json::json!({ "roleArn": role, "externalId": "someone-elses-id" }),
    )
    .await;
    let refused = wait_condition(
        &connections,
        "tenant",
        Authenticated,
        False,
        "ExternalIdNotAllowed",
    )
    .await;
    assert_ne!(
        refused.status.and_then(|s| s.external_id).as_deref(),
        Some("someone-elses-id"),
        "a refused id is never presented"
    );
    assert_eq!(bed.proxy.calls("AssumeRole"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_credentials_are_used_once_the_secret_appears() {
    // Only the Secret's keys are trusted by the managing role; the operator's own identity
    // reaches nothing.
    let scenario = Scenario::build("secret", &OrgSpec::flat(1))
        .operator_without_access()
        .start()
        .await;
    let Scenario { bed, org, ns, .. } = &scenario;
    let connections: Api<AwsOrgConnection> = ns.api();
    scenario
        .connect(
            "acme",
            serde_json::json!({
                "credentials": { "source": "Secret", "secretRef": { "name": "aws-keys" } },
            }),
        )
        .await;
    let missing =
        wait_condition(&connections, "acme", Authenticated, False, "SecretNotFound").await;
    let status = missing.status.expect("status");
    let message = &find_condition(&status.conditions, Authenticated)
        .expect("condition")
        .message;
    assert!(message.contains("aws-keys"), "{message}");

    let secrets: Api<Secret> = ns.api();
    create_key_secret(&secrets, "aws-keys", &bed.credentials).await;
    wait_condition(&connections, "acme", Authenticated, True, "RoleAssumed").await;
    wait_condition(&connections, "acme", Discovered, True, "Discovered").await;
    assert_eq!(bed.proxy.injected("AssumeRole"), 0);

    // The Secret loses a key: the connection says which, and recovers when it is back.
    let without_secret_key = serde_json::json!({ "data": { "AWS_SECRET_ACCESS_KEY": null } });
    secrets
        .patch(
            "aws-keys",
            &PatchParams::default(),
            &Patch::Merge(&without_secret_key),
        )
        .await
        .expect("remove a key");
    let broken = wait_condition(
        &connections,
        "acme",
        Authenticated,
        False,
        "SecretKeyMissing",
    )
    .await;
    let conditions = broken.status.expect("status").conditions;
    let message = &find_condition(&conditions, Authenticated)
        .expect("condition")
        .message;
    assert!(message.contains("AWS_SECRET_ACCESS_KEY"), "{message}");
    assert!(
        !message.contains(bed.credentials.secret_access_key()),
        "no key material in status"
    );
    let restored = serde_json::json!({
        "stringData": { "AWS_SECRET_ACCESS_KEY": bed.credentials.secret_access_key() }
    });
    secrets
        .patch(
            "aws-keys",
            &PatchParams::default(),
            &Patch::Merge(&restored),
        )
        .await
        .expect("restore the key");
    wait_condition(&connections, "acme", Authenticated, True, "RoleAssumed").await;

    let other = serde_json::json!({
        "roleArn": managing_role(&org.managing_account_id),
        "externalId": scenario.external_id,
        "credentials": { "source": "Secret", "secretRef": { "name": "aws-keys", "namespace": "kube-system" } },
    });
    apply_connection(&connections, "elsewhere", other).await;
    wait_condition(
        &connections,
        "elsewhere",
        Authenticated,
        False,
        "SecretNamespaceRefused",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_page_deletes_nothing_and_a_complete_discovery_removes_departed_accounts() {
    // 60 accounts: Prod's and Dev's 25 each take two ListAccountsForParent pages of 20.
    let spec = OrgSpec {
        root_accounts: 9,
        ous: vec![
            OuSpec::new("Prod").accounts(25),
            OuSpec::new("Dev").accounts(25),
        ],
    };
    let scenario = Scenario::start("departed", &spec).await;
    let Scenario { bed, org, .. } = &scenario;
    assert_eq!(org.accounts.len(), 60);
    let connections = scenario.connections();
    let member_api = scenario.members();
    scenario
        .connect("acme", serde_json::json!({ "discoveryInterval": "1h" }))
        .await;
    wait_condition(&connections, "acme", Discovered, True, "Discovered").await;
    wait_members(&member_api, 60).await;

    // A user pauses one account and renames another's copy; rediscovery keeps the pause
    // and restores what AWS says.
    let mut accounts = org.member_accounts();
    let departed = accounts.next().expect("a member").id.clone();
    let paused = accounts.next().expect("a member").id.clone();
    let user_patch = serde_json::json!({ "spec": { "paused": true, "roleName": "CustomAudit", "name": "renamed" } });
    member_api
        .patch(
            &format!("acme-{paused}"),
            &PatchParams::default(),
            &Patch::Merge(&user_patch),
        )
        .await
        .expect("a user edits a MemberAccount");
    aws_sdk_organizations::Client::new(&bed.sdk_config())
        .remove_account_from_organization()
        .account_id(&departed)
        .send()
        .await
        .expect("RemoveAccountFromOrganization");

    // From the third ListAccountsForParent page on, every page (and its retries) answers
    // 503.
    bed.proxy.fail_from_call("ListAccountsForParent", 3);
    patch_spec(
        &connections,
        "acme",
        serde_json::json!({ "discoveryInterval": "2h" }),
    )
    .await;
    let stale = wait_condition(&connections, "acme", Discovered, True, "Stale").await;
    assert!(bed.proxy.injected("ListAccountsForParent") >= 1);
    let message = &find_condition(
        &stale.status.as_ref().expect("status").conditions,
        Discovered,
    )
    .expect("condition")
    .message;
    assert!(message.contains("nothing was deleted"), "{message}");
    assert!(
        has_condition(&stale, Ready, True, "Connected"),
        "a stale discovery is not an outage"
    );
    let kept = members(&member_api).await;
    assert_eq!(kept.len(), 60, "a failed discovery deletes nothing");
    assert!(kept.iter().any(|m| m.spec.account_id == departed));

    bed.proxy.clear_faults();
    patch_spec(
        &connections,
        "acme",
        serde_json::json!({ "discoveryInterval": "3h" }),
    )
    .await;
    let remaining = wait_members(&member_api, 59).await;
    assert!(
        remaining.iter().all(|m| m.spec.account_id != departed),
        "the departed account is gone"
    );
    let edited = member_api
        .get(&format!("acme-{paused}"))
        .await
        .expect("paused member");
    assert_eq!(edited.spec.paused, Some(true), "the user's pause is kept");
    assert_eq!(
        edited.spec.role_name.as_deref(),
        Some("CustomAudit"),
        "the user's role is kept"
    );
    let seeded_name = &org
        .accounts
        .iter()
        .find(|a| a.id == paused)
        .expect("seeded")
        .name;
    assert_eq!(
        &edited.spec.name, seeded_name,
        "operator-owned fields follow AWS"
    );
    let connection = wait_condition(&connections, "acme", Discovered, True, "Discovered").await;
    let discovered = find_condition(
        &connection.status.as_ref().expect("status").conditions,
        Discovered,
    )
    .expect("condition")
    .clone();
    assert_eq!(
        discovered.observed_generation,
        connection.metadata.generation
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_throttling_still_discovers_everything_without_a_flip() {
    discovers_everything_without_a_flip("throttled", |bed, operation| {
        bed.proxy.throttle(operation, 0.3)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_server_errors_still_discover_everything_without_a_flip() {
    discovers_everything_without_a_flip("unavailable", |bed, operation| {
        bed.proxy.server_errors(operation, 0.3)
    })
    .await;
}

/// With `fault` injected into 30% of every Organizations call of discovery (tag reads
/// included), discovery completes through the retries and no condition is ever False.
async fn discovers_everything_without_a_flip(prefix: &str, fault: impl Fn(&AwsBed, &str)) {
    let scenario = Scenario::build(prefix, &OrgSpec::generated(59, 2, 2, 0))
        .prepare(|bed, _| {
            for operation in [
                "DescribeOrganization",
                "ListRoots",
                "ListOrganizationalUnitsForParent",
                "ListAccountsForParent",
                "ListTagsForResource",
            ] {
                fault(bed, operation);
            }
        })
        .start()
        .await;
    let Scenario { bed, ns, .. } = &scenario;
    let connections: Api<AwsOrgConnection> = ns.api();
    // Record every status the API server ever holds for the connection.
    let history = {
        let connections = connections.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut stream = watcher(connections, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(Ok(connection)) = stream.next().await {
                let done = has_condition(&connection, Discovered, True, "Discovered")
                    && connection
                        .status
                        .as_ref()
                        .and_then(|s| s.accounts.as_ref())
                        .is_some_and(|a| a.total == 60);
                seen.push(connection.status.map(|s| s.conditions).unwrap_or_default());
                if done {
                    break;
                }
            }
            seen
        })
    };
    scenario.connect("acme", serde_json::json!({})).await;
    let history = tokio::time::timeout(Duration::from_secs(120), history)
        .await
        .expect("discovery completes under faults")
        .expect("watch task");
    wait_members(&ns.api(), 60).await;
    assert!(
        bed.proxy.injected("ListAccountsForParent") >= 1,
        "faults were injected"
    );
    assert!(
        bed.proxy.injected("ListOrganizationalUnitsForParent") >= 1,
        "faults were injected"
    );
    assert!(
        bed.proxy.injected("ListTagsForResource") >= 1,
        "faults were injected into the tag reads too"
    );
    for conditions in &history {
        for condition in conditions {
            if matches!(condition.type_, Authenticated | Discovered | Ready) {
                assert_eq!(
                    condition.status, True,
                    "no false status under faults: {condition:?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_in_two_namespaces_stay_isolated() {
    let bed = AwsBed::new().await;
    let first = seed(&bed.sdk_config(), &OrgSpec::flat(3)).await;
    let (_, second_credentials) = bed.add_principal();
    let second_config = bed.sdk_config_with(second_credentials);
    bed.proxy.enforce_iam();
    let second = seed(
        &second_config,
        &OrgSpec {
            root_accounts: 1,
            ous: vec![OuSpec::new("Sandbox").accounts(4)],
        },
    )
    .await;
    assert_ne!(first.id, second.id);

    let team_a = TestNamespace::new("team-a").await;
    let team_b = TestNamespace::new("team-b").await;
    // One operator for the whole cluster, scoped by a label to this test's connections.
    let label = format!("run-{}", unique_suffix());
    let settings = orgconnect::controller::Settings {
        label_selector: Some(format!("test.orgconnect.dev/run={label}")),
        instance: label.clone(),
        ..orgconnect::controller::Settings::default()
    };
    let _operator = start(
        team_a.client.clone(),
        bed.operator_config(bed.credentials.clone()),
        settings,
    );
    let labels = serde_json::json!({ "test.orgconnect.dev/run": label });
    for (ns, org) in [(&team_a, &first), (&team_b, &second)] {
        apply_connection_with_labels(
            &ns.api(),
            "org",
            serde_json::json!({ "roleArn": managing_role(&org.managing_account_id) }),
            labels.clone(),
        )
        .await;
    }
    // Each organization's managing role made for its connection's generated ExternalId.
    for (ns, deploy_as) in [(&team_a, &bed.sdk_config()), (&team_b, &second_config)] {
        deploy_generated_role(&bed, &ns.client, &ns.name, "org", deploy_as).await;
    }
    for (ns, org) in [(&team_a, &first), (&team_b, &second)] {
        let connection = wait_condition(&ns.api(), "org", Discovered, True, "Discovered").await;
        let status = connection.status.expect("status");
        assert_eq!(status.organization.map(|o| o.id), Some(org.id.clone()));
        let listed = wait_members(&ns.api(), org.accounts.len()).await;
        let listed: BTreeSet<_> = listed.into_iter().map(|m| m.spec.account_id).collect();
        let seeded: BTreeSet<_> = org.accounts.iter().map(|a| a.id.clone()).collect();
        assert_eq!(
            listed, seeded,
            "each namespace holds its own organization's accounts"
        );
    }
    let (a, b) = (
        wait_condition(&team_a.api(), "org", Ready, True, "Connected").await,
        wait_condition(&team_b.api(), "org", Ready, True, "Connected").await,
    );
    assert_ne!(
        a.status.and_then(|s| s.external_id),
        b.status.and_then(|s| s.external_id),
        "each connection has its own ExternalId"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_connection_removes_its_member_accounts() {
    let Scenario {
        external_id,
        bed: _bed,
        org,
        ns,
        operator,
        ..
    } = Scenario::start("revoke", &OrgSpec::flat(4)).await;
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
    let connection = wait_condition(&connections, "acme", Discovered, True, "Discovered").await;
    assert!(
        connection
            .finalizers()
            .iter()
            .any(|f| f == orgconnect::controller::FINALIZER)
    );
    wait_members(&member_api, 5).await;
    // Probed: the operator holds a probe record and a probe limit for them.
    support::operator::wait_all_connected(&member_api, 5).await;

    connections
        .delete("acme", &DeleteParams::default())
        .await
        .expect("delete connection");
    eventually(
        "the connection to be gone",
        Duration::from_secs(60),
        || async {
            connections
                .get_opt("acme")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(
        members(&member_api).await.is_empty(),
        "MemberAccounts were removed"
    );
    assert_eq!(
        Diagnostics::get(&operator.diagnostics.remembered),
        0,
        "nothing about the revoked connection or its members is held in memory"
    );
}

/// The connection hears of a MemberAccount's deletion from the one MemberAccount watch it
/// shares with the member controller, and its counts follow at once, not at its next
/// discovery an hour later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_account_deleted_by_hand_leaves_the_counts_at_once() {
    let scenario = Scenario::start("handdelete", &OrgSpec::flat(4)).await;
    scenario.connect("acme", serde_json::json!({})).await;
    let connections: Api<AwsOrgConnection> = scenario.ns.api();
    let member_api: Api<MemberAccount> = scenario.ns.api();
    support::operator::wait_all_connected(&member_api, 5).await;
    let counts =
        |connection: AwsOrgConnection| connection.status?.accounts.map(|a| (a.total, a.connected));
    // The counts' last write: nothing is left for the connection to do for an hour.
    wait_condition(&connections, "acme", MembersConnected, True, "AllReachable").await;
    eventually(
        "five accounts counted Connected",
        Duration::from_secs(30),
        || async { (counts(connections.get("acme").await.ok()?)? == (5, 5)).then_some(()) },
    )
    .await;

    // The first deletion may land while a count update is still held back; the second
    // comes when the connection has nothing left to do, so only the deletion itself can
    // wake it.
    for left in [4, 3] {
        let gone = members(&member_api).await.remove(0).name_any();
        member_api
            .delete(&gone, &DeleteParams::default())
            .await
            .expect("delete a MemberAccount");
        eventually(
            &format!("the connection to count {left} accounts"),
            Duration::from_secs(20),
            || async {
                (counts(connections.get("acme").await.ok()?)? == (left, left)).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_repeats_every_interval_and_finds_accounts_that_joined() {
    let scenario = Scenario::start("rediscover", &OrgSpec::flat(2)).await;
    scenario
        .connect("acme", serde_json::json!({ "discoveryInterval": "1m" }))
        .await;
    wait_members(&scenario.members(), 3).await;
    let discoveries = scenario.bed.proxy.calls("DescribeOrganization");

    // An account joins; nothing about the connection changes.
    let organizations = aws_sdk_organizations::Client::new(&scenario.bed.sdk_config());
    let created = organizations
        .create_account()
        .account_name("joined-later")
        .email(format!("joined-later-{}@example.com", unique_suffix()))
        .send()
        .await
        .expect("create an account");
    let account_id = created
        .create_account_status()
        .and_then(|s| s.account_id())
        .expect("account id")
        .to_owned();
    // The next discovery, a minute (plus jitter) after the first, picks it up.
    eventually(
        "the account that joined",
        Duration::from_secs(120),
        || async {
            scenario
                .members()
                .get_opt(&format!("acme-{account_id}"))
                .await
                .ok()
                .flatten()
        },
    )
    .await;
    assert!(scenario.bed.proxy.calls("DescribeOrganization") > discoveries);
}

/// `kubectl get aoc` agrees with `kubectl get ma` soon after the last probe lands: the
/// connection's counts trail its MemberAccounts' phases by at most `COUNTS_LAG`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counts_agree_with_the_member_accounts_soon_after_the_last_probe() {
    use kube::runtime::reflector;
    use orgconnect::api::member_account::MemberPhase;

    let scenario = Scenario::start("counts", &OrgSpec::flat(39)).await;
    let blocked: Vec<String> = scenario
        .org
        .member_accounts()
        .take(3)
        .map(|a| a.id.clone())
        .collect();
    scenario.bed.proxy.deny_assume_role(blocked);
    let connections = scenario.connections();
    let (store, writer) = reflector::store::<MemberAccount>();
    let watch = tokio::spawn(
        reflector(
            writer,
            watcher(scenario.members(), watcher::Config::default()),
        )
        .default_backoff()
        .touched_objects()
        .for_each(|_| async {}),
    );
    scenario.connect("acme", serde_json::json!({})).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut all_phased: Option<(std::time::Instant, (i32, i32, i32))> = None;
    let lag = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the counts never agreed; phases {all_phased:?}"
        );
        let members = store.state();
        let count = |phase| {
            let n = members
                .iter()
                .filter(|m| m.status.as_ref().and_then(|s| s.phase) == Some(phase))
                .count();
            i32::try_from(n).unwrap_or(i32::MAX)
        };
        let tally = (
            i32::try_from(members.len()).unwrap_or(i32::MAX),
            count(MemberPhase::Connected),
            count(MemberPhase::Blocked),
        );
        if tally == (40, 37, 3) && all_phased.is_none() {
            all_phased = Some((std::time::Instant::now(), tally));
        }
        if let Some((at, want)) = all_phased {
            let counts = connections
                .get("acme")
                .await
                .expect("get the connection")
                .status
                .and_then(|s| s.accounts)
                .map(|c| (c.total, c.connected, c.blocked));
            if counts == Some(want) {
                break at.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    watch.abort();
    assert!(
        lag <= orgconnect::controller::COUNTS_LAG + Duration::from_secs(2),
        "the counts agreed {lag:?} after the last phase"
    );
}
