//! Reaching a connection's managing account, for both sides of its finalizer: one
//! reconcile's view of the connection ([`Pass`]), its base credentials, and the
//! AssumeRole of its managing role with the ExternalId, which sets `Authenticated`.
//! `connection.rs` (the Apply side) and `revoke.rs` (the Cleanup side) both start here.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use tracing::info;

use super::connection_status::Verdict;
use super::context::{Context, Diagnostics, jitter, object_key};
use super::credentials::read_base_credentials;
use super::names::session_name;
use super::reconcile::write_status;
use crate::api::condition::{
    Condition, ConditionStatus, ConditionType, find_condition, set_condition,
};
use crate::api::connection::{AwsOrgConnection, AwsOrgConnectionStatus};
use crate::aws::arn::{
    RoleArn, assume_role_statement, partition_of_region, trust_principal, trust_statement,
};
use crate::aws::session::{AssumeFailure, AssumeRequest, ManagingSession};
use crate::aws::{AwsFailure, FailureKind};
use crate::error::Result;

/// How soon a denied or failed AssumeRole is tried again: the fix happens in IAM, which
/// the operator cannot watch.
pub const RECHECK_DENIED: Duration = Duration::from_secs(120);

/// One reconcile's view: the object, the status being built, and the time.
pub struct Pass<'a> {
    pub connection: &'a AwsOrgConnection,
    pub ctx: &'a Context,
    pub api: Api<AwsOrgConnection>,
    pub status: AwsOrgConnectionStatus,
    pub now: Timestamp,
}

impl Pass<'_> {
    pub fn generation(&self) -> Option<i64> {
        self.connection.metadata.generation
    }

    pub fn set(&mut self, type_: ConditionType, (status, reason, message): Verdict) {
        let generation = self.generation();
        self.set_with_generation(type_, (status, reason, message), generation);
    }

    pub fn set_with_generation(
        &mut self,
        type_: ConditionType,
        (status, reason, message): Verdict,
        generation: Option<i64>,
    ) {
        set_condition(
            &mut self.status.conditions,
            Condition::new(type_, status, reason, message, generation, self.now),
        );
    }

    pub fn condition(&self, type_: ConditionType) -> Option<&Condition> {
        find_condition(&self.status.conditions, type_)
    }

    /// Writes the status (server-side apply) if it differs from what the object has.
    pub async fn write_status(&self) -> Result<bool> {
        let current = self.connection.status.clone().unwrap_or_default();
        if !write_status(&self.api, self.connection, &current, &self.status).await? {
            return Ok(false);
        }
        Diagnostics::add(&self.ctx.diagnostics.status_writes, 1);
        self.ctx.status_written(&object_key(self.connection));
        Ok(true)
    }
}

impl<'a> Pass<'a> {
    /// A pass over `connection` starting now, from the status it has.
    pub fn new(connection: &'a AwsOrgConnection, ctx: &'a Context, namespace: &str) -> Self {
        Self {
            connection,
            ctx,
            api: Api::namespaced(ctx.client.clone(), namespace),
            status: connection.status.clone().unwrap_or_default(),
            now: Timestamp::now(),
        }
    }
}

pub enum Authentication {
    Ready(Box<ManagingSession>),
    Stop(Action),
}

/// Assumes the managing role (from the cache when possible) and sets `Authenticated`.
pub async fn authenticate(
    pass: &mut Pass<'_>,
    namespace: &str,
    external_id: String,
) -> Result<Authentication> {
    let spec = &pass.connection.spec;
    let role_arn = match managing_role(&spec.role_arn, &spec.region) {
        Ok(arn) => arn,
        Err(verdict) => {
            pass.set(ConditionType::Authenticated, verdict);
            return Ok(Authentication::Stop(Action::await_change()));
        }
    };
    let base = match read_base_credentials(
        &pass.ctx.client,
        &pass.connection.spec.credentials,
        namespace,
    )
    .await?
    {
        Ok(base) => base,
        Err(problem) => {
            pass.set(
                ConditionType::Authenticated,
                (ConditionStatus::False, problem.reason(), problem.message()),
            );
            // The Secret watch brings the connection back when the Secret changes.
            return Ok(Authentication::Stop(Action::await_change()));
        }
    };
    let request = AssumeRequest {
        session_name: session_name(namespace, &pass.connection.name_any()),
        role_arn: role_arn.clone(),
        external_id: external_id.clone(),
        region: spec.region.clone(),
        base,
    };
    match pass
        .ctx
        .sessions
        .session(&object_key(pass.connection), &request)
        .await
    {
        Ok(session) => {
            if let Some(principal) = &session.principal {
                pass.status.operator_principal = Some(trust_principal(principal));
            }
            if session.fresh {
                info!(connection = %object_key(pass.connection), role = %role_arn, "assumed the managing role");
            }
            pass.set(
                ConditionType::Authenticated,
                (
                    ConditionStatus::True,
                    "RoleAssumed",
                    format!(
                        "assumed {role_arn} with the connection's ExternalId as session {}",
                        request.session_name
                    ),
                ),
            );
            Ok(Authentication::Ready(Box::new(session)))
        }
        Err(AssumeFailure { failure, .. }) if failure.kind.is_transient() => Err(failure.into()),
        Err(AssumeFailure { failure, principal }) => {
            // Recorded on a denial too: `orgconnect template managing-role --connection`
            // reads it to make the trust policy that lets the operator in.
            if let Some(principal) = &principal {
                pass.status.operator_principal = Some(trust_principal(principal));
            }
            let (reason, message) =
                assume_failure_message(&failure, principal.as_deref(), &role_arn, &external_id);
            pass.set(
                ConditionType::Authenticated,
                (ConditionStatus::False, reason, message),
            );
            Ok(Authentication::Stop(Action::requeue(
                RECHECK_DENIED + jitter(Duration::from_secs(30)),
            )))
        }
    }
}

/// The managing role's ARN, or why the spec's cannot be used in `region`.
fn managing_role(role_arn: &str, region: &str) -> std::result::Result<RoleArn, Verdict> {
    let role_arn: RoleArn = role_arn
        .parse()
        .map_err(|err: crate::aws::arn::InvalidRoleArn| {
            (ConditionStatus::False, "InvalidRoleArn", err.to_string())
        })?;
    let region_partition = partition_of_region(region);
    if role_arn.partition != region_partition {
        return Err((
            ConditionStatus::False,
            "PartitionMismatch",
            format!(
                "roleArn is in partition {} but region {region} is in partition \
                 {region_partition}; set a region of the role's partition",
                role_arn.partition
            ),
        ));
    }
    Ok(role_arn)
}

/// The reason and message for a refused AssumeRole, with the trust statement the role
/// needs when access was denied.
fn assume_failure_message(
    failure: &AwsFailure,
    principal: Option<&str>,
    role_arn: &RoleArn,
    external_id: &str,
) -> (&'static str, String) {
    match failure.kind {
        FailureKind::AccessDenied if failure.denied_by_identity_policy() => {
            let caller = principal.unwrap_or("the operator's AWS identity");
            (
                "OperatorPolicyDenied",
                format!(
                    "access denied: the policies of {caller} itself do not allow sts:AssumeRole \
                     on {role_arn} ({failure}). Attach this statement to the operator's identity \
                     (its IRSA or Pod Identity role, or the Secret's IAM user): {}",
                    assume_role_statement(role_arn)
                ),
            )
        }
        FailureKind::AccessDenied => {
            let caller = principal.unwrap_or("the operator's AWS identity");
            let statement = trust_statement(principal, role_arn, Some(external_id));
            (
                "AssumeRoleDenied",
                format!(
                    "access denied: {caller} may not assume {role_arn} with ExternalId {external_id}. \
                     The role's trust policy must contain this statement: {statement}"
                ),
            )
        }
        FailureKind::InvalidCredentials => (
            "InvalidBaseCredentials",
            format!("the base credentials were rejected by AWS: {failure}"),
        ),
        _ => ("AssumeRoleFailed", failure.to_string()),
    }
}
