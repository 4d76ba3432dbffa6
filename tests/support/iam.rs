//! Roles in the emulated accounts made from the project's own templates: the managing role
//! is `orgconnect template managing-role` output deployed with CloudFormation into the
//! management account, so the strict bed (`FaultProxy::enforce_iam`) tests the template;
//! member roles made by hand are `orgconnect template member-stackset` output.

use aws_sdk_cloudformation::types::{Capability, StackStatus};
use orgconnect::templates::{
    ManagingRoleOptions, MemberRoleOptions, managing_role, member_role as member_role_template,
};

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
    let principal = base_principal(bed).await;
    deploy_managing_role_trusting(bed, &principal, external_id, member_role, edit).await;
}

/// Like [`deploy_managing_role`], trusting `principal` (the ARN the operator acts as).
pub async fn deploy_managing_role_trusting(
    bed: &AwsBed,
    principal: &str,
    external_id: &str,
    member_role: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    let template = managing_role_template(principal, external_id, member_role, edit);
    create_stack(&bed.sdk_config(), "orgconnect", &template.to_string()).await;
}

/// Creates IAM user `name` with the inline identity policy `policy`, acting as `admin` (an
/// administrator of the user's account), and gives it access keys the proxy holds: the
/// user's ARN and keys.
pub async fn create_user(
    bed: &AwsBed,
    admin: &aws_config::SdkConfig,
    account: &str,
    name: &str,
    policy: &serde_json::Value,
) -> (String, aws_sdk_sts::config::Credentials) {
    let iam = aws_sdk_iam::Client::new(admin);
    let user = iam
        .create_user()
        .user_name(name)
        .send()
        .await
        .expect("CreateUser")
        .user
        .expect("the user");
    iam.put_user_policy()
        .user_name(name)
        .policy_name("orgconnect")
        .policy_document(policy.to_string())
        .send()
        .await
        .expect("PutUserPolicy");
    let key = iam
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .expect("CreateAccessKey")
        .access_key
        .expect("the key");
    bed.proxy
        .map_principal(key.access_key_id(), key.secret_access_key(), account);
    let credentials = aws_sdk_sts::config::Credentials::new(
        key.access_key_id(),
        key.secret_access_key(),
        None,
        None,
        "orgconnect-tests",
    );
    (user.arn().to_owned(), credentials)
}

/// Like [`deploy_managing_role`], into member account `account` (a delegated
/// administrator), reached through its `OrganizationAccountAccessRole`.
pub async fn deploy_managing_role_in(
    bed: &AwsBed,
    account: &str,
    external_id: &str,
    member_role: &str,
) {
    let config = in_account(bed, account).await;
    deploy_managing_role_as(bed, &config, external_id, member_role).await;
}

/// Like [`deploy_managing_role`], acting as `config` (an identity in the account the role
/// goes to).
pub async fn deploy_managing_role_as(
    bed: &AwsBed,
    config: &aws_config::SdkConfig,
    external_id: &str,
    member_role: &str,
) {
    deploy_managing_role_with(bed, config, external_id, member_role, |_| {}).await;
}

/// Deploys `orgconnect template member-stackset` (the member role a StackSet makes, here
/// made by hand as a user would) into member account `account`, trusted by the managing
/// role `managing_role_arn`.
pub async fn deploy_member_role(
    bed: &AwsBed,
    account: &str,
    managing_role_arn: &str,
    member_role: &str,
) {
    let managing: orgconnect::aws::arn::RoleArn =
        managing_role_arn.parse().expect("a managing role ARN");
    let template = member_role_template(&MemberRoleOptions {
        managing_account_id: Some(managing.account_id.clone()),
        managing_role_name: Some(managing.name.clone()),
        member_role_name: Some(member_role.to_owned()),
        ..MemberRoleOptions::default()
    });
    create_stack(
        &in_account(bed, account).await,
        "orgconnect-member",
        &template.to_string(),
    )
    .await;
}

/// Deploys a template the test already has (for example `orgconnect template` output)
/// as stack `orgconnect`, acting as `config`.
pub async fn deploy_template(config: &aws_config::SdkConfig, body: &str) {
    create_stack(config, "orgconnect", body).await;
}

/// SDK configuration acting in member account `account` through its
/// `OrganizationAccountAccessRole`, as an administrator of the organization would.
pub async fn in_account(bed: &AwsBed, account: &str) -> aws_config::SdkConfig {
    let assumed = aws_sdk_sts::Client::new(&bed.sdk_config())
        .assume_role()
        .role_arn(format!(
            "arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
        ))
        .role_session_name("deploy-by-hand")
        .send()
        .await
        .expect("AssumeRole into the member account")
        .credentials
        .expect("credentials");
    bed.sdk_config_with(aws_sdk_sts::config::Credentials::new(
        assumed.access_key_id(),
        assumed.secret_access_key(),
        Some(assumed.session_token().to_owned()),
        None,
        "deploy",
    ))
}

async fn deploy_managing_role_with(
    bed: &AwsBed,
    config: &aws_config::SdkConfig,
    external_id: &str,
    member_role: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    let principal = base_principal(bed).await;
    let template = managing_role_template(&principal, external_id, member_role, edit);
    create_stack(config, "orgconnect", &template.to_string()).await;
}

/// The managing-role template trusting `principal` with `external_id`, reaching members
/// through `member_role`, with the StackSet permissions, after `edit`.
fn managing_role_template(
    principal: &str,
    external_id: &str,
    member_role: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> serde_json::Value {
    let mut template = managing_role(&ManagingRoleOptions {
        principal: Some(orgconnect::aws::arn::trust_principal(principal)),
        external_id: Some(external_id.to_owned()),
        member_role_name: Some(member_role.to_owned()),
        stack_set: true,
        ..ManagingRoleOptions::default()
    });
    edit(&mut template);
    template
}

/// Creates stack `name` from `body` with CloudFormation and asserts it completed.
async fn create_stack(config: &aws_config::SdkConfig, name: &str, body: &str) {
    let cloudformation = aws_sdk_cloudformation::Client::new(config);
    cloudformation
        .create_stack()
        .stack_name(name)
        .template_body(body)
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateStack {name}: {e:?}"));
    let status = cloudformation
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .expect("DescribeStacks")
        .stacks()
        .first()
        .and_then(|s| s.stack_status().cloned());
    assert_eq!(status, Some(StackStatus::CreateComplete), "stack {name}");
}

/// Removes `action` from every statement of the managing role's permissions policy.
pub fn without_action(template: &mut serde_json::Value, action: &str) {
    replace_action(template, action, &[]);
}

/// Grants `instead` wherever the managing-role template grants `action`, as an older
/// template did.
pub fn replace_action(template: &mut serde_json::Value, action: &str, instead: &[&str]) {
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
                if actions.len() != before {
                    removed = true;
                    actions.extend(instead.iter().map(|a| serde_json::Value::from(*a)));
                }
            }
        }
    }
    assert!(removed, "the template grants {action}");
}

/// Deletes role `name` in member account `account` (for an account that lacks it, as
/// an invited account lacks `OrganizationAccountAccessRole`).
pub async fn delete_role(bed: &AwsBed, account: &str, name: &str) {
    aws_sdk_iam::Client::new(&in_account(bed, account).await)
        .delete_role()
        .role_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DeleteRole {name} in {account}: {e:?}"));
}

/// Whether role `name` exists in member account `account`.
pub async fn role_exists(bed: &AwsBed, account: &str, name: &str) -> bool {
    aws_sdk_iam::Client::new(&in_account(bed, account).await)
        .get_role()
        .role_name(name)
        .send()
        .await
        .is_ok()
}

/// Role `name`, trusted as `trust` says and allowed `sts:AssumeRole` anywhere (the managing
/// role's trust policy decides): the role a sync Job runs as. Its ARN.
pub async fn create_job_role(
    iam: &aws_sdk_iam::Client,
    name: &str,
    trust: &serde_json::Value,
) -> String {
    let role = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .expect("CreateRole")
        .role
        .expect("role");
    let policy = serde_json::json!({ "Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*",
    }]});
    iam.put_role_policy()
        .role_name(name)
        .policy_name("reach-the-organization")
        .policy_document(policy.to_string())
        .send()
        .await
        .expect("PutRolePolicy");
    role.arn().to_owned()
}
