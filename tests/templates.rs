//! The CloudFormation templates `orgconnect template` prints: they pass cfn-lint at both
//! policy levels and in both formats, and fill themselves from a connection.

mod support;

use std::process::Command;

use kube::api::Api;
use orgconnect::api::AwsOrgConnection;
use support::kube::{KUBECONFIG_ENV, TestNamespace};
use support::operator::apply_connection;

fn orgconnect(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_orgconnect"))
        .args(args)
        .output()
        .expect("orgconnect runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn every_template_passes_cfn_lint() {
    let lint = std::env::var("ORGCONNECT_TESTBED_CFN_LINT").expect("the test bed's cfn-lint");
    let dir = std::env::temp_dir().join(format!("orgconnect-templates-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut files = Vec::new();
    for kind in ["managing-role", "member-stackset"] {
        for policy in ["data-only", "data-and-scheduling"] {
            for format in ["yaml", "json"] {
                let text = orgconnect(&["template", kind, "--policy", policy, "--format", format]);
                let parsed: serde_json::Value = if format == "json" {
                    serde_json::from_str(&text).expect("JSON parses back")
                } else {
                    serde_yaml::from_str(&text).expect("YAML parses back")
                };
                assert_eq!(parsed["AWSTemplateFormatVersion"], "2010-09-09");
                let file = dir.join(format!("{kind}-{policy}.{format}"));
                std::fs::write(&file, text).expect("write template");
                files.push(file);
            }
        }
    }
    // The managing role with the StackSet permissions and sync Job roles too.
    let text = orgconnect(&[
        "template",
        "managing-role",
        "--stack-set",
        "--trust",
        "arn:aws:iam::999999999999:role/inventory-sync",
    ]);
    let parsed: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML parses back");
    let statements = serde_yaml::to_string(
        &parsed["Resources"]["OrgconnectRole"]["Properties"]["Policies"][0]["PolicyDocument"],
    )
    .expect("the policy");
    for action in orgconnect::templates::STACK_SET_ACTIONS {
        assert!(statements.contains(action), "--stack-set grants {action}");
    }
    let file = dir.join("managing-role-stack-set.yaml");
    std::fs::write(&file, text).expect("write template");
    files.push(file);
    let output = Command::new(lint)
        .args(&files)
        .output()
        .expect("cfn-lint runs");
    assert!(
        output.status.success(),
        "cfn-lint: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn templates_fill_themselves_from_a_connection() {
    let ns = TestNamespace::new("template").await;
    let connections: Api<AwsOrgConnection> = ns.api();
    apply_connection(
        &connections,
        "acme",
        serde_json::json!({
            "roleArn": "arn:aws:iam::111122223333:role/org-reader",
            "externalId": "ext-12345",
            "accessPolicy": "DataAndScheduling",
            "memberAccess": { "roleName": "AuditRole" },
        }),
    )
    .await;
    let kubeconfig = std::env::var(KUBECONFIG_ENV).expect("kubeconfig");
    let run = |kind: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_orgconnect"))
            .args([
                "template",
                kind,
                "--connection",
                "acme",
                "-n",
                &ns.name,
                "--format",
                "json",
            ])
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("orgconnect runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).expect("JSON")
    };
    let managing = run("managing-role");
    assert_eq!(managing["Parameters"]["ExternalId"]["Default"], "ext-12345");
    assert_eq!(
        managing["Parameters"]["MemberRoleName"]["Default"],
        "AuditRole"
    );
    assert!(
        managing["Description"]
            .as_str()
            .is_some_and(|d| d.contains("scheduling"))
    );
    let member = run("member-stackset");
    assert_eq!(
        member["Parameters"]["ManagingAccountId"]["Default"],
        "111122223333"
    );
    assert_eq!(
        member["Parameters"]["ManagingRoleName"]["Default"],
        "org-reader"
    );
}
