//! Roles in the emulated accounts made from the project's own templates: the managing role
//! is `orgconnect template managing-role` output deployed with CloudFormation into the
//! management account, so the strict bed (`FaultProxy::enforce_iam`) tests the template.

use aws_sdk_cloudformation::types::{Capability, StackStatus};
use orgconnect::templates::{ManagingRoleOptions, managing_role};

use super::aws::AwsBed;

/// The ARN the test's base keys act as, as GetCallerIdentity names it.
pub async fn base_principal(bed: &AwsBed) -> String {
    aws_sdk_sts::Client::new(&bed.sdk_config())
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity")
        .arn()
        .expect("caller ARN")
        .to_owned()
}

/// Deploys the managing-role template into the management account (the test's base
/// account): trusted by the test's base principal with `external_id`, reaching members
/// through `member_role`, with the StackSet permissions (`--stack-set`). `edit` may
/// change the template first (to remove a permission).
pub async fn deploy_managing_role(
    bed: &AwsBed,
    external_id: &str,
    member_role: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    deploy_managing_role_with(bed, &bed.sdk_config(), external_id, member_role, edit).await;
}

/// Like [`deploy_managing_role`], into member account `account` (a delegated
/// administrator), reached through its `OrganizationAccountAccessRole`.
pub async fn deploy_managing_role_in(
    bed: &AwsBed,
    account: &str,
    external_id: &str,
    member_role: &str,
) {
    let assumed = aws_sdk_sts::Client::new(&bed.sdk_config())
        .assume_role()
        .role_arn(format!(
            "arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
        ))
        .role_session_name("deploy-managing-role")
        .send()
        .await
        .expect("AssumeRole into the member account")
        .credentials
        .expect("credentials");
    let config = bed.sdk_config_with(aws_sdk_sts::config::Credentials::new(
        assumed.access_key_id(),
        assumed.secret_access_key(),
        Some(assumed.session_token().to_owned()),
        None,
        "deploy",
    ));
    deploy_managing_role_with(bed, &config, external_id, member_role, |_| {}).await;
}

async fn deploy_managing_role_with(
    bed: &AwsBed,
    config: &aws_config::SdkConfig,
    external_id: &str,
    member_role: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    let principal = orgconnect::aws::arn::trust_principal(&base_principal(bed).await);
    let mut template = managing_role(&ManagingRoleOptions {
        principal: Some(principal),
        external_id: Some(external_id.to_owned()),
        member_role_name: Some(member_role.to_owned()),
        stack_set: true,
        ..ManagingRoleOptions::default()
    });
    edit(&mut template);
    let cloudformation = aws_sdk_cloudformation::Client::new(config);
    cloudformation
        .create_stack()
        .stack_name("orgconnect")
        .template_body(template.to_string())
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
        .expect("CreateStack of the managing-role template");
    let status = cloudformation
        .describe_stacks()
        .stack_name("orgconnect")
        .send()
        .await
        .expect("DescribeStacks")
        .stacks()
        .first()
        .and_then(|s| s.stack_status().cloned());
    assert_eq!(
        status,
        Some(StackStatus::CreateComplete),
        "the managing-role stack"
    );
}

/// Removes `action` from every statement of the managing role's permissions policy.
pub fn without_action(template: &mut serde_json::Value, action: &str) {
    let Some(policies) =
        template["Resources"]["OrgconnectRole"]["Properties"]["Policies"].as_array_mut()
    else {
        panic!("the template has no inline policies");
    };
    let mut removed = false;
    for policy in policies {
        let Some(statements) = policy["PolicyDocument"]["Statement"].as_array_mut() else {
            continue;
        };
        for statement in statements {
            if let Some(actions) = statement["Action"].as_array_mut() {
                let before = actions.len();
                actions.retain(|a| a.as_str() != Some(action));
                removed |= actions.len() != before;
            }
        }
    }
    assert!(removed, "the template grants {action}");
}
