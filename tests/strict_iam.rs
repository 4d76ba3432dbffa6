//! The strict bed: IAM evaluated as AWS does (roles must exist, trust policies let the
//! caller in only with the ExternalId they name, a role session may make only the calls its
//! identity policies allow), with the managing role made from the project's own
//! `orgconnect template managing-role` by CloudFormation.

mod support;

use std::time::Duration;

use orgconnect::api::member_account::MemberPhase;
use orgconnect::api::{ConditionStatus, ConditionType, find_condition};
use support::eventually;
use support::iam::without_action;
use support::operator::{members, wait_condition};
use support::org::{OrgSpec, OuSpec};
use support::scenario::Scenario;

fn message(connection: &orgconnect::api::AwsOrgConnection, type_: ConditionType) -> String {
    connection
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managing_role_from_the_template_reaches_every_account_under_iam() {
    let spec = OrgSpec {
        root_accounts: 1,
        ous: vec![OuSpec::new("Prod").accounts(3)],
    };
    let scenario = Scenario::start("strict", &spec).await;
    scenario.connect("acme", serde_json::json!({})).await;
    wait_condition(
        &scenario.connections(),
        "acme",
        ConditionType::Ready,
        ConditionStatus::True,
        "Connected",
    )
    .await;
    eventually("5 accounts Connected", Duration::from_secs(60), || async {
        let listed = members(&scenario.members()).await;
        (listed.len() == 5
            && listed
                .iter()
                .all(|m| m.status.as_ref().and_then(|s| s.phase) == Some(MemberPhase::Connected)))
        .then_some(())
    })
    .await;
    assert_eq!(
        scenario.bed.proxy.iam_denials(),
        Vec::<String>::new(),
        "the template grants every call the operator makes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_policy_naming_another_external_id_is_denied() {
    let scenario = Scenario::start("strict-trust", &OrgSpec::flat(1)).await;
    scenario
        .connect(
            "acme",
            serde_json::json!({ "externalId": "the-connection-s-id" }),
        )
        .await;
    let denied = wait_condition(
        &scenario.connections(),
        "acme",
        ConditionType::Authenticated,
        ConditionStatus::False,
        "AssumeRoleDenied",
    )
    .await;
    let text = message(&denied, ConditionType::Authenticated);
    assert!(
        text.contains(r#""sts:ExternalId":"the-connection-s-id""#),
        "the trust statement to add: {text}"
    );
    assert!(members(&scenario.members()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_without_an_action_fails_with_a_reason_naming_it() {
    let scenario = Scenario::build("strict-action", &OrgSpec::flat(2))
        .template(|template| without_action(template, "organizations:ListRoots"))
        .start()
        .await;
    scenario.connect("acme", serde_json::json!({})).await;
    let refused = wait_condition(
        &scenario.connections(),
        "acme",
        ConditionType::Discovered,
        ConditionStatus::False,
        "DiscoveryDenied",
    )
    .await;
    let text = message(&refused, ConditionType::Discovered);
    assert!(
        text.contains("may not call organizations:ListRoots"),
        "names the action: {text}"
    );
    assert!(
        scenario
            .bed
            .proxy
            .iam_denials()
            .iter()
            .any(|d| d.contains("organizations:ListRoots")),
        "the bed refused it: {:?}",
        scenario.bed.proxy.iam_denials()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_allowed_only_sts_assume_role_reaches_the_organization() {
    // The operator runs in an account of its own, as on EKS, with the one permission the
    // README says it needs.
    let scenario = Scenario::build("least-privilege", &OrgSpec::flat(2))
        .operator_user(serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{ "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*" }],
        }))
        .start()
        .await;
    scenario.connect("acme", serde_json::json!({})).await;
    wait_condition(
        &scenario.connections(),
        "acme",
        ConditionType::Ready,
        ConditionStatus::True,
        "Connected",
    )
    .await;
    eventually("3 accounts Connected", Duration::from_secs(60), || async {
        let listed = members(&scenario.members()).await;
        (listed.len() == 3
            && listed
                .iter()
                .all(|m| m.status.as_ref().and_then(|s| s.phase) == Some(MemberPhase::Connected)))
        .then_some(())
    })
    .await;
    assert_eq!(scenario.bed.proxy.iam_denials(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_whose_own_policy_lacks_sts_assume_role_is_told_what_to_attach() {
    let scenario = Scenario::build("no-assume", &OrgSpec::flat(1))
        .operator_user(serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{ "Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*" }],
        }))
        .start()
        .await;
    scenario.connect("acme", serde_json::json!({})).await;
    let refused = wait_condition(
        &scenario.connections(),
        "acme",
        ConditionType::Authenticated,
        ConditionStatus::False,
        "OperatorPolicyDenied",
    )
    .await;
    let text = message(&refused, ConditionType::Authenticated);
    let role = scenario.role();
    assert!(
        text.contains(&format!(
            r#"{{"Action":"sts:AssumeRole","Effect":"Allow","Resource":"{role}"}}"#
        )),
        "the statement to attach: {text}"
    );
    assert!(
        text.contains(":user/orgconnect-operator"),
        "names the caller: {text}"
    );
    assert!(
        scenario
            .bed
            .proxy
            .iam_denials()
            .iter()
            .any(|d| d.contains("no identity-based policy allows the sts:AssumeRole action")),
        "{:?}",
        scenario.bed.proxy.iam_denials()
    );
}
