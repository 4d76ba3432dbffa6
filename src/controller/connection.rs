//! The AwsOrgConnection reconciler: resolve base credentials, assume the managing role with
//! the ExternalId, discover the organization when due, own its MemberAccounts, and write
//! status only when it changed.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::access::{Authentication, Pass, RECHECK_DENIED, authenticate};
use super::connection_status::{
    ExternalIdDecision, Verdict, count_phases, decide_external_id, defer_count_update,
    generate_external_id, members_connected, ready, transitions,
};
use super::context::{Context, Diagnostics, jitter, object_key};
use super::members::{
    EarlyWrites, MemberPlan, desired_member, desired_tags, keep_unread_tags, plan,
};
use super::names::{FIELD_MANAGER, FINALIZER, TAGS_FIELD_MANAGER};
use super::reconcile::{delete_all, observed};
use super::revoke;
use super::stackset;
use crate::api::condition::{ConditionStatus, ConditionType};
use crate::api::connection::{
    AwsOrgConnection, DISCOVER_ANNOTATION, ExternalIdSource, OrganizationInfo,
};
use crate::api::member_account::MemberPhase;
use crate::aws::arn::RoleArn;
use crate::aws::discovery::{
    OrganizationHeader, TagReader, describe_organization, list_organization,
};
use crate::aws::session::ManagingSession;
use crate::aws::{AwsFailure, FailureKind};
use crate::duration::parse_duration;
use crate::error::{Error, Result};
use crate::metrics::PhaseLabels;
use crate::organization::{Account, OrganizationSnapshot};

/// How many MemberAccounts are written at once.
const WRITE_CONCURRENCY: usize = 16;

/// Entry point for the controller: adds the finalizer, then applies or cleans up.
pub async fn reconcile(connection: Arc<AwsOrgConnection>, ctx: Arc<Context>) -> Result<Action> {
    Diagnostics::add(&ctx.diagnostics.connection_reconciles, 1);
    let result = observed(
        &ctx,
        connection.clone().as_ref(),
        reconcile_inner(connection, &ctx),
    )
    .await;
    Diagnostics::add(&ctx.diagnostics.connection_reconciles_finished, 1);
    result
}

async fn reconcile_inner(connection: Arc<AwsOrgConnection>, ctx: &Arc<Context>) -> Result<Action> {
    let namespace = connection
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<AwsOrgConnection> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, connection, |event| async {
        match event {
            Finalizer::Apply(connection) => apply(connection, ctx.clone()).await,
            Finalizer::Cleanup(connection) => revoke::cleanup(connection, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

impl Pass<'_> {
    /// Summarises, writes status when changed, publishes Events for transitions.
    async fn finish(mut self, action: Action) -> Result<Action> {
        let members = self.ctx.members_of(self.connection);
        let counts = count_phases(&members);
        for (phase, count) in MemberPhase::ALL.map(|phase| (phase.as_str(), counts.of(phase))) {
            self.ctx
                .health
                .metrics
                .accounts
                .get_or_create(&PhaseLabels {
                    namespace: self.connection.namespace().unwrap_or_default(),
                    connection: self.connection.name_any(),
                    phase,
                })
                .set(i64::from(count));
        }
        let verdict = members_connected(&counts, &self.connection.name_any());
        self.status.accounts = Some(counts);
        self.set(ConditionType::MembersConnected, verdict);
        let summary = ready(&self.status.conditions);
        self.set(ConditionType::Ready, summary);
        self.status.observed_generation = self.generation();

        let before = self
            .connection
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        // While probes land, the counts are rewritten every few seconds, not per account.
        if let Some(wait) = defer_count_update(
            &self.connection.status.clone().unwrap_or_default(),
            &self.status,
            self.ctx.since_status_write(&object_key(self.connection)),
        ) {
            return Ok(Action::requeue(wait));
        }
        if self.write_status().await? {
            for condition in transitions(&before, &self.status.conditions) {
                if condition.type_ == ConditionType::MembersConnected
                    && condition.status == ConditionStatus::Unknown
                {
                    continue;
                }
                let type_ = if condition.status == ConditionStatus::False {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                let note = format!("{}: {}", condition.type_, condition.message);
                self.ctx
                    .event(self.connection, type_, &condition.reason, note)
                    .await;
            }
        }
        Ok(action)
    }
}

async fn apply(connection: Arc<AwsOrgConnection>, ctx: Arc<Context>) -> Result<Action> {
    debug!(connection = %object_key(connection.as_ref()), "reconciling");
    ctx.members_ready().await;
    debug!(connection = %object_key(connection.as_ref()), "member cache ready");
    let namespace = connection
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let mut pass = Pass::new(&connection, &ctx, &namespace);

    if let Some(problem) = connection.spec.problem() {
        return refuse_spec(pass, problem).await;
    }
    let Some(external_id) = external_id(&mut pass).await? else {
        return pass.finish(Action::await_change()).await;
    };
    let session = match authenticate(&mut pass, &namespace, external_id).await? {
        Authentication::Ready(session) => session,
        Authentication::Stop(action) => return pass.finish(action).await,
    };
    if session.changed || pass.status.observed_generation != pass.generation() {
        // New credentials or a new spec: every member is probed again at once.
        ctx.request_probes(&connection);
    }
    let next_discovery = discover_when_due(&mut pass, &session).await?;
    // Come back before the session needs renewing, so member probes always have one.
    let renew = session
        .expires
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(Duration::from_secs(4 * 60))
        .max(Duration::from_secs(30));
    let mut requeue = next_discovery.min(renew);
    if connection.spec.stack_set.enabled
        && let Some(poll) = stack_set_step(&mut pass, &session).await
    {
        requeue = requeue.min(poll);
    }
    pass.finish(Action::requeue(requeue)).await
}

/// Reports a spec the CRD's validation refuses (it reached the operator from an API server
/// that does not enforce it) and does nothing else until the spec changes.
async fn refuse_spec(mut pass: Pass<'_>, problem: String) -> Result<Action> {
    warn!(connection = %object_key(pass.connection), problem = %problem, "invalid spec");
    pass.set(
        ConditionType::Ready,
        (
            ConditionStatus::False,
            "InvalidSpec",
            format!(
                "{problem}. The CRD's validation refuses this spec, so the API server does not \
                 enforce it (are the CRDs installed from this release?); nothing is done until \
                 the spec is fixed"
            ),
        ),
    );
    pass.status.observed_generation = pass.generation();
    if pass.write_status().await? {
        pass.ctx
            .event(pass.connection, EventType::Warning, "InvalidSpec", problem)
            .await;
    }
    Ok(Action::await_change())
}

/// Settles the ExternalId; a generated one is written to status before it is first used,
/// so it survives a crash and never changes. `None` when the operator refuses the spec's.
async fn external_id(pass: &mut Pass<'_>) -> Result<Option<String>> {
    let spec = pass.connection.spec.external_id.as_deref();
    let current = pass
        .status
        .external_id
        .as_deref()
        .zip(pass.status.external_id_source);
    match decide_external_id(
        spec,
        current,
        pass.ctx.settings.require_generated_external_id,
    ) {
        ExternalIdDecision::Use(id, source) => {
            pass.status.external_id = Some(id.clone());
            pass.status.external_id_source = Some(source);
            Ok(Some(id))
        }
        ExternalIdDecision::Generate => {
            let id = generate_external_id();
            pass.status.external_id = Some(id.clone());
            pass.status.external_id_source = Some(ExternalIdSource::Generated);
            pass.write_status().await?;
            debug!(connection = %object_key(pass.connection), "generated the ExternalId");
            Ok(Some(id))
        }
        ExternalIdDecision::Refused => {
            pass.set(
                ConditionType::Authenticated,
                (
                    ConditionStatus::False,
                    "ExternalIdNotAllowed",
                    "this operator requires ExternalIds it generates itself; remove \
                     spec.externalId and put status.externalId in the role's trust policy"
                        .to_owned(),
                ),
            );
            Ok(None)
        }
    }
}

/// Whether a discovery should run now.
fn discovery_due(pass: &Pass<'_>, interval: Duration) -> bool {
    if discovery_requested(pass.connection) {
        return true;
    }
    let generation = pass.generation();
    if let Some(retry) = pass.ctx.discovery_retry(&object_key(pass.connection))
        && retry.generation == generation
    {
        return pass.now >= retry.not_before;
    }
    let discovered = pass.condition(ConditionType::Discovered);
    if discovered.is_none_or(|c| c.observed_generation != generation) {
        return true;
    }
    match &pass.status.last_discovery_time {
        None => true,
        Some(Time(last)) => last
            .checked_add(interval)
            .map_or(true, |next| pass.now >= next),
    }
}

/// Whether a user asked for a discovery now (`orgconnect.dev/discover: now`).
fn discovery_requested(connection: &AwsOrgConnection) -> bool {
    connection
        .annotations()
        .get(DISCOVER_ANNOTATION)
        .is_some_and(|value| value == "now")
}

/// Removes `orgconnect.dev/discover` once the discovery it asked for has run.
async fn clear_discover_annotation(pass: &Pass<'_>) -> Result<()> {
    if !discovery_requested(pass.connection) {
        return Ok(());
    }
    let patch = serde_json::json!({ "metadata": { "annotations": { DISCOVER_ANNOTATION: null } } });
    pass.api
        .patch(
            &pass.connection.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// How long until the next discovery is due, plus jitter so connections spread out.
fn until_next_discovery(pass: &Pass<'_>, interval: Duration) -> Duration {
    let next = pass
        .status
        .last_discovery_time
        .as_ref()
        .and_then(|Time(last)| last.checked_add(interval).ok());
    let remaining = next
        .and_then(|next| Duration::try_from(next.duration_since(pass.now)).ok())
        .unwrap_or(interval);
    remaining.min(interval) + jitter(interval / 10)
}

async fn discover_when_due(pass: &mut Pass<'_>, session: &ManagingSession) -> Result<Duration> {
    let interval = parse_duration(&pass.connection.spec.discovery_interval)
        .unwrap_or(Duration::from_secs(3600))
        .max(Duration::from_secs(60));
    if !discovery_due(pass, interval) {
        if let Some(retry) = pass.ctx.discovery_retry(&object_key(pass.connection)) {
            let wait = retry.not_before.duration_since(pass.now);
            return Ok(Duration::try_from(wait)
                .unwrap_or_default()
                .max(Duration::from_secs(1)));
        }
        return Ok(until_next_discovery(pass, interval));
    }
    Diagnostics::add(&pass.ctx.diagnostics.discoveries, 1);
    let client = crate::aws::clients::organizations(&session.config);
    let role_account = pass
        .connection
        .spec
        .role_arn
        .parse::<RoleArn>()
        .map(|arn| arn.account_id)
        .unwrap_or_default();
    let header = match describe_organization(&client).await {
        Ok(header) => header,
        Err(failure) => return Ok(discovery_failed(pass, failure).await),
    };
    // A role outside the management account lists the organization as a delegated
    // administrator; AWS refuses the List calls when no delegation policy allows it.
    let delegated_from = (header.managing_account_id != role_account).then_some(role_account);
    let organization = header.clone();
    let existing = pass.ctx.members_of(pass.connection);
    let early = EarlyWrites::new(pass.connection, &existing);
    let tags = pass
        .connection
        .spec
        .account_tags
        .enabled
        .then(|| TagReader::new(pass.ctx.settings.discovery_concurrency));
    let (listed, written_early) = list_and_write(
        pass.ctx,
        pass.connection,
        &client,
        (header, tags.as_ref()),
        early,
    )
    .await;
    clear_discover_annotation(pass).await?;
    let tags_denied = tags.as_ref().is_some_and(TagReader::denied);
    let listed = listed.and_then(|mut org| {
        if tags_denied && pass.connection.spec.account_selector.names_tags() {
            // The selection depends on tags the role may not read: change nothing.
            return Err(AwsFailure {
                operation: "ListTagsForResource",
                kind: FailureKind::AccessDenied,
                code: Some("AccessDeniedException".to_owned()),
                message: "accountSelector selects by tag, and the managing role may not \
                          read the accounts' tags"
                    .to_owned(),
            });
        }
        if tags_denied {
            let by_account: std::collections::HashMap<&str, &crate::api::MemberAccount> = existing
                .iter()
                .map(|m| (m.spec.account_id.as_str(), m.as_ref()))
                .collect();
            for account in &mut org.accounts {
                let known = by_account.get(account.id.as_str()).copied();
                keep_unread_tags(pass.connection, account, known);
            }
        }
        Ok(org)
    });
    match listed {
        Ok(org) => {
            pass.ctx.discovery_succeeded(&object_key(pass.connection));
            if tags_denied {
                pass.ctx
                    .event(
                        pass.connection,
                        EventType::Warning,
                        "AccountTagsDenied",
                        "the managing role may not call organizations:ListTagsForResource, so \
                         accounts were listed without their tags; update the role from \
                         `orgconnect template managing-role`, or set accountTags.enabled to \
                         false"
                            .to_owned(),
                    )
                    .await;
            }
            apply_discovery(pass, &org, delegated_from, &existing, written_early?).await?;
            Ok(until_next_discovery(pass, interval))
        }
        Err(failure)
            if failure.kind == FailureKind::AccessDenied
                && delegated_from.is_some()
                && failure.operation != "ListTagsForResource" =>
        {
            pass.ctx.discovery_succeeded(&object_key(pass.connection));
            let (reason, message) =
                not_delegated(&organization, &pass.connection.spec.role_arn, &failure);
            pass.set(
                ConditionType::Discovered,
                (ConditionStatus::False, reason, message),
            );
            // Attaching the policy changes nothing here: look again soon.
            Ok(RECHECK_DENIED + jitter(Duration::from_secs(30)))
        }
        Err(failure) => Ok(discovery_failed(pass, failure).await),
    }
}

/// The reason and message for a role in a member account that may not list the
/// organization: the delegation policy to attach in the management account.
fn not_delegated(
    organization: &OrganizationHeader,
    role_arn: &str,
    failure: &AwsFailure,
) -> (&'static str, String) {
    let policy = crate::templates::delegation_policy(role_arn);
    (
        "NotDelegatedAdministrator",
        format!(
            "{role_arn} is in a member account of organization {}, whose management account is {}, \
             and may not list the organization ({failure}). Either point roleArn at a role in the \
             management account, or make its account a delegated administrator: in the \
             management account, attach this delegation policy (`aws organizations \
             put-resource-policy --content '<policy>'`, or Organizations console > Settings > \
             Delegated administrator): {policy}",
            organization.id, organization.managing_account_id
        ),
    )
}

/// Records a discovery that did not complete. Nothing is deleted; a connection that was
/// discovered before stays `Discovered=True`, marked `Stale`.
async fn discovery_failed(pass: &mut Pass<'_>, failure: AwsFailure) -> Duration {
    let delay =
        pass.ctx
            .discovery_failed(&object_key(pass.connection), pass.generation(), pass.now);
    warn!(connection = %object_key(pass.connection), error = %failure, retry_in = ?delay, "discovery failed");
    let verdict: Verdict = match failure.kind {
        FailureKind::OrganizationsNotInUse => (
            ConditionStatus::False,
            "OrganizationsNotInUse",
            "AWS Organizations is not enabled for the managing account: create an organization \
             in it, or point roleArn at the managing account of an existing one"
                .to_owned(),
        ),
        FailureKind::AccessDenied => (
            ConditionStatus::False,
            "DiscoveryDenied",
            format!(
                "the managing role may not call organizations:{} ({failure}); its policy must \
                 allow {} (`orgconnect template managing-role` grants exactly these)",
                failure.operation,
                crate::templates::DISCOVERY_ACTIONS.join(", ")
            ),
        ),
        kind if kind.is_transient() => {
            let previous = pass.condition(ConditionType::Discovered).cloned();
            let note = format!(
                "the discovery at {} did not complete ({failure}); nothing was deleted; retrying in {}s",
                pass.now,
                delay.as_secs()
            );
            pass.ctx
                .event(
                    pass.connection,
                    EventType::Warning,
                    "DiscoveryIncomplete",
                    note.clone(),
                )
                .await;
            match previous {
                Some(previous) if previous.status == ConditionStatus::True => {
                    let since = pass
                        .status
                        .last_discovery_time
                        .as_ref()
                        .map(|t| t.0.to_string())
                        .unwrap_or_default();
                    pass.set_with_generation(
                        ConditionType::Discovered,
                        (
                            ConditionStatus::True,
                            "Stale",
                            format!("{note}; MemberAccounts are as of the discovery at {since}"),
                        ),
                        previous.observed_generation,
                    );
                }
                _ => pass.set_with_generation(
                    ConditionType::Discovered,
                    (ConditionStatus::Unknown, "DiscoveryIncomplete", note),
                    None,
                ),
            }
            return delay;
        }
        _ => (
            ConditionStatus::False,
            "DiscoveryFailed",
            failure.to_string(),
        ),
    };
    pass.set(ConditionType::Discovered, verdict);
    delay
}

/// Lists the organization and, side by side, writes the MemberAccounts `early` hands out
/// as each parent's accounts arrive, so probes start while the listing goes on. Returns
/// the listing, and the accounts written early (or the first write that failed).
async fn list_and_write(
    ctx: &Context,
    connection: &AwsOrgConnection,
    client: &aws_sdk_organizations::Client,
    (header, tags): (OrganizationHeader, Option<&TagReader>),
    early: Option<EarlyWrites<'_>>,
) -> (
    std::result::Result<OrganizationSnapshot, AwsFailure>,
    Result<std::collections::HashSet<String>>,
) {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let listing = async move {
        let mut early = early;
        let mut on_accounts = |org: &OrganizationSnapshot, accounts: &[Account]| {
            if let Some(early) = early.as_mut() {
                for member in early.found(org, accounts) {
                    // The writer stops at its first failure; the listing goes on.
                    let _ = sender.send(member);
                }
            }
        };
        let listed = list_organization(
            client,
            header,
            ctx.settings.discovery_concurrency,
            tags,
            &mut on_accounts,
        )
        .await;
        // `sender` goes with this block, which ends the writer's stream.
        (listed, early.map(|e| e.sent).unwrap_or_default())
    };
    let members = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let ((listed, sent), written) =
        futures::join!(listing, apply_members(ctx, connection, members));
    (listed, written.map(|_| sent))
}

/// Writes the MemberAccounts a complete discovery calls for (beyond those `written_early`
/// while it listed), and the organization status. `delegated_from`: the delegated
/// administrator account the listing was made from; `existing`: the connection's
/// MemberAccounts before it.
async fn apply_discovery(
    pass: &mut Pass<'_>,
    org: &OrganizationSnapshot,
    delegated_from: Option<String>,
    existing: &[Arc<crate::api::MemberAccount>],
    written_early: std::collections::HashSet<String>,
) -> Result<()> {
    let spec = &pass.connection.spec;
    pass.status.organization = Some(OrganizationInfo {
        id: org.id.clone(),
        root_id: Some(org.root_id.clone()),
        managing_account_id: org.managing_account_id.clone(),
        feature_set: org.feature_set.clone(),
        delegated_administrator_account_id: delegated_from,
    });
    let unknown = org.unknown_units(&spec.account_selector);
    if !unknown.is_empty() {
        pass.set(
            ConditionType::Discovered,
            (
                ConditionStatus::False,
                "UnknownOrganizationalUnit",
                format!(
                    "accountSelector.includeOrganizationalUnits names {} that organization {} does \
                     not have; MemberAccounts were left as they are",
                    unknown.join(", "),
                    org.id
                ),
            ),
        );
        return Ok(());
    }
    let selected = org.select(&spec.account_selector);
    let desired = selected
        .iter()
        .map(|account| desired_member(pass.connection, org, account))
        .collect();
    let MemberPlan {
        mut apply,
        delete,
        unchanged,
    } = plan(desired, existing);
    let (applied, deleted) = (apply.len(), delete.len());
    apply.retain(|member| !written_early.contains(&member.spec.account_id));
    write_members(pass.ctx, pass.connection, apply, delete).await?;
    if applied + deleted > 0 {
        info!(connection = %object_key(pass.connection), applied, deleted, unchanged, "MemberAccounts updated");
        pass.ctx
            .event(
                pass.connection,
                EventType::Normal,
                "MembersUpdated",
                format!("{applied} MemberAccounts created or updated, {deleted} removed, {unchanged} unchanged"),
            )
            .await;
    }
    pass.status.last_discovery_time = Some(Time(pass.now));
    pass.set(
        ConditionType::Discovered,
        (
            ConditionStatus::True,
            "Discovered",
            format!(
                "organization {} has {} accounts in {} organizational units; {} selected",
                org.id,
                org.accounts.len(),
                org.units.len(),
                selected.len()
            ),
        ),
    );
    Ok(())
}

async fn write_members(
    ctx: &Context,
    connection: &AwsOrgConnection,
    apply: Vec<crate::api::MemberAccount>,
    delete: Vec<String>,
) -> Result<()> {
    apply_members(ctx, connection, futures::stream::iter(apply)).await?;
    let namespace = connection.namespace().unwrap_or_default();
    let api: Api<crate::api::MemberAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    let deletes = delete.len();
    delete_all(&api, delete, WRITE_CONCURRENCY).await?;
    Diagnostics::add(&ctx.diagnostics.member_writes, deletes as u64);
    Ok(())
}

/// Server-side applies each MemberAccount of `members` (its spec and metadata),
/// [`WRITE_CONCURRENCY`] at once, as they come; stops at the first failure.
async fn apply_members(
    ctx: &Context,
    connection: &AwsOrgConnection,
    members: impl futures::Stream<Item = crate::api::MemberAccount>,
) -> Result<()> {
    let namespace = connection.namespace().unwrap_or_default();
    let api: Api<crate::api::MemberAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    members
        .map(|member| {
            let api = api.clone();
            let params = params.clone();
            async move {
                let mut body =
                    serde_json::to_value(&member).map_err(|source| Error::Serialize {
                        what: "MemberAccount",
                        source,
                    })?;
                if let Some(object) = body.as_object_mut() {
                    object.remove("status");
                }
                let written = api
                    .patch(&member.name_any(), &params, &Patch::Apply(&body))
                    .await?;
                Diagnostics::add(&ctx.diagnostics.member_writes, 1);
                let tags = desired_tags(&member);
                if desired_tags(&written) != tags {
                    write_tags(&api, &member.name_any(), tags).await?;
                    Diagnostics::add(&ctx.diagnostics.member_writes, 1);
                }
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(WRITE_CONCURRENCY)
        .try_for_each(|()| async { Ok(()) })
        .await
}

/// Applies `status.tags` of MemberAccount `name` under discovery's own field manager: the
/// tags it applied before and not now are removed, the member controller's status stays.
async fn write_tags(
    api: &Api<crate::api::MemberAccount>,
    name: &str,
    tags: std::collections::BTreeMap<String, String>,
) -> Result<()> {
    // No tags at all: the field is left out, so it goes as a whole (an empty map would
    // leave `tags: null` behind, which the schema refuses).
    let status = if tags.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::json!({ "tags": tags })
    };
    let patch = serde_json::json!({
        "apiVersion": crate::api::MemberAccount::api_version(&()),
        "kind": crate::api::MemberAccount::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(TAGS_FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// One step towards the operator-managed StackSet; `Some` asks to look again that soon.
async fn stack_set_step(pass: &mut Pass<'_>, session: &ManagingSession) -> Option<Duration> {
    let root = pass.status.organization.as_ref()?.root_id.clone()?;
    let desired = stackset::desired(pass.connection, &root)?;
    let client = crate::aws::stackset::StackSets::new(
        &session.config,
        pass.connection.is_delegated_administrator(),
        &pass.connection.spec.stack_set.rollout,
    );
    // A failed operation stays reported until the spec changes.
    let hold_failure = pass
        .condition(ConditionType::StackSetReady)
        .is_none_or(|c| c.observed_generation == pass.generation());
    // Drift is detected on the probe cycle.
    let drift_every = parse_duration(&pass.connection.spec.member_access.probe_interval)
        .unwrap_or(Duration::from_secs(1800))
        .max(Duration::from_secs(60));
    match stackset::ensure(
        &client,
        &desired,
        pass.status.stack_set.as_ref(),
        hold_failure,
        drift_every,
    )
    .await
    {
        Ok(progress) => {
            let key = object_key(pass.connection);
            pass.ctx.set_stack_set(&key, &progress.status);
            let roles_changed =
                pass.ctx
                    .set_member_roles(&key, &progress.status.name, &progress.instance_states);
            pass.status.stack_set = Some(progress.status);
            pass.set(ConditionType::StackSetReady, progress.verdict);
            if progress.deployed {
                // The member role now exists everywhere: check the Blocked accounts again.
                pass.ctx.request_probes(pass.connection);
            } else if !roles_changed.is_empty() {
                // Those accounts' stack instances changed state: their condition says so.
                pass.ctx.request_probes_of(pass.connection, &roles_changed);
            }
            progress.poll
        }
        Err(failure) if failure.kind.is_transient() => {
            warn!(connection = %object_key(pass.connection), error = %failure, "StackSet step failed; retrying");
            Some(Duration::from_secs(30))
        }
        Err(failure) => {
            pass.set(
                ConditionType::StackSetReady,
                stackset::failure_verdict(&failure),
            );
            Some(Duration::from_secs(300))
        }
    }
}
