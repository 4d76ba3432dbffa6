//! CloudFormation templates, pure: the managing-account role the operator assumes, and
//! the least-privilege member role a service-managed StackSet installs in every account.
//! Both come in the two permission levels of `accessPolicy`.

use serde_json::{Value, json};

use crate::api::connection::AccessPolicy;

/// The tag that marks instances the scheduling level may start and stop.
pub const SCHEDULE_TAG: &str = "orgconnect:schedule";
/// The member role the StackSet template installs, unless told otherwise.
pub const DEFAULT_MEMBER_ROLE: &str = "OrgconnectMemberRole";
/// The managing role the managing-role template creates, unless told otherwise.
pub const DEFAULT_MANAGING_ROLE: &str = "orgconnect";

/// What the managing-role template is filled with.
#[derive(Clone, Debug, Default)]
pub struct ManagingRoleOptions {
    pub policy: AccessPolicy,
    /// The principal the operator runs as (its IAM role or user ARN).
    pub principal: Option<String>,
    pub external_id: Option<String>,
    /// The role the operator assumes in member accounts.
    pub member_role_name: Option<String>,
    /// Also grant what an operator-managed StackSet (`spec.stackSet.enabled`) needs.
    pub stack_set: bool,
    /// The role's name (default `orgconnect`) and IAM path (default `/`).
    pub role_name: Option<String>,
    pub role_path: Option<String>,
    /// More principals trusted with the same ExternalId beside `principal`: the roles
    /// sync Jobs run as (IRSA, EKS Pod Identity).
    pub job_principals: Vec<String>,
}

/// What the member-role template is filled with.
#[derive(Clone, Debug, Default)]
pub struct MemberRoleOptions {
    pub policy: AccessPolicy,
    pub managing_account_id: Option<String>,
    /// The managing role's name and IAM path (`/` when it has none).
    pub managing_role_name: Option<String>,
    pub managing_role_path: Option<String>,
    pub member_role_name: Option<String>,
}

fn parameter(description: &str, default: Option<&str>, pattern: &str) -> Value {
    let mut parameter = json!({
        "Type": "String",
        "Description": description,
        "AllowedPattern": pattern,
    });
    if let Some(default) = default {
        parameter["Default"] = Value::from(default);
    }
    parameter
}

/// Read-only usage, billing and inventory data: the `DataOnly` level.
fn usage_data_statements() -> Value {
    json!([
        {
            "Sid": "UsageAndBilling",
            "Effect": "Allow",
            "Action": [
                "ce:Get*", "ce:Describe*", "ce:List*",
                "cur:DescribeReportDefinitions",
                "budgets:ViewBudget",
                "pricing:GetProducts",
            ],
            "Resource": "*",
        },
        {
            "Sid": "Inventory",
            "Effect": "Allow",
            "Action": [
                "ec2:Describe*", "rds:Describe*", "rds:ListTagsForResource",
                "s3:ListAllMyBuckets", "s3:GetBucketLocation", "s3:GetBucketTagging",
                "iam:ListAccountAliases",
                "cloudwatch:GetMetricData", "cloudwatch:ListMetrics",
                "tag:GetResources",
            ],
            "Resource": "*",
        },
    ])
}

/// Starting and stopping tagged instances: added by the `DataAndScheduling` level.
fn scheduling_statements() -> Value {
    json!([{
        "Sid": "ScheduleTaggedInstances",
        "Effect": "Allow",
        "Action": [
            "ec2:StartInstances", "ec2:StopInstances",
            "rds:StartDBInstance", "rds:StopDBInstance",
        ],
        "Resource": "*",
        "Condition": { "StringEquals": { format!("aws:ResourceTag/{SCHEDULE_TAG}"): "enabled" } },
    }])
}

fn policy_document(statements: Vec<Value>) -> Value {
    json!({ "Version": "2012-10-17", "Statement": statements })
}

fn level_statements(policy: AccessPolicy) -> Vec<Value> {
    let mut statements: Vec<Value> = usage_data_statements()
        .as_array()
        .cloned()
        .unwrap_or_default();
    if policy == AccessPolicy::DataAndScheduling {
        statements.extend(
            scheduling_statements()
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    statements
}

fn level_name(policy: AccessPolicy) -> &'static str {
    match policy {
        AccessPolicy::DataOnly => "data only",
        AccessPolicy::DataAndScheduling => "data and scheduling",
    }
}

/// The AWS Organizations calls discovery makes, which a delegation policy must allow a
/// delegated administrator.
pub const DISCOVERY_ACTIONS: [&str; 5] = [
    "organizations:DescribeOrganization",
    "organizations:ListRoots",
    "organizations:ListOrganizationalUnitsForParent",
    "organizations:ListAccountsForParent",
    "organizations:ListTagsForResource",
];

/// The resource-based delegation policy that lets the managing role `role_arn`, in a
/// member account, list the organization as a delegated administrator. It is attached in
/// the management account (`aws organizations put-resource-policy --content …`).
pub fn delegation_policy(role_arn: &str) -> Value {
    policy_document(vec![json!({
        "Sid": "OrgconnectDiscovery",
        "Effect": "Allow",
        "Principal": { "AWS": role_arn },
        "Action": DISCOVERY_ACTIONS,
        "Resource": "*",
    })])
}

/// The CloudFormation calls the operator makes to keep its StackSet (create, update,
/// deploy, remove, follow operations).
pub const STACK_SET_ACTIONS: [&str; 10] = [
    "cloudformation:CreateStackSet",
    "cloudformation:UpdateStackSet",
    "cloudformation:DeleteStackSet",
    "cloudformation:DescribeStackSet",
    "cloudformation:DescribeStackSetOperation",
    "cloudformation:ListStackSetOperationResults",
    "cloudformation:ListStackInstances",
    "cloudformation:CreateStackInstances",
    "cloudformation:DeleteStackInstances",
    "cloudformation:DetectStackSetDrift",
];

fn stack_set_statement() -> Value {
    // A StackSet's ARN carries an id AWS picks at creation, and a user may name it
    // (`spec.stackSet.name`), so the statement cannot narrow the resource further.
    json!({
        "Sid": "ManageMemberRoleStackSet",
        "Effect": "Allow",
        "Action": STACK_SET_ACTIONS,
        "Resource": "*",
    })
}

const ARN_PATTERN: &str = "^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:.+$";
const ROLE_NAME_PATTERN: &str = "^[A-Za-z0-9_+=,.@-]{1,64}$";
const ROLE_PATH_PATTERN: &str = "^/([A-Za-z0-9_+=,.@-]+/)*$";

/// The managing-account role: trusted by the operator's principal with the ExternalId,
/// allowed to read the organization, assume the member role in its accounts, and read
/// (and at the scheduling level, start and stop tagged) resources.
///
/// Long on purpose: it is one CloudFormation document, kept whole so it reads top to
/// bottom as the stack a user deploys.
pub fn managing_role(options: &ManagingRoleOptions) -> Value {
    let member_role = options
        .member_role_name
        .as_deref()
        .unwrap_or(DEFAULT_MEMBER_ROLE);
    let mut statements = vec![
        json!({
            "Sid": "ReadOrganization",
            "Effect": "Allow",
            "Action": DISCOVERY_ACTIONS,
            "Resource": "*",
        }),
        // Member roles of this organization only: a role of the same name elsewhere that
        // trusts this one cannot be reached with the ExternalId-protected session.
        json!({
            "Sid": "ReachMemberAccounts",
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Resource": { "Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${MemberRoleName}" },
            // An IAM policy variable, resolved by IAM (CloudFormation leaves a plain string).
            "Condition": { "StringEquals": { "aws:ResourceOrgID": "${aws:PrincipalOrgID}" } },
        }),
        // Before a sync run, the operator checks that this role trusts the run's identity.
        json!({
            "Sid": "ReadOwnTrustPolicy",
            "Effect": "Allow",
            "Action": "iam:GetRole",
            "Resource": { "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role${RolePath}${RoleName}" },
        }),
    ];
    if options.stack_set {
        statements.push(stack_set_statement());
    }
    let mut trusted = vec![json!({ "Ref": "TrustedPrincipal" })];
    trusted.extend(
        options
            .job_principals
            .iter()
            .map(|p| Value::from(p.clone())),
    );
    let trusted = if trusted.len() == 1 {
        trusted.remove(0)
    } else {
        Value::from(trusted)
    };
    statements.extend(level_statements(options.policy));
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!(
            "orgconnect managing-account role ({}): assumed by the orgconnect operator with an ExternalId",
            level_name(options.policy)
        ),
        "Parameters": {
            "TrustedPrincipal": parameter(
                "ARN of the IAM role or user the orgconnect operator runs as",
                options.principal.as_deref(),
                ARN_PATTERN,
            ),
            "ExternalId": parameter(
                "The connection's ExternalId (status.externalId of the AwsOrgConnection)",
                options.external_id.as_deref(),
                "^[A-Za-z0-9_+=,.@:/-]{2,1224}$",
            ),
            "RoleName": parameter(
                "Name of the role to create",
                Some(options.role_name.as_deref().unwrap_or(DEFAULT_MANAGING_ROLE)),
                ROLE_NAME_PATTERN,
            ),
            "RolePath": parameter(
                "IAM path of the role to create (/ for none, else /team/)",
                Some(options.role_path.as_deref().unwrap_or("/")),
                ROLE_PATH_PATTERN,
            ),
            "MemberRoleName": parameter(
                "Role the operator assumes in member accounts",
                Some(member_role),
                ROLE_NAME_PATTERN,
            ),
        },
        "Resources": {
            "OrgconnectRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": { "Ref": "RoleName" },
                    "Path": { "Ref": "RolePath" },
                    "Description": "Assumed by the orgconnect operator",
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": policy_document(vec![json!({
                        "Effect": "Allow",
                        "Principal": { "AWS": trusted },
                        "Action": "sts:AssumeRole",
                        "Condition": { "StringEquals": { "sts:ExternalId": { "Ref": "ExternalId" } } },
                    })]),
                    "Policies": [{
                        "PolicyName": "orgconnect",
                        "PolicyDocument": policy_document(statements),
                    }],
                },
            },
        },
        "Outputs": {
            "RoleArn": {
                "Description": "Put this in the AwsOrgConnection's spec.roleArn",
                "Value": { "Fn::GetAtt": ["OrgconnectRole", "Arn"] },
            },
        },
    })
}

/// The member role for a service-managed StackSet: trusted by the managing account's
/// orgconnect role only, with the same permission level.
pub fn member_role(options: &MemberRoleOptions) -> Value {
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!(
            "orgconnect member-account role ({}), deployed to every account by a service-managed StackSet",
            level_name(options.policy)
        ),
        "Parameters": {
            "ManagingAccountId": parameter(
                "The organization's managing account",
                options.managing_account_id.as_deref(),
                "^[0-9]{12}$",
            ),
            "ManagingRoleName": parameter(
                "The orgconnect role in the managing account",
                Some(options.managing_role_name.as_deref().unwrap_or(DEFAULT_MANAGING_ROLE)),
                ROLE_NAME_PATTERN,
            ),
            "ManagingRolePath": parameter(
                "The IAM path of the orgconnect role (/ for none, else /team/)",
                Some(options.managing_role_path.as_deref().unwrap_or("/")),
                ROLE_PATH_PATTERN,
            ),
            "RoleName": parameter(
                "Name of the member role (the connection's memberAccess.roleName)",
                Some(options.member_role_name.as_deref().unwrap_or(DEFAULT_MEMBER_ROLE)),
                ROLE_NAME_PATTERN,
            ),
        },
        "Resources": {
            "OrgconnectMemberRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": { "Ref": "RoleName" },
                    "Description": "Assumed by the orgconnect managing role",
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": policy_document(vec![json!({
                        "Effect": "Allow",
                        "Principal": { "AWS": {
                            "Fn::Sub": "arn:${AWS::Partition}:iam::${ManagingAccountId}:role${ManagingRolePath}${ManagingRoleName}"
                        } },
                        "Action": "sts:AssumeRole",
                    })]),
                    "Policies": [{
                        "PolicyName": "orgconnect",
                        "PolicyDocument": policy_document(level_statements(options.policy)),
                    }],
                },
            },
        },
        "Outputs": {
            "RoleArn": { "Value": { "Fn::GetAtt": ["OrgconnectMemberRole", "Arn"] } },
        },
    })
}

/// The template as YAML (the default) or JSON.
pub fn render(template: &Value, json: bool) -> Result<String, serde_yaml::Error> {
    if json {
        Ok(serde_json::to_string_pretty(template).unwrap_or_default() + "\n")
    } else {
        serde_yaml::to_string(template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(template: &Value, resource: &str) -> Vec<Value> {
        template["Resources"][resource]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn actions(statements: &[Value]) -> Vec<String> {
        statements
            .iter()
            .flat_map(|s| match &s["Action"] {
                Value::String(a) => vec![a.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => vec![],
            })
            .collect()
    }

    /// Every IAM policy document: a version, and statements with Effect, Action, Resource
    /// (or Principal for a trust policy).
    fn assert_well_formed(document: &Value, trust: bool) {
        assert_eq!(document["Version"], "2012-10-17");
        let statements = document["Statement"].as_array().expect("statements");
        assert!(!statements.is_empty());
        for statement in statements {
            assert!(
                matches!(statement["Effect"].as_str(), Some("Allow" | "Deny")),
                "{statement}"
            );
            assert!(
                statement["Action"].is_string() || statement["Action"].is_array(),
                "{statement}"
            );
            if trust {
                assert!(statement["Principal"].is_object(), "{statement}");
            } else {
                assert!(!statement["Resource"].is_null(), "{statement}");
            }
        }
    }

    #[test]
    fn sync_job_roles_are_trusted_beside_the_operator_with_the_same_external_id() {
        let template = managing_role(&ManagingRoleOptions {
            job_principals: vec!["arn:aws:iam::999999999999:role/sync-irsa".into()],
            ..ManagingRoleOptions::default()
        });
        let trust =
            &template["Resources"]["OrgconnectRole"]["Properties"]["AssumeRolePolicyDocument"];
        assert_well_formed(trust, true);
        assert_eq!(
            trust["Statement"][0]["Principal"]["AWS"],
            json!([{ "Ref": "TrustedPrincipal" }, "arn:aws:iam::999999999999:role/sync-irsa"])
        );
        assert_eq!(
            trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"]["Ref"],
            "ExternalId"
        );
    }

    #[test]
    fn managing_role_trusts_the_principal_with_the_external_id() {
        let template = managing_role(&ManagingRoleOptions {
            principal: Some("arn:aws:iam::999999999999:role/operator".into()),
            external_id: Some("oc-abc".into()),
            ..ManagingRoleOptions::default()
        });
        let role = &template["Resources"]["OrgconnectRole"]["Properties"];
        let trust = &role["AssumeRolePolicyDocument"];
        assert_well_formed(trust, true);
        assert_eq!(
            trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"]["Ref"],
            "ExternalId"
        );
        assert_eq!(template["Parameters"]["ExternalId"]["Default"], "oc-abc");
        assert_eq!(
            template["Parameters"]["TrustedPrincipal"]["Default"],
            "arn:aws:iam::999999999999:role/operator"
        );
        assert_well_formed(&role["Policies"][0]["PolicyDocument"], false);
        let granted = actions(&statements(&template, "OrgconnectRole"));
        for action in DISCOVERY_ACTIONS {
            assert!(granted.contains(&action.to_owned()), "{action}");
        }
        assert!(
            !granted
                .iter()
                .any(|a| a.ends_with('*') && a.starts_with("organizations:")),
            "only the Organizations calls the operator makes: {granted:?}"
        );
        assert!(granted.contains(&"sts:AssumeRole".to_owned()));
        let reach = &statements(&template, "OrgconnectRole")
            .into_iter()
            .find(|s| s["Sid"] == "ReachMemberAccounts")
            .expect("the member-role statement");
        assert_eq!(
            reach["Condition"]["StringEquals"]["aws:ResourceOrgID"], "${aws:PrincipalOrgID}",
            "member roles of the caller's own organization only"
        );
        assert!(
            !granted.contains(&"ec2:StopInstances".to_owned()),
            "DataOnly cannot stop instances"
        );
        assert_eq!(
            template["Outputs"]["RoleArn"]["Value"]["Fn::GetAtt"][0],
            "OrgconnectRole"
        );
    }

    #[test]
    fn scheduling_level_adds_tag_limited_start_and_stop() {
        for (policy, can_stop) in [
            (AccessPolicy::DataOnly, false),
            (AccessPolicy::DataAndScheduling, true),
        ] {
            let template = member_role(&MemberRoleOptions {
                policy,
                managing_account_id: Some("111111111111".into()),
                ..MemberRoleOptions::default()
            });
            let granted = statements(&template, "OrgconnectMemberRole");
            assert_eq!(
                actions(&granted).contains(&"ec2:StopInstances".to_owned()),
                can_stop,
                "{policy:?}"
            );
            if can_stop {
                let scheduling = granted
                    .iter()
                    .find(|s| s["Sid"] == "ScheduleTaggedInstances")
                    .expect("statement");
                assert_eq!(
                    scheduling["Condition"]["StringEquals"]["aws:ResourceTag/orgconnect:schedule"],
                    "enabled"
                );
            }
            let trust = &template["Resources"]["OrgconnectMemberRole"]["Properties"]["AssumeRolePolicyDocument"];
            assert_well_formed(trust, true);
            let principal = trust["Statement"][0]["Principal"]["AWS"]["Fn::Sub"]
                .as_str()
                .expect("principal");
            assert!(
                principal
                    .contains("${ManagingAccountId}:role${ManagingRolePath}${ManagingRoleName}")
            );
        }
    }

    #[test]
    fn renders_as_yaml_or_json_and_parses_back() {
        let template = managing_role(&ManagingRoleOptions::default());
        let yaml = render(&template, false).expect("yaml");
        let back: Value = serde_yaml::from_str(&yaml).expect("YAML parses back");
        assert_eq!(back, template);
        let json = render(&template, true).expect("json");
        let back: Value = serde_json::from_str(&json).expect("JSON parses back");
        assert_eq!(back, template);
        assert!(
            template["Parameters"]["TrustedPrincipal"]
                .get("Default")
                .is_none()
        );
    }
}
