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
