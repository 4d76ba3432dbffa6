//! The operator-managed StackSet of a connection (`spec.stackSet.enabled`): create it,
//! deploy it to the organization, follow its operations, update it when the policy level
//! changes, and delete it on revoke.

use std::time::Duration;

use crate::api::AwsOrgConnection;
use crate::api::condition::ConditionStatus;
use crate::api::connection::StackSetStatus;
use crate::aws::arn::RoleArn;
use crate::aws::stackset::{self, DesiredStackSet, ExistingStackSet};
use crate::aws::{AwsFailure, FailureKind};
use crate::templates::{MemberRoleOptions, member_role};

use super::connection_status::Verdict;
use super::member_role;
use super::names::stack_set_name;

/// How often a running operation is checked.
pub const OPERATION_POLL: Duration = Duration::from_secs(10);

/// The StackSet the connection's spec calls for, given its organization's root.
pub fn desired(connection: &AwsOrgConnection, root_id: &str) -> Option<DesiredStackSet> {
    let managing: RoleArn = connection.spec.role_arn.parse().ok()?;
    let spec = &connection.spec.stack_set;
    let template = member_role(&MemberRoleOptions {
        policy: connection.spec.access_policy,
        managing_account_id: Some(managing.account_id.clone()),
        managing_role_name: Some(managing.role_name().to_owned()),
        managing_role_path: Some(managing.path()),
        member_role_name: Some(connection.spec.member_access.role_name.clone()),
    });
    Some(DesiredStackSet {
        name: stack_set_name(connection),
        template_body: serde_json::to_string(&template).ok()?,
        parameters: vec![
            ("ManagingAccountId".to_owned(), managing.account_id.clone()),
            (
                "ManagingRoleName".to_owned(),
                managing.role_name().to_owned(),
            ),
            ("ManagingRolePath".to_owned(), managing.path()),
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
                "{failure}. The managing role may not call cloudformation:{}; it needs {} \
                 (`orgconnect template managing-role --stack-set`, or `--connection` for a \
                 connection with stackSet.enabled, grants them; iam:PassRole is not needed for \
                 service-managed StackSets)",
                failure.operation,
                crate::templates::STACK_SET_ACTIONS.join(", ")
            ),
        );
    }
    if failure.kind == FailureKind::LimitExceeded {
        return (
            ConditionStatus::False,
            "StackSetLimitExceeded",
            format!(
                "{failure}. A CloudFormation StackSets quota of the managing account was reached \
                 (StackSets, stack instances, or operations at once): remove unused StackSets or \
                 instances, or ask for a higher quota in Service Quotas; the operator retries"
            ),
        );
    }
    (
        ConditionStatus::False,
        "StackSetFailed",
        failure.to_string(),
    )
}

/// The next thing to do to make the StackSet match the spec, once no operation of ours
/// is running. StackSets run one operation at a time, so a change of both OUs and
/// regions takes several steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The template changed (a new policy level): update the StackSet and every instance.
    UpdateTemplate,
    /// Deploy stack instances to these roots or OUs in these regions.
    AddInstances {
        ous: Vec<String>,
        regions: Vec<String>,
    },
    /// Remove the stack instances of these roots or OUs in these regions.
    RemoveInstances {
        ous: Vec<String>,
        regions: Vec<String>,
    },
    /// The StackSet matches the spec.
    Settled,
}

fn missing_from(wanted: &[String], present: &[String]) -> Vec<String> {
    let mut missing: Vec<String> = wanted
        .iter()
        .filter(|w| !present.contains(w))
        .cloned()
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut all: Vec<String> = a.iter().chain(b).cloned().collect();
    all.sort();
    all.dedup();
    all
}

/// Decides the next step from the desired StackSet and what AWS holds. In order: the
/// template; instances for new OUs (in every wanted region), so accounts moving to
/// another OU keep their role; the removal of regions no longer listed, before new
/// regions are deployed, because the member role is global and two stacks of one account
/// cannot both create it; new regions; the removal of OUs no longer listed.
///
/// `last_deploy_succeeded`: the StackSet's last operation was ours, deployed instances,
/// and succeeded. With no instance to tell the regions, that means the targets hold no
/// accounts; otherwise (nothing deployed yet, or the instances were just removed, as in
/// a move to another region) the wanted regions are deployed.
pub fn next_step(
    desired: &DesiredStackSet,
    existing: &ExistingStackSet,
    last_deploy_succeeded: bool,
) -> Step {
    if existing.template_body != desired.template_body {
        return Step::UpdateTemplate;
    }
    let targets = union(&desired.targets, &[]);
    let regions = union(&desired.regions, &[]);
    // AWS reports the deployment targets of a service-managed StackSet; should it not,
    // while instances exist, the spec's targets are taken as deployed rather than
    // deploying them again and again.
    let deployed_ous = if existing.organizational_units.is_empty() && existing.instances > 0 {
        targets.clone()
    } else {
        union(&existing.organizational_units, &[])
    };
    let new_ous = missing_from(&targets, &deployed_ous);
    if !new_ous.is_empty() {
        return Step::AddInstances {
            ous: new_ous,
            regions,
        };
    }
    // Regions are known from the instances.
    let deployed_regions = union(&existing.regions, &[]);
    if deployed_regions.is_empty() {
        if !last_deploy_succeeded && !targets.is_empty() {
            return Step::AddInstances {
                ous: targets,
                regions,
            };
        }
    } else {
        let stale_regions = missing_from(&deployed_regions, &regions);
        if !stale_regions.is_empty() {
            return Step::RemoveInstances {
                ous: deployed_ous,
                regions: stale_regions,
            };
        }
        let new_regions = missing_from(&regions, &deployed_regions);
        if !new_regions.is_empty() {
            return Step::AddInstances {
                ous: targets,
                regions: new_regions,
            };
        }
    }
    let stale_ous = missing_from(&deployed_ous, &targets);
    if !stale_ous.is_empty() {
        return Step::RemoveInstances {
            ous: stale_ous,
            regions: union(&deployed_regions, &regions),
        };
    }
    Step::Settled
}

/// One step towards the desired StackSet. Returns the condition, the new status and, when
/// an operation is still running, how soon to look again; `deployed` tells whether an
/// operation just succeeded (members should be probed again).
pub struct Progress {
    pub verdict: Verdict,
    pub status: StackSetStatus,
    pub poll: Option<Duration>,
    pub deployed: bool,
    /// Every stack instance's state, as this step read them (none before the StackSet
    /// exists).
    pub instance_states: Vec<stackset::InstanceState>,
}

/// How many failed stack instances the status keeps by name.
const MAX_FAILURES_KEPT: usize = 50;

/// `: N stack instances failed (account region: reason; …)`, naming at most three; empty
/// when none failed.
pub fn failures_summary(status: &StackSetStatus) -> String {
    if status.failed_instances == 0 {
        return String::new();
    }
    let named: Vec<String> = status
        .failures
        .iter()
        .take(3)
        .map(|f| format!("{} {}: {}", f.account_id, f.region, f.reason))
        .collect();
    let more = usize::try_from(status.failed_instances)
        .unwrap_or_default()
        .saturating_sub(named.len());
    format!(
        ": {} stack instance{} failed ({}{})",
        status.failed_instances,
        if status.failed_instances == 1 {
            ""
        } else {
            "s"
        },
        named.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    )
}

fn operation_finished(status: Option<&str>) -> bool {
    matches!(status, Some("SUCCEEDED" | "FAILED" | "STOPPED"))
}

fn operation_failed(status: Option<&str>) -> bool {
    matches!(status, Some("FAILED" | "STOPPED"))
}

fn in_progress(failure: &AwsFailure) -> bool {
    failure.code.as_deref() == Some("OperationInProgressException")
}

fn running(status: StackSetStatus, what: &str, deployed: bool) -> Progress {
    Progress {
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
        deployed,
        instance_states: Vec::new(),
    }
}

/// One step towards `desired`: create the StackSet, follow the operation in flight, or
/// start the next one. `hold_failure`: after an operation failed, start nothing new (the
/// failure stays reported) until the spec changes. Each step also reads every stack
/// instance's state and, once the StackSet is settled, detects drift on its instances
/// every `drift_every` (the probe interval).
pub async fn ensure(
    client: &stackset::StackSets,
    desired: &DesiredStackSet,
    previous: Option<&StackSetStatus>,
    hold_failure: bool,
    drift_every: Duration,
) -> Result<Progress, AwsFailure> {
    let Some(existing) = stackset::describe(client, &desired.name).await? else {
        return deploy_step(client, desired, previous, hold_failure, None).await;
    };
    let states = existing.instance_states.clone();
    let mut progress = deploy_step(client, desired, previous, hold_failure, Some(existing)).await?;
    let status = &mut progress.status;
    (
        status.drifted_instances,
        status.outdated_instances,
        status.inoperable_instances,
    ) = member_role::counts(&states);
    let drift_running = follow_drift(client, &desired.name, status).await?;
    let settled = progress.poll.is_none();
    if settled && !drift_running {
        let now = jiff::Timestamp::now().as_second();
        let every = i64::try_from(drift_every.as_secs()).unwrap_or(i64::MAX);
        if member_role::drift_check_due(&states, now, every) {
            match stackset::detect_drift(client, &desired.name).await {
                Ok(operation) => status.drift_operation_id = Some(operation),
                // Someone else's operation: detect drift at the next look.
                Err(failure) if in_progress(&failure) => {}
                // Drift is a report: a role that may not detect it (made from an older
                // template) or a failing call leaves the StackSet's deployment alone.
                Err(failure) => tracing::warn!(stack_set = %desired.name, error = %failure,
                    "could not start drift detection; update the managing role from the \
                     current template (cloudformation:DetectStackSetDrift)"),
            }
        }
    }
    progress.poll = match (&status.drift_operation_id, progress.poll) {
        (Some(_), _) => Some(OPERATION_POLL),
        // Settled: look again when the next drift detection is due.
        (None, None) => Some(drift_every),
        (None, poll) => poll,
    };
    progress.instance_states = states;
    Ok(progress)
}

/// Follows the drift detection `status` names: whether it still runs (its id is dropped
/// once it has ended; the instances' states then tell its findings).
async fn follow_drift(
    client: &stackset::StackSets,
    name: &str,
    status: &mut StackSetStatus,
) -> Result<bool, AwsFailure> {
    let Some(operation) = status.drift_operation_id.clone() else {
        return Ok(false);
    };
    let now = match stackset::operation(client, name, &operation).await {
        Ok(now) => now,
        Err(failure) if failure.kind.is_transient() => return Err(failure),
        // Gone with a StackSet made again, or never ours to read: stop following it.
        Err(failure) => {
            tracing::warn!(stack_set = %name, operation = %operation, error = %failure,
                "the drift detection cannot be followed; dropping it");
            status.drift_operation_id = None;
            return Ok(false);
        }
    };
    if operation_finished(Some(&now.status)) {
        status.drift_operation_id = None;
        return Ok(false);
    }
    Ok(true)
}

/// One step towards deploying `desired`, from `existing` (`None`: no StackSet yet).
async fn deploy_step(
    client: &stackset::StackSets,
    desired: &DesiredStackSet,
    previous: Option<&StackSetStatus>,
    hold_failure: bool,
    existing: Option<ExistingStackSet>,
) -> Result<Progress, AwsFailure> {
    let mut status = StackSetStatus {
        name: desired.name.clone(),
        ..previous.cloned().unwrap_or_default()
    };
    let Some(existing) = existing else {
        // A new StackSet: no drift detection of an earlier one is followed.
        status.drift_operation_id = None;
        stackset::create(client, desired).await?;
        let operation =
            stackset::create_instances(client, &desired.name, &desired.targets, &desired.regions)
                .await?;
        status.operation_id = Some(operation);
        status.operation_status = Some("RUNNING".to_owned());
        status.instances = 0;
        return Ok(running(
            status,
            "created the StackSet and started deploying it",
            false,
        ));
    };
    status.instances = i32::try_from(existing.instances).unwrap_or(i32::MAX);

    let Some(finished) = follow_operation(client, &desired.name, &mut status).await? else {
        return Ok(running(status, "deploying", false));
    };
    let deployed = finished.just_now && status.operation_status.as_deref() == Some("SUCCEEDED");
    if operation_failed(status.operation_status.as_deref()) && (finished.just_now || hold_failure) {
        return Ok(operation_failed_progress(status));
    }

    // Only asked when no instance tells the regions.
    let succeeded = status.operation_status.as_deref() == Some("SUCCEEDED");
    let mut last_action = finished.action;
    if existing.instances == 0
        && succeeded
        && last_action.is_none()
        && let Some(operation) = status.operation_id.clone()
    {
        last_action = stackset::operation(client, &desired.name, &operation)
            .await?
            .action;
    }
    let last_deploy_succeeded = succeeded && last_action.as_deref() == Some("CREATE");
    let step = next_step(desired, &existing, last_deploy_succeeded);
    let Some(started) = start(client, desired, &step).await else {
        return Ok(settled(desired, status, existing.instances, deployed));
    };
    match started {
        Ok((operation, what)) => {
            status.operation_id = Some(operation);
            status.operation_status = Some("RUNNING".to_owned());
            Ok(running(status, &what, deployed))
        }
        // An operation someone else started: wait for it, then look again.
        Err(failure) if in_progress(&failure) => Ok(Progress {
            verdict: (
                ConditionStatus::Unknown,
                "OperationRunning",
                "another operation on the StackSet is running; waiting for it".to_owned(),
            ),
            status,
            poll: Some(OPERATION_POLL),
            deployed,
            instance_states: Vec::new(),
        }),
        Err(failure) => Err(failure),
    }
}

/// The operation `status` names, once it has finished.
struct Finished {
    /// It finished since the last look.
    just_now: bool,
    /// What it did (`CREATE`, `UPDATE`, `DELETE`), when this look asked.
    action: Option<String>,
}

/// Looks at the operation `status` names, if it was still running: `None` while it runs;
/// once it finishes, its outcome and failed instances go into `status`.
async fn follow_operation(
    client: &stackset::StackSets,
    name: &str,
    status: &mut StackSetStatus,
) -> Result<Option<Finished>, AwsFailure> {
    let Some(operation) = status.operation_id.clone() else {
        return Ok(Some(Finished {
            just_now: false,
            action: None,
        }));
    };
    if operation_finished(status.operation_status.as_deref()) {
        return Ok(Some(Finished {
            just_now: false,
            action: None,
        }));
    }
    let now = stackset::operation(client, name, &operation).await?;
    status.operation_status = Some(now.status.clone());
    if !operation_finished(Some(&now.status)) {
        return Ok(None);
    }
    let failures = stackset::operation_failures(client, name, &operation).await?;
    status.failed_instances = i32::try_from(failures.len()).unwrap_or(i32::MAX);
    status.failures = failures.into_iter().take(MAX_FAILURES_KEPT).collect();
    Ok(Some(Finished {
        just_now: true,
        action: now.action,
    }))
}

/// Starts the operation `step` asks for: its id and what it does, or `None` when the
/// StackSet is settled.
async fn start(
    client: &stackset::StackSets,
    desired: &DesiredStackSet,
    step: &Step,
) -> Option<Result<(String, String), AwsFailure>> {
    let name = &desired.name;
    let started = match step {
        Step::UpdateTemplate => stackset::update(client, desired).await.map(|op| {
            (
                op,
                "updating the StackSet and its instances to the new template".to_owned(),
            )
        }),
        Step::AddInstances { ous, regions } => {
            stackset::create_instances(client, name, ous, regions)
                .await
                .map(|op| {
                    let what = format!(
                        "deploying stack instances to {} in {}",
                        ous.join(", "),
                        regions.join(", ")
                    );
                    (op, what)
                })
        }
        Step::RemoveInstances { ous, regions } => {
            stackset::delete_instances(client, name, ous, regions)
                .await
                .map(|op| {
                    let what = format!(
                        "removing the stack instances of {} in {}, no longer listed",
                        ous.join(", "),
                        regions.join(", ")
                    );
                    (op, what)
                })
        }
        Step::Settled => return None,
    };
    Some(started)
}

/// The StackSet's last operation failed: reported until the spec changes.
fn operation_failed_progress(status: StackSetStatus) -> Progress {
    let operation = status.operation_id.clone().unwrap_or_default();
    let ended = status.operation_status.clone().unwrap_or_default();
    Progress {
        verdict: (
            ConditionStatus::False,
            "OperationFailed",
            format!(
                "StackSet operation {operation} ended {ended}{}; see the StackSet's operations \
                 in the CloudFormation console. The operator tries again when the \
                 connection's spec changes",
                failures_summary(&status)
            ),
        ),
        status,
        poll: None,
        deployed: false,
        instance_states: Vec::new(),
    }
}

/// Nothing left to start: deployed, or deployed with instances that failed.
fn settled(
    desired: &DesiredStackSet,
    status: StackSetStatus,
    instances: usize,
    deployed: bool,
) -> Progress {
    let verdict = if status.failed_instances > 0 {
        (
            ConditionStatus::False,
            "InstancesFailed",
            format!(
                "StackSet {} is deployed to {} in {}, but its last operation could not \
                 deploy the member role to every account{}; each of those MemberAccounts \
                 says why and how to deploy it again. This clears with the StackSet's \
                 next operation",
                desired.name,
                desired.targets.join(", "),
                desired.regions.join(", "),
                failures_summary(&status)
            ),
        )
    } else {
        (
            ConditionStatus::True,
            "Deployed",
            format!(
                "StackSet {} is deployed to {} in {} with {} stack instances; accounts \
                 joining later get it automatically",
                desired.name,
                desired.targets.join(", "),
                desired.regions.join(", "),
                instances
            ),
        )
    };
    Progress {
        verdict,
        status,
        poll: None,
        deployed,
        instance_states: Vec::new(),
    }
}

/// The targets and regions to remove instances from on revoke when AWS does not report
/// them: the spec's (the root when it lists no OUs).
pub fn revoke_hints(connection: &AwsOrgConnection) -> (Vec<String>, Vec<String>) {
    let spec = &connection.spec.stack_set;
    let root = connection
        .status
        .as_ref()
        .and_then(|s| s.organization.as_ref())
        .and_then(|o| o.root_id.clone());
    let ous = if spec.organizational_units.is_empty() {
        root.into_iter().collect()
    } else {
        spec.organizational_units.clone()
    };
    let regions = if spec.regions.is_empty() {
        vec![connection.spec.region.clone()]
    } else {
        spec.regions.clone()
    };
    (ous, regions)
}

/// One step of revoking: removes the instances (of every target and region AWS reports,
/// and the spec's), then the StackSet. `Ok(true)` when gone.
pub async fn remove(
    client: &stackset::StackSets,
    name: &str,
    (ous, regions): (&[String], &[String]),
) -> Result<bool, AwsFailure> {
    let step = match stackset::describe(client, name).await? {
        None => return Ok(true),
        Some(existing) if existing.instances > 0 => stackset::delete_instances(
            client,
            name,
            &union(&existing.organizational_units, ous),
            &union(&existing.regions, regions),
        )
        .await
        .map(|_| false),
        Some(_) => stackset::delete(client, name).await.map(|()| true),
    };
    match step {
        Err(failure) if in_progress(&failure) => Ok(false),
        other => other,
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
        let quota = failure_verdict(&failure(
            FailureKind::LimitExceeded,
            "LimitExceededException",
            "exceeded",
        ));
        assert_eq!(quota.1, "StackSetLimitExceeded");
        assert!(
            denied
                .2
                .contains("may not call cloudformation:CreateStackSet;")
        );
        assert!(denied.2.contains("cloudformation:CreateStackInstances"));
    }

    #[test]
    fn failed_instances_are_counted_and_the_first_named() {
        let failure = |account: &str| crate::api::connection::StackInstanceFailure {
            account_id: account.to_owned(),
            region: "us-east-1".to_owned(),
            reason: "Role OrgconnectMemberRole already exists".to_owned(),
        };
        let status = StackSetStatus {
            failed_instances: 5,
            failures: ["1", "2", "3", "4", "5"].map(failure).to_vec(),
            ..StackSetStatus::default()
        };
        let summary = failures_summary(&status);
        assert!(
            summary.starts_with(": 5 stack instances failed (1 us-east-1: Role"),
            "{summary}"
        );
        assert!(summary.ends_with("; and 2 more)"), "{summary}");
        assert_eq!(failures_summary(&StackSetStatus::default()), "");
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

    /// The decision when the last operation was not a deployment that succeeded.
    fn next_step_(desired: &DesiredStackSet, existing: &ExistingStackSet) -> Step {
        next_step(desired, existing, false)
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    fn wanted(ous: &[&str], regions: &[&str]) -> DesiredStackSet {
        DesiredStackSet {
            name: "ss".into(),
            template_body: "template".into(),
            parameters: vec![],
            targets: strings(ous),
            regions: strings(regions),
        }
    }

    fn held(ous: &[&str], regions: &[&str], instances: usize) -> ExistingStackSet {
        ExistingStackSet {
            template_body: "template".into(),
            instances,
            organizational_units: strings(ous),
            regions: strings(regions),
            instance_states: Vec::new(),
        }
    }

    #[test]
    fn a_matching_stack_set_is_settled() {
        let desired = wanted(&["ou-a"], &["us-east-1"]);
        assert_eq!(
            next_step_(&desired, &held(&["ou-a"], &["us-east-1"], 3)),
            Step::Settled
        );
        // Targets holding no accounts: a deployment succeeded and made no instances.
        assert_eq!(
            next_step(&desired, &held(&["ou-a"], &[], 0), true),
            Step::Settled
        );
    }

    #[test]
    fn a_new_template_comes_first() {
        let desired = wanted(&["ou-b"], &["eu-west-1"]);
        let mut existing = held(&["ou-a"], &["us-east-1"], 3);
        existing.template_body = "older".into();
        assert_eq!(next_step_(&desired, &existing), Step::UpdateTemplate);
    }

    #[test]
    fn new_ous_get_every_wanted_region() {
        let desired = wanted(&["ou-a", "ou-b"], &["us-east-1", "eu-west-1"]);
        assert_eq!(
            next_step_(&desired, &held(&["ou-a"], &["us-east-1"], 2)),
            Step::AddInstances {
                ous: strings(&["ou-b"]),
                regions: strings(&["eu-west-1", "us-east-1"]),
            }
        );
        // Nothing deployed yet: everything.
        assert_eq!(
            next_step_(&desired, &held(&[], &[], 0)),
            Step::AddInstances {
                ous: strings(&["ou-a", "ou-b"]),
                regions: strings(&["eu-west-1", "us-east-1"]),
            }
        );
    }

    #[test]
    fn new_regions_reach_the_ous_already_deployed() {
        let desired = wanted(&["ou-a"], &["us-east-1", "eu-west-1"]);
        assert_eq!(
            next_step_(&desired, &held(&["ou-a"], &["us-east-1"], 2)),
            Step::AddInstances {
                ous: strings(&["ou-a"]),
                regions: strings(&["eu-west-1"]),
            }
        );
    }

    #[test]
    fn targets_no_longer_listed_lose_their_instances_after_the_new_ones_are_in() {
        // Moving from ou-a to ou-b: first deploy ou-b ...
        let desired = wanted(&["ou-b"], &["us-east-1"]);
        assert_eq!(
            next_step_(&desired, &held(&["ou-a"], &["us-east-1"], 2)),
            Step::AddInstances {
                ous: strings(&["ou-b"]),
                regions: strings(&["us-east-1"]),
            }
        );
        // ... then remove ou-a.
        assert_eq!(
            next_step_(&desired, &held(&["ou-a", "ou-b"], &["us-east-1"], 4)),
            Step::RemoveInstances {
                ous: strings(&["ou-a"]),
                regions: strings(&["us-east-1"]),
            }
        );
    }

    #[test]
    fn a_region_move_removes_the_old_region_first() {
        // The member role is global: a stack in the new region could not create it while
        // the old one holds it.
        let desired = wanted(&["ou-a"], &["eu-west-1"]);
        assert_eq!(
            next_step_(&desired, &held(&["ou-a"], &["us-east-1"], 2)),
            Step::RemoveInstances {
                ous: strings(&["ou-a"]),
                regions: strings(&["us-east-1"]),
            }
        );
        // Then, with no instance left, the new region.
        assert_eq!(
            next_step_(&desired, &held(&["ou-a"], &[], 0)),
            Step::AddInstances {
                ous: strings(&["ou-a"]),
                regions: strings(&["eu-west-1"]),
            }
        );
        assert_eq!(
            next_step(&desired, &held(&["ou-a"], &[], 0), true),
            Step::Settled
        );
    }

    #[test]
    fn regions_no_longer_listed_lose_their_instances() {
        let desired = wanted(&["ou-a"], &["us-east-1"]);
        assert_eq!(
            next_step_(&desired, &held(&["ou-a"], &["eu-west-1", "us-east-1"], 4)),
            Step::RemoveInstances {
                ous: strings(&["ou-a"]),
                regions: strings(&["eu-west-1"]),
            }
        );
    }

    #[test]
    fn unreported_targets_are_taken_as_deployed() {
        // An endpoint that reports no OUs while instances exist: no endless redeploys.
        let desired = wanted(&["r-abcd"], &["us-east-1"]);
        assert_eq!(
            next_step_(&desired, &held(&[], &["us-east-1"], 5)),
            Step::Settled
        );
    }

    #[test]
    fn revoke_hints_fall_back_to_the_root_and_the_connection_region() {
        let mut connection = AwsOrgConnection::new(
            "acme",
            serde_json::from_value(serde_json::json!({
                "roleArn": "arn:aws:iam::111111111111:role/x",
                "region": "eu-west-1",
            }))
            .expect("spec"),
        );
        assert_eq!(revoke_hints(&connection), (vec![], strings(&["eu-west-1"])));
        connection.status = Some(crate::api::connection::AwsOrgConnectionStatus {
            organization: Some(crate::api::connection::OrganizationInfo {
                root_id: Some("r-abcd".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            revoke_hints(&connection),
            (strings(&["r-abcd"]), strings(&["eu-west-1"]))
        );
        connection.spec.stack_set.organizational_units = strings(&["ou-a"]);
        connection.spec.stack_set.regions = strings(&["us-east-1", "us-west-2"]);
        assert_eq!(
            revoke_hints(&connection),
            (strings(&["ou-a"]), strings(&["us-east-1", "us-west-2"]))
        );
    }
}
