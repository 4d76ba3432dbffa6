//! The fault suite: the operator against a test bed that fails under it. The API server
//! restarts while a discovery writes its MemberAccounts, moto restarts (and is seeded
//! again with the same organization) during a probe cycle, the operator is killed with
//! SIGKILL as a sync slot starts its Job, and half of all AWS calls are throttled for a
//! minute. Each test proves that nothing is lost, duplicated or reported falsely, and that
//! everything converges afterwards.
//!
//! Tests of one binary run in parallel. The two that restart a part of the bed, which
//! every test shares, hold [`BED`] exclusively; the others share it.

mod support;

use support::operator::phase;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use orgconnect::api::connection::AccountCounts;
use orgconnect::api::member_account::{MemberPhase, PROBE_ANNOTATION};
use orgconnect::api::{
    AwsOrgConnection, ConditionStatus, ConditionType, MemberAccount, SyncSchedule, find_condition,
};
use serde::de::DeserializeOwned;
use support::apiserver_proxy::ApiServerProxy;
use support::aws::{AwsBed, MOTO_URL_ENV};
use support::fault_proxy::FaultProxy;
use support::kube::TestNamespace;
use support::operator::{apply_connection, in_namespace, managing_role, patch_spec, start};
use support::org::{OrgSpec, OuSpec, SeededOrg, seed, seed_in_order};
use support::process::OperatorProcess;
use support::scenario::Scenario;
use support::testbed::{Component, restart, seed_moto_random};
use support::{eventually, unique_suffix};
use tokio::sync::RwLock;
use tokio::time::Instant;

/// Shared by every test of this file; held exclusively by those that restart a part of
/// the bed.
static BED: RwLock<()> = RwLock::const_new(());

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_orgconnect"))
}

/// A file for an operator process's logs, named in the test's output.
fn log_file(test: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("orgconnect-faults-{test}-{}.log", unique_suffix()));
    eprintln!("operator logs: {}", path.display());
    path
}

fn connected_condition(member: &MemberAccount) -> Option<(ConditionStatus, String)> {
    let status = member.status.as_ref()?;
    let condition = find_condition(&status.conditions, ConditionType::Connected)?;
    Some((condition.status, condition.reason.clone()))
}

/// Why the namespace is not converged yet: the connection Ready with counts that match,
/// and exactly one MemberAccount per account of `expected`, each Connected.
async fn convergence(
    ns: &TestNamespace,
    connection: &str,
    expected: &BTreeSet<String>,
) -> Result<Vec<MemberAccount>, String> {
    let members: Api<MemberAccount> = ns.api();
    let listed = members
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing MemberAccounts: {e}"))?
        .items;
    let accounts: BTreeSet<String> = listed.iter().map(|m| m.spec.account_id.clone()).collect();
    if listed.len() != expected.len() || accounts != *expected {
        return Err(format!(
            "{} MemberAccounts for {} distinct accounts, {} of them expected; {} accounts expected",
            listed.len(),
            accounts.len(),
            accounts.intersection(expected).count(),
            expected.len()
        ));
    }
    let unsettled: Vec<String> = listed
        .iter()
        .filter(|m| {
            phase(m) != Some(MemberPhase::Connected)
                || connected_condition(m).map(|c| c.0) != Some(ConditionStatus::True)
        })
        .map(|m| {
            format!(
                "{} {:?} {:?}",
                m.name_any(),
                phase(m),
                connected_condition(m)
            )
        })
        .collect();
    if !unsettled.is_empty() {
        return Err(format!(
            "{} accounts not Connected, for example {:?}",
            unsettled.len(),
            &unsettled[..unsettled.len().min(3)]
        ));
    }
    let connections: Api<AwsOrgConnection> = ns.api();
    let status = connections
        .get(connection)
        .await
        .map_err(|e| format!("reading connection {connection}: {e}"))?
        .status
        .unwrap_or_default();
    let ready = find_condition(&status.conditions, ConditionType::Ready)
        .is_some_and(|c| c.status == ConditionStatus::True);
    let total = i32::try_from(expected.len()).unwrap_or(i32::MAX);
    let counts = AccountCounts {
        total,
        connected: total,
        ..AccountCounts::default()
    };
    if !ready || status.accounts.as_ref() != Some(&counts) {
        return Err(format!(
            "connection {connection}: Ready {ready}, accounts {:?}",
            status.accounts
        ));
    }
    Ok(listed)
}

/// Waits until [`convergence`] holds, or panics with what was still missing.
async fn converged(
    ns: &TestNamespace,
    connection: &str,
    expected: &BTreeSet<String>,
    timeout: Duration,
) -> Vec<MemberAccount> {
    let deadline = Instant::now() + timeout;
    loop {
        match convergence(ns, connection, expected).await {
            Ok(listed) => return listed,
            Err(missing) => assert!(
                Instant::now() < deadline,
                "not converged after {timeout:?}: {missing}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn account_ids(org: &SeededOrg) -> BTreeSet<String> {
    org.accounts.iter().map(|a| a.id.clone()).collect()
}

/// What a status watch compares between two versions of an object.
#[derive(Clone, Debug, Default, PartialEq)]
struct Observed {
    phase: Option<MemberPhase>,
    /// Condition type -> (status, reason).
    conditions: BTreeMap<String, (ConditionStatus, String)>,
}

fn observe_member(member: &MemberAccount) -> Observed {
    let status = member.status.clone().unwrap_or_default();
    Observed {
        phase: status.phase,
        conditions: status
            .conditions
            .iter()
            .map(|c| (c.type_.to_string(), (c.status, c.reason.clone())))
            .collect(),
    }
}

fn observe_connection(connection: &AwsOrgConnection) -> Observed {
    let status = connection.status.clone().unwrap_or_default();
    Observed {
        phase: None,
        conditions: status
            .conditions
            .iter()
            .map(|c| (c.type_.to_string(), (c.status, c.reason.clone())))
            .collect(),
    }
}

#[derive(Debug, Default)]
struct WatchLog {
    /// The latest version of each object.
    seen: BTreeMap<String, Observed>,
    /// Every status that would be false under a fault of AWS: a phase other than
    /// Connected after Connected, Blocked at all, or a condition False after True.
    violations: Vec<String>,
    /// How often each condition reason was entered.
    reasons: BTreeMap<String, usize>,
}

impl WatchLog {
    fn record(&mut self, name: String, now: Observed) {
        let before = self.seen.get(&name).cloned().unwrap_or_default();
        if before.phase == Some(MemberPhase::Connected) && now.phase != before.phase {
            self.violations
                .push(format!("{name}: phase Connected became {:?}", now.phase));
        }
        if now.phase == Some(MemberPhase::Blocked) && before.phase != now.phase {
            self.violations.push(format!("{name}: phase Blocked"));
        }
        for (type_, (status, reason)) in &now.conditions {
            let previous = before.conditions.get(type_);
            if previous.is_some_and(|p| p.0 == ConditionStatus::True)
                && *status == ConditionStatus::False
            {
                self.violations
                    .push(format!("{name}: {type_} True became False ({reason})"));
            }
            if previous.is_none_or(|p| p.1 != *reason) {
                *self.reasons.entry(reason.clone()).or_default() += 1;
            }
        }
        self.seen.insert(name, now);
    }
}

/// Every version of every object of a kind in a namespace, as the API server's watch
/// delivers them, checked for false statuses.
struct StatusWatch {
    log: Arc<Mutex<WatchLog>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StatusWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StatusWatch {
    /// Starts watching and waits until the first listing holds `count` objects.
    async fn start<K>(api: Api<K>, observe: fn(&K) -> Observed, count: usize) -> Self
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    {
        let log = Arc::new(Mutex::new(WatchLog::default()));
        let task = tokio::spawn({
            let log = log.clone();
            async move {
                let mut stream = std::pin::pin!(
                    watcher(api, watcher::Config::default())
                        .default_backoff()
                        .applied_objects()
                );
                while let Some(item) = stream.next().await {
                    if let Ok(object) = item {
                        lock(&log).record(object.name_any(), observe(&object));
                    }
                }
            }
        });
        let watch = Self { log, task };
        eventually("the status watch", Duration::from_secs(30), || async {
            (lock(&watch.log).seen.len() == count).then_some(())
        })
        .await;
        watch
    }

    fn violations(&self) -> Vec<String> {
        lock(&self.log).violations.clone()
    }

    /// How often objects entered a condition with `reason`.
    fn entered(&self, reason: &str) -> usize {
        lock(&self.log).reasons.get(reason).copied().unwrap_or(0)
    }

    fn reasons(&self) -> BTreeMap<String, usize> {
        lock(&self.log).reasons.clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Annotates every MemberAccount `orgconnect.dev/probe=now`: a probe cycle, at once.
async fn probe_all_now(members: &Api<MemberAccount>) {
    let patch = serde_json::json!({ "metadata": { "annotations": { PROBE_ANNOTATION: "now" } } });
    for member in members
        .list(&ListParams::default())
        .await
        .expect("list MemberAccounts")
        .items
    {
        members
            .patch(
                &member.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .unwrap_or_else(|e| panic!("annotating {}: {e}", member.name_any()));
    }
}

/// Accounts in the organization whose MemberAccounts take long enough to write, with
/// each request of the operator to the API server delayed by [`WRITE_DELAY`], that the
/// API server restarts while they are written.
const RESTART_ACCOUNTS: usize = 300;
const WRITE_DELAY: Duration = Duration::from_millis(100);

/// The API server (not etcd) restarts after a discovery wrote its first MemberAccounts and
/// before it wrote them all. The real operator process reconnects by itself (it never
/// exits), discovers again, and ends with exactly one MemberAccount per account, each
/// Connected, and the right counts in the connection's status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_api_server_during_discovery_loses_and_duplicates_nothing() {
    let _exclusive = BED.write().await;
    let bed = AwsBed::new().await;
    let started = Instant::now();
    let org = seed(
        &bed.sdk_config(),
        &OrgSpec::generated(RESTART_ACCOUNTS, 2, 3, 0),
    )
    .await;
    let expected = account_ids(&org);
    eprintln!(
        "seeded {RESTART_ACCOUNTS} accounts in {:?}",
        started.elapsed()
    );
    let ns = TestNamespace::new("apiserver-restart").await;
    let proxy = ApiServerProxy::start().await;
    let mut operator = OperatorProcess::spawn_with_kubeconfig(
        binary(),
        &bed,
        "operator",
        &["--namespace", &ns.name],
        Some(&log_file("apiserver-restart")),
        &proxy.kubeconfig,
    );
    eventually("the operator ready", Duration::from_secs(60), || async {
        matches!(operator.get("/readyz").await, Some((200, _))).then_some(())
    })
    .await;
    proxy.set_delay(WRITE_DELAY);

    let members: Api<MemberAccount> = ns.api();
    let connections: Api<AwsOrgConnection> = ns.api();
    apply_connection(
        &connections,
        "acme",
        serde_json::json!({ "roleArn": managing_role(&org.managing_account_id) }),
    )
    .await;
    eventually(
        "the discovery's first MemberAccount",
        Duration::from_secs(120),
        || async {
            let first = members.list(&ListParams::default().limit(1)).await.ok()?;
            (!first.items.is_empty()).then_some(())
        },
    )
    .await;
    let took = restart(Component::KubeApiserver).await;
    let written = eventually(
        "the restarted API server answering",
        Duration::from_secs(30),
        || async { Some(members.list(&ListParams::default()).await.ok()?.items.len()) },
    )
    .await;
    eprintln!(
        "API server restarted in {took:?}; {written} of {} MemberAccounts were written by then",
        expected.len()
    );
    assert!(
        written < expected.len(),
        "the restart came after the discovery had written every MemberAccount ({written})"
    );
    proxy.set_delay(Duration::ZERO);

    let restarted = Instant::now();
    let listed = converged(&ns, "acme", &expected, Duration::from_secs(120)).await;
    eprintln!("converged {:?} after the restart", restarted.elapsed());
    let mut per_account: BTreeMap<&str, usize> = BTreeMap::new();
    for member in &listed {
        let id = member.spec.account_id.as_str();
        *per_account.entry(id).or_default() += 1;
        assert_eq!(member.name_any(), format!("acme-{id}"));
        assert_eq!(
            member
                .labels()
                .get("orgconnect.dev/account-id")
                .map(String::as_str),
            Some(id)
        );
    }
    assert!(
        per_account.values().all(|n| *n == 1),
        "one MemberAccount per account"
    );
    assert_eq!(
        operator.child.try_wait().expect("the operator's state"),
        None,
        "the operator process kept running through the restart"
    );
}

/// Seeds moto's random generator before the organization is created, and again before
/// it is created anew in the restarted moto.
const MOTO_SEED: u64 = 20_260_301;
/// Each AWS call of the probe cycle waits this long, so the cycle lasts seconds.
const PROBE_LATENCY: Duration = Duration::from_millis(250);

/// What makes two seeded organizations the same one: every id, name and parent.
fn fingerprint(org: &SeededOrg) -> Vec<String> {
    let mut lines = vec![format!(
        "{} {} {}",
        org.id, org.root_id, org.managing_account_id
    )];
    lines.extend(
        org.ous
            .iter()
            .map(|ou| format!("{} {} {}", ou.id, ou.parent_id, ou.path)),
    );
    lines.extend(org.accounts.iter().map(|a| {
        format!(
            "{} {} {} {} {}",
            a.id, a.name, a.parent_id, a.path, a.suspended
        )
    }));
    lines
}

/// moto restarts while a probe cycle runs, and its organization is seeded again with the
/// same ids. While it is away the operator's calls fail (503), so no call reaches an
/// empty or half-seeded moto. No account ever turns Blocked (or leaves Connected), and
/// every probe that failed during the restart succeeds afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_moto_during_a_probe_cycle_blocks_no_account() {
    let _exclusive = BED.write().await;
    let bed = AwsBed::new().await;
    let spec = OrgSpec {
        root_accounts: 4,
        ous: vec![
            OuSpec::new("Prod")
                .accounts(8)
                .child(OuSpec::new("Payments").accounts(4)),
            OuSpec::new("Dev").accounts(8),
        ],
    };
    let suffix = unique_suffix();
    seed_moto_random(MOTO_SEED).await;
    let org = seed_in_order(&bed.sdk_config(), &spec, &suffix).await;
    let expected = account_ids(&org);

    let ns = TestNamespace::new("moto-restart").await;
    let _operator = start(
        ns.client.clone(),
        bed.operator_config(bed.credentials.clone()),
        in_namespace(&ns.name),
    );
    let members: Api<MemberAccount> = ns.api();
    let connections: Api<AwsOrgConnection> = ns.api();
    apply_connection(
        &connections,
        "acme",
        serde_json::json!({
            "roleArn": managing_role(&org.managing_account_id),
            "memberAccess": { "concurrency": 2 },
        }),
    )
    .await;
    converged(&ns, "acme", &expected, Duration::from_secs(60)).await;
    let watch = StatusWatch::start(members.clone(), observe_member, expected.len()).await;

    // A probe cycle of several seconds: two probes at a time, every call slowed down.
    bed.proxy.latency(PROBE_LATENCY);
    let before = bed.proxy.calls("AssumeRole");
    probe_all_now(&members).await;
    eventually(
        "the probe cycle under way",
        Duration::from_secs(30),
        || async { (bed.proxy.calls("AssumeRole") >= before + 4).then_some(()) },
    )
    .await;

    bed.proxy.server_errors("*", 1.0);
    let took = restart(Component::Moto).await;
    // The same organization again, through a proxy of its own: the operator's still fails.
    seed_moto_random(MOTO_SEED).await;
    let moto = std::env::var(MOTO_URL_ENV).expect("moto's URL");
    let seeding = FaultProxy::start(&moto).await;
    seeding.map_principal(
        bed.credentials.access_key_id(),
        bed.credentials.secret_access_key(),
        &bed.managing_account_id,
    );
    let config = bed
        .sdk_config()
        .into_builder()
        .endpoint_url(seeding.url())
        .build();
    let again = seed_in_order(&config, &spec, &suffix).await;
    assert_eq!(
        fingerprint(&again),
        fingerprint(&org),
        "the restarted moto holds the same organization"
    );
    eprintln!("moto restarted in {took:?} and seeded again");
    // A restart can be quicker than the SDK's retries: AWS stays down until a probe of the
    // cycle has run out of them, so the outage is known to have hit the cycle.
    eventually(
        "a probe failed while AWS was down",
        Duration::from_secs(60),
        || async { (watch.entered("ProbeFailed") > 0).then_some(()) },
    )
    .await;
    bed.proxy.server_errors("*", 0.0);
    bed.proxy.latency(Duration::ZERO);

    converged(&ns, "acme", &expected, Duration::from_secs(60)).await;
    assert!(
        watch.entered("ProbeFailed") > 0,
        "the restart hit the probe cycle: {:?}",
        watch.reasons()
    );
    assert_eq!(watch.violations(), Vec::<String>::new());
}

const SCHEDULE: &str = "every-minute";
/// Each request of the first operator to the API server waits this long from before the
/// schedule exists, so the requests after a slot's Job is created (its Event, the list of
/// Jobs, the status) always leave time to kill it before it records the slot.
const SLOW_API: Duration = Duration::from_millis(400);

/// The operator is killed (SIGKILL) right after it created the Job of a due slot and
/// before it recorded the slot in status; a new operator process finds the slot due and
/// its Job there, and records the slot without a second Job, without replacing the Job,
/// and without reporting the slot skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_operator_as_a_slot_starts_leaves_one_job_for_the_slot() {
    let _shared = BED.read().await;
    let bed = AwsBed::new().await;
    let org = seed(&bed.sdk_config(), &OrgSpec::flat(1)).await;
    let expected = account_ids(&org);
    let ns = TestNamespace::new("sigkill").await;
    let proxy = ApiServerProxy::start().await;
    let log = log_file("sigkill");
    let args = ["--namespace", ns.name.as_str()];
    let mut first = OperatorProcess::spawn_with_kubeconfig(
        binary(),
        &bed,
        "first",
        &args,
        Some(&log),
        &proxy.kubeconfig,
    );
    let connections: Api<AwsOrgConnection> = ns.api();
    apply_connection(
        &connections,
        "acme",
        serde_json::json!({ "roleArn": managing_role(&org.managing_account_id) }),
    )
    .await;
    converged(&ns, "acme", &expected, Duration::from_secs(60)).await;
    proxy.set_delay(SLOW_API);

    let schedules: Api<SyncSchedule> = ns.api();
    let manifest = serde_json::json!({
        "apiVersion": "orgconnect.dev/v1alpha1",
        "kind": "SyncSchedule",
        "metadata": { "name": SCHEDULE },
        "spec": {
            "connectionRef": { "name": "acme" },
            "schedule": "* * * * *",
            "jobTemplate": { "spec": { "template": { "spec": {
                "containers": [{ "name": "c", "image": "busybox" }] } } } },
        },
    });
    schedules
        .patch(
            SCHEDULE,
            &PatchParams::apply("test-user"),
            &Patch::Apply(&manifest),
        )
        .await
        .expect("apply the SyncSchedule");
    let slot = eventually("the next slot", Duration::from_secs(30), || async {
        Some(
            schedules
                .get(SCHEDULE)
                .await
                .ok()?
                .status?
                .next_schedule_time?
                .0,
        )
    })
    .await;

    let jobs: Api<Job> = ns.api();
    let job_name = format!("{SCHEDULE}-{}", slot.as_second() / 60);
    let job = eventually(
        &format!("Job {job_name}"),
        Duration::from_secs(90),
        || async { jobs.get_opt(&job_name).await.ok().flatten() },
    )
    .await;
    first.child.kill().expect("SIGKILL the operator");
    first.child.wait().expect("reap the operator");
    let recorded = schedules
        .get(SCHEDULE)
        .await
        .expect("the SyncSchedule")
        .status
        .and_then(|s| s.last_schedule_time)
        .map(|t| t.0);
    assert_ne!(
        recorded,
        Some(slot),
        "the operator was killed before it recorded the slot"
    );

    let _second = OperatorProcess::spawn(binary(), &bed, "second", &args, Some(&log));
    let status = eventually(
        "the new operator recording the slot",
        Duration::from_secs(60),
        || async {
            let status = schedules.get(SCHEDULE).await.ok()?.status?;
            (status.last_schedule_time.as_ref().map(|t| t.0) == Some(slot)).then_some(status)
        },
    )
    .await;
    let listed = jobs
        .list(&ListParams::default().labels(&format!("orgconnect.dev/sync-schedule={SCHEDULE}")))
        .await
        .expect("list Jobs")
        .items;
    let names: Vec<String> = listed.iter().map(|j| j.name_any()).collect();
    assert_eq!(names, [job_name.as_str()], "one Job for the slot");
    assert_eq!(
        listed[0].uid(),
        job.uid(),
        "the slot's Job is the one the killed operator created"
    );
    assert_eq!(status.active, [job_name.as_str()]);
    let events: Api<Event> = ns.api();
    let about_the_slot: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(SCHEDULE))
        .filter(|e| {
            e.note
                .as_deref()
                .unwrap_or_default()
                .contains(&slot.to_string())
        })
        .map(|e| format!("{:?}: {:?}", e.reason, e.note))
        .collect();
    assert_eq!(
        about_the_slot,
        Vec::<String>::new(),
        "nothing reports the slot skipped"
    );
}

/// How long half of all AWS calls are throttled.
const THROTTLE_WINDOW: Duration = Duration::from_secs(60);
/// How often, during the window, the connection's spec changes: each change is a new
/// discovery and a probe of every account.
const CYCLE: Duration = Duration::from_secs(10);

/// Half of all AWS calls (every operation) are throttled for a minute while discoveries
/// and probe cycles keep running: no condition turns from True to False, no account
/// leaves Connected, and once the throttling stops the connection is Ready with every
/// account Connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_half_of_all_aws_calls_for_a_minute_reports_nothing_false() {
    let _shared = BED.read().await;
    let scenario = Scenario::start("throttled", &OrgSpec::generated(40, 1, 4, 0)).await;
    let expected = account_ids(&scenario.org);
    scenario.connect("acme", serde_json::json!({})).await;
    converged(&scenario.ns, "acme", &expected, Duration::from_secs(60)).await;
    let members = StatusWatch::start(scenario.members(), observe_member, expected.len()).await;
    let connection = StatusWatch::start(scenario.connections(), observe_connection, 1).await;

    let proxy = &scenario.bed.proxy;
    proxy.reset_stats();
    proxy.throttle("*", 0.5);
    let end = Instant::now() + THROTTLE_WINDOW;
    let mut cycles = 0;
    while Instant::now() < end {
        let interval = if cycles % 2 == 0 { "31m" } else { "30m" };
        patch_spec(
            &scenario.connections(),
            "acme",
            serde_json::json!({ "memberAccess": { "probeInterval": interval } }),
        )
        .await;
        cycles += 1;
        tokio::time::sleep_until(end.min(Instant::now() + CYCLE)).await;
    }
    proxy.stop_throttling();
    for operation in [
        "DescribeOrganization",
        "ListAccountsForParent",
        "AssumeRole",
    ] {
        assert!(
            proxy.injected(operation) > 0,
            "{operation} was throttled ({} of {} calls)",
            proxy.injected(operation),
            proxy.calls(operation)
        );
    }

    converged(&scenario.ns, "acme", &expected, Duration::from_secs(60)).await;
    eprintln!(
        "{cycles} cycles; {} of {} AssumeRole calls throttled; members entered {:?}; the connection entered {:?}",
        proxy.injected("AssumeRole"),
        proxy.calls("AssumeRole"),
        members.reasons(),
        connection.reasons()
    );
    assert_eq!(members.violations(), Vec::<String>::new());
    assert_eq!(connection.violations(), Vec::<String>::new());
}
