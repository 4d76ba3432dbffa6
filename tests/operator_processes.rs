//! The real binary run as two replicas with leader election against one API server: only
//! the leader reconciles, and when it is killed the other takes over within the Lease's
//! duration.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use orgconnect::api::{AwsOrgConnection, ConditionStatus, ConditionType};
use support::aws::AwsBed;
use support::kube::TestNamespace;
use support::operator::{apply_connection, managing_role, wait_condition};
use support::org::{OrgSpec, seed};
use support::process::OperatorProcess;
use support::{eventually, metric_value};

const LEASE_SECONDS: u64 = 3;
const RECONCILES: &str = "orgconnect_reconciles_total{kind=\"AwsOrgConnection\"}";

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("orgconnect")
        .await
        .ok()??
        .spec?
        .holder_identity
}

async fn reconciles(replica: &OperatorProcess) -> Option<f64> {
    let (_, body) = replica.get("/metrics").await?;
    metric_value(&body, RECONCILES)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_reconciles_and_a_killed_leader_is_replaced_within_the_lease() {
    let bed = AwsBed::new().await;
    let org = seed(&bed.sdk_config(), &OrgSpec::flat(1)).await;
    let ns = TestNamespace::new("replicas").await;
    let binary = Path::new(env!("CARGO_BIN_EXE_orgconnect"));
    let lease = format!("{LEASE_SECONDS}s");
    let args = [
        "--namespace",
        &ns.name,
        "--leader-election",
        "--leader-election-namespace",
        &ns.name,
        "--leader-election-lease-duration",
        &lease,
    ];
    let mut replicas = [
        OperatorProcess::spawn(binary, &bed, "replica-a", &args, None),
        OperatorProcess::spawn(binary, &bed, "replica-b", &args, None),
    ];
    let leases: Api<Lease> = ns.api();
    let first_holder = eventually("a leader", Duration::from_secs(60), || holder(&leases)).await;
    let leader = usize::from(!first_holder.starts_with("replica-a_"));
    let follower = 1 - leader;

    let connections: Api<AwsOrgConnection> = ns.api();
    let role = managing_role(&org.managing_account_id);
    apply_connection(
        &connections,
        "first",
        serde_json::json!({ "roleArn": role }),
    )
    .await;
    wait_condition(
        &connections,
        "first",
        ConditionType::Ready,
        ConditionStatus::True,
        "Connected",
    )
    .await;
    let led = eventually("the leader's reconciles", Duration::from_secs(30), || {
        reconciles(&replicas[leader])
    })
    .await;
    assert!(led >= 1.0, "the leader reconciled: {led}");
    let (status, _) = replicas[follower]
        .get("/healthz")
        .await
        .expect("the follower answers");
    assert_eq!(status, 200, "the follower is alive");
    assert_eq!(
        reconciles(&replicas[follower]).await,
        None,
        "the follower reconciles nothing"
    );

    // SIGKILL: the leader cannot give the Lease up; the follower takes it once it expires.
    replicas[leader].child.kill().expect("kill the leader");
    let killed = Instant::now();
    let new_holder = eventually("a new leader", Duration::from_secs(30), || async {
        holder(&leases).await.filter(|h| *h != first_holder)
    })
    .await;
    let handover = killed.elapsed();
    let expected_prefix = if follower == 0 {
        "replica-a_"
    } else {
        "replica-b_"
    };
    assert!(new_holder.starts_with(expected_prefix), "{new_holder}");
    // The Lease expires LEASE_SECONDS after the last renewal, and a follower looks every
    // third of that.
    assert!(
        handover <= Duration::from_secs(LEASE_SECONDS + LEASE_SECONDS / 3 + 2),
        "handover took {handover:?}"
    );

    apply_connection(
        &connections,
        "second",
        serde_json::json!({ "roleArn": role }),
    )
    .await;
    wait_condition(
        &connections,
        "second",
        ConditionType::Ready,
        ConditionStatus::True,
        "Connected",
    )
    .await;
    let took_over = eventually(
        "the new leader's reconciles",
        Duration::from_secs(30),
        || reconciles(&replicas[follower]),
    )
    .await;
    assert!(took_over >= 1.0, "the new leader reconciles: {took_over}");
}

/// The arguments of a replica electing a leader on a `lease` Lease in `namespace`.
fn elected(namespace: &str, lease: &str) -> Vec<String> {
    [
        "--namespace",
        namespace,
        "--leader-election",
        "--leader-election-namespace",
        namespace,
        "--leader-election-lease-duration",
        lease,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A leader cut off from the API server (a partition: nothing passes) gives up leading
/// within its renew deadline, while a follower must first see the Lease unchanged for the
/// whole lease duration: the old leader has stopped before the new one starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_api_server_stops_before_a_follower_takes_over() {
    let bed = AwsBed::new().await;
    let ns = TestNamespace::new("partition").await;
    let binary = Path::new(env!("CARGO_BIN_EXE_orgconnect"));
    // 6 s lease: renew deadline 4 s, retry period 0.8 s.
    let args = elected(&ns.name, "6s");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = support::apiserver_proxy::ApiServerProxy::start().await;
    let mut leader = OperatorProcess::spawn_with_kubeconfig(
        binary,
        &bed,
        "replica-a",
        &args,
        None,
        &proxy.kubeconfig,
    );
    let leases: Api<Lease> = ns.api();
    eventually("replica-a leads", Duration::from_secs(60), || async {
        holder(&leases)
            .await
            .filter(|h| h.starts_with("replica-a_"))
    })
    .await;
    let _follower = OperatorProcess::spawn(binary, &bed, "replica-b", &args, None);
    // The follower has seen the leader renew.
    tokio::time::sleep(Duration::from_secs(2)).await;

    proxy.block();
    let cut = Instant::now();
    let (mut stopped, mut taken) = (None, None);
    while stopped.is_none() || taken.is_none() {
        assert!(
            cut.elapsed() < Duration::from_secs(30),
            "stopped {stopped:?}, taken over {taken:?}"
        );
        if stopped.is_none()
            && let Some(status) = leader.child.try_wait().expect("the leader's status")
        {
            assert!(
                !status.success(),
                "a replica that lost the Lease exits with an error"
            );
            stopped = Some(cut.elapsed());
        }
        if taken.is_none()
            && holder(&leases)
                .await
                .is_some_and(|h| h.starts_with("replica-b_"))
        {
            taken = Some(cut.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (stopped, taken) = (stopped.unwrap_or_default(), taken.unwrap_or_default());
    eprintln!("cut off: the leader stopped after {stopped:?}, the follower led after {taken:?}");
    assert!(
        stopped < taken,
        "the cut-off leader stopped ({stopped:?}) before the follower took over ({taken:?})"
    );
    // Renew deadline (4 s) after its last renewal, plus at most 1 s to stop its controllers.
    assert!(
        stopped <= Duration::from_secs(6),
        "stopped after {stopped:?}"
    );
}

/// A leader stopped with SIGTERM (a rolling update) releases the Lease, so the follower
/// takes it at its next look, about one retry period, not a whole lease duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigtermed_leader_hands_the_lease_over_within_about_a_retry_period() {
    let bed = AwsBed::new().await;
    let ns = TestNamespace::new("handover").await;
    let binary = Path::new(env!("CARGO_BIN_EXE_orgconnect"));
    // 6 s lease: retry period 0.8 s.
    let args = elected(&ns.name, "6s");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut replicas = [
        OperatorProcess::spawn(binary, &bed, "replica-a", &args, None),
        OperatorProcess::spawn(binary, &bed, "replica-b", &args, None),
    ];
    let leases: Api<Lease> = ns.api();
    let first = eventually("a leader", Duration::from_secs(60), || holder(&leases)).await;
    let leader = usize::from(!first.starts_with("replica-a_"));
    let terminated = std::process::Command::new("kill")
        .args(["-TERM", &replicas[leader].child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(terminated.success());
    let sent = Instant::now();
    eventually("the follower leads", Duration::from_secs(30), || async {
        holder(&leases)
            .await
            .filter(|h| !h.is_empty() && *h != first)
    })
    .await;
    let handover = sent.elapsed();
    eprintln!("SIGTERM: the follower led after {handover:?}");
    assert!(
        handover < Duration::from_secs(3),
        "handover took {handover:?}: the Lease was not released (it would take 6 s)"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = replicas[leader]
            .child
            .try_wait()
            .expect("the old leader's status")
        {
            break status;
        }
        assert!(Instant::now() < deadline, "the old leader never exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "a SIGTERMed replica exits cleanly: {status}"
    );
}
