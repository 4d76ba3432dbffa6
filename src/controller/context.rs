//! What every reconcile shares: clients, caches, settings, and diagnostics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api::connection::{StackInstanceFailure, StackSetStatus};
use crate::api::{AwsOrgConnection, MemberAccount};
use crate::aws::session::SessionCache;
use crate::aws::stackset::InstanceState;
use crate::lock;

/// Operator-wide settings, from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Reconcile only connections matching this label selector.
    pub label_selector: Option<String>,
    /// Refuse `spec.externalId`: every connection presents an ExternalId the operator
    /// generated, so one tenant cannot present another tenant's id.
    pub require_generated_external_id: bool,
    /// How many Organizations listing calls one discovery makes at once.
    pub discovery_concurrency: usize,
    /// How many member probes run at once across all connections, so a large
    /// organization neither floods STS nor starves other connections.
    pub probe_concurrency: usize,
    /// The name Events are reported under (the pod's name in a cluster).
    pub instance: String,
    /// The operator's own image: a sync run whose files outgrow one ConfigMap gets an init
    /// container of it that assembles them. Without it such a run is refused.
    pub run_image: Option<String>,
    /// The most bytes of a large run's files one ConfigMap holds.
    pub run_part_bytes: usize,
}

/// The default for [`Settings::run_part_bytes`]: well within the 1 MiB a ConfigMap holds.
pub const RUN_PART_BYTES: usize = 900 * 1024;

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: None,
            label_selector: None,
            require_generated_external_id: false,
            discovery_concurrency: 8,
            probe_concurrency: 64,
            instance: "orgconnect".to_owned(),
            run_image: None,
            run_part_bytes: RUN_PART_BYTES,
        }
    }
}

/// `namespace/name`: how caches and logs name an object.
pub fn object_key<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// A random delay below `max`, so objects requeued together spread out.
pub fn jitter(max: Duration) -> Duration {
    use rand::Rng;
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::rng().random_range(0..max_ms))
}

fn settings_probe_limit(settings: &Settings) -> usize {
    settings.probe_concurrency.max(1)
}

/// Counters a test or `/metrics` can read.
#[derive(Debug, Default)]
pub struct Diagnostics {
    /// Connection reconciles started, and finished (whatever their result).
    pub connection_reconciles: AtomicU64,
    pub connection_reconciles_finished: AtomicU64,
    pub connection_failures: AtomicU64,
    pub discoveries: AtomicU64,
    pub status_writes: AtomicU64,
    pub member_writes: AtomicU64,
    pub member_reconciles: AtomicU64,
    /// Probes started.
    pub probes: AtomicU64,
    /// Probes whose outcome has been applied to the MemberAccount (written or found equal).
    pub probes_applied: AtomicU64,
    pub member_status_writes: AtomicU64,
    /// Revoke attempts that called AWS (waiting out a backoff is not one).
    pub revoke_attempts: AtomicU64,
    /// What the operator still held in memory about connections and their members (probe
    /// records and limits, retries, StackSet failures, status-write times) right after
    /// its last revoke: zero once every connection is gone.
    pub remembered: AtomicU64,
}

impl Diagnostics {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// When a connection's failed discovery may be tried again.
#[derive(Clone, Copy, Debug)]
pub struct DiscoveryRetry {
    /// The generation the failed attempt was for.
    pub generation: Option<i64>,
    pub failures: u32,
    pub not_before: Timestamp,
}

/// A revoke that could not reach AWS, and when it may be tried again.
#[derive(Clone, Debug)]
pub struct RevokeRetry {
    /// Consecutive failed attempts.
    pub failures: u32,
    pub not_before: Timestamp,
    /// Why the last attempt failed.
    pub problem: String,
}

/// When a member was last probed, from what, and when it is due again.
#[derive(Clone, Copy, Debug)]
pub struct ProbeRecord {
    /// Fingerprint of what the probe depended on: the connection's generation and
    /// session, the member's generation.
    pub inputs: u64,
    pub next: Timestamp,
    /// Consecutive probes that did not complete (throttled, 5xx).
    pub failures: u32,
}

/// The shared caches, and whether each holds a complete listing yet. Readiness comes from
/// the watch that fills the cache, not `Store::wait_until_ready`, which wakes only the last
/// of several waiters, and a controller already waits on each store.
pub struct Caches {
    pub members: Store<MemberAccount>,
    pub connections: Store<AwsOrgConnection>,
    pub members_ready: tokio::sync::watch::Receiver<bool>,
    pub connections_ready: tokio::sync::watch::Receiver<bool>,
}

/// The controllers' requests to each other.
pub struct Channels {
    /// To the member controller: probe these MemberAccounts now.
    pub probe_requests: tokio::sync::mpsc::UnboundedSender<ObjectRef<MemberAccount>>,
    /// To the connection controller: these connections' counts changed.
    pub counts_changed: tokio::sync::mpsc::UnboundedSender<ObjectRef<AwsOrgConnection>>,
}

/// How long changed counts wait to be written: a connection hears once per this of
/// everything its MemberAccounts' phases did meanwhile, rather than once per account.
pub const COUNTS_COALESCE: Duration = Duration::from_secs(1);

/// The keys `changes` brings, each at most once per `window`: after the first change the
/// stream waits `window`, then yields every key that changed by then, once. Written here
/// because the stream adaptors at hand (`tokio_stream`'s `throttle`, kube's `debounce`)
/// either limit the whole stream or wait for quiet, which never comes while thousands
/// of accounts are probed.
pub fn coalesce<T>(
    changes: tokio::sync::mpsc::UnboundedReceiver<T>,
    window: Duration,
) -> impl futures::Stream<Item = T> + Send
where
    T: std::hash::Hash + Eq + Send + 'static,
{
    futures::stream::unfold(
        (changes, Vec::<T>::new()),
        move |(mut changes, mut ready)| async move {
            if ready.is_empty() {
                let first = changes.recv().await?;
                tokio::time::sleep(window).await;
                let mut changed = std::collections::HashSet::from([first]);
                while let Ok(next) = changes.try_recv() {
                    changed.insert(next);
                }
                ready.extend(changed);
            }
            let next = ready.pop()?;
            Some((next, (changes, ready)))
        },
    )
}

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub sessions: SessionCache,
    /// Every MemberAccount the operator watches.
    pub members: Store<MemberAccount>,
    pub recorder: Recorder,
    pub diagnostics: Arc<Diagnostics>,
    /// Health and metrics served over HTTP.
    pub health: Arc<crate::server::Health>,
    /// Every AwsOrgConnection the operator reconciles, updated before a controller hears
    /// of a change.
    pub connections: Store<AwsOrgConnection>,
    /// Asks the member controller to probe these MemberAccounts.
    probe_requests: tokio::sync::mpsc::UnboundedSender<ObjectRef<MemberAccount>>,
    /// Tells the connection controller that a connection's counts changed.
    counts_changed: tokio::sync::mpsc::UnboundedSender<ObjectRef<AwsOrgConnection>>,
    /// Turns true once `members` holds the first complete listing.
    members_ready: tokio::sync::watch::Receiver<bool>,
    /// Turns true once `connections` holds the first complete listing.
    connections_ready: tokio::sync::watch::Receiver<bool>,
    retries: Mutex<HashMap<String, DiscoveryRetry>>,
    /// Failed revokes by connection, kept in memory so waiting writes nothing.
    revokes: Mutex<HashMap<String, RevokeRetry>>,
    probes: Mutex<HashMap<String, ProbeRecord>>,
    /// When each connection's status was last written.
    status_written: Mutex<HashMap<String, std::time::Instant>>,
    /// Connection -> its StackSet and the stack instances its last operation failed,
    /// as the connection reconciler last saw them (probes read it before the status write
    /// reaches the cache).
    stack_instance_failures: Mutex<HashMap<String, (String, Vec<StackInstanceFailure>)>>,
    /// Connection -> its StackSet and, by account, the state of the account's stack
    /// instance (the worst of its regions), as the connection reconciler last read them.
    member_roles: Mutex<HashMap<String, MemberRoles>>,
    connection_limits: Mutex<HashMap<String, (usize, Arc<Semaphore>)>>,
    global_probes: Arc<Semaphore>,
    /// `<kind>/<namespace>/<name>` -> reconciles failed in a row, for the error policy.
    backoff: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        sessions: SessionCache,
        caches: Caches,
        channels: Channels,
        diagnostics: Arc<Diagnostics>,
        health: Arc<crate::server::Health>,
    ) -> Self {
        let Caches {
            members,
            connections,
            members_ready,
            connections_ready,
        } = caches;
        let Channels {
            probe_requests,
            counts_changed,
        } = channels;
        let mut ready = members_ready.clone();
        let ready_health = health.clone();
        tokio::spawn(async move {
            if ready.wait_for(|ready| *ready).await.is_ok() {
                ready_health.set_ready();
            }
        });
        let reporter = Reporter {
            controller: REPORTING_CONTROLLER.into(),
            instance: Some(settings.instance.clone()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            sessions,
            members,
            diagnostics,
            health,
            connections,
            probe_requests,
            counts_changed,
            members_ready,
            connections_ready,
            retries: Mutex::new(HashMap::new()),
            revokes: Mutex::new(HashMap::new()),
            probes: Mutex::new(HashMap::new()),
            status_written: Mutex::new(HashMap::new()),
            stack_instance_failures: Mutex::new(HashMap::new()),
            member_roles: Mutex::new(HashMap::new()),
            connection_limits: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            global_probes: Arc::new(Semaphore::new(settings_probe_limit(&settings))),
            settings,
        }
    }

    /// Waits until the MemberAccount cache holds a complete listing.
    pub async fn members_ready(&self) {
        let mut ready = self.members_ready.clone();
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// Waits until `connections` holds a complete listing.
    pub async fn connections_ready(&self) {
        let mut ready = self.connections_ready.clone();
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// The MemberAccounts of `connection`, from the watch cache.
    pub fn members_of(&self, connection: &AwsOrgConnection) -> Vec<Arc<MemberAccount>> {
        let namespace = connection.namespace();
        let name = connection.name_any();
        self.members
            .state()
            .into_iter()
            .filter(|m| m.namespace() == namespace && m.spec.connection == name)
            .collect()
    }

    /// The connection a MemberAccount belongs to, from the watch cache.
    pub fn connection_of(&self, member: &MemberAccount) -> Option<Arc<AwsOrgConnection>> {
        let namespace = member.namespace()?;
        self.connections
            .get(&ObjectRef::new(&member.spec.connection).within(&namespace))
    }

    /// Asks for every MemberAccount of `connection` to be probed at once.
    pub fn request_probes(&self, connection: &AwsOrgConnection) {
        for member in self.members_of(connection) {
            // Forgetting the last probe makes the next reconcile probe at once.
            self.forget_probe(&object_key(member.as_ref()));
            let _ = self
                .probe_requests
                .send(ObjectRef::from_obj(member.as_ref()));
        }
    }

    /// Says that `member`'s phase changed, so its connection's counts did: the connection
    /// controller hears of it at most once per [`COUNTS_COALESCE`], however many of its
    /// MemberAccounts changed meanwhile.
    pub fn member_phase_changed(&self, member: &MemberAccount) {
        if let Some(namespace) = member.namespace() {
            let _ = self
                .counts_changed
                .send(ObjectRef::new(&member.spec.connection).within(&namespace));
        }
    }

    /// Records the StackSet of connection `key` as its reconciler last saw it.
    pub fn set_stack_set(&self, key: &str, stack_set: &StackSetStatus) {
        lock(&self.stack_instance_failures).insert(
            key.to_owned(),
            (stack_set.name.clone(), stack_set.failures.clone()),
        );
    }

    /// Records the stack instance states of connection `key`'s StackSet `name`; the
    /// accounts whose state changed since the last record (gained, lost or different).
    pub fn set_member_roles(
        &self,
        key: &str,
        name: &str,
        states: &[InstanceState],
    ) -> std::collections::HashSet<String> {
        let roles = MemberRoles {
            stack_set: name.to_owned(),
            accounts: super::member_role::worst_by_account(states),
        };
        let previous = lock(&self.member_roles).insert(key.to_owned(), roles.clone());
        match previous {
            None => roles.accounts.keys().cloned().collect(),
            Some(previous) => previous.changed(&roles),
        }
    }

    /// Probes at once the MemberAccounts of `connection` whose account is in `accounts`.
    pub fn request_probes_of(
        &self,
        connection: &AwsOrgConnection,
        accounts: &std::collections::HashSet<String>,
    ) {
        for member in self.members_of(connection) {
            if accounts.contains(&member.spec.account_id) {
                self.forget_probe(&object_key(member.as_ref()));
                let _ = self
                    .probe_requests
                    .send(ObjectRef::from_obj(member.as_ref()));
            }
        }
    }

    /// The StackSet of `connection` and the state of `account`'s stack instance, if the
    /// connection's StackSet has one there.
    pub fn member_role(
        &self,
        connection: &AwsOrgConnection,
        account: &str,
    ) -> Option<(String, InstanceState)> {
        let roles = lock(&self.member_roles);
        let known = roles.get(&object_key(connection))?;
        let state = known.accounts.get(account)?;
        Some((known.stack_set.clone(), state.clone()))
    }

    /// The StackSet name and the failure of its stack instance in `account`, if its last
    /// operation failed there: from the reconciler's last pass, else from `connection`'s
    /// status (after a restart).
    pub fn stack_instance_failure(
        &self,
        connection: &AwsOrgConnection,
        account: &str,
    ) -> Option<(String, StackInstanceFailure)> {
        let known = lock(&self.stack_instance_failures)
            .get(&object_key(connection))
            .cloned();
        let (name, failures) = known.or_else(|| {
            let set = connection.status.as_ref()?.stack_set.as_ref()?;
            Some((set.name.clone(), set.failures.clone()))
        })?;
        let failure = failures.into_iter().find(|f| f.account_id == account)?;
        Some((name, failure))
    }

    /// How long ago connection `key`'s status was last written by this process.
    pub fn since_status_write(&self, key: &str) -> Option<Duration> {
        lock(&self.status_written)
            .get(key)
            .map(std::time::Instant::elapsed)
    }

    /// Notes that connection `key`'s status was written now.
    pub fn status_written(&self, key: &str) {
        lock(&self.status_written).insert(key.to_owned(), std::time::Instant::now());
    }

    /// Forgets everything held in memory about connection `key` and its MemberAccounts
    /// (`members`, their object keys), once it is revoked.
    pub fn forget_connection(&self, key: &str, members: &[String]) {
        self.sessions.forget(key);
        lock(&self.status_written).remove(key);
        self.retries().remove(key);
        lock(&self.revokes).remove(key);
        lock(&self.stack_instance_failures).remove(key);
        lock(&self.member_roles).remove(key);
        lock(&self.connection_limits).remove(key);
        {
            let mut probes = lock(&self.probes);
            let mut backoff = lock(&self.backoff);
            backoff.remove(&backoff_key("AwsOrgConnection", key));
            for member in members {
                probes.remove(member);
                backoff.remove(&backoff_key("MemberAccount", member));
            }
        }
        let held = lock(&self.probes).len()
            + lock(&self.backoff).len()
            + lock(&self.connection_limits).len()
            + lock(&self.status_written).len()
            + lock(&self.stack_instance_failures).len()
            + lock(&self.member_roles).len()
            + lock(&self.revokes).len()
            + self.retries().len();
        self.diagnostics
            .remembered
            .store(held as u64, Ordering::Relaxed);
    }

    /// Counts a failed reconcile of `key`; the failures in a row so far.
    pub fn backoff_failed(&self, key: &str) -> u32 {
        let mut backoff = lock(&self.backoff);
        let failures = backoff.entry(key.to_owned()).or_default();
        *failures = failures.saturating_add(1);
        *failures
    }

    /// Forgets the failures of `key` once a reconcile of it succeeded.
    pub fn backoff_cleared(&self, key: &str) {
        lock(&self.backoff).remove(key);
    }

    pub fn probe_record(&self, key: &str) -> Option<ProbeRecord> {
        lock(&self.probes).get(key).copied()
    }

    pub fn set_probe_record(&self, key: &str, record: ProbeRecord) {
        lock(&self.probes).insert(key.to_owned(), record);
    }

    pub fn forget_probe(&self, key: &str) {
        lock(&self.probes).remove(key);
    }

    /// Waits for a probe slot of `connection` (its `memberAccess.concurrency`) and one of
    /// the operator-wide limit.
    pub async fn probe_permits(
        &self,
        connection: &str,
        limit: usize,
    ) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let limit = limit.max(1);
        let semaphore = {
            let mut limits = lock(&self.connection_limits);
            let entry = limits
                .entry(connection.to_owned())
                .or_insert_with(|| (limit, Arc::new(Semaphore::new(limit))));
            if entry.0 != limit {
                *entry = (limit, Arc::new(Semaphore::new(limit)));
            }
            entry.1.clone()
        };
        let own = semaphore.acquire_owned().await.ok()?;
        let global = self.global_probes.clone().acquire_owned().await.ok()?;
        Some((own, global))
    }

    fn retries(&self) -> std::sync::MutexGuard<'_, HashMap<String, DiscoveryRetry>> {
        lock(&self.retries)
    }

    pub fn discovery_retry(&self, key: &str) -> Option<DiscoveryRetry> {
        self.retries().get(key).copied()
    }

    /// Records a failed discovery; the next try waits 30 s, doubling up to 8 min.
    pub fn discovery_failed(&self, key: &str, generation: Option<i64>, now: Timestamp) -> Duration {
        let mut retries = self.retries();
        let failures = retries.get(key).map_or(0, |r| r.failures).saturating_add(1);
        let delay = doubling(Duration::from_secs(30), Duration::from_secs(480), failures);
        let not_before = now.checked_add(delay).unwrap_or(now);
        retries.insert(
            key.to_owned(),
            DiscoveryRetry {
                generation,
                failures,
                not_before,
            },
        );
        delay
    }

    pub fn discovery_succeeded(&self, key: &str) {
        self.retries().remove(key);
    }

    /// The failed revoke of connection `key`, if its last attempt failed.
    pub fn revoke_retry(&self, key: &str) -> Option<RevokeRetry> {
        lock(&self.revokes).get(key).cloned()
    }

    /// Records a failed revoke attempt; returns how long to wait before the next one
    /// (see [`backoff`]).
    pub fn revoke_failed(&self, key: &str, now: Timestamp, problem: &str) -> Duration {
        let mut revokes = lock(&self.revokes);
        let failures = revokes.get(key).map_or(0, |r| r.failures).saturating_add(1);
        let delay = backoff(failures);
        revokes.insert(
            key.to_owned(),
            RevokeRetry {
                failures,
                not_before: now.checked_add(delay).unwrap_or(now),
                problem: problem.to_owned(),
            },
        );
        delay
    }

    /// Forgets the failures of a revoke that made progress or finished.
    pub fn revoke_progressed(&self, key: &str) {
        lock(&self.revokes).remove(key);
    }

    /// Publishes an Event about `object`; a failure to publish is logged, not fatal.
    pub async fn event<K>(&self, object: &K, type_: EventType, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let mut note = note;
        if note.len() > 1024 {
            let mut cut = 1021;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
            note.push_str("...");
        }
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        let regarding = object.object_ref(&());
        let published = if regarding
            .name
            .as_ref()
            .is_some_and(|name| name.len() > RECORDER_NAME_ROOM)
        {
            self.publish_with_generated_name(&event, regarding).await
        } else {
            self.recorder.publish(&event, &regarding).await
        };
        if let Err(err) = published {
            tracing::warn!(error = %err, reason, "could not publish an Event");
        }
    }

    /// Publishes `event` under a name the API server generates, for objects whose names
    /// leave no room for the recorder's (see [`RECORDER_NAME_ROOM`]).
    async fn publish_with_generated_name(
        &self,
        event: &Event,
        regarding: k8s_openapi::api::core::v1::ObjectReference,
    ) -> Result<(), kube::Error> {
        use k8s_openapi::api::events::v1::Event as ApiEvent;
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let body = ApiEvent {
            metadata: kube::api::ObjectMeta {
                generate_name: Some(event_generate_name(
                    regarding.name.as_deref().unwrap_or_default(),
                )),
                namespace: Some(namespace.clone()),
                ..kube::api::ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                Timestamp::now(),
            )),
            regarding: Some(regarding),
            reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
            reporting_instance: Some(self.settings.instance.clone()),
            ..ApiEvent::default()
        };
        kube::Api::<ApiEvent>::namespaced(self.client.clone(), &namespace)
            .create(&kube::api::PostParams::default(), &body)
            .await
            .map(|_| ())
    }
}

/// The controller name Events are reported under.
const REPORTING_CONTROLLER: &str = "orgconnect";

/// The recorder names an Event `<object>.<nanoseconds in hex>`, and names are at most 253
/// characters: objects with longer names than this get a generated Event name instead.
const RECORDER_NAME_ROOM: usize = 253 - 1 - 20;

/// The `generateName` of an Event about `object`: a prefix of its name and a dash (the
/// server refuses a prefix ending in a dot), which the API server completes with five
/// random characters.
fn event_generate_name(object: &str) -> String {
    let prefix: String = object.chars().take(200).collect();
    format!("{}-", prefix.trim_end_matches(['-', '.']))
}

/// The key of `object` (`<namespace>/<name>`) of `kind` in the error policy's backoff
/// table.
pub fn backoff_key(kind: &str, object: &str) -> String {
    format!("{kind}/{object}")
}

/// The first wait after a failure, doubled per failure in a row up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(5);
pub const RETRY_MAX: Duration = Duration::from_secs(300);

/// How long to wait after the `failures`th failure in a row, for a failed reconcile and
/// a revoke that could not reach AWS alike: 5 s, doubling up to 5 min.
pub fn backoff(failures: u32) -> Duration {
    doubling(RETRY_FIRST, RETRY_MAX, failures)
}

/// `first` after the first failure in a row, doubled per failure after it, never more
/// than `max`.
pub fn doubling(first: Duration, max: Duration, failures: u32) -> Duration {
    first
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(max)
}

/// A connection's StackSet and the state of each account's stack instance.
#[derive(Clone, Debug)]
struct MemberRoles {
    stack_set: String,
    accounts: HashMap<String, InstanceState>,
}

impl MemberRoles {
    /// The accounts `other` says something else of (drift-check times aside), or every
    /// account of both when the StackSet is another.
    fn changed(&self, other: &Self) -> std::collections::HashSet<String> {
        let key = |s: &InstanceState| {
            (
                s.region.clone(),
                s.status.clone(),
                s.status_reason.clone(),
                s.drift_status.clone(),
            )
        };
        let all = self.accounts.keys().chain(other.accounts.keys());
        if self.stack_set != other.stack_set {
            return all.cloned().collect();
        }
        all.filter(|account| {
            self.accounts.get(*account).map(key) != other.accounts.get(*account).map(key)
        })
        .cloned()
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn changes_coalesce_to_one_per_key_per_window() {
        use futures::StreamExt;
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let mut stream = Box::pin(coalesce(receiver, Duration::from_secs(1)));
        let started = tokio::time::Instant::now();
        for key in ["a", "b", "a", "a", "b"] {
            sender.send(key).expect("open");
        }
        let mut first = vec![
            stream.next().await.expect("a key"),
            stream.next().await.expect("a key"),
        ];
        first.sort_unstable();
        assert_eq!(first, ["a", "b"]);
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "waited for the window"
        );
        // Later changes make a window of their own; a closed channel ends the stream.
        sender.send("a").expect("open");
        drop(sender);
        assert_eq!(stream.next().await, Some("a"));
        assert_eq!(stream.next().await, None);
    }

    #[test]
    fn retries_back_off_from_five_seconds_to_five_minutes() {
        let seconds: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(seconds, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(0), RETRY_FIRST);
        assert_eq!(backoff(u32::MAX), RETRY_MAX);
        let (first, max) = (Duration::from_secs(30), Duration::from_secs(480));
        let seconds: Vec<u64> = (1..=7).map(|n| doubling(first, max, n).as_secs()).collect();
        assert_eq!(seconds, [30, 60, 120, 240, 480, 480, 480]);
    }

    #[test]
    fn event_names_fit_for_objects_of_any_name() {
        let longest = "a".repeat(253);
        assert!(longest.len() > RECORDER_NAME_ROOM);
        // What the recorder would make of a name just within the room.
        let within = "a".repeat(RECORDER_NAME_ROOM);
        assert!(format!("{within}.{:x}", i128::from(i64::MAX)).len() <= 253);
        let generated = event_generate_name(&longest);
        assert!(generated.len() + 5 <= 253, "{}", generated.len());
        assert!(generated.starts_with("aaaa") && generated.ends_with('-'));
        assert_eq!(event_generate_name("x-.-"), "x-");
    }
}
