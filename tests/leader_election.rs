//! Leader election on a real Lease: one replica leads, the other waits, and takes over
//! once the leader stops renewing.

mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use orgconnect::leader::{Elector, Timings};
use support::eventually;
use support::kube::TestNamespace;

#[tokio::test]
async fn one_replica_leads_and_another_takes_over_when_it_stops() {
    let ns = TestNamespace::new("leader").await;
    let ttl = Timings::from_lease(Duration::from_secs(2));
    let first = Elector::new(ns.client.clone(), &ns.name, "orgconnect", "replica-a", ttl);
    let second = Elector::new(ns.client.clone(), &ns.name, "orgconnect", "replica-b", ttl);

    assert!(
        first.try_lead().await.expect("first round"),
        "the first replica takes the free Lease"
    );
    assert!(
        !second.try_lead().await.expect("second round"),
        "the second waits"
    );
    assert!(
        first.try_lead().await.expect("renewal"),
        "the leader renews"
    );

    let leases: Api<Lease> = ns.api();
    let lease = leases.get("orgconnect").await.expect("the Lease exists");
    let spec = lease.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-a"));
    assert_eq!(spec.lease_duration_seconds, Some(2));

    // The leader stops renewing: the other replica takes over once it has seen the Lease
    // unchanged for its duration.
    eventually(
        "the second replica to take over",
        Duration::from_secs(15),
        || async { second.try_lead().await.ok()?.then_some(()) },
    )
    .await;
    assert!(
        !first.try_lead().await.expect("round"),
        "the old leader now waits"
    );
    let spec = leases
        .get("orgconnect")
        .await
        .expect("Lease")
        .spec
        .expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(spec.lease_transitions, Some(1));
}
