//! The operator-managed StackSet: a service-managed CloudFormation StackSet, deployed to
//! the organization with automatic deployment, that installs the member role in every
//! current and future account.

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::{
    AutoDeployment, CallAs, Capability, ConcurrencyMode as AwsConcurrencyMode, DeploymentTargets,
    ManagedExecution, Parameter, PermissionModels, RegionConcurrencyType,
    StackSetOperationPreferences, StackSetOperationResultStatus,
};

use super::error::{AwsFailure, classify};
use crate::api::connection::{
    ConcurrencyMode, RegionConcurrency, StackInstanceFailure, StackSetRollout,
};

/// CloudFormation StackSet calls as the managing role makes them: `CallAs=SELF` from the
/// organization's management account, `CallAs=DELEGATED_ADMIN` from a delegated
/// administrator account (registered for `member.org.stacksets.cloudformation.amazonaws.com`),
/// as AWS requires for service-managed StackSets.
#[derive(Clone, Debug)]
pub struct StackSets {
    client: Client,
    call_as: CallAs,
    preferences: StackSetOperationPreferences,
}

impl StackSets {
    /// `delegated`: the managing role is in a delegated administrator account; every
    /// operation rolls out as `rollout` says.
    pub fn new(config: &aws_config::SdkConfig, delegated: bool, rollout: &StackSetRollout) -> Self {
        Self {
            client: super::clients::cloudformation(config),
            call_as: if delegated {
                CallAs::DelegatedAdmin
            } else {
                CallAs::SelfValue
            },
            preferences: operation_preferences(rollout),
        }
    }
}

/// The operation preferences of `rollout`, in AWS's terms.
pub fn operation_preferences(rollout: &StackSetRollout) -> StackSetOperationPreferences {
    StackSetOperationPreferences::builder()
        .region_concurrency_type(match rollout.region_concurrency {
            RegionConcurrency::Parallel => RegionConcurrencyType::Parallel,
            RegionConcurrency::Sequential => RegionConcurrencyType::Sequential,
        })
        .max_concurrent_percentage(i32::from(rollout.max_concurrent_percentage.clamp(1, 100)))
        .failure_tolerance_percentage(i32::from(rollout.failure_tolerance_percentage.min(100)))
        .concurrency_mode(match rollout.concurrency_mode {
            ConcurrencyMode::SoftFailureTolerance => AwsConcurrencyMode::SoftFailureTolerance,
            ConcurrencyMode::StrictFailureTolerance => AwsConcurrencyMode::StrictFailureTolerance,
        })
        .build()
}

/// The StackSet the connection wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredStackSet {
    pub name: String,
    pub template_body: String,
    pub parameters: Vec<(String, String)>,
    /// Root or OU ids to deploy to.
    pub targets: Vec<String>,
    pub regions: Vec<String>,
}

/// What AWS holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExistingStackSet {
    pub template_body: String,
    pub instances: usize,
    /// The root or OU ids the StackSet is deployed to, as AWS reports them (the StackSet's
    /// `OrganizationalUnitIds` and its instances' `OrganizationalUnitId`), sorted.
    pub organizational_units: Vec<String>,
    /// The regions holding stack instances (and the StackSet's `Regions`), sorted.
    pub regions: Vec<String>,
    /// Every stack instance as ListStackInstances reports it.
    pub instance_states: Vec<InstanceState>,
}

/// One stack instance: whether it is current with the StackSet and whether its stack (the
/// member role) drifted from the template at the last drift detection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceState {
    pub account_id: String,
    pub region: String,
    /// `CURRENT`, `OUTDATED` or `INOPERABLE`.
    pub status: String,
    /// CloudFormation's reason for a status other than `CURRENT`.
    pub status_reason: Option<String>,
    /// `DRIFTED`, `IN_SYNC`, `UNKNOWN` or `NOT_CHECKED`.
    pub drift_status: String,
    /// When drift was last detected for the instance (seconds since the epoch).
    pub last_drift_check: Option<i64>,
}

fn parameters(desired: &DesiredStackSet) -> Vec<Parameter> {
    desired
        .parameters
        .iter()
        .map(|(key, value)| {
            Parameter::builder()
                .parameter_key(key)
                .parameter_value(value)
                .build()
        })
        .collect()
}

fn targets(ids: &[String]) -> DeploymentTargets {
    DeploymentTargets::builder()
        .set_organizational_unit_ids(Some(ids.to_vec()))
        .build()
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values.dedup();
    values
}

/// The StackSet and its instance count, or `None` when it does not exist (or was deleted).
pub async fn describe(
    stacks: &StackSets,
    name: &str,
) -> Result<Option<ExistingStackSet>, AwsFailure> {
    let described = match stacks
        .client
        .describe_stack_set()
        .stack_set_name(name)
        .call_as(stacks.call_as.clone())
        .send()
        .await
    {
        Ok(output) => output,
        Err(err) => {
            let failure = classify("DescribeStackSet", &err);
            if failure.code.as_deref() == Some("StackSetNotFoundException") {
                return Ok(None);
            }
            return Err(failure);
        }
    };
    let Some(stack_set) = described.stack_set else {
        return Ok(None);
    };
    if stack_set.status().map(|s| s.as_str()) == Some("DELETED") {
        return Ok(None);
    }
    let mut organizational_units = stack_set.organizational_unit_ids().to_vec();
    let mut regions = stack_set.regions().to_vec();
    let mut instances = 0;
    let mut instance_states = Vec::new();
    let mut next_token = None;
    loop {
        let page = stacks
            .client
            .list_stack_instances()
            .stack_set_name(name)
            .call_as(stacks.call_as.clone())
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| classify("ListStackInstances", &e))?;
        for summary in page.summaries() {
            instances += 1;
            regions.extend(summary.region().map(str::to_owned));
            organizational_units.extend(summary.organizational_unit_id().map(str::to_owned));
            instance_states.push(InstanceState {
                account_id: summary.account().unwrap_or_default().to_owned(),
                region: summary.region().unwrap_or_default().to_owned(),
                status: summary
                    .status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                status_reason: summary.status_reason().map(str::to_owned),
                drift_status: summary
                    .drift_status()
                    .map_or("NOT_CHECKED", |d| d.as_str())
                    .to_owned(),
                last_drift_check: summary.last_drift_check_timestamp().map(|t| t.secs()),
            });
        }
        next_token = page.next_token;
        if next_token.is_none() {
            break;
        }
    }
    Ok(Some(ExistingStackSet {
        template_body: stack_set.template_body().unwrap_or_default().to_owned(),
        instances,
        organizational_units: sorted(organizational_units),
        regions: sorted(regions),
        instance_states,
    }))
}

/// Starts drift detection on every stack instance of StackSet `name`
/// (DetectStackSetDrift, an operation of its own); returns the operation id.
pub async fn detect_drift(stacks: &StackSets, name: &str) -> Result<String, AwsFailure> {
    let output = stacks
        .client
        .detect_stack_set_drift()
        .stack_set_name(name)
        .operation_preferences(stacks.preferences.clone())
        .call_as(stacks.call_as.clone())
        .send()
        .await
        .map_err(|e| classify("DetectStackSetDrift", &e))?;
    Ok(output.operation_id.unwrap_or_default())
}

/// Creates the service-managed StackSet with automatic deployment on.
pub async fn create(stacks: &StackSets, desired: &DesiredStackSet) -> Result<(), AwsFailure> {
    stacks
        .client
        .create_stack_set()
        .stack_set_name(&desired.name)
        .description("orgconnect member role, installed in every account of the organization")
        .template_body(&desired.template_body)
        .set_parameters(Some(parameters(desired)))
        .permission_model(PermissionModels::ServiceManaged)
        .auto_deployment(
            AutoDeployment::builder()
                .enabled(true)
                .retain_stacks_on_account_removal(false)
                .build(),
        )
        .capabilities(Capability::CapabilityNamedIam)
        // StackSets queues an operation that arrives while another runs, instead of
        // refusing it.
        .managed_execution(ManagedExecution::builder().active(true).build())
        .call_as(stacks.call_as.clone())
        .send()
        .await
        .map_err(|e| classify("CreateStackSet", &e))?;
    Ok(())
}

/// Replaces the template (a new policy level) in the StackSet and all its instances
/// (naming no targets or regions updates every instance); returns the operation id.
pub async fn update(stacks: &StackSets, desired: &DesiredStackSet) -> Result<String, AwsFailure> {
    let output = stacks
        .client
        .update_stack_set()
        .stack_set_name(&desired.name)
        .template_body(&desired.template_body)
        .set_parameters(Some(parameters(desired)))
        .capabilities(Capability::CapabilityNamedIam)
        .permission_model(PermissionModels::ServiceManaged)
        .managed_execution(ManagedExecution::builder().active(true).build())
        .operation_preferences(stacks.preferences.clone())
        .call_as(stacks.call_as.clone())
        .send()
        .await
        .map_err(|e| classify("UpdateStackSet", &e))?;
    Ok(output.operation_id.unwrap_or_default())
}

/// Deploys instances to `ous` (root or OU ids) in `regions`; returns the operation id.
pub async fn create_instances(
    stacks: &StackSets,
    name: &str,
    ous: &[String],
    regions: &[String],
) -> Result<String, AwsFailure> {
    let output = stacks
        .client
        .create_stack_instances()
        .stack_set_name(name)
        .deployment_targets(targets(ous))
        .set_regions(Some(regions.to_vec()))
        .operation_preferences(stacks.preferences.clone())
        .call_as(stacks.call_as.clone())
        .send()
        .await
        .map_err(|e| classify("CreateStackInstances", &e))?;
    Ok(output.operation_id.unwrap_or_default())
}

/// The stack instances operation `operation_id` failed to deploy, every page
/// (ListStackSetOperationResults), with CloudFormation's reason.
pub async fn operation_failures(
    stacks: &StackSets,
    name: &str,
    operation_id: &str,
) -> Result<Vec<StackInstanceFailure>, AwsFailure> {
    let mut failures = Vec::new();
    let mut next_token = None;
    loop {
        let page = stacks
            .client
            .list_stack_set_operation_results()
            .stack_set_name(name)
            .operation_id(operation_id)
            .set_next_token(next_token)
            .call_as(stacks.call_as.clone())
            .send()
            .await
            .map_err(|e| classify("ListStackSetOperationResults", &e))?;
        failures.extend(
            page.summaries()
                .iter()
                .filter(|s| s.status() == Some(&StackSetOperationResultStatus::Failed))
                .map(|s| StackInstanceFailure {
                    account_id: s.account().unwrap_or_default().to_owned(),
                    region: s.region().unwrap_or_default().to_owned(),
                    reason: s.status_reason().unwrap_or("no reason given").to_owned(),
                }),
        );
        next_token = page.next_token;
        if next_token.is_none() {
            return Ok(failures);
        }
    }
}

/// A StackSet operation as AWS reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// RUNNING, SUCCEEDED, FAILED, STOPPING, STOPPED, QUEUED.
    pub status: String,
    /// CREATE (instances deployed), UPDATE, DELETE (instances removed), DETECT_DRIFT.
    pub action: Option<String>,
}

/// The status and action of an operation.
pub async fn operation(
    stacks: &StackSets,
    name: &str,
    operation_id: &str,
) -> Result<Operation, AwsFailure> {
    let output = stacks
        .client
        .describe_stack_set_operation()
        .stack_set_name(name)
        .operation_id(operation_id)
        .call_as(stacks.call_as.clone())
        .send()
        .await
        .map_err(|e| classify("DescribeStackSetOperation", &e))?;
    let operation = output.stack_set_operation;
    Ok(Operation {
        status: operation
            .as_ref()
            .and_then(|op| op.status.as_ref())
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        action: operation
            .as_ref()
            .and_then(|op| op.action.as_ref())
            .map(|a| a.as_str().to_owned()),
    })
}

/// Removes the instances of `ous` in `regions` (deleting the stacks); returns the
/// operation id.
pub async fn delete_instances(
    stacks: &StackSets,
    name: &str,
    ous: &[String],
    regions: &[String],
) -> Result<String, AwsFailure> {
    let output = stacks
        .client
        .delete_stack_instances()
        .stack_set_name(name)
        .deployment_targets(targets(ous))
        .set_regions(Some(regions.to_vec()))
        .retain_stacks(false)
        .operation_preferences(stacks.preferences.clone())
        .call_as(stacks.call_as.clone())
        .send()
        .await
        .map_err(|e| classify("DeleteStackInstances", &e))?;
    Ok(output.operation_id.unwrap_or_default())
}

/// Deletes the (empty) StackSet.
pub async fn delete(stacks: &StackSets, name: &str) -> Result<(), AwsFailure> {
    match stacks
        .client
        .delete_stack_set()
        .stack_set_name(name)
        .call_as(stacks.call_as.clone())
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(err) => {
            let failure = classify("DeleteStackSet", &err);
            if failure.code.as_deref() == Some("StackSetNotFoundException") {
                return Ok(());
            }
            Err(failure)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rollout_is_parallel_a_quarter_at_once_with_a_tenth_allowed_to_fail() {
        let preferences = operation_preferences(&StackSetRollout::default());
        assert_eq!(
            preferences.region_concurrency_type(),
            Some(&RegionConcurrencyType::Parallel)
        );
        assert_eq!(preferences.max_concurrent_percentage(), Some(25));
        assert_eq!(preferences.failure_tolerance_percentage(), Some(10));
        assert_eq!(
            preferences.concurrency_mode(),
            Some(&AwsConcurrencyMode::SoftFailureTolerance)
        );
        // AWS's own defaults (one account at a time, no failure) are never sent.
        assert_eq!(preferences.max_concurrent_count(), None);
        assert_eq!(preferences.failure_tolerance_count(), None);
    }

    #[test]
    fn percentages_stay_in_what_aws_accepts() {
        let preferences = operation_preferences(&StackSetRollout {
            max_concurrent_percentage: 0,
            failure_tolerance_percentage: 200,
            region_concurrency: RegionConcurrency::Sequential,
            concurrency_mode: ConcurrencyMode::StrictFailureTolerance,
        });
        assert_eq!(preferences.max_concurrent_percentage(), Some(1));
        assert_eq!(preferences.failure_tolerance_percentage(), Some(100));
        assert_eq!(
            preferences.region_concurrency_type(),
            Some(&RegionConcurrencyType::Sequential)
        );
    }
}
