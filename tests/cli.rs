//! The `orgconnect tree` and `orgconnect check` commands, run as a user would run them,
//! against the test bed.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::time::Duration;

use kube::api::Api;
use orgconnect::api::MemberAccount;
use orgconnect::api::member_account::MemberPhase;
use support::aws::AwsBed;
use support::eventually;
use support::iam::{
    create_user, delete_role, deploy_managing_role, deploy_managing_role_in,
    deploy_managing_role_trusting,
};
use support::kube::KUBECONFIG_ENV;
use support::operator::{managing_role, members};
use support::org::{OrgSpec, OuSpec, seed};
use support::scenario::Scenario;

fn orgconnect(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orgconnect"));
    command
        .args(args)
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env("AWS_CONFIG_FILE", "/nonexistent/orgconnect-test-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/orgconnect-test-credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("orgconnect runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The grammar `render_mermaid` writes: a `flowchart` header, then node definitions
/// `id["label"]`, edges `a --> b` between defined nodes, `classDef` and `class` lines.
fn assert_mermaid_flowchart(text: &str) -> (BTreeSet<String>, Vec<(String, String)>) {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("flowchart TD"), "starts as a flowchart");
    let is_id = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let mut nodes = BTreeSet::new();
    let mut edges = Vec::new();
    for line in lines {
        let line = line.trim();
        if let Some((from, to)) = line.split_once(" --> ") {
            assert!(is_id(from) && is_id(to), "edge between ids: {line}");
            edges.push((from.to_owned(), to.to_owned()));
        } else if let Some((id, rest)) = line.split_once("[\"") {
            assert!(is_id(id), "node id: {line}");
            let label = rest
                .strip_suffix("\"]")
                .unwrap_or_else(|| panic!("closed label: {line}"));
            assert!(!label.contains('"'), "no raw quote in a label: {line}");
            nodes.insert(id.to_owned());
        } else if line.starts_with("classDef ") || line.starts_with("class ") {
            continue;
        } else {
            panic!("not a flowchart statement: {line}");
        }
    }
    for (from, to) in &edges {
        assert!(
            nodes.contains(from) && nodes.contains(to),
            "edge {from} --> {to} between defined nodes"
        );
    }
    (nodes, edges)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_draws_the_organization_with_phases() {
    let spec = OrgSpec {
        root_accounts: 1,
        ous: vec![
            OuSpec::new("Prod")
                .accounts(2)
                .child(OuSpec::new("Payments").accounts(1)),
            OuSpec::new("Dev").accounts(1),
            // AWS allows `/` in an OU's name: this one is not Payments under Prod.
            OuSpec::new("Prod/Payments").accounts(1),
        ],
    };
    let scenario = Scenario::start("tree", &spec).await;
    let Scenario { bed, org, ns, .. } = &scenario;
    let payments = org
        .accounts
        .iter()
        .find(|a| a.path == "Root/Prod/Payments")
        .expect("payments")
        .id
        .clone();
    // Payments' account has no member role.
    delete_role(bed, &payments, "OrganizationAccountAccessRole").await;
    scenario.connect("acme", serde_json::json!({})).await;
    let member_api: Api<MemberAccount> = ns.api();
    eventually("every account probed", Duration::from_secs(60), || async {
        let listed = members(&member_api).await;
        (listed.len() == 7
            && listed.iter().all(|m| {
                matches!(
                    m.status.as_ref().and_then(|s| s.phase),
                    Some(MemberPhase::Connected | MemberPhase::Blocked)
                )
            }))
        .then_some(())
    })
    .await;

    let kubeconfig = std::env::var(KUBECONFIG_ENV).expect("test bed kubeconfig");
    let env = [("KUBECONFIG", kubeconfig)];
    let json = orgconnect(&["tree", "acme", "-n", &ns.name, "--output", "json"], &env);
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let tree: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(tree["organizationId"], org.id.as_str());
    let root = &tree["root"];
    let ids = |unit: &serde_json::Value| -> BTreeSet<String> {
        unit["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .map(|a| a["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let seeded_under = |path: &str| -> BTreeSet<String> {
        org.accounts
            .iter()
            .filter(|a| a.path == path)
            .map(|a| a.id.clone())
            .collect()
    };
    assert_eq!(ids(root), seeded_under("Root"));
    let units: BTreeMap<&str, &serde_json::Value> = root["units"]
        .as_array()
        .expect("units")
        .iter()
        .map(|u| (u["name"].as_str().expect("name"), u))
        .collect();
    assert_eq!(
        units.keys().copied().collect::<Vec<_>>(),
        ["Dev", "Prod", "Prod/Payments"]
    );
    let slashed = seeded_under("Root/Prod\\/Payments");
    assert_eq!(slashed.len(), 1);
    assert_eq!(ids(units["Prod/Payments"]), slashed);
    assert!(
        units["Prod/Payments"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("ou-"))
    );
    assert_eq!(ids(units["Dev"]), seeded_under("Root/Dev"));
    assert_eq!(ids(units["Prod"]), seeded_under("Root/Prod"));
    let payments_unit = &units["Prod"]["units"][0];
    assert_eq!(units["Prod"]["units"].as_array().map(Vec::len), Some(1));
    assert_eq!(payments_unit["name"], "Payments");
    assert_eq!(ids(payments_unit), seeded_under("Root/Prod/Payments"));
    assert_eq!(payments_unit["accounts"][0]["phase"], "Blocked");
    assert_eq!(payments_unit["accounts"][0]["reason"], "AssumeRoleDenied");

    let text = orgconnect(&["tree", "acme", "-n", &ns.name], &env);
    let text = stdout(&text);
    assert!(
        !text.contains('\x1b'),
        "no color when not writing to a terminal"
    );
    assert!(
        text.contains("├── Prod/") || text.contains("└── Prod/"),
        "{text}"
    );
    assert!(text.contains(&format!("    └── {payments} ")), "{text}");
    assert!(
        text.contains("7 accounts: 1 Blocked, 6 Connected"),
        "{text}"
    );

    let mermaid = stdout(&orgconnect(
        &["tree", "acme", "-n", &ns.name, "--output", "mermaid"],
        &env,
    ));
    let (nodes, edges) = assert_mermaid_flowchart(&mermaid);
    assert_eq!(nodes.len(), 1 + 4 + 7, "root, four OUs, seven accounts");
    assert_eq!(
        edges.len(),
        4 + 7,
        "every OU and account hangs off its parent"
    );
    assert!(mermaid.contains(&format!("class a{payments} blocked")));

    let dot = stdout(&orgconnect(
        &["tree", "acme", "-n", &ns.name, "--output", "dot"],
        &env,
    ));
    assert!(dot.starts_with("digraph organization {") && dot.trim_end().ends_with('}'));

    let missing = orgconnect(&["tree", "nope", "-n", &ns.name], &env);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}

fn aws_env(bed: &AwsBed) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", bed.proxy.url()),
        (
            "AWS_ACCESS_KEY_ID",
            bed.credentials.access_key_id().to_owned(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            bed.credentials.secret_access_key().to_owned(),
        ),
        ("AWS_REGION", "us-east-1".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_on_a_healthy_organization_and_names_what_to_fix() {
    let bed = AwsBed::new().await;
    let org = seed(
        &bed.sdk_config(),
        &OrgSpec {
            root_accounts: 2,
            ous: vec![OuSpec::new("Prod").accounts(3)],
        },
    )
    .await;
    let role = managing_role(&org.managing_account_id);
    let env = aws_env(&bed);
    // The strict bed, with the managing role from the template.
    deploy_managing_role(
        &bed,
        "the-right-id",
        "OrganizationAccountAccessRole",
        |_| {},
    )
    .await;
    bed.proxy.enforce_iam();

    let healthy = orgconnect(
        &[
            "check",
            "--role-arn",
            &role,
            "--external-id",
            "the-right-id",
            "--all",
        ],
        &env,
    );
    let text = stdout(&healthy);
    assert!(
        healthy.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&healthy.stderr)
    );
    assert!(text.contains("PASS  assume role"), "{text}");
    assert!(
        text.contains("1 organizational units, 6 accounts"),
        "{text}"
    );
    assert!(text.contains("6 of 6 accounts reached"), "{text}");

    let json = orgconnect(
        &[
            "check",
            "--role-arn",
            &role,
            "--external-id",
            "the-right-id",
            "--output",
            "json",
        ],
        &env,
    );
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON report");
    assert_eq!(report["ok"], true);
    assert_eq!(report["steps"].as_array().map(Vec::len), Some(4));

    let denied = orgconnect(
        &["check", "--role-arn", &role, "--external-id", "a-wrong-id"],
        &env,
    );
    let text = stdout(&denied);
    assert_eq!(denied.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL  assume role"), "{text}");
    assert!(
        text.contains(r#""sts:ExternalId":"a-wrong-id""#),
        "prints the trust statement: {text}"
    );

    let mut ids = org.member_accounts().map(|a| a.id.clone());
    let blocked = [ids.next().expect("account"), ids.next().expect("account")];
    for account in &blocked {
        delete_role(&bed, account, "OrganizationAccountAccessRole").await;
    }
    let partly = orgconnect(
        &[
            "check",
            "--role-arn",
            &role,
            "--external-id",
            "the-right-id",
            "--all",
        ],
        &env,
    );
    let text = stdout(&partly);
    assert_eq!(partly.status.code(), Some(1), "{text}");
    assert!(
        text.contains("2 of 6 probed accounts are blocked"),
        "{text}"
    );
    for id in &blocked {
        assert!(
            text.contains(id.as_str()),
            "names blocked account {id}: {text}"
        );
    }
    assert!(text.contains("StackSet"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_as_a_delegated_administrator_skips_accounts_not_active_and_names_disabled_regions()
 {
    let bed = AwsBed::new().await;
    let org = seed(&bed.sdk_config(), &OrgSpec::flat(4)).await;
    let mut ids = org.member_accounts().map(|a| a.id.clone());
    let (admin, closed, disabled) = (
        ids.next().expect("account"),
        ids.next().expect("account"),
        ids.next().expect("account"),
    );
    bed.proxy.account_state([closed.clone()], "CLOSED");
    let role = managing_role(&admin);
    let env = aws_env(&bed);
    deploy_managing_role_in(&bed, &admin, "the-id", "OrganizationAccountAccessRole").await;
    bed.proxy.enforce_iam();
    let check = [
        "check",
        "--role-arn",
        role.as_str(),
        "--external-id",
        "the-id",
        "--all",
    ];

    // A member account without a delegation policy: refused, with the policy to attach.
    let refused = orgconnect(&check, &env);
    let text = stdout(&refused);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL  list organization"), "{text}");
    assert!(
        text.contains("put-resource-policy") && text.contains(&role),
        "prints the delegation policy: {text}"
    );

    aws_sdk_organizations::Client::new(&bed.sdk_config())
        .put_resource_policy()
        .content(orgconnect::templates::delegation_policy(&role).to_string())
        .send()
        .await
        .expect("PutResourcePolicy");
    bed.proxy.disable_region([disabled.clone()]);
    let checked = orgconnect(&check, &env);
    let text = stdout(&checked);
    assert!(text.contains("as a delegated administrator"), "{text}");
    assert!(text.contains("PASS  list organization"), "{text}");
    assert!(
        text.contains(&format!("{closed} CLOSED")) && text.contains("not ACTIVE, not probed"),
        "names the closed account it skipped: {text}"
    );
    assert!(
        text.contains(&disabled) && text.contains("activate STS in us-east-1"),
        "names the account whose region is disabled: {text}"
    );
    assert!(
        bed.proxy
            .assumed_roles()
            .iter()
            .all(|r| !r.contains(&closed)),
        "a CLOSED account is not probed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_tells_a_caller_without_sts_assume_role_what_to_attach() {
    let bed = AwsBed::new().await;
    let org = seed(&bed.sdk_config(), &OrgSpec::flat(1)).await;
    // The caller is an IAM user of another account, allowed nothing but GetCallerIdentity;
    // the role trusts it.
    let (account, admin) = bed.add_principal();
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*" }],
    });
    let (user, keys) = create_user(
        &bed,
        &bed.sdk_config_with(admin),
        &account,
        "checker",
        &policy,
    )
    .await;
    deploy_managing_role_trusting(
        &bed,
        &user,
        "the-id",
        "OrganizationAccountAccessRole",
        |_| {},
    )
    .await;
    bed.proxy.enforce_iam();
    let env = [
        ("AWS_ENDPOINT_URL", bed.proxy.url()),
        ("AWS_ACCESS_KEY_ID", keys.access_key_id().to_owned()),
        ("AWS_SECRET_ACCESS_KEY", keys.secret_access_key().to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ];
    let role = managing_role(&org.managing_account_id);
    let refused = orgconnect(
        &["check", "--role-arn", &role, "--external-id", "the-id"],
        &env,
    );
    let text = stdout(&refused);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL  assume role"), "{text}");
    assert!(
        text.contains(&format!(
            r#"attach this statement to it: {{"Action":"sts:AssumeRole","Effect":"Allow","Resource":"{role}"}}"#
        )),
        "{text}"
    );
    assert!(!text.contains("trust policy must contain"), "{text}");
}
