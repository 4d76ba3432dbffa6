//! AWS calls honour the standard proxy environment (`HTTP_PROXY`, `HTTPS_PROXY`,
//! `NO_PROXY`), as corporate networks require. This is the only test in its binary,
//! because the environment is process-wide.

mod support;

use kube::api::Api;
use orgconnect::api::{AwsOrgConnection, ConditionStatus, ConditionType};
use support::aws::AwsBed;
use support::fault_proxy::FaultProxy;
use support::kube::TestNamespace;
use support::operator::{
    apply_connection, in_namespace, managing_assumes, managing_role, start, wait_condition,
};
use support::org::{OrgSpec, seed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_calls_go_through_the_configured_http_proxy() {
    let bed = AwsBed::new().await;
    let org = seed(&bed.sdk_config(), &OrgSpec::flat(2)).await;
    // The Kubernetes client is made first: the proxy below is for AWS traffic only.
    let ns = TestNamespace::new("proxied").await;
    // A forwarding proxy in front of the bed's endpoint, counting what passes through.
    let forwarder = FaultProxy::start(&bed.proxy.url()).await;
    // It only forwards: the bed's proxy behind it checks the signatures.
    forwarder.lenient_signatures();
    // SAFETY: this binary holds this one test, and no other thread reads the environment
    // while it is changed (the operator, which reads it, starts afterwards).
    unsafe {
        std::env::set_var("HTTP_PROXY", forwarder.url());
        std::env::set_var("HTTPS_PROXY", forwarder.url());
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }

    let _operator = start(
        ns.client.clone(),
        bed.operator_config(bed.credentials.clone()),
        in_namespace(&ns.name),
    );
    let connections: Api<AwsOrgConnection> = ns.api();
    apply_connection(
        &connections,
        "acme",
        serde_json::json!({ "roleArn": managing_role(&org.managing_account_id) }),
    )
    .await;
    wait_condition(
        &connections,
        "acme",
        ConditionType::Ready,
        ConditionStatus::True,
        "Connected",
    )
    .await;

    assert_eq!(
        managing_assumes(&forwarder, &org.managing_account_id),
        1,
        "AssumeRole went through the proxy"
    );
    assert!(
        forwarder.calls("ListAccountsForParent") >= 1,
        "discovery went through the proxy"
    );
    assert_eq!(
        forwarder.calls("ListAccountsForParent"),
        bed.proxy.calls("ListAccountsForParent"),
        "every call did"
    );
}
