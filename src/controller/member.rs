//! The MemberAccount reconciler: probe the account through its member role when due, and
//! write its phase, `Connected` condition and remediation only when they changed.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::debug;

use super::connection_status::Verdict;
use super::context::{Context, Diagnostics, ProbeRecord, doubling, jitter, object_key};
use super::member_role;
use super::names::session_name;
use super::probe_status::{
    Attempt, MemberVerdict, ProbeOutcome, not_probed, phase_event, verdict, waiting_for_connection,
};
use super::reconcile::{observed, write_status};
use crate::api::AwsOrgConnection;
use crate::api::condition::{Condition, ConditionType, set_condition};
use crate::api::member_account::{
    MemberAccount, MemberAccountStatus, MemberPhase, PROBE_ANNOTATION,
};
use crate::aws::FailureKind;
use crate::aws::arn::RoleArn;
use crate::aws::probe::{probe_member, whoami};
use crate::duration::parse_duration;
use crate::error::{Error, Result};

/// How soon a member whose connection has no session yet looks again.
const WAIT_FOR_CONNECTION: Duration = Duration::from_secs(30);

pub async fn reconcile(member: Arc<MemberAccount>, ctx: Arc<Context>) -> Result<Action> {
    Diagnostics::add(&ctx.diagnostics.member_reconciles, 1);
    observed(
        &ctx,
        member.clone().as_ref(),
        reconcile_member(member, &ctx),
    )
    .await
}

/// Probes the account when a probe is due, and writes what it found.
async fn reconcile_member(member: Arc<MemberAccount>, ctx: &Arc<Context>) -> Result<Action> {
    let Some(connection) = ctx.connection_of(&member) else {
        // Not (yet) in the cache, or not this operator's: the connection's first session
        // asks for its members to be probed.
        return Ok(Action::await_change());
    };
    let requested = member
        .annotations()
        .get(PROBE_ANNOTATION)
        .is_some_and(|value| value == "now");
    let previous = member.status.as_ref().and_then(|s| s.phase);

    let mut probed = false;
    let (verdict, action) = if let Some(skipped) = not_probed(&member.spec) {
        ctx.forget_probe(&object_key(member.as_ref()));
        (skipped, Action::await_change())
    } else {
        match ctx.sessions.current(&object_key(connection.as_ref())) {
            None => (
                waiting_for_connection(previous),
                Action::requeue(WAIT_FOR_CONNECTION),
            ),
            Some(session) => {
                let inputs = probe_inputs(&connection, &member, session.fingerprint);
                let now = Timestamp::now();
                let record = ctx.probe_record(&object_key(member.as_ref()));
                let due = requested || record.is_none_or(|r| r.inputs != inputs || now >= r.next);
                if !due {
                    let wait = record
                        .map(|r| Duration::try_from(r.next.duration_since(now)).unwrap_or_default())
                        .unwrap_or_default();
                    return Ok(Action::requeue(wait.max(Duration::from_secs(1))));
                }
                probed = true;
                probe(
                    ctx,
                    &connection,
                    &member,
                    &session.config,
                    previous,
                    inputs,
                    record,
                )
                .await
            }
        }
    };

    let member_role = member_role_condition(ctx, &connection, &member);
    apply_verdict(ctx, &member, verdict, member_role).await?;
    if probed {
        Diagnostics::add(&ctx.diagnostics.probes_applied, 1);
    }
    if requested {
        clear_probe_annotation(ctx, &member).await?;
    }
    Ok(action)
}

/// What a probe depends on; when it changes, the member is probed again at once.
fn probe_inputs(connection: &AwsOrgConnection, member: &MemberAccount, session: u64) -> u64 {
    let mut hasher = DefaultHasher::new();
    (
        connection.metadata.generation,
        session,
        member.metadata.generation,
        &member.spec.role_name,
        member.spec.paused,
    )
        .hash(&mut hasher);
    hasher.finish()
}

/// Probes the account, bounded by the connection's and the operator's concurrency.
async fn probe(
    ctx: &Context,
    connection: &AwsOrgConnection,
    member: &MemberAccount,
    managing: &aws_config::SdkConfig,
    previous: Option<MemberPhase>,
    inputs: u64,
    record: Option<ProbeRecord>,
) -> (MemberVerdict, Action) {
    let spec = &connection.spec;
    let Ok(managing_arn) = spec.role_arn.parse::<RoleArn>() else {
        return (
            waiting_for_connection(previous),
            Action::requeue(WAIT_FOR_CONNECTION),
        );
    };
    let role_name = member
        .spec
        .role_name
        .clone()
        .unwrap_or_else(|| spec.member_access.role_name.clone());
    let role_arn = managing_arn.sibling(&member.spec.account_id, &role_name);
    // The management account, when the managing role is in a delegated administrator
    // account: probed like a member, with a fix of its own.
    let management_account = member.spec.management_account == Some(true)
        && member.spec.account_id != managing_arn.account_id;
    let limit = usize::try_from(spec.member_access.concurrency).unwrap_or(1);
    let Some(_permits) = ctx.probe_permits(&object_key(connection), limit).await else {
        return (
            waiting_for_connection(previous),
            Action::requeue(WAIT_FOR_CONNECTION),
        );
    };

    Diagnostics::add(&ctx.diagnostics.probes, 1);
    let outcome = assume_member_role(connection, member, managing, &managing_arn, &role_arn).await;
    debug!(member = %object_key(member), outcome = ?outcome, "probed");

    let now = Timestamp::now();
    let (failures, wait) = next_probe(
        &outcome,
        record.as_ref(),
        &spec.member_access.probe_interval,
    );
    ctx.set_probe_record(
        &object_key(member),
        ProbeRecord {
            inputs,
            next: now.checked_add(wait).unwrap_or(now),
            failures,
        },
    );
    let stack_instance_failure = ctx.stack_instance_failure(connection, &member.spec.account_id);
    let attempt = Attempt {
        account_id: &member.spec.account_id,
        role_arn: &role_arn.to_string(),
        role_name: &role_name,
        managing_role_arn: &spec.role_arn,
        region: &spec.region,
        management_account,
        stack_instance_failure: stack_instance_failure
            .as_ref()
            .map(|(name, failure)| (name.as_str(), failure)),
    };
    let verdict = verdict(&member.spec, previous, &attempt, outcome);
    ctx.health
        .metrics
        .probes
        .get_or_create(&crate::metrics::OutcomeLabels {
            outcome: verdict.connected.1.to_owned(),
        })
        .inc();
    (verdict, Action::requeue(wait))
}

/// The probe's one STS call: the member role assumed from the managing session, or, for
/// the account holding the managing role, that session itself.
async fn assume_member_role(
    connection: &AwsOrgConnection,
    member: &MemberAccount,
    managing: &aws_config::SdkConfig,
    managing_arn: &RoleArn,
    role_arn: &RoleArn,
) -> ProbeOutcome {
    if member.spec.account_id == managing_arn.account_id {
        return match whoami(managing).await {
            Ok(_) => ProbeOutcome::ReachedManaging,
            Err(failure) => ProbeOutcome::Failed(failure),
        };
    }
    let session = session_name(
        &connection.namespace().unwrap_or_default(),
        &connection.name_any(),
    );
    let external_id = connection.spec.member_access.external_id.as_deref();
    match probe_member(managing, role_arn, external_id, &session).await {
        Ok(success) => ProbeOutcome::Reached {
            account_id: success.account_id,
        },
        Err(failure) => ProbeOutcome::Failed(failure),
    }
}

/// The failures in a row after `outcome` and how long until the next probe: anything
/// but an answer (reached, or denied) is retried with backoff (10 s doubling to 160 s),
/// an answer is probed again after `probe_interval` (at least a minute).
fn next_probe(
    outcome: &ProbeOutcome,
    record: Option<&ProbeRecord>,
    probe_interval: &str,
) -> (u32, Duration) {
    let transient = matches!(outcome, ProbeOutcome::Failed(f)
        if !matches!(f.kind, FailureKind::AccessDenied | FailureKind::RegionDisabled));
    if transient {
        let failures = record.map_or(0, |r| r.failures).saturating_add(1);
        let backoff = doubling(Duration::from_secs(10), Duration::from_secs(160), failures);
        (failures, backoff + jitter(backoff / 5))
    } else {
        let interval = parse_duration(probe_interval)
            .unwrap_or(Duration::from_secs(1800))
            .max(Duration::from_secs(60));
        (0, interval + jitter(interval / 10))
    }
}

/// The `MemberRoleCurrent` condition of `member`, when its connection's StackSet has a
/// stack instance in the account.
fn member_role_condition(
    ctx: &Context,
    connection: &AwsOrgConnection,
    member: &MemberAccount,
) -> Option<Verdict> {
    if !connection.spec.stack_set.enabled {
        return None;
    }
    let (stack_set, state) = ctx.member_role(connection, &member.spec.account_id)?;
    let instance = member_role::Instance {
        stack_set: &stack_set,
        account_id: &member.spec.account_id,
        organizational_unit: member
            .spec
            .organizational_unit
            .as_ref()
            .map(|ou| ou.id.as_str()),
    };
    Some(member_role::condition(&instance, &state))
}

/// Writes the verdict (and the member role's condition, or its absence) when it differs
/// from the status, with an Event when the phase moved.
async fn apply_verdict(
    ctx: &Context,
    member: &MemberAccount,
    verdict: MemberVerdict,
    member_role: Option<Verdict>,
) -> Result<()> {
    // `status.tags` is discovery's, under a field manager of its own: this write neither
    // sends nor compares it, so it never takes the tags over or removes them.
    let current = MemberAccountStatus {
        tags: BTreeMap::new(),
        ..member.status.clone().unwrap_or_default()
    };
    let verdict = verdict.keeping_remediation(current.remediation.as_ref());
    let mut status = MemberAccountStatus {
        phase: Some(verdict.phase),
        remediation: verdict.remediation,
        observed_generation: member.metadata.generation,
        conditions: current.conditions.clone(),
        tags: BTreeMap::new(),
    };
    let (condition_status, reason, message) = verdict.connected;
    set_condition(
        &mut status.conditions,
        Condition::new(
            ConditionType::Connected,
            condition_status,
            reason,
            message.clone(),
            member.metadata.generation,
            Timestamp::now(),
        ),
    );
    match member_role {
        Some((role_status, role_reason, role_message)) => {
            set_condition(
                &mut status.conditions,
                Condition::new(
                    ConditionType::MemberRoleCurrent,
                    role_status,
                    role_reason,
                    role_message,
                    member.metadata.generation,
                    Timestamp::now(),
                ),
            );
        }
        None => status
            .conditions
            .retain(|c| c.type_ != ConditionType::MemberRoleCurrent),
    }
    let namespace = member
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<MemberAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    if !write_status(&api, member, &current, &status).await? {
        return Ok(());
    }
    Diagnostics::add(&ctx.diagnostics.member_status_writes, 1);
    if current.phase != Some(verdict.phase) {
        ctx.member_phase_changed(member);
    }
    if let Some((warning, event_reason)) = phase_event(current.phase, verdict.phase) {
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.event(member, type_, event_reason, format!("{reason}: {message}"))
            .await;
    }
    Ok(())
}

/// Removes `orgconnect.dev/probe=now` once the probe it asked for is done.
async fn clear_probe_annotation(ctx: &Context, member: &MemberAccount) -> Result<()> {
    let namespace = member
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<MemberAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({ "metadata": { "annotations": { PROBE_ANNOTATION: null } } });
    api.patch(
        &member.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}
