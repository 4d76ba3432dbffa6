//! The strict bed: IAM evaluated as AWS does (roles must exist, trust policies let the
//! caller in only with the ExternalId they name, a role session may make only the calls its
//! identity policies allow), with the managing role made from the project's own
//! `orgconnect template managing-role` by CloudFormation.

mod support;

use std::time::Duration;

use orgconnect::api::{ConditionStatus, ConditionType, find_condition};
use support::eventually;
use support::iam::{replace_action, without_action};
use support::operator::{members, wait_all_connected, wait_condition};
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
    wait_all_connected(&scenario.members(), 5).await;
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

/// A managing role made from an older template may call ListAccounts and ListChildren but
/// not ListAccountsForParent: discovery falls back to listing that way, and every account
/// is found under its own OU.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managing_role_from_an_older_template_still_discovers_every_account() {
    let spec = OrgSpec {
        root_accounts: 1,
        ous: vec![OuSpec::new("Prod").accounts(3)],
    };
    let scenario = Scenario::build("strict-legacy", &spec)
        .template(|template| {
            replace_action(
                template,
                "organizations:ListAccountsForParent",
                &["organizations:ListAccounts", "organizations:ListChildren"],
            )
        })
        .start()
        .await;
    scenario.connect("acme", serde_json::json!({})).await;
    wait_condition(
        &scenario.connections(),
        "acme",
        ConditionType::Discovered,
        ConditionStatus::True,
        "Discovered",
    )
    .await;
    let listed = wait_all_connected(&scenario.members(), 5).await;
    let in_prod = listed
        .iter()
        .filter(|m| {
            m.spec
                .organizational_unit
                .as_ref()
                .is_some_and(|ou| ou.path == "Root/Prod")
        })
        .count();
    assert_eq!(in_prod, 3, "each account under its own OU");
    let denials = scenario.bed.proxy.iam_denials();
    assert!(
        denials
            .iter()
            .all(|d| d.contains("organizations:ListAccountsForParent")),
        "only the newer call was refused: {denials:?}"
    );
    assert!(scenario.bed.proxy.calls("ListAccounts") >= 1);
    assert!(scenario.bed.proxy.calls("ListChildren") >= 1);
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
    wait_all_connected(&scenario.members(), 3).await;
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

/// Role `name` in the account `admin` administers, trusting that account, allowed
/// `sts:AssumeRole` anywhere: the role a sync Job's service account maps to.
async fn job_role(admin: &aws_config::SdkConfig, account: &str, name: &str) -> String {
    let iam = aws_sdk_iam::Client::new(admin);
    let trust = serde_json::json!({ "Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": { "AWS": format!("arn:aws:iam::{account}:root") },
        "Action": "sts:AssumeRole",
    }]});
    support::iam::create_job_role(&iam, name, &trust).await
}

/// Assumes `role` as `config`, then the managing role `managing` with `external_id`, as a
/// Job's generated profiles do; the account the managing session acts in.
async fn job_reaches(
    bed: &support::aws::AwsBed,
    config: &aws_config::SdkConfig,
    role: &str,
    managing: &str,
    external_id: &str,
) -> Result<String, String> {
    let job = aws_sdk_sts::Client::new(config)
        .assume_role()
        .role_arn(role)
        .role_session_name("sync-job")
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?
        .credentials
        .ok_or("no credentials")?;
    let session = bed.sdk_config_with(aws_sdk_sts::config::Credentials::new(
        job.access_key_id(),
        job.secret_access_key(),
        Some(job.session_token().to_owned()),
        None,
        "sync-job",
    ));
    let managed = aws_sdk_sts::Client::new(&session)
        .assume_role()
        .role_arn(managing)
        .role_session_name("orgconnect-sync")
        .external_id(external_id)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    managed
        .assumed_role_user
        .map(|u| u.arn.split(':').nth(4).unwrap_or_default().to_owned())
        .ok_or_else(|| "no assumed-role user".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_for_a_connection_trusts_the_irsa_roles_of_its_sync_jobs() {
    let scenario = Scenario::build("job-trust", &OrgSpec::flat(1))
        .generated_external_id()
        .start()
        .await;
    // The cluster's account, where the sync Jobs' IRSA role lives.
    let (cluster_account, admin) = scenario.bed.add_principal();
    let admin = scenario.bed.sdk_config_with(admin);
    let irsa = job_role(&admin, &cluster_account, "inventory-sync").await;
    let other = job_role(&admin, &cluster_account, "unrelated-job").await;
    let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> = scenario.ns.api();
    support::operator::create_service_account(&accounts, "inventory", Some(&irsa)).await;
    let schedules: kube::Api<orgconnect::api::SyncSchedule> = scenario.ns.api();
    support::operator::create_schedule(&schedules, "inventory", "inventory", serde_json::json!({}))
        .await;

    // The managing role is made from `orgconnect template managing-role --connection`.
    scenario
        .connect_generated("acme", serde_json::json!({}))
        .await;
    let connection = wait_condition(
        &scenario.connections(),
        "acme",
        ConditionType::Ready,
        ConditionStatus::True,
        "Connected",
    )
    .await;
    let external_id = connection
        .status
        .and_then(|s| s.external_id)
        .expect("the generated ExternalId");
    // The schedule says which principal its Jobs present.
    eventually(
        "the schedule names its Jobs' principal",
        Duration::from_secs(30),
        || async {
            let status = schedules.get("inventory").await.ok()?.status?;
            (status.job_principal.as_deref() == Some(irsa.as_str())).then_some(())
        },
    )
    .await;
    let managing = scenario.role();
    let reached = job_reaches(&scenario.bed, &admin, &irsa, &managing, &external_id).await;
    assert_eq!(
        reached.as_deref(),
        Ok(scenario.org.managing_account_id.as_str()),
        "the Job's IRSA role assumes the managing role"
    );
    let refused = job_reaches(&scenario.bed, &admin, &other, &managing, &external_id).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("AccessDenied")),
        "a role the template does not name is refused: {refused:?}"
    );
}
