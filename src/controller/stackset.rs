//! The operator-managed StackSet of a connection (`spec.stackSet.enabled`): create it,
//! deploy it to the organization, follow its operations, update it when the policy level
//! changes, and delete it on revoke.

use std::time::Duration;

use kube::ResourceExt;

use crate::api::AwsOrgConnection;
use crate::api::condition::ConditionStatus;
use crate::api::connection::StackSetStatus;
use crate::aws::arn::RoleArn;
use crate::aws::stackset::{self, DesiredStackSet};
use crate::aws::{AwsFailure, FailureKind};
use crate::templates::{MemberRoleOptions, member_role};

use super::connection_status::Verdict;

/// How often a running operation is checked.
pub const OPERATION_POLL: Duration = Duration::from_secs(10);

/// The StackSet's name: `spec.stackSet.name`, else `orgconnect-<namespace>-<connection>`
/// shortened to CloudFormation's 128 characters.
pub fn stack_set_name(connection: &AwsOrgConnection) -> String {
    if let Some(name) = &connection.spec.stack_set.name {
        return name.clone();
    }
    let raw = format!(
        "orgconnect-{}-{}",
        connection.namespace().unwrap_or_default(),
        connection.name_any()
    );
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect();
    cleaned
}

/// The StackSet the connection's spec calls for, given its organization's root.
pub fn desired(connection: &AwsOrgConnection, root_id: &str) -> Option<DesiredStackSet> {
    let managing: RoleArn = connection.spec.role_arn.parse().ok()?;
    let spec = &connection.spec.stack_set;
    let template = member_role(&MemberRoleOptions {
        policy: connection.spec.access_policy,
        managing_account_id: Some(managing.account_id.clone()),
        managing_role_name: Some(managing.name.clone()),
        member_role_name: Some(connection.spec.member_access.role_name.clone()),
    });
    Some(DesiredStackSet {
        name: stack_set_name(connection),
        template_body: serde_json::to_string(&template).ok()?,
        parameters: vec![
            ("ManagingAccountId".to_owned(), managing.account_id.clone()),
            ("ManagingRoleName".to_owned(), managing.name.clone()),
            (
                "RoleName".to_owned(),
                connection.spec.member_access.role_name.clone(),
            ),
        ],
        targets: if spec.organizational_units.is_empty() {
            vec![root_id.to_owned()]
        } else {
            spec.organizational_units.clone()
        },
        regions: if spec.regions.is_empty() {
            vec![connection.spec.region.clone()]
        } else {
            spec.regions.clone()
        },
    })
}

/// The condition for a failed StackSet call, naming the console step or API call.
pub fn failure_verdict(failure: &AwsFailure) -> Verdict {
    let message = failure.message.to_lowercase();
    if message.contains("trusted access") || message.contains("organizations access") {
        return (
            ConditionStatus::False,
            "TrustedAccessNotEnabled",
            format!(
                "{failure}. Enable trusted access for StackSets in the managing account: CloudFormation \
                 console > StackSets > Enable trusted access, or `aws organizations \
                 enable-aws-service-access --service-principal member.org.stacksets.cloudformation.amazonaws.com`"
            ),
        );
    }
    if failure.kind == FailureKind::AccessDenied {
        return (
            ConditionStatus::False,
            "StackSetPermissionDenied",
            format!(
                "{failure}. The managing role needs cloudformation:*StackSet* and \
                 cloudformation:*StackInstances* (and iam:PassRole is not needed for service-managed StackSets)"
            ),
        );
    }
    (
        ConditionStatus::False,
        "StackSetFailed",
        failure.to_string(),
    )
}

/// One step towards the desired StackSet. Returns the condition, the new status and, when
/// an operation is still running, how soon to look again; `deployed` tells whether an
/// operation just succeeded (members should be probed again).
pub struct Progress {
    pub verdict: Verdict,
    pub status: StackSetStatus,
    pub poll: Option<Duration>,
    pub deployed: bool,
}

pub async fn ensure(
    client: &aws_sdk_cloudformation::Client,
    desired: &DesiredStackSet,
    previous: Option<&StackSetStatus>,
) -> Result<Progress, AwsFailure> {
    let mut status = StackSetStatus {
        name: desired.name.clone(),
        ..previous.cloned().unwrap_or_default()
    };
    let running = |status: StackSetStatus, what: &str| Progress {
        verdict: (
            ConditionStatus::Unknown,
            "OperationRunning",
            format!(
                "{what}: operation {} is running",
                status.operation_id.clone().unwrap_or_default()
            ),
        ),
        status,
        poll: Some(OPERATION_POLL),
        deployed: false,
    };
    let existing = match stackset::describe(client, &desired.name).await? {
        None => {
            stackset::create(client, desired).await?;
            let operation = stackset::create_instances(client, desired).await?;
            status.operation_id = Some(operation);
            status.operation_status = Some("RUNNING".to_owned());
            status.instances = 0;
            return Ok(running(
                status,
                "created the StackSet and started deploying it",
            ));
        }
        Some(existing) => existing,
    };
    status.instances = i32::try_from(existing.instances).unwrap_or(i32::MAX);
    if existing.template_body != desired.template_body {
        let operation = stackset::update(client, desired).await?;
        status.operation_id = Some(operation);
        status.operation_status = Some("RUNNING".to_owned());
        return Ok(running(status, "updating the StackSet to the new template"));
    }
    if existing.instances == 0 && status.operation_status.as_deref() != Some("RUNNING") {
        let operation = stackset::create_instances(client, desired).await?;
        status.operation_id = Some(operation);
        status.operation_status = Some("RUNNING".to_owned());
        return Ok(running(status, "deploying the StackSet"));
    }
    let was = status.operation_status.clone();
    if let Some(operation) = status.operation_id.clone() {
        let now = stackset::operation_status(client, &desired.name, &operation).await?;
        status.operation_status = Some(now.clone());
        match now.as_str() {
            "RUNNING" | "QUEUED" | "STOPPING" => return Ok(running(status, "deploying")),
            "FAILED" | "STOPPED" => {
                return Ok(Progress {
                    verdict: (
                        ConditionStatus::False,
                        "OperationFailed",
                        format!(
                            "StackSet operation {operation} ended {now}; see the StackSet's operations in the CloudFormation console"
                        ),
                    ),
                    status,
                    poll: None,
                    deployed: false,
                });
            }
            _ => {}
        }
    }
    let deployed = was.as_deref() != Some("SUCCEEDED")
        && status.operation_status.as_deref() == Some("SUCCEEDED");
    Ok(Progress {
        verdict: (
            ConditionStatus::True,
            "Deployed",
            format!(
                "StackSet {} is deployed to {} with {} stack instances; accounts joining later get it automatically",
                desired.name,
                desired.targets.join(", "),
                existing.instances
            ),
        ),
        status,
        poll: None,
        deployed,
    })
}

/// One step of revoking: removes the instances, then the StackSet. `Ok(true)` when gone.
pub async fn remove(
    client: &aws_sdk_cloudformation::Client,
    desired: &DesiredStackSet,
) -> Result<bool, AwsFailure> {
    match stackset::describe(client, &desired.name).await? {
        None => Ok(true),
        Some(existing) if existing.instances > 0 => {
            stackset::delete_instances(client, desired).await?;
            Ok(false)
        }
        Some(_) => {
            stackset::delete(client, &desired.name).await?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: FailureKind, code: &str, message: &str) -> AwsFailure {
        AwsFailure {
            operation: "CreateStackSet",
            kind,
            code: Some(code.to_owned()),
            message: message.to_owned(),
        }
    }

    #[test]
    fn failures_name_the_step_that_fixes_them() {
        let trusted = failure_verdict(&failure(
            FailureKind::Other,
            "ValidationError",
            "You must enable organizations access to operate a service managed stack set",
        ));
        assert_eq!(
            (trusted.0, trusted.1),
            (ConditionStatus::False, "TrustedAccessNotEnabled")
        );
        assert!(trusted.2.contains("enable-aws-service-access --service-principal member.org.stacksets.cloudformation.amazonaws.com"));
        let denied = failure_verdict(&failure(
            FailureKind::AccessDenied,
            "AccessDenied",
            "not authorized",
        ));
        assert_eq!(denied.1, "StackSetPermissionDenied");
        assert!(denied.2.contains("cloudformation:*StackSet*"));
    }

    #[test]
    fn names_fit_cloudformation() {
        let connection = AwsOrgConnection::new(
            "acme",
            serde_json::from_value(
                serde_json::json!({"roleArn": "arn:aws:iam::111111111111:role/x"}),
            )
            .expect("spec"),
        );
        assert_eq!(stack_set_name(&connection), "orgconnect--acme");
        let desired = desired(&connection, "r-abcd").expect("desired");
        assert_eq!(desired.targets, ["r-abcd"]);
        assert_eq!(desired.regions, ["us-east-1"]);
    }
}
