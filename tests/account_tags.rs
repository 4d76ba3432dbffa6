//! Account tags on the strict bed: discovery reads every account's AWS tags with the
//! managing role from its template, keeps them all in `status.tags`, mirrors those with
//! label syntax as `tags.orgconnect.dev/<key>` labels, selects accounts by tag, relabels
//! an account whose tags changed without probing it again, and removes everything when
//! the connection opts out.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_organizations::types::Tag;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use orgconnect::api::connection::DISCOVER_ANNOTATION;
use orgconnect::api::member_account::MemberPhase;
use orgconnect::api::{AwsOrgConnection, MemberAccount, SyncSchedule};
use orgconnect::api::{ConditionStatus, ConditionType};
use support::aws::AwsBed;
use support::eventually;
use support::iam::without_action;
use support::kube::TestNamespace;
use support::operator::{members, patch_spec, wait_condition, wait_members};
use support::org::OrgSpec;
use support::runs::{run_files, run_now};
use support::scenario::Scenario;

const PREFIX: &str = "tags.orgconnect.dev/";

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build().expect("tag")
}

/// The tag labels of `member`, without the prefix.
fn tag_labels(member: &MemberAccount) -> BTreeMap<String, String> {
    member
        .labels()
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?.to_owned(), v.clone())))
        .collect()
}

fn status_tags(member: &MemberAccount) -> BTreeMap<String, String> {
    member
        .status
        .as_ref()
        .map(|s| s.tags.clone())
        .unwrap_or_default()
}

fn pairs(items: &[(&str, &str)]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The AssumeRole calls the proxy saw into `account`'s member role.
fn probes_of(bed: &AwsBed, account: &str) -> usize {
    let role = format!("arn:aws:iam::{account}:role/OrganizationAccountAccessRole");
    bed.proxy
        .assumed_roles()
        .iter()
        .filter(|r| **r == role)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_become_status_and_labels_select_accounts_and_follow_changes_without_a_probe() {
    let scenario = Scenario::build("tags", &OrgSpec::generated(5, 1, 2, 0))
        .operator_without_access()
        .start()
        .await;
    let Scenario { bed, org, ns, .. } = &scenario;
    let ids: Vec<String> = org.member_accounts().map(|a| a.id.clone()).collect();
    let (payments, web, plain) = (&ids[0], &ids[1], &ids[2]);
    let organizations = aws_sdk_organizations::Client::new(&bed.sdk_config());
    let long = "x".repeat(100);
    for (account, tags) in [
        (
            payments,
            vec![
                tag("team", "payments"),
                tag("env", "prod"),
                tag("owner", "Jane Doe"),
                tag("cost:center", "42"),
                tag("note", &long),
            ],
        ),
        (web, vec![tag("team", "web"), tag("env", "dev")]),
    ] {
        organizations
            .tag_resource()
            .resource_id(account)
            .set_tags(Some(tags))
            .send()
            .await
            .expect("TagResource");
    }
    // The strict bed: ListTagsForResource is allowed only because the template grants it.
    let connections: Api<AwsOrgConnection> = ns.api();
    scenario
        .connect_with_secret(
            "acme",
            serde_json::json!({
                "accountSelector": { "excludeTags": [{ "key": "env", "values": ["dev"] }] },
            }),
        )
        .await;
    let member_api: Api<MemberAccount> = ns.api();
    let expected = org.accounts.len() - 1;
    let connected = |listed: &[MemberAccount]| {
        listed
            .iter()
            .all(|m| m.status.as_ref().and_then(|s| s.phase) == Some(MemberPhase::Connected))
    };
    let listed = eventually(
        "the accounts Connected",
        Duration::from_secs(60),
        || async {
            let listed = members(&member_api).await;
            (listed.len() == expected && connected(&listed)).then_some(listed)
        },
    )
    .await;
    assert!(
        bed.proxy.iam_denials().is_empty(),
        "{:?}",
        bed.proxy.iam_denials()
    );
    let by_account = |listed: &[MemberAccount], id: &str| {
        listed
            .iter()
            .find(|m| m.spec.account_id == id)
            .cloned()
            .unwrap_or_else(|| panic!("no MemberAccount for {id}"))
    };
    // excludeTags env=dev: the web account is not a MemberAccount.
    assert!(listed.iter().all(|m| m.spec.account_id != *web));
    let member = by_account(&listed, payments);
    assert_eq!(
        status_tags(&member),
        pairs(&[
            ("team", "payments"),
            ("env", "prod"),
            ("owner", "Jane Doe"),
            ("cost:center", "42"),
            ("note", &long),
        ]),
        "every tag is in status"
    );
    assert_eq!(
        tag_labels(&member),
        pairs(&[("team", "payments"), ("env", "prod")]),
        "only tags with label syntax are labels"
    );
    assert!(tag_labels(&by_account(&listed, plain)).is_empty());
    assert!(status_tags(&by_account(&listed, plain)).is_empty());
    // One ListTagsForResource per account listed.
    assert_eq!(
        bed.proxy.calls("ListTagsForResource"),
        org.accounts.len() as u64
    );

    // A tag changes and another goes: after the next discovery the labels and status
    // follow, and the account is not probed again for it.
    let probes_before = probes_of(bed, payments);
    organizations
        .untag_resource()
        .resource_id(payments)
        .tag_keys("env")
        .send()
        .await
        .expect("UntagResource");
    organizations
        .tag_resource()
        .resource_id(payments)
        .tags(tag("team", "cards"))
        .send()
        .await
        .expect("TagResource");
    let patch =
        serde_json::json!({ "metadata": { "annotations": { DISCOVER_ANNOTATION: "now" } } });
    connections
        .patch("acme", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate discover=now");
    let member = eventually("the new tags", Duration::from_secs(30), || async {
        let member = member_api.get(&member.name_any()).await.ok()?;
        (tag_labels(&member) == pairs(&[("team", "cards")])).then_some(member)
    })
    .await;
    assert_eq!(status_tags(&member)["team"], "cards");
    assert!(!status_tags(&member).contains_key("env"));
    // The member controller's status is untouched by discovery's tag write.
    assert_eq!(
        member.status.as_ref().and_then(|s| s.phase),
        Some(MemberPhase::Connected)
    );
    eventually("discover=now cleared", Duration::from_secs(30), || async {
        let connection = connections.get("acme").await.ok()?;
        (!connection.annotations().contains_key(DISCOVER_ANNOTATION)).then_some(())
    })
    .await;
    assert_eq!(
        probes_of(bed, payments),
        probes_before,
        "relabelled without a probe"
    );

    // A SyncSchedule selects by tag label; the run's c7n-org file carries the tags.
    let schedules: Api<SyncSchedule> = ns.api();
    let job = run_now(
        &schedules,
        &ns.api::<Job>(),
        "cards",
        serde_json::json!({
            "accountSelector": { "matchLabels": { "tags.orgconnect.dev/team": "cards" } },
            "toolConfigs": ["C7nOrg"],
        }),
        Duration::from_secs(30),
    )
    .await;
    let data = run_files(&ns.api::<ConfigMap>(), &job).await;
    let accounts: Vec<serde_json::Value> =
        serde_json::from_str(&data["accounts.json"]).expect("accounts.json");
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["id"].as_str(), Some(payments.as_str()));
    let c7n: serde_yaml::Value = serde_yaml::from_str(&data["c7n-org-accounts.yml"]).expect("YAML");
    let tags: Vec<&str> = c7n["accounts"][0]["tags"]
        .as_sequence()
        .expect("tags")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(tags.contains(&"team:cards"), "{tags:?}");
    assert!(tags.contains(&"owner:Jane Doe"), "{tags:?}");
    assert!(tags.iter().any(|t| t.starts_with("path:Root/")), "{tags:?}");

    // Opting out: no tag is read, the tags and tag labels go, and the tag selector with
    // them (the web account returns).
    bed.proxy.reset_stats();
    patch_spec(
        &connections,
        "acme",
        serde_json::json!({ "accountTags": { "enabled": false }, "accountSelector": null }),
    )
    .await;
    eventually("the tags removed", Duration::from_secs(60), || async {
        let listed = members(&member_api).await;
        (listed.len() == org.accounts.len()
            && listed
                .iter()
                .all(|m| tag_labels(m).is_empty() && status_tags(m).is_empty()))
        .then_some(())
    })
    .await;
    assert_eq!(bed.proxy.calls("ListTagsForResource"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_selectors_without_tags_are_refused() {
    let ns = TestNamespace::new("tags-refused").await;
    let connections: Api<AwsOrgConnection> = ns.api();
    let refused = connections
        .patch(
            "acme",
            &PatchParams::apply("test").force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "orgconnect.dev/v1alpha1",
                "kind": "AwsOrgConnection",
                "metadata": { "name": "acme" },
                "spec": {
                    "roleArn": "arn:aws:iam::111111111111:role/orgconnect",
                    "accountTags": { "enabled": false },
                    "accountSelector": { "includeTags": [{ "key": "team" }] },
                },
            })),
        )
        .await
        .expect_err("the API server refuses the spec");
    assert!(
        refused.to_string().contains("accountTags.enabled"),
        "{refused}"
    );
}

/// A managing role from a template without `organizations:ListTagsForResource`: the
/// accounts are listed without tags and a Warning Event says why; a connection that
/// selects by tag changes nothing and says which call was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_may_not_read_tags_lists_the_accounts_and_a_tag_selection_changes_nothing() {
    let scenario = Scenario::build("tags-denied", &OrgSpec::flat(3))
        .template(|template| without_action(template, "organizations:ListTagsForResource"))
        .start()
        .await;
    let Scenario { bed, org, ns, .. } = &scenario;
    scenario.connect("acme", serde_json::json!({})).await;
    let member_api: Api<MemberAccount> = ns.api();
    wait_members(&member_api, org.accounts.len()).await;
    let event = eventually(
        "the AccountTagsDenied Event",
        Duration::from_secs(30),
        || async {
            ns.events("acme", "AccountTagsDenied")
                .await
                .into_iter()
                .next()
        },
    )
    .await;
    assert!(
        event
            .note
            .unwrap_or_default()
            .contains("organizations:ListTagsForResource")
    );
    assert!(bed.proxy.refused("ListTagsForResource") + bed.proxy.calls("ListTagsForResource") >= 1);

    scenario
        .connect(
            "tagged",
            serde_json::json!({ "accountSelector": { "includeTags": [{ "key": "team" }] } }),
        )
        .await;
    let connections: Api<AwsOrgConnection> = ns.api();
    let refused = wait_condition(
        &connections,
        "tagged",
        ConditionType::Discovered,
        ConditionStatus::False,
        "DiscoveryDenied",
    )
    .await;
    let message = refused
        .status
        .and_then(|s| {
            orgconnect::api::find_condition(&s.conditions, ConditionType::Discovered).cloned()
        })
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains("ListTagsForResource"), "{message}");
    let tagged: Vec<MemberAccount> = members(&member_api)
        .await
        .into_iter()
        .filter(|m| m.spec.connection == "tagged")
        .collect();
    assert!(
        tagged.is_empty(),
        "nothing was written for the tag selection"
    );
}
