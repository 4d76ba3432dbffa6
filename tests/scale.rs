//! The slow suite: an organization of 20,000 accounts on the test bed, connected by one
//! operator, and a sync run over all of them. Its own test binary, so that nothing else
//! shares the machine while it runs. moto's own IAM (the lenient bed) keeps the emulator's
//! work to one call per probe; the strict bed's checks are the other suites' subject.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use orgconnect::api::member_account::MemberPhase;
use orgconnect::api::{AwsOrgConnection, MemberAccount, SyncSchedule};
use support::eventually;
use support::org::OrgSpec;
use support::runs::{complete, render_parts, run_inventory_now};
use support::scenario::Scenario;

/// The ConfigMap size the API server accepts (its 1 MiB limit on an object's data).
const CONFIG_MAP_LIMIT: usize = 1024 * 1024;

// Run on a bed of its own, after the other suites, so that its 20,000 accounts share the
// machine and moto with nothing else: `.ci/run` runs it as a step of its own.
#[ignore = "the slow suite: scripts/testbed run -- cargo test --locked --test scale -- --ignored"]
#[tokio::test(flavor = "multi_thread")]
async fn a_sync_run_over_20000_connected_accounts_reaches_every_profile() {
    const ACCOUNTS: usize = 20_000;
    let scenario = Scenario::build("scale", &OrgSpec::generated(ACCOUNTS - 1, 2, 14, 0))
        .lenient()
        .prepare(|_, settings| settings.run_image = Some("orgconnect:bed".to_owned()))
        .start()
        .await;
    let members: Api<MemberAccount> = scenario.ns.api();
    let (store, writer) = reflector::store::<MemberAccount>();
    let watch = tokio::spawn(
        reflector(writer, watcher(members, watcher::Config::default()))
            .default_backoff()
            .touched_objects()
            .for_each(|_| async {}),
    );
    scenario
        .connect(
            "acme",
            serde_json::json!({ "memberAccess": { "concurrency": 32 } }),
        )
        .await;
    let connected: BTreeSet<String> = eventually(
        "20,000 accounts Connected",
        Duration::from_secs(40 * 60),
        || async {
            let state = store.state();
            let connected: BTreeSet<String> = state
                .iter()
                .filter(|m| m.status.as_ref().and_then(|s| s.phase) == Some(MemberPhase::Connected))
                .map(|m| m.spec.account_id.clone())
                .collect();
            (connected.len() == ACCOUNTS).then_some(connected)
        },
    )
    .await;
    watch.abort();

    let schedules: Api<SyncSchedule> = scenario.ns.api();
    let jobs: Api<Job> = scenario.ns.api();
    let job = run_inventory_now(&schedules, &jobs, Duration::from_secs(60)).await;
    // No node on the bed runs the run's Pod: the run is marked Complete as it would make it.
    complete(&jobs, &job.name_any()).await;
    let last_run = eventually(
        "the schedule to report its run",
        Duration::from_secs(60),
        || async { schedules.get("inventory").await.ok()?.status?.last_run },
    )
    .await;
    assert_eq!(last_run.job, job.name_any());
    assert_eq!(usize::try_from(last_run.accounts).ok(), Some(ACCOUNTS));

    let config_maps: Api<ConfigMap> = scenario.ns.api();
    let run = render_parts(
        &config_maps,
        &job,
        std::path::Path::new(env!("CARGO_BIN_EXE_orgconnect")),
    )
    .await;
    assert!(
        run.part_names.len() > 1,
        "20,000 accounts need more than one ConfigMap: {:?}",
        run.part_names
    );
    assert!(
        run.largest_part < CONFIG_MAP_LIMIT,
        "a part holds {} bytes",
        run.largest_part
    );
    assert_eq!(run.profiles.len(), ACCOUNTS);
    assert_eq!(run.profiles, connected, "one profile per Connected account");
    assert_eq!(run.accounts, connected, "accounts.json lists every account");

    // The connection's counts agree (they are written a few seconds after the last change).
    let connections: Api<AwsOrgConnection> = scenario.ns.api();
    eventually(
        "the connection to count 20,000 Connected",
        Duration::from_secs(60),
        || async {
            let counts = connections.get("acme").await.ok()?.status?.accounts?;
            (counts.total == 20_000 && counts.connected == 20_000).then_some(())
        },
    )
    .await;
}
