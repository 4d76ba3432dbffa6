//! Revoking a connection: the whole Cleanup side of its finalizer. First the decisions,
//! pure (what becomes of the StackSet the operator created, how the sync Jobs and run
//! ConfigMaps generated for the connection are found, what the `Revoked` Event tells the
//! customer), then the steps that carry them out: settle the StackSet, delete the sync
//! runs and the MemberAccounts, forget the connection.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{debug, info, warn};

use super::access::{Authentication, Pass, authenticate};
use super::context::{Context, Diagnostics, object_key};
use super::names::{CONNECTION_LABEL, SCHEDULE_LABEL, connection_selector, label_value};
use super::reconcile::delete_all;
use super::stackset;
use super::sync::delete_run;
use crate::api::SyncSchedule;
use crate::api::condition::{ConditionStatus, ConditionType};
use crate::api::connection::{AwsOrgConnection, REVOKE_ANNOTATION};
use crate::api::member_account::MemberPhase;
use crate::error::{Error, Result};
use crate::metrics::PhaseLabels;

/// How many MemberAccounts a revoke deletes at once.
const MEMBER_DELETES: usize = 16;
/// How many sync runs (each a Job, its ConfigMaps and Secret) a revoke deletes at once.
const RUN_DELETES: usize = 4;

/// What becomes of the StackSet when the connection goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StackSetFate {
    /// The operator never created a StackSet for this connection.
    NotManaged,
    /// Delete its stack instances, then the StackSet (the normal case).
    Delete { name: String },
    /// Kept: `stackSet.deleteOnRevoke` is false.
    KeptByPolicy { name: String },
    /// Kept: the operator created it, but `stackSet.enabled` was turned off since.
    KeptDisabled { name: String },
    /// Not touched: an administrator annotated the connection `orgconnect.dev/revoke=skip`.
    Skipped { name: String },
}

/// The inputs of the StackSet decision, from the connection being deleted.
#[derive(Clone, Copy, Debug)]
pub struct StackSetRevokeInput<'a> {
    pub enabled: bool,
    pub delete_on_revoke: bool,
    /// The StackSet the operator created (from status), if any.
    pub created: Option<&'a str>,
    /// `orgconnect.dev/revoke=skip` is set.
    pub skip: bool,
}

/// Decides what happens to the StackSet. Only a StackSet the operator created is ever
/// deleted; a deliberate choice to keep it wins over `skip`, so the Event names the
/// real reason.
pub fn stack_set_fate(input: StackSetRevokeInput<'_>) -> StackSetFate {
    let Some(name) = input.created.map(str::to_owned) else {
        return StackSetFate::NotManaged;
    };
    if !input.enabled {
        StackSetFate::KeptDisabled { name }
    } else if !input.delete_on_revoke {
        StackSetFate::KeptByPolicy { name }
    } else if input.skip {
        StackSetFate::Skipped { name }
    } else {
        StackSetFate::Delete { name }
    }
}

/// The label selectors that find the sync Jobs and run ConfigMaps generated for
/// `connection`: those labelled with it, and, from before that label existed, those of
/// the `schedules` that name it and carry no connection label.
pub fn sync_selectors(connection: &str, schedules: &[String]) -> Vec<String> {
    let mut selectors = vec![format!("{CONNECTION_LABEL}={}", label_value(connection))];
    let mut values: Vec<String> = schedules.iter().map(|s| label_value(s)).collect();
    values.sort();
    values.dedup();
    if !values.is_empty() {
        selectors.push(format!(
            "{SCHEDULE_LABEL} in ({}),!{CONNECTION_LABEL}",
            values.join(",")
        ));
    }
    selectors
}

/// What a finished revoke did, for its Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokeSummary {
    /// What became of the StackSet; `Delete` means it was deleted.
    pub stack_set: StackSetFate,
    pub members: usize,
    pub jobs: usize,
    pub config_maps: usize,
    /// The managing role, which the operator never created and the customer deletes.
    pub role_arn: String,
}

/// The `Revoked` Event: its type and note. It always says what remains on the AWS side.
pub fn revoke_event(summary: &RevokeSummary) -> (EventType, String) {
    let removed = format!(
        "removed {} MemberAccounts, {} sync Jobs and {} run ConfigMaps",
        summary.members, summary.jobs, summary.config_maps
    );
    let (type_, stack_set) = match &summary.stack_set {
        StackSetFate::Delete { name } => (
            EventType::Normal,
            format!("deleted the member-role StackSet {name} and its stack instances"),
        ),
        StackSetFate::NotManaged => (
            EventType::Normal,
            "the operator managed no StackSet for this connection".to_owned(),
        ),
        StackSetFate::KeptByPolicy { name } => (
            EventType::Normal,
            format!(
                "kept the member-role StackSet {name} because stackSet.deleteOnRevoke is false; \
                 its role stays in every account until you delete the StackSet"
            ),
        ),
        StackSetFate::KeptDisabled { name } => (
            EventType::Normal,
            format!(
                "kept the member-role StackSet {name} because stackSet.enabled is false; \
                 delete it in the managing account if it is no longer wanted"
            ),
        ),
        StackSetFate::Skipped { name } => (
            EventType::Warning,
            format!(
                "did not delete the member-role StackSet {name}: the revoke was skipped on \
                 purpose (orgconnect.dev/revoke=skip), so it may remain in AWS with its role in \
                 every account; delete its stack instances and then the StackSet in the managing \
                 account"
            ),
        ),
    };
    let note = format!(
        "Revoked: {removed}; {stack_set}. Remains on the AWS side: the managing-account role {} \
         — delete its CloudFormation stack in the managing account to end the operator's access",
        summary.role_arn
    );
    (type_, note)
}

/// Settles the StackSet on revoke, one step per call: `Ok` with its fate once it is
/// gone or kept; `RevokeInProgress` while its instances are being removed;
/// `RevokeBlocked` when AWS cannot be reached, tried again with backoff.
async fn revoke_stack_set(
    connection: &AwsOrgConnection,
    ctx: &Context,
    namespace: &str,
) -> Result<StackSetFate> {
    let spec = &connection.spec.stack_set;
    let fate = stack_set_fate(StackSetRevokeInput {
        enabled: spec.enabled,
        delete_on_revoke: spec.delete_on_revoke,
        created: connection
            .status
            .as_ref()
            .and_then(|s| s.stack_set.as_ref())
            .map(|s| s.name.as_str()),
        skip: connection
            .annotations()
            .get(REVOKE_ANNOTATION)
            .is_some_and(|v| v == "skip"),
    });
    let key = object_key(connection);
    let StackSetFate::Delete { name } = &fate else {
        ctx.revoke_progressed(&key);
        return Ok(fate);
    };
    let now = Timestamp::now();
    if let Some(retry) = ctx.revoke_retry(&key)
        && now < retry.not_before
    {
        // Still waiting after a failure; the condition already says why.
        let retry_in = Duration::try_from(retry.not_before.duration_since(now))
            .unwrap_or_default()
            .max(Duration::from_secs(1));
        return Err(Error::RevokeBlocked {
            problem: retry.problem,
            retry_in,
        });
    }
    let mut pass = Pass::new(connection, ctx, namespace);
    Diagnostics::add(&ctx.diagnostics.revoke_attempts, 1);
    let external_id = pass.status.external_id.clone().unwrap_or_default();
    let (ous, regions) = stackset::revoke_hints(connection);
    let outcome = match authenticate(&mut pass, namespace, external_id).await {
        Ok(Authentication::Ready(session)) => {
            let client = crate::aws::stackset::StackSets::new(
                &session.config,
                connection.is_delegated_administrator(),
                &connection.spec.stack_set.rollout,
            );
            stackset::remove(&client, name, (&ous, &regions))
                .await
                .map_err(|f| f.to_string())
        }
        Ok(Authentication::Stop(_)) => Err("the managing role cannot be assumed".to_owned()),
        Err(err) => Err(err.to_string()),
    };
    match outcome {
        Ok(true) => {
            ctx.revoke_progressed(&key);
            Ok(fate)
        }
        Ok(false) => {
            ctx.revoke_progressed(&key);
            Err(Error::RevokeInProgress(format!(
                "removing the stack instances of StackSet {name}"
            )))
        }
        Err(problem) => {
            let retry_in = ctx.revoke_failed(&key, now, &problem);
            report_blocked(&mut pass, name, &problem).await;
            Err(Error::RevokeBlocked { problem, retry_in })
        }
    }
}

/// Says on the connection why its StackSet could not be removed. The message stays the
/// same from one attempt to the next, so waiting writes nothing.
async fn report_blocked(pass: &mut Pass<'_>, stack_set: &str, problem: &str) {
    pass.set(
        ConditionType::Ready,
        (
            ConditionStatus::False,
            "RevokeBlocked",
            format!(
                "the connection is being deleted but StackSet {stack_set} could not be removed \
                 ({problem}); retrying with backoff (5s, doubling up to 5m). To let go \
                 without removing it, annotate the connection orgconnect.dev/revoke=skip"
            ),
        ),
    );
    if let Err(err) = pass.write_status().await {
        debug!(connection = %object_key(pass.connection), error = %err, "could not record RevokeBlocked");
    }
}

/// Deletes what sync schedules generated for the connection: its sync Jobs (their Pods
/// in the background), run ConfigMaps, which hold the role ARNs and the ExternalId, and
/// run credentials Secrets.
/// Returns how many Jobs and ConfigMaps were deleted.
async fn delete_sync_runs(
    ctx: &Context,
    connection: &AwsOrgConnection,
    namespace: &str,
) -> Result<(usize, usize)> {
    let name = connection.name_any();
    let schedules: Api<SyncSchedule> = Api::namespaced(ctx.client.clone(), namespace);
    let referencing: Vec<String> = schedules
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|s| s.spec.connection_ref.name == name)
        .map(|s| s.name_any())
        .collect();
    let selectors = sync_selectors(&name, &referencing);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);

    let mut job_names = BTreeSet::new();
    for selector in &selectors {
        let listed = jobs
            .list_metadata(&ListParams::default().labels(selector))
            .await?;
        job_names.extend(listed.items.iter().map(ResourceExt::name_any));
    }
    // A run's ConfigMap has its Job's name; listing finds those left without a Job.
    let mut config_map_names = job_names.clone();
    for selector in &selectors {
        match config_maps
            .list_metadata(&ListParams::default().labels(selector))
            .await
        {
            Ok(listed) => config_map_names.extend(listed.items.iter().map(ResourceExt::name_any)),
            Err(kube::Error::Api(status)) if status.code == 403 => {
                warn!(
                    connection = %object_key(connection),
                    "may not list ConfigMaps; only the run ConfigMaps of existing Jobs are removed"
                );
                break;
            }
            Err(err) => return Err(err.into()),
        }
    }
    // Each run is a few objects: its Job, ConfigMap(s) and Secret; several runs at once.
    let deleted: Vec<_> = futures::stream::iter(config_map_names)
        .map(|run| async move { delete_run(ctx, namespace, &run).await })
        .buffer_unordered(RUN_DELETES)
        .try_collect()
        .await?;
    Ok(deleted.iter().fold((0, 0), |(jobs, config_maps), run| {
        (
            jobs + usize::from(run.job),
            config_maps + usize::from(run.config_map),
        )
    }))
}

/// Revoking: settles the StackSet the operator created, removes what sync schedules
/// generated for the connection and its MemberAccounts, forgets its session, and says
/// in an Event what happened and what remains on the AWS side.
pub async fn cleanup(connection: Arc<AwsOrgConnection>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = connection.namespace().unwrap_or_default();
    let stack_set = revoke_stack_set(&connection, &ctx, &namespace).await?;
    let (jobs, config_maps) = delete_sync_runs(&ctx, &connection, &namespace).await?;
    let api: Api<crate::api::MemberAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = connection.name_any();
    let listed = api
        .list_metadata(&ListParams::default().labels(&connection_selector(&name)))
        .await?;
    let names: Vec<String> = listed.items.iter().map(|m| m.name_any()).collect();
    let removed = names.len();
    let member_keys: Vec<String> = names.iter().map(|m| format!("{namespace}/{m}")).collect();
    delete_all(&api, names, MEMBER_DELETES).await?;
    Diagnostics::add(&ctx.diagnostics.member_writes, removed as u64);
    ctx.forget_connection(&object_key(connection.as_ref()), &member_keys);
    for phase in MemberPhase::ALL.map(MemberPhase::as_str) {
        ctx.health.metrics.accounts.remove(&PhaseLabels {
            namespace: namespace.clone(),
            connection: name.clone(),
            phase,
        });
    }
    info!(
        connection = %object_key(connection.as_ref()),
        members = removed,
        jobs,
        config_maps,
        "connection deleted; revoked"
    );
    let (type_, note) = revoke_event(&RevokeSummary {
        stack_set,
        members: removed,
        jobs,
        config_maps,
        role_arn: connection.spec.role_arn.clone(),
    });
    ctx.event(connection.as_ref(), type_, "Revoked", note).await;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(created: Option<&str>) -> StackSetRevokeInput<'_> {
        StackSetRevokeInput {
            enabled: true,
            delete_on_revoke: true,
            created,
            skip: false,
        }
    }

    #[test]
    fn only_a_stack_set_the_operator_created_is_deleted() {
        assert_eq!(stack_set_fate(input(None)), StackSetFate::NotManaged);
        assert_eq!(
            stack_set_fate(StackSetRevokeInput {
                skip: true,
                ..input(None)
            }),
            StackSetFate::NotManaged
        );
        let name = || "orgconnect-a-b".to_owned();
        assert_eq!(
            stack_set_fate(input(Some("orgconnect-a-b"))),
            StackSetFate::Delete { name: name() }
        );
        assert_eq!(
            stack_set_fate(StackSetRevokeInput {
                skip: true,
                ..input(Some("orgconnect-a-b"))
            }),
            StackSetFate::Skipped { name: name() }
        );
        assert_eq!(
            stack_set_fate(StackSetRevokeInput {
                delete_on_revoke: false,
                skip: true,
                ..input(Some("orgconnect-a-b"))
            }),
            StackSetFate::KeptByPolicy { name: name() }
        );
        assert_eq!(
            stack_set_fate(StackSetRevokeInput {
                enabled: false,
                ..input(Some("orgconnect-a-b"))
            }),
            StackSetFate::KeptDisabled { name: name() }
        );
    }

    #[test]
    fn selectors_find_labelled_and_older_unlabelled_runs() {
        assert_eq!(
            sync_selectors("acme", &[]),
            ["orgconnect.dev/connection=acme"]
        );
        assert_eq!(
            sync_selectors(
                "acme",
                &["nightly".into(), "inventory".into(), "nightly".into()]
            ),
            [
                "orgconnect.dev/connection=acme",
                "orgconnect.dev/sync-schedule in (inventory,nightly),!orgconnect.dev/connection",
            ]
        );
        let long = "c".repeat(100);
        let selectors = sync_selectors(&long, &[]);
        assert_eq!(
            selectors[0],
            format!("orgconnect.dev/connection={}", label_value(&long))
        );
    }

    fn summary(stack_set: StackSetFate) -> RevokeSummary {
        RevokeSummary {
            stack_set,
            members: 4,
            jobs: 1,
            config_maps: 2,
            role_arn: "arn:aws:iam::111122223333:role/orgconnect".into(),
        }
    }

    const REMAINS: &str = "Remains on the AWS side: the managing-account role \
        arn:aws:iam::111122223333:role/orgconnect — delete its CloudFormation stack";

    #[test]
    fn the_event_says_what_happened_and_what_remains() {
        let (type_, note) = revoke_event(&summary(StackSetFate::Delete { name: "ss".into() }));
        assert_eq!(type_, EventType::Normal);
        assert!(note.starts_with(
            "Revoked: removed 4 MemberAccounts, 1 sync Jobs and 2 run ConfigMaps; deleted the \
             member-role StackSet ss and its stack instances."
        ));
        assert!(note.contains(REMAINS), "{note}");

        let (type_, note) = revoke_event(&summary(StackSetFate::Skipped { name: "ss".into() }));
        assert_eq!(type_, EventType::Warning);
        assert!(note.contains("did not delete the member-role StackSet ss"));
        assert!(note.contains("orgconnect.dev/revoke=skip"));
        assert!(note.contains("may remain in AWS"));
        assert!(!note.contains("deleted the member-role"));
        assert!(note.contains(REMAINS));

        let (type_, note) =
            revoke_event(&summary(StackSetFate::KeptByPolicy { name: "ss".into() }));
        assert_eq!(type_, EventType::Normal);
        assert!(
            note.contains(
                "kept the member-role StackSet ss because stackSet.deleteOnRevoke is false"
            )
        );
        assert!(note.contains(REMAINS));

        let (_, note) = revoke_event(&summary(StackSetFate::KeptDisabled { name: "ss".into() }));
        assert!(note.contains("because stackSet.enabled is false"));
        assert!(note.contains(REMAINS));

        let (type_, note) = revoke_event(&summary(StackSetFate::NotManaged));
        assert_eq!(type_, EventType::Normal);
        assert!(note.contains("the operator managed no StackSet for this connection"));
        assert!(!note.contains("deleted the member-role"));
        assert!(note.contains(REMAINS));
        assert!(note.len() < 1024);
    }
}
