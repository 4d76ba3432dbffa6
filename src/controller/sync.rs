//! The SyncSchedule reconciler: fetch the schedule's Jobs, let the pure planner decide,
//! then start, replace or prune Jobs and write status, and come back at the next slot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapProjection, Container, EmptyDirVolumeSource, EnvVar,
    PodTemplateSpec, ProjectedVolumeSource, Secret, SecretProjection, SecurityContext,
    ServiceAccount, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{
    Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, PropagationPolicy,
};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::connection_status::Verdict;
use super::context::{Context, Settings};
use super::credentials::read_base_credentials;
use super::names::{CONNECTION_LABEL, SCHEDULE_LABEL, label_value};
use super::reconcile::{create_once, delete_if_present, observed, write_status};
use super::sync_config::{
    BASE_PROFILE, JobIdentity, RunAccount, RunInput, credentials_file, part_key, split, tool_env,
    tool_file,
};
use super::sync_plan::{
    JobState, JobView, Plan, PlanInput, Start, active_after, decide, prune, run_mode,
};
use crate::api::AwsOrgConnection;
use crate::api::condition::{
    Condition, ConditionStatus, ConditionType, find_condition, set_condition,
};
use crate::api::connection::CredentialSource;
use crate::api::member_account::MemberPhase;
use crate::api::sync_schedule::{
    RUN_ANNOTATION, RunMode, RunOutcome, RunSummary, SyncSchedule, SyncScheduleStatus, ToolConfig,
};
use crate::aws::arn::RoleArn;
use crate::aws::session::BaseCredentials;
use crate::aws::trust::{TrustVerdict, parse_document, trust_statement, trust_verdict};
use crate::duration::parse_duration;
use crate::error::{Error, Result};
use crate::metrics::ErrorLabels;
use crate::schedule::Schedule;

// Every Job and ConfigMap also carries the connection's label
// ([`super::names::CONNECTION_LABEL`]), so revoking the connection finds them.
const MODE_ANNOTATION: &str = "orgconnect.dev/mode";
const ACCOUNTS_ANNOTATION: &str = "orgconnect.dev/accounts";
const MOUNT_PATH: &str = "/etc/orgconnect";
const IRSA_ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
const IRSA_TOKEN_FILE: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";

fn to_time(ts: Timestamp) -> Time {
    Time(ts)
}

fn job_view(job: &Job) -> Option<JobView> {
    let created = job.metadata.creation_timestamp.as_ref()?.0;
    let status = job.status.as_ref();
    let condition = |type_: &str| {
        status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == type_ && c.status == "True"))
    };
    let (state, finished) = if let Some(c) = condition("Complete") {
        (
            JobState::Succeeded,
            c.last_transition_time.as_ref().map(|t| t.0),
        )
    } else if let Some(c) = condition("Failed") {
        (
            JobState::Failed,
            c.last_transition_time.as_ref().map(|t| t.0),
        )
    } else {
        (JobState::Active, None)
    };
    Some(JobView {
        name: job.name_any(),
        state,
        created,
        finished: finished.or(status.and_then(|s| s.completion_time.as_ref()).map(|t| t.0)),
    })
}

pub async fn reconcile(schedule: Arc<SyncSchedule>, ctx: Arc<Context>) -> Result<Action> {
    observed(
        &ctx,
        schedule.clone().as_ref(),
        reconcile_schedule(schedule, &ctx),
    )
    .await
}

/// One schedule's pass: read its Jobs, let the planner decide, start, replace and prune
/// runs, write status, and come back at the next slot.
async fn reconcile_schedule(schedule: Arc<SyncSchedule>, ctx: &Context) -> Result<Action> {
    let namespace = schedule
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let now = Timestamp::now();
    let current = schedule.status.clone().unwrap_or_default();
    let mut status = current.clone();
    let schedules: Api<SyncSchedule> = Api::namespaced(ctx.client.clone(), &namespace);
    let run_now = schedule
        .annotations()
        .get(RUN_ANNOTATION)
        .is_some_and(|v| v == "now");
    let cron = match Schedule::parse(&schedule.spec.schedule, schedule.spec.time_zone.as_deref()) {
        Ok(cron) => cron,
        Err(err) => {
            invalid_schedule(&mut status, &schedule, &err.to_string(), now);
            write_status(&schedules, schedule.as_ref(), &current, &status).await?;
            return Ok(Action::await_change());
        }
    };
    let connection_name = &schedule.spec.connection_ref.name;
    let found = find_connection(ctx, &namespace, connection_name).await;
    let connection = usable_connection(found.as_deref(), connection_name);

    let jobs = owned_jobs(ctx, &schedule, &namespace).await?;
    let views: Vec<JobView> = jobs.iter().filter_map(job_view).collect();
    record_finished_runs(ctx, &schedule, &jobs, &views, &mut status).await;
    let plan = decide(&plan_input(&schedule, &cron, &status, &views, now, run_now));
    carry_out(ctx, &schedule, &namespace, &plan).await?;
    if let Some(slot) = plan.last_schedule_time {
        status.last_schedule_time = Some(to_time(slot));
    }
    let mut ready = match &connection {
        Err((reason, message)) => (ConditionStatus::False, *reason, message.clone()),
        // The last run was refused: that stays reported until the next run starts or the
        // spec changes, not only in the reconcile that skipped it.
        Ok(_) => kept_refusal(&current, schedule.metadata.generation).unwrap_or((
            ConditionStatus::True,
            "Scheduled",
            "the schedule is running".to_owned(),
        )),
    };
    // Which identity the Jobs present: reported, and used by a run started now.
    let connection = match connection {
        Ok(connection) => {
            let account = job_service_account(&schedule);
            let identity = job_identity(ctx, &namespace, connection, &account).await?;
            status.job_principal = job_principal(&schedule, connection, &identity);
            Ok((connection, identity))
        }
        Err(refusal) => Err(refusal),
    };
    let mut started = None;
    if let Some(start) = &plan.start {
        match start_due_run(ctx, &schedule, connection, &status, start, now).await? {
            Some(refused) => ready = refused,
            None => started = Some(start.job_name.as_str()),
        }
    }
    prune_finished(ctx, &schedule, &namespace, &views).await?;
    status.active = active_after(&views, &plan, started);
    settle_status(&mut status, &schedule, &plan, ready, now);
    write_status(&schedules, schedule.as_ref(), &current, &status).await?;
    if run_now {
        let patch = serde_json::json!({ "metadata": { "annotations": { RUN_ANNOTATION: null } } });
        schedules
            .patch(
                &schedule.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    let wait = plan
        .next
        .map(|next| Duration::try_from(next.duration_since(now)).unwrap_or_default())
        .unwrap_or(Duration::from_secs(3600));
    Ok(Action::requeue(wait.max(Duration::from_secs(1))))
}

/// Sets a condition of the schedule's status for its current generation.
fn set(
    status: &mut SyncScheduleStatus,
    schedule: &SyncSchedule,
    type_: ConditionType,
    (condition, reason, message): Verdict,
    now: Timestamp,
) {
    set_condition(
        &mut status.conditions,
        Condition::new(
            type_,
            condition,
            reason,
            message,
            schedule.metadata.generation,
            now,
        ),
    );
}

/// The status of a schedule whose cron or time zone cannot be read.
fn invalid_schedule(
    status: &mut SyncScheduleStatus,
    schedule: &SyncSchedule,
    message: &str,
    now: Timestamp,
) {
    for type_ in [ConditionType::Scheduled, ConditionType::Ready] {
        let verdict = (
            ConditionStatus::False,
            "InvalidSchedule",
            message.to_owned(),
        );
        set(status, schedule, type_, verdict, now);
    }
    status.next_schedule_time = None;
    status.observed_generation = schedule.metadata.generation;
}

/// The schedule's Jobs: labelled with its name and owned by this very object.
async fn owned_jobs(ctx: &Context, schedule: &SyncSchedule, namespace: &str) -> Result<Vec<Job>> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!("{SCHEDULE_LABEL}={}", label_value(&schedule.name_any()));
    Ok(jobs
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|j| {
            j.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == schedule.metadata.uid.as_ref())
        })
        .collect())
}

/// What the planner decides from.
fn plan_input<'a>(
    schedule: &'a SyncSchedule,
    cron: &'a Schedule,
    status: &SyncScheduleStatus,
    views: &'a [JobView],
    now: Timestamp,
    run_now: bool,
) -> PlanInput<'a> {
    PlanInput {
        now,
        name: schedule.meta().name.as_deref().unwrap_or_default(),
        schedule: cron,
        suspend: schedule.spec.suspend,
        policy: schedule.spec.concurrency_policy,
        starting_deadline: schedule
            .spec
            .starting_deadline_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs),
        last_schedule_time: status.last_schedule_time.as_ref().map(|t| t.0),
        created: schedule
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0),
        jobs: views,
        run_now,
    }
}

/// Stops the runs the plan replaces, and says what it missed or skipped.
async fn carry_out(
    ctx: &Context,
    schedule: &SyncSchedule,
    namespace: &str,
    plan: &Plan,
) -> Result<()> {
    for replaced in &plan.replace {
        delete_run(ctx, namespace, replaced).await?;
        ctx.event(
            schedule,
            EventType::Normal,
            "JobReplaced",
            format!("stopped {replaced} (concurrencyPolicy Replace)"),
        )
        .await;
    }
    if plan.missed > 0 {
        ctx.event(
            schedule,
            EventType::Warning,
            "MissedSchedules",
            format!(
                "{} scheduled runs were missed while the operator was away; only the latest runs",
                plan.missed
            ),
        )
        .await;
    }
    if let Some(skip) = &plan.skip {
        ctx.event(
            schedule,
            EventType::Normal,
            skip.reason,
            skip.message.clone(),
        )
        .await;
    }
    Ok(())
}

/// Starts the run the plan calls for, unless the connection is unusable or the managing
/// role does not trust the Jobs' principal; `Some` with the `Ready` refusal when it could
/// not start.
async fn start_due_run(
    ctx: &Context,
    schedule: &SyncSchedule,
    connection: Result<(&AwsOrgConnection, JobIdentity), Refusal>,
    status: &SyncScheduleStatus,
    start: &Start,
    now: Timestamp,
) -> Result<Option<Verdict>> {
    let untrusted = match (&connection, &status.job_principal) {
        // With the Secret, the Jobs are the operator, whom the role already let in.
        (Ok((connection, identity)), Some(principal))
            if *identity != JobIdentity::SharedCredentials =>
        {
            untrusted_job_principal(ctx, connection, principal).await
        }
        _ => None,
    };
    let started = match (connection, untrusted) {
        (Err(refusal), _) | (Ok(_), Some(refusal)) => Err(refusal),
        (Ok((connection, identity)), None) => {
            start_run(
                ctx,
                schedule,
                (connection, &identity),
                status,
                &start.job_name,
                now,
            )
            .await?
        }
    };
    match started {
        Ok(accounts) => {
            info!(schedule = %schedule.name_any(), job = %start.job_name, accounts, "sync Job started");
            ctx.event(
                schedule,
                EventType::Normal,
                "JobStarted",
                format!("started {} for {accounts} accounts", start.job_name),
            )
            .await;
            Ok(None)
        }
        Err((reason, message)) => {
            warn!(schedule = %schedule.name_any(), job = %start.job_name, reason, %message, "sync run refused");
            ctx.health
                .metrics
                .failures
                .get_or_create(&ErrorLabels {
                    kind: "SyncSchedule",
                    error: "run_refused",
                })
                .inc();
            ctx.event(schedule, EventType::Warning, reason, message.clone())
                .await;
            Ok(Some((ConditionStatus::False, reason, message)))
        }
    }
}

/// Deletes finished runs beyond the history limits.
async fn prune_finished(
    ctx: &Context,
    schedule: &SyncSchedule,
    namespace: &str,
    views: &[JobView],
) -> Result<()> {
    let finished: Vec<JobView> = views
        .iter()
        .filter(|v| v.state != JobState::Active)
        .cloned()
        .collect();
    let limits = (
        usize::try_from(schedule.spec.successful_jobs_history_limit).unwrap_or(0),
        usize::try_from(schedule.spec.failed_jobs_history_limit).unwrap_or(0),
    );
    for doomed in prune(&finished, limits.0, limits.1) {
        delete_run(ctx, namespace, &doomed).await?;
    }
    Ok(())
}

/// The rest of the status, pure: the next run, and the Scheduled and Ready conditions.
fn settle_status(
    status: &mut SyncScheduleStatus,
    schedule: &SyncSchedule,
    plan: &Plan,
    ready: Verdict,
    now: Timestamp,
) {
    status.next_schedule_time = if schedule.spec.suspend {
        None
    } else {
        plan.next.map(to_time)
    };
    status.observed_generation = schedule.metadata.generation;
    let scheduled = if schedule.spec.suspend {
        (
            ConditionStatus::True,
            "Suspended",
            "suspend is true: no new runs start".to_owned(),
        )
    } else {
        (
            ConditionStatus::True,
            "Scheduled",
            format!(
                "next run at {}",
                plan.next.map(|n| n.to_string()).unwrap_or_default()
            ),
        )
    };
    set(status, schedule, ConditionType::Scheduled, scheduled, now);
    set(status, schedule, ConditionType::Ready, ready, now);
}

/// Folds finished Jobs into status: the last run, the last success, backfill done.
async fn record_finished_runs(
    ctx: &Context,
    schedule: &SyncSchedule,
    jobs: &[Job],
    views: &[JobView],
    status: &mut SyncScheduleStatus,
) {
    let by_name: BTreeMap<&str, &Job> = jobs
        .iter()
        .map(|j| (j.metadata.name.as_deref().unwrap_or_default(), j))
        .collect();
    let mut finished: Vec<&JobView> = views
        .iter()
        .filter(|v| v.state != JobState::Active)
        .collect();
    finished.sort_by_key(|v| v.finished.unwrap_or(v.created));
    for view in finished {
        let Some(job) = by_name.get(view.name.as_str()) else {
            continue;
        };
        let annotation = |key: &str| job.annotations().get(key).cloned();
        let mode = match annotation(MODE_ANNOTATION).as_deref() {
            Some("backfill") => RunMode::Backfill,
            _ => RunMode::Incremental,
        };
        let start = job
            .status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .unwrap_or(Time(view.created));
        let outcome = if view.state == JobState::Succeeded {
            RunOutcome::Succeeded
        } else {
            RunOutcome::Failed
        };
        let summary = RunSummary {
            job: view.name.clone(),
            outcome,
            mode,
            accounts: annotation(ACCOUNTS_ANNOTATION)
                .and_then(|a| a.parse().ok())
                .unwrap_or(0),
            start_time: Some(start.clone()),
            completion_time: view.finished.map(to_time),
        };
        let newer = status.last_run.as_ref().is_none_or(|last| {
            last.completion_time.as_ref().map(|t| t.0) <= view.finished && last.job != view.name
        });
        if !newer {
            continue;
        }
        if outcome == RunOutcome::Succeeded {
            status.last_successful_time = view.finished.map(to_time);
            status.last_successful_start_time = Some(start);
            status.backfill_done = true;
        }
        let (type_, reason) = if outcome == RunOutcome::Succeeded {
            (EventType::Normal, "RunSucceeded")
        } else {
            (EventType::Warning, "RunFailed")
        };
        ctx.event(
            schedule,
            type_,
            reason,
            format!("{} finished: {outcome:?} ({mode:?})", view.name),
        )
        .await;
        ctx.health
            .metrics
            .sync_runs
            .get_or_create(&crate::metrics::OutcomeLabels {
                outcome: format!("{outcome:?}"),
            })
            .inc();
        status.last_run = Some(summary);
    }
}

/// What [`delete_run`] found to delete.
pub(super) struct DeletedRun {
    pub job: bool,
    pub config_map: bool,
}

/// Deletes a run's Job (its Pods in the background), its ConfigMap and, in Secret mode,
/// its credentials Secret, all named as the Job; any already gone is fine.
pub(super) async fn delete_run(ctx: &Context, namespace: &str, job: &str) -> Result<DeletedRun> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let deleted = DeletedRun {
        job: delete_if_present(&jobs, job, &params).await?,
        config_map: delete_if_present(&config_maps, job, &params).await?,
    };
    // A large run's further parts, numbered from 1: the first one missing ends them.
    for index in 1.. {
        if !delete_if_present(&config_maps, &part_name(job, index), &params).await? {
            break;
        }
    }
    delete_if_present(&secrets, job, &params).await?;
    Ok(deleted)
}

type Refusal = (&'static str, String);

/// The labels of a run's Job and ConfigMap: its schedule and its connection.
fn run_labels(schedule: &str, connection: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (SCHEDULE_LABEL.to_owned(), label_value(schedule)),
        (CONNECTION_LABEL.to_owned(), label_value(connection)),
    ])
}

/// The connection the schedule names, from the watch cache (once it holds a complete
/// listing).
async fn find_connection(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Option<Arc<AwsOrgConnection>> {
    ctx.connections_ready().await;
    ctx.connections
        .get(&kube::runtime::reflector::ObjectRef::new(name).within(namespace))
}

/// The connection the schedule names, or why no run can start for it: it does not exist
/// (never created, or deleted: revoked), or it is being deleted. The schedule belongs to
/// the user and is left in place; it runs again once the connection exists.
fn usable_connection<'a>(
    connection: Option<&'a AwsOrgConnection>,
    name: &str,
) -> Result<&'a AwsOrgConnection, Refusal> {
    match connection {
        None => Err((
            "ConnectionNotFound",
            format!(
                "AwsOrgConnection {name} does not exist in this namespace (never created, or \
                 deleted and revoked): no runs start until it exists; delete this SyncSchedule \
                 if the connection is gone for good"
            ),
        )),
        Some(connection) if connection.metadata.deletion_timestamp.is_some() => Err((
            "ConnectionDeleting",
            format!(
                "AwsOrgConnection {name} is being deleted (revoked): no runs start, and its sync \
                 Jobs and run ConfigMaps are removed"
            ),
        )),
        Some(connection) => Ok(connection),
    }
}

/// The Connected accounts of the connection the schedule names, optionally narrowed by
/// the schedule's label selector.
fn run_accounts(
    ctx: &Context,
    schedule: &SyncSchedule,
    connection: &AwsOrgConnection,
) -> Result<Vec<RunAccount>, Refusal> {
    let managing: RoleArn = connection
        .spec
        .role_arn
        .parse()
        .map_err(|e: crate::aws::arn::InvalidRoleArn| ("InvalidConnection", e.to_string()))?;
    let managing_account = connection
        .status
        .as_ref()
        .and_then(|s| s.organization.as_ref())
        .map(|o| o.managing_account_id.clone())
        .unwrap_or_else(|| managing.account_id.clone());
    let selector = account_selector(schedule)?;
    let mut accounts: Vec<RunAccount> = ctx
        .members_of(connection)
        .into_iter()
        .filter(|m| m.status.as_ref().and_then(|s| s.phase) == Some(MemberPhase::Connected))
        .filter(|m| selector.as_ref().is_none_or(|s| s.matches(m.labels())))
        .map(|m| {
            let role = m
                .spec
                .role_name
                .clone()
                .unwrap_or_else(|| connection.spec.member_access.role_name.clone());
            RunAccount {
                id: m.spec.account_id.clone(),
                name: m.spec.name.clone(),
                ou_path: m
                    .spec
                    .organizational_unit
                    .as_ref()
                    .map(|o| o.path.clone())
                    .unwrap_or_default(),
                phase: "Connected".to_owned(),
                role_arn: if m.spec.account_id == managing_account {
                    managing.to_string()
                } else {
                    managing.sibling(&m.spec.account_id, &role).to_string()
                },
                tags: m
                    .status
                    .as_ref()
                    .map(|s| s.tags.clone())
                    .unwrap_or_default(),
            }
        })
        .collect();
    accounts.sort_by(|a, b| a.id.cmp(&b.id));
    if accounts.is_empty() {
        return Err((
            "NoConnectedAccounts",
            format!(
                "connection {} has no Connected accounts to sync; the run was skipped",
                connection.name_any()
            ),
        ));
    }
    Ok(accounts)
}

/// The schedule's `accountSelector`, or why it cannot select anything (an operator
/// other than In, NotIn, Exists and DoesNotExist, or values where none belong).
fn account_selector(schedule: &SyncSchedule) -> Result<Option<Selector>, Refusal> {
    let Some(selector) = schedule.spec.account_selector.clone() else {
        return Ok(None);
    };
    let unknown = selector
        .match_expressions
        .iter()
        .flatten()
        .find(|e| !["In", "NotIn", "Exists", "DoesNotExist"].contains(&e.operator.as_str()))
        .map(|e| {
            format!(
                " (operator {:?} of key {}; use In, NotIn, Exists or DoesNotExist)",
                e.operator, e.key
            )
        })
        .unwrap_or_default();
    Selector::try_from(selector).map(Some).map_err(|e| {
        (
            "InvalidAccountSelector",
            format!("spec.accountSelector is not a valid label selector: {e}{unknown}"),
        )
    })
}

/// Creates the run's ConfigMap and Job. `Ok(Err(..))` when the run cannot start, with the
/// reason.
/// Why a run could not start, when a start was due.
const RUN_REFUSALS: [&str; 6] = [
    "ConnectionNotReady",
    "NoConnectedAccounts",
    "InvalidJobTemplate",
    "InvalidAccountSelector",
    "JobPrincipalNotTrusted",
    "RunTooLarge",
];

/// The `Ready=False` a refused run left, while the spec is the one it was refused for.
fn kept_refusal(current: &SyncScheduleStatus, generation: Option<i64>) -> Option<Verdict> {
    let ready = find_condition(&current.conditions, ConditionType::Ready)?;
    let reason = RUN_REFUSALS.into_iter().find(|r| *r == ready.reason)?;
    (ready.status == ConditionStatus::False && ready.observed_generation == generation)
        .then(|| (ConditionStatus::False, reason, ready.message.clone()))
}

async fn start_run(
    ctx: &Context,
    schedule: &SyncSchedule,
    (connection, identity): (&AwsOrgConnection, &JobIdentity),
    status: &SyncScheduleStatus,
    job_name: &str,
    now: Timestamp,
) -> Result<Result<usize, Refusal>> {
    let namespace = schedule.namespace().unwrap_or_default();
    let connection_name = &schedule.spec.connection_ref.name;
    let Some(external_id) = connection
        .status
        .as_ref()
        .and_then(|s| s.external_id.clone())
    else {
        return Ok(Err((
            "ConnectionNotReady",
            format!("connection {connection_name} has no ExternalId yet"),
        )));
    };
    let accounts = match run_accounts(ctx, schedule, connection) {
        Ok(accounts) => accounts,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let lookback = parse_duration(&schedule.spec.backfill.lookback)
        .unwrap_or(Duration::from_secs(365 * 24 * 3600));
    let (mode, since) = run_mode(
        now,
        schedule.spec.backfill.enabled,
        status.backfill_done,
        lookback,
        status.last_successful_start_time.as_ref().map(|t| t.0),
    );

    let owner: OwnerReference = schedule
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    let labels = run_labels(&schedule.name_any(), connection_name);
    // Credentials first: a run refused for them leaves nothing behind.
    let credentials = match run_credentials(ctx, connection, &namespace).await? {
        Ok(credentials) => credentials,
        Err(refusal) => return Ok(Err(refusal)),
    };
    // The run's ConfigMap and credentials Secret: named as its Job, owned by the schedule.
    let run_metadata = ObjectMeta {
        name: Some(job_name.to_owned()),
        namespace: Some(namespace.clone()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    };
    let input = run_input(schedule, connection, &external_id, identity, &accounts);
    let render = match run_objects(&ctx.settings, &input, job_name, accounts.len()) {
        Ok(RunObjects::Files(files)) => {
            create_run_files(ctx, run_metadata, vec![files], credentials.as_deref()).await?;
            None
        }
        Ok(RunObjects::Parts { parts, image }) => {
            let count = parts.len();
            create_run_files(ctx, run_metadata, parts, credentials.as_deref()).await?;
            Some(RenderStep {
                image,
                parts: count,
            })
        }
        Err(refusal) => return Ok(Err(refusal)),
    };

    let mode_text = match mode {
        RunMode::Backfill => "backfill",
        RunMode::Incremental => "incremental",
    };
    let job = run_job(
        schedule,
        &RunJob {
            name: job_name,
            namespace: &namespace,
            owner,
            labels,
            env: run_env(&RunEnv {
                connection: connection_name,
                mode: mode_text,
                since,
                credentials: credentials.is_some(),
                tools: &schedule.spec.tool_configs,
            }),
            mode: mode_text,
            accounts: accounts.len(),
            credentials: credentials.is_some(),
            render,
        },
    );
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    match jobs.create(&PostParams::default(), &job).await {
        Ok(_) => Ok(Ok(accounts.len())),
        // A restarted operator finds the slot's Job already there: never run it twice.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Ok(accounts.len())),
        Err(kube::Error::Api(s)) if s.code == 422 => Ok(Err(("InvalidJobTemplate", s.message))),
        Err(err) => Err(err.into()),
    }
}

/// What a run's files are made from.
fn run_input(
    schedule: &SyncSchedule,
    connection: &AwsOrgConnection,
    external_id: &str,
    identity: &JobIdentity,
    accounts: &[RunAccount],
) -> RunInput {
    RunInput {
        managing_role_arn: connection.spec.role_arn.clone(),
        external_id: external_id.to_owned(),
        member_external_id: connection.spec.member_access.external_id.clone(),
        region: connection.spec.region.clone(),
        regions: schedule.spec.regions.clone(),
        tools: schedule.spec.tool_configs.clone(),
        identity: identity.clone(),
        accounts: accounts.to_vec(),
    }
}

/// The data of a run's ConfigMaps, in order: the files themselves when they fit in one,
/// else the run's parts, which an init container of `image` joins and renders.
enum RunObjects {
    Files(BTreeMap<String, String>),
    Parts {
        parts: Vec<BTreeMap<String, String>>,
        image: String,
    },
}

/// Decides how a run's files reach its Job: one ConfigMap when they fit, parts when they
/// do not and the operator knows the image that renders them; refused otherwise.
fn run_objects(
    settings: &Settings,
    input: &RunInput,
    job_name: &str,
    accounts: usize,
) -> Result<RunObjects, Refusal> {
    let files = input.files();
    let Some(too_large) = oversized_run(&files, accounts, settings.run_part_bytes) else {
        return Ok(RunObjects::Files(files));
    };
    let Some(image) = settings.run_image.clone() else {
        let (reason, message) = too_large;
        return Err((
            reason,
            format!(
                "{message}; or start the operator with --run-image (the chart sets it) so a \
                 large run's files are assembled in the Job"
            ),
        ));
    };
    let parts = split(input, settings.run_part_bytes).map_err(|e| {
        (
            "RunTooLarge",
            format!("the run {job_name} could not be written in parts: {e}"),
        )
    })?;
    let parts = parts
        .into_iter()
        .enumerate()
        .map(|(index, part)| BTreeMap::from([(part_key(index), part)]))
        .collect();
    Ok(RunObjects::Parts { parts, image })
}

/// The ConfigMap holding part `index` of run `job`: the first is named as the Job.
fn part_name(job: &str, index: usize) -> String {
    if index == 0 {
        job.to_owned()
    } else {
        format!("{job}-part-{index}")
    }
}

/// Why a run's files cannot go into one ConfigMap of at most `limit` bytes (keys and
/// values together; the API server refuses more than 1 MiB).
fn oversized_run(
    files: &BTreeMap<String, String>,
    accounts: usize,
    limit: usize,
) -> Option<Refusal> {
    let size: usize = files
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    (size > limit).then(|| {
        (
            "RunTooLarge",
            format!(
                "the run's files for {accounts} accounts take {size} bytes, more than the \
                 {limit} one ConfigMap of a run holds; narrow spec.accountSelector or split \
                 the accounts across several SyncSchedules"
            ),
        )
    })
}

/// Creates the run's ConfigMaps (`config_maps`, the first named as the Job, each next one
/// as its part) and, in Secret mode, its credentials Secret. One already there was made by
/// this run before a restart: it is kept.
async fn create_run_files(
    ctx: &Context,
    metadata: ObjectMeta,
    config_maps: Vec<BTreeMap<String, String>>,
    credentials: Option<&str>,
) -> Result<()> {
    let namespace = metadata.namespace.clone().unwrap_or_default();
    let job = metadata.name.clone().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    for (index, files) in config_maps.into_iter().enumerate() {
        let config_map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(part_name(&job, index)),
                ..metadata.clone()
            },
            data: Some(files),
            ..ConfigMap::default()
        };
        create_once(&api, &config_map).await?;
    }
    if let Some(file) = credentials {
        let secret = Secret {
            metadata,
            string_data: Some(BTreeMap::from([(
                CREDENTIALS_KEY.to_owned(),
                file.to_owned(),
            )])),
            ..Secret::default()
        };
        create_once(&Api::namespaced(ctx.client.clone(), &namespace), &secret).await?;
    }
    Ok(())
}

/// What a run's Job is made from, beside the schedule's Job template.
struct RunJob<'a> {
    name: &'a str,
    namespace: &'a str,
    owner: OwnerReference,
    labels: BTreeMap<String, String>,
    env: Vec<EnvVar>,
    mode: &'a str,
    accounts: usize,
    /// The run has a credentials Secret (the connection's Secret identity).
    credentials: bool,
    /// The run's files come in parts that an init container renders.
    render: Option<RenderStep>,
}

/// The init container that joins a large run's parts into its files.
struct RenderStep {
    image: String,
    parts: usize,
}

/// What a run's environment is made from.
struct RunEnv<'a> {
    connection: &'a str,
    mode: &'a str,
    since: Timestamp,
    /// The run has a credentials Secret (the connection's Secret identity).
    credentials: bool,
    tools: &'a [ToolConfig],
}

/// The environment every container of a run gets.
fn run_env(run: &RunEnv<'_>) -> Vec<EnvVar> {
    let mut env = vec![
        env_var("AWS_CONFIG_FILE", &format!("{MOUNT_PATH}/aws-config")),
        env_var("AWS_SDK_LOAD_CONFIG", "1"),
        env_var(
            "ORGCONNECT_ACCOUNTS_FILE",
            &format!("{MOUNT_PATH}/accounts.json"),
        ),
        env_var("ORGCONNECT_CONNECTION", run.connection),
        env_var("ORGCONNECT_MODE", run.mode),
        env_var("ORGCONNECT_SINCE", &run.since.to_string()),
    ];
    if run.credentials {
        env.push(env_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            &format!("{MOUNT_PATH}/{CREDENTIALS_KEY}"),
        ));
        // The Secret's keys are the Job's own identity: with them as the default profile,
        // a tool that starts from its default credentials (c7n-org's role chains) starts
        // where the IRSA and Pod Identity Jobs' default chains do. Tools still pick each
        // account by AWS_PROFILE or --profile.
        env.push(env_var("AWS_PROFILE", BASE_PROFILE));
    }
    for tool in run.tools {
        env.push(env_var(
            tool_env(*tool),
            &format!("{MOUNT_PATH}/{}", tool_file(*tool)),
        ));
    }
    env
}

/// The run's Job, pure: the schedule's template with the run's files mounted and its
/// environment set in every container, named, labelled and owned by the schedule.
fn run_job(schedule: &SyncSchedule, run: &RunJob<'_>) -> Job {
    let template = &schedule.spec.job_template;
    let mut pod: PodTemplateSpec = template
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let pod_spec = pod.spec.get_or_insert_with(Default::default);
    if pod_spec.restart_policy.is_none() {
        pod_spec.restart_policy = Some("Never".to_owned());
    }
    mount_run_files(pod_spec, run);
    let mut metadata = template.metadata.clone().unwrap_or_default();
    metadata.name = Some(run.name.to_owned());
    metadata.namespace = Some(run.namespace.to_owned());
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(run.labels.clone());
    metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .extend([
            (MODE_ANNOTATION.to_owned(), run.mode.to_owned()),
            (ACCOUNTS_ANNOTATION.to_owned(), run.accounts.to_string()),
        ]);
    metadata.owner_references = Some(vec![run.owner.clone()]);
    Job {
        metadata,
        spec: Some(JobSpec {
            template: pod,
            ..template.spec.clone().unwrap_or_default()
        }),
        status: None,
    }
}

/// Mounts the run's files in one directory (its ConfigMap, and in Secret mode its
/// credentials Secret) into every container, and sets the run's environment there.
/// Mounts the run's files at [`MOUNT_PATH`] in every container and gives each the run's
/// environment. A large run's parts are mounted only in the first init container, which
/// renders the files into a volume of the Pod's memory.
fn mount_run_files(pod_spec: &mut k8s_openapi::api::core::v1::PodSpec, run: &RunJob<'_>) {
    let parts = run.render.as_ref().map_or(1, |render| render.parts);
    let mut sources: Vec<VolumeProjection> = (0..parts)
        .map(|index| VolumeProjection {
            config_map: Some(ConfigMapProjection {
                name: part_name(run.name, index),
                ..ConfigMapProjection::default()
            }),
            ..VolumeProjection::default()
        })
        .collect();
    if run.credentials {
        sources.push(VolumeProjection {
            secret: Some(SecretProjection {
                name: run.name.to_owned(),
                ..SecretProjection::default()
            }),
            ..VolumeProjection::default()
        });
    }
    let projected = ProjectedVolumeSource {
        sources: Some(sources),
        ..ProjectedVolumeSource::default()
    };
    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
    match &run.render {
        None => volumes.push(Volume {
            name: FILES_VOLUME.to_owned(),
            projected: Some(projected),
            ..Volume::default()
        }),
        Some(_) => {
            volumes.push(Volume {
                name: FILES_VOLUME.to_owned(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".to_owned()),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            });
            volumes.push(Volume {
                name: PARTS_VOLUME.to_owned(),
                projected: Some(projected),
                ..Volume::default()
            });
        }
    }
    let mount = VolumeMount {
        name: FILES_VOLUME.to_owned(),
        mount_path: MOUNT_PATH.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    for container in pod_spec
        .containers
        .iter_mut()
        .chain(pod_spec.init_containers.iter_mut().flatten())
    {
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(mount.clone());
        let container_env = container.env.get_or_insert_with(Vec::new);
        // A profile the container picks itself stays: AWS_PROFILE is only a default.
        let own_profile = container_env.iter().any(|e| e.name == "AWS_PROFILE");
        container_env
            .retain(|e| e.name == "AWS_PROFILE" || !run.env.iter().any(|ours| ours.name == e.name));
        container_env.extend(
            run.env
                .iter()
                .filter(|e| !(own_profile && e.name == "AWS_PROFILE"))
                .cloned(),
        );
    }
    if let Some(render) = &run.render {
        pod_spec
            .init_containers
            .get_or_insert_with(Vec::new)
            .insert(0, render_container(&render.image));
    }
}

/// The volume holding the run's files, mounted at [`MOUNT_PATH`].
const FILES_VOLUME: &str = "orgconnect";
/// The volume holding a large run's parts, in its render container only.
const PARTS_VOLUME: &str = "orgconnect-parts";
/// Where the render container reads a large run's parts.
const PARTS_PATH: &str = "/etc/orgconnect-parts";

/// The init container that renders a large run's files from its parts: the operator's own
/// image, as locked down as the operator itself.
fn render_container(image: &str) -> Container {
    Container {
        name: "orgconnect-render".to_owned(),
        image: Some(image.to_owned()),
        args: Some(
            ["render-run", "--from", PARTS_PATH, "--to", MOUNT_PATH]
                .map(str::to_owned)
                .to_vec(),
        ),
        volume_mounts: Some(vec![
            VolumeMount {
                name: PARTS_VOLUME.to_owned(),
                mount_path: PARTS_PATH.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: FILES_VOLUME.to_owned(),
                mount_path: MOUNT_PATH.to_owned(),
                ..VolumeMount::default()
            },
        ]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

fn env_var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

/// The key of a run's Secret that holds its credentials file.
const CREDENTIALS_KEY: &str = "credentials";

/// In Secret mode, the run's credentials file made from the connection's Secret;
/// `Ok(Ok(None))` when the Job uses its own identity.
async fn run_credentials(
    ctx: &Context,
    connection: &AwsOrgConnection,
    namespace: &str,
) -> Result<Result<Option<String>, Refusal>> {
    let not_ready = |problem: &dyn std::fmt::Display| {
        Ok(Err((
            "ConnectionNotReady",
            format!(
                "connection {}'s credentials cannot be read: {problem}",
                connection.name_any()
            ),
        )))
    };
    match read_base_credentials(&ctx.client, &connection.spec.credentials, namespace).await? {
        Ok(BaseCredentials::Keys { credentials, .. }) => Ok(Ok(Some(credentials_file(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            credentials.session_token(),
        )))),
        Ok(BaseCredentials::DefaultChain) => Ok(Ok(None)),
        Err(problem) => not_ready(&problem.message()),
    }
}

/// How the Job authenticates: the connection's Secret as its credentials file, else the
/// Job's service account (IRSA when it carries the role annotation, else Pod Identity).
async fn job_identity(
    ctx: &Context,
    namespace: &str,
    connection: &AwsOrgConnection,
    service_account: &str,
) -> Result<JobIdentity> {
    job_identity_with(&ctx.client, namespace, connection, service_account).await
}

/// The service account a schedule's Jobs run as.
pub fn job_service_account(schedule: &SyncSchedule) -> String {
    schedule
        .spec
        .job_template
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".to_owned())
}

/// The principal a schedule's Jobs present to the managing role: the operator's own with
/// the connection's Secret, the IRSA role, or the Pod Identity role the spec names.
pub fn job_principal(
    schedule: &SyncSchedule,
    connection: &AwsOrgConnection,
    identity: &JobIdentity,
) -> Option<String> {
    match identity {
        JobIdentity::SharedCredentials => connection
            .status
            .as_ref()
            .and_then(|s| s.operator_principal.clone()),
        JobIdentity::WebIdentity { role_arn, .. } => Some(role_arn.clone()),
        JobIdentity::Container => schedule.spec.pod_identity_role_arn.clone(),
    }
}

/// Why a run would fail on AWS because the managing role does not trust the Jobs'
/// principal, read from the role's trust policy with the connection's live session (which
/// the managing-role template lets read its own role). `None` when the policy trusts the
/// principal, or cannot be read or judged: the run starts, as it would without the check.
async fn untrusted_job_principal(
    ctx: &Context,
    connection: &AwsOrgConnection,
    principal: &str,
) -> Option<Refusal> {
    let session = ctx
        .sessions
        .current(&super::context::object_key(connection))?;
    let role: RoleArn = connection.spec.role_arn.parse().ok()?;
    let external_id = connection.status.as_ref()?.external_id.clone()?;
    let answer = crate::aws::clients::iam(&session.config)
        .get_role()
        .role_name(role.role_name())
        .send()
        .await;
    let document = match answer {
        Ok(answer) => answer.role?.assume_role_policy_document?,
        Err(err) => {
            info!(connection = %connection.name_any(), error = %crate::aws::error::classify("GetRole", &err),
                "could not read the managing role's trust policy; the run starts unchecked");
            return None;
        }
    };
    let trust = parse_document(&document)?;
    match trust_verdict(&trust, principal, &external_id) {
        TrustVerdict::NotTrusted => Some((
            "JobPrincipalNotTrusted",
            format!(
                "the Jobs run as {principal}, which the trust policy of the managing role {role} \
                 does not let assume it with the connection's ExternalId, so every profile of a \
                 run would be refused: add {} to that trust policy, or deploy `orgconnect \
                 template managing-role --connection {}` again; the next run checks again",
                trust_statement(principal, &external_id),
                connection.name_any()
            ),
        )),
        TrustVerdict::Unknown(why) => {
            info!(connection = %connection.name_any(), %why,
                "the managing role's trust policy cannot be judged; the run starts unchecked");
            None
        }
        TrustVerdict::Trusted => None,
    }
}

/// [`job_identity`] with a plain client, for `orgconnect template --connection`: which
/// identity the Jobs of a schedule present, and so what the managing role must trust.
pub async fn job_identity_with(
    client: &kube::Client,
    namespace: &str,
    connection: &AwsOrgConnection,
    service_account: &str,
) -> Result<JobIdentity> {
    if connection.spec.credentials.source == CredentialSource::Secret {
        return Ok(JobIdentity::SharedCredentials);
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let role = accounts
        .get_opt(service_account)
        .await?
        .and_then(|sa| sa.annotations().get(IRSA_ROLE_ANNOTATION).cloned());
    Ok(match role {
        Some(role_arn) => JobIdentity::WebIdentity {
            role_arn,
            token_file: IRSA_TOKEN_FILE.to_owned(),
        },
        None => JobIdentity::Container,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_keeps_the_aws_profile_it_sets_and_gets_the_run_default_otherwise() {
        let schedule: SyncSchedule = serde_json::from_value(serde_json::json!({
            "apiVersion": "orgconnect.dev/v1alpha1",
            "kind": "SyncSchedule",
            "metadata": { "name": "inventory", "namespace": "team" },
            "spec": {
                "connectionRef": { "name": "acme" },
                "jobTemplate": { "spec": { "template": { "spec": { "containers": [
                    { "name": "own", "image": "x",
                      "env": [{ "name": "AWS_PROFILE", "value": "222222222222" },
                              { "name": "AWS_CONFIG_FILE", "value": "/elsewhere" }] },
                    { "name": "default", "image": "x" },
                ] } } } },
            },
        }))
        .expect("schedule");
        let env = run_env(&RunEnv {
            connection: "acme",
            mode: "backfill",
            since: Timestamp::UNIX_EPOCH,
            credentials: true,
            tools: &[ToolConfig::C7nOrg],
        });
        let job = run_job(
            &schedule,
            &RunJob {
                name: "inventory-1",
                namespace: "team",
                owner: OwnerReference::default(),
                labels: BTreeMap::new(),
                env,
                mode: "backfill",
                accounts: 1,
                credentials: true,
                render: None,
            },
        );
        let containers = job
            .spec
            .and_then(|s| s.template.spec)
            .map(|p| p.containers)
            .unwrap_or_default();
        let value = |container: usize, name: &str| {
            containers[container]
                .env
                .iter()
                .flatten()
                .filter(|e| e.name == name)
                .map(|e| e.value.clone().unwrap_or_default())
                .collect::<Vec<_>>()
        };
        assert_eq!(value(0, "AWS_PROFILE"), ["222222222222"]);
        assert_eq!(value(1, "AWS_PROFILE"), [BASE_PROFILE]);
        // The run's own files always win.
        assert_eq!(value(0, "AWS_CONFIG_FILE"), ["/etc/orgconnect/aws-config"]);
        assert_eq!(
            value(1, "ORGCONNECT_C7N_ORG_ACCOUNTS"),
            ["/etc/orgconnect/c7n-org-accounts.yml"]
        );
    }

    #[test]
    fn a_run_whose_files_outgrow_a_config_map_comes_in_parts_or_is_refused() {
        let account = |n: u64| RunAccount {
            id: format!("{:012}", 300_000_000_000 + n),
            name: format!("a{n}"),
            ou_path: "Root".into(),
            phase: "Connected".into(),
            role_arn: format!("arn:aws:iam::{:012}:role/R", 300_000_000_000 + n),
            tags: BTreeMap::new(),
        };
        let input = RunInput {
            managing_role_arn: "arn:aws:iam::111111111111:role/orgconnect".into(),
            external_id: "oc-abc".into(),
            member_external_id: None,
            region: "eu-west-1".into(),
            regions: Vec::new(),
            tools: Vec::new(),
            identity: JobIdentity::SharedCredentials,
            accounts: (0..40).map(account).collect(),
        };
        let small = Settings::default();
        assert!(matches!(
            run_objects(&small, &input, "inventory-1", 40),
            Ok(RunObjects::Files(_))
        ));
        // Over the limit and no image to assemble the parts: refused, saying how to fix it.
        let tight = Settings {
            run_part_bytes: 4096,
            ..Settings::default()
        };
        let Err((reason, message)) = run_objects(&tight, &input, "inventory-1", 40) else {
            panic!("refused without --run-image");
        };
        assert_eq!(reason, "RunTooLarge");
        assert!(message.contains("40 accounts take"), "{message}");
        assert!(message.contains("--run-image"), "{message}");
        assert!(!message.contains("  "), "{message}");
        assert!(
            RUN_REFUSALS.contains(&reason),
            "the refusal stays reported after the reconcile that made it"
        );
        // With the image: parts of at most the limit, each one key, in order.
        let parts = Settings {
            run_image: Some("orgconnect:test".into()),
            ..tight
        };
        let Ok(RunObjects::Parts { parts, image }) = run_objects(&parts, &input, "inventory-1", 40)
        else {
            panic!("parts");
        };
        assert_eq!(image, "orgconnect:test");
        assert!(parts.len() > 1);
        for (index, part) in parts.iter().enumerate() {
            let (key, text) = part.iter().next().expect("one key");
            assert_eq!(key, &part_key(index));
            assert!(key.len() + text.len() <= 4096 + part_key(index).len());
        }
        assert_eq!(part_name("inventory-1", 0), "inventory-1");
        assert_eq!(part_name("inventory-1", 2), "inventory-1-part-2");
    }

    #[test]
    fn a_refused_run_stays_reported_until_the_spec_changes() {
        let status = |reason: &str| SyncScheduleStatus {
            conditions: vec![Condition::new(
                ConditionType::Ready,
                ConditionStatus::False,
                reason,
                "the run was skipped",
                Some(2),
                Timestamp::now(),
            )],
            ..SyncScheduleStatus::default()
        };
        let kept = kept_refusal(&status("NoConnectedAccounts"), Some(2)).expect("kept");
        assert_eq!(
            (kept.0, kept.1),
            (ConditionStatus::False, "NoConnectedAccounts")
        );
        assert!(kept_refusal(&status("NoConnectedAccounts"), Some(3)).is_none());
        assert!(kept_refusal(&status("ConnectionNotFound"), Some(2)).is_none());
        assert!(kept_refusal(&SyncScheduleStatus::default(), Some(2)).is_none());
    }

    fn connection() -> AwsOrgConnection {
        AwsOrgConnection::new(
            "acme",
            serde_json::from_value(
                serde_json::json!({"roleArn": "arn:aws:iam::111111111111:role/x"}),
            )
            .expect("spec"),
        )
    }

    fn schedule_selecting(selector: serde_json::Value) -> SyncSchedule {
        SyncSchedule::new(
            "inventory",
            serde_json::from_value(serde_json::json!({
                "connectionRef": { "name": "acme" },
                "schedule": "@daily",
                "accountSelector": selector,
                "jobTemplate": {},
            }))
            .expect("spec"),
        )
    }

    #[test]
    fn a_bad_account_selector_is_refused_with_a_reason() {
        let good = schedule_selecting(serde_json::json!({
            "matchLabels": { "team": "a" },
            "matchExpressions": [{ "key": "env", "operator": "NotIn", "values": ["dev"] }],
        }));
        let selector = account_selector(&good).expect("valid").expect("a selector");
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(selector.matches(&labels(&[("team", "a"), ("env", "prod")])));
        assert!(!selector.matches(&labels(&[("team", "a"), ("env", "dev")])));
        let bad = schedule_selecting(serde_json::json!({
            "matchExpressions": [{ "key": "env", "operator": "Matches", "values": ["dev"] }],
        }));
        let (reason, message) = account_selector(&bad).expect_err("refused");
        assert_eq!(reason, "InvalidAccountSelector");
        assert!(message.contains("Matches"), "{message}");
    }

    #[test]
    fn runs_are_labelled_with_their_schedule_and_connection() {
        let labels = run_labels("inventory", "acme");
        assert_eq!(labels[SCHEDULE_LABEL], "inventory");
        assert_eq!(labels[CONNECTION_LABEL], "acme");
        let long = "c".repeat(80);
        assert!(run_labels("s", &long)[CONNECTION_LABEL].len() <= 63);
    }

    #[test]
    fn a_missing_or_deleting_connection_starts_no_run() {
        let (reason, message) = usable_connection(None, "acme").expect_err("missing");
        assert_eq!(reason, "ConnectionNotFound");
        assert!(message.contains("AwsOrgConnection acme does not exist"));

        let mut deleting = connection();
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let (reason, message) = usable_connection(Some(&deleting), "acme").expect_err("deleting");
        assert_eq!(reason, "ConnectionDeleting");
        assert!(message.contains("being deleted"));

        let live = connection();
        assert!(usable_connection(Some(&live), "acme").is_ok());
    }
}
