//! The operator-managed StackSet: a service-managed CloudFormation StackSet, deployed to
//! the organization with automatic deployment, that installs the member role in every
//! current and future account.

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::{
    AutoDeployment, CallAs, Capability, DeploymentTargets, Parameter, PermissionModels,
};

use super::error::{AwsFailure, classify};

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingStackSet {
    pub template_body: String,
    pub instances: usize,
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

fn targets(desired: &DesiredStackSet) -> DeploymentTargets {
    DeploymentTargets::builder()
        .set_organizational_unit_ids(Some(desired.targets.clone()))
        .build()
}

/// The StackSet and its instance count, or `None` when it does not exist (or was deleted).
pub async fn describe(client: &Client, name: &str) -> Result<Option<ExistingStackSet>, AwsFailure> {
    let described = match client
        .describe_stack_set()
        .stack_set_name(name)
        .call_as(CallAs::SelfValue)
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
    let instances = client
        .list_stack_instances()
        .stack_set_name(name)
        .call_as(CallAs::SelfValue)
        .send()
        .await
        .map_err(|e| classify("ListStackInstances", &e))?
        .summaries()
        .len();
    Ok(Some(ExistingStackSet {
        template_body: stack_set.template_body().unwrap_or_default().to_owned(),
        instances,
    }))
}

/// Creates the service-managed StackSet with automatic deployment on.
pub async fn create(client: &Client, desired: &DesiredStackSet) -> Result<(), AwsFailure> {
    client
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
        .call_as(CallAs::SelfValue)
        .send()
        .await
        .map_err(|e| classify("CreateStackSet", &e))?;
    Ok(())
}

/// Replaces the template (a new policy level); returns the operation id.
pub async fn update(client: &Client, desired: &DesiredStackSet) -> Result<String, AwsFailure> {
    let output = client
        .update_stack_set()
        .stack_set_name(&desired.name)
        .template_body(&desired.template_body)
        .set_parameters(Some(parameters(desired)))
        .capabilities(Capability::CapabilityNamedIam)
        .permission_model(PermissionModels::ServiceManaged)
        .deployment_targets(targets(desired))
        .set_regions(Some(desired.regions.clone()))
        .call_as(CallAs::SelfValue)
        .send()
        .await
        .map_err(|e| classify("UpdateStackSet", &e))?;
    Ok(output.operation_id.unwrap_or_default())
}

/// Deploys instances to the targets; returns the operation id.
pub async fn create_instances(
    client: &Client,
    desired: &DesiredStackSet,
) -> Result<String, AwsFailure> {
    let output = client
        .create_stack_instances()
        .stack_set_name(&desired.name)
        .deployment_targets(targets(desired))
        .set_regions(Some(desired.regions.clone()))
        .call_as(CallAs::SelfValue)
        .send()
        .await
        .map_err(|e| classify("CreateStackInstances", &e))?;
    Ok(output.operation_id.unwrap_or_default())
}

/// The status of an operation: RUNNING, SUCCEEDED, FAILED, STOPPING, STOPPED, QUEUED.
pub async fn operation_status(
    client: &Client,
    name: &str,
    operation_id: &str,
) -> Result<String, AwsFailure> {
    let output = client
        .describe_stack_set_operation()
        .stack_set_name(name)
        .operation_id(operation_id)
        .call_as(CallAs::SelfValue)
        .send()
        .await
        .map_err(|e| classify("DescribeStackSetOperation", &e))?;
    Ok(output
        .stack_set_operation
        .and_then(|op| op.status)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default())
}

/// Removes the instances from the targets (deleting the stacks); returns the operation id.
pub async fn delete_instances(
    client: &Client,
    desired: &DesiredStackSet,
) -> Result<String, AwsFailure> {
    let output = client
        .delete_stack_instances()
        .stack_set_name(&desired.name)
        .deployment_targets(targets(desired))
        .set_regions(Some(desired.regions.clone()))
        .retain_stacks(false)
        .call_as(CallAs::SelfValue)
        .send()
        .await
        .map_err(|e| classify("DeleteStackInstances", &e))?;
    Ok(output.operation_id.unwrap_or_default())
}

/// Deletes the (empty) StackSet.
pub async fn delete(client: &Client, name: &str) -> Result<(), AwsFailure> {
    match client
        .delete_stack_set()
        .stack_set_name(name)
        .call_as(CallAs::SelfValue)
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
