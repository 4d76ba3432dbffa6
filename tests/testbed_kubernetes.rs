//! The CRDs on a real kube-apiserver: they install and become Established, defaults are
//! applied, and bad manifests are rejected with a message naming the field; and the
//! cluster's own controllers beside it.

mod support;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use orgconnect::api::{AwsOrgConnection, MemberAccount, SyncSchedule};
use support::kube::TestNamespace;

/// Creates exactly what the YAML manifest says (no typed round trip that could add
/// fields) and returns the API server's rejection message.
async fn rejection<K>(api: &Api<K>, manifest: &str) -> String
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    let object: DynamicObject = serde_yaml::from_str(manifest).expect("manifest parses");
    let namespace = api.namespace().expect("namespaced API").to_owned();
    let dynamic: Api<DynamicObject> = Api::namespaced_with(
        api.clone().into_client(),
        &namespace,
        &ApiResource::erase::<K>(&()),
    );
    match dynamic.create(&PostParams::default(), &object).await {
        Ok(created) => panic!("the API server accepted an invalid object: {created:?}"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "expected 422 Invalid, got {status:?}");
            status.message
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}

fn assert_names(message: &str, field: &str, words: &str) {
    assert!(
        message.contains(field),
        "message does not name {field}: {message}"
    );
    assert!(
        message.contains(words),
        "message lacks '{words}': {message}"
    );
}

#[tokio::test]
async fn crds_are_established_with_short_names_and_status_subresources() {
    let ns = TestNamespace::new("crds").await;
    let crds: Api<CustomResourceDefinition> = Api::all(ns.client.clone());
    for (name, short) in [
        ("awsorgconnections.orgconnect.dev", "aoc"),
        ("memberaccounts.orgconnect.dev", "ma"),
        ("syncschedules.orgconnect.dev", "ss"),
    ] {
        let crd = crds.get(name).await.expect("CRD exists");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec![short.to_owned()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert!(columns.contains(&"Age"), "{name} columns: {columns:?}");
    }
}

#[tokio::test]
async fn the_api_server_fills_in_defaults() {
    let ns = TestNamespace::new("defaults").await;
    let api: Api<AwsOrgConnection> = ns.api();
    let minimal: AwsOrgConnection = serde_yaml::from_str(
        r#"
apiVersion: orgconnect.dev/v1alpha1
kind: AwsOrgConnection
metadata: { name: acme }
spec:
  roleArn: arn:aws:iam::111122223333:role/orgconnect
"#,
    )
    .expect("manifest parses");
    // Send only what the user wrote: server-side apply of the bare manifest.
    let applied = api
        .patch(
            "acme",
            &PatchParams::apply("orgconnect-tests"),
            &Patch::Apply(&serde_json::json!({
                "apiVersion": "orgconnect.dev/v1alpha1",
                "kind": "AwsOrgConnection",
                "metadata": { "name": "acme" },
                "spec": { "roleArn": minimal.spec.role_arn },
            })),
        )
        .await
        .expect("minimal connection is accepted");
    let spec = applied.spec;
    assert_eq!(spec.region, "us-east-1");
    assert_eq!(
        spec.member_access.role_name,
        "OrganizationAccountAccessRole"
    );
    assert_eq!(spec.member_access.probe_interval, "30m");
    assert_eq!(spec.discovery_interval, "1h");
    assert!(spec.stack_set.delete_on_revoke);
}

#[tokio::test]
async fn a_bad_role_arn_is_rejected_naming_the_field() {
    let ns = TestNamespace::new("bad-arn").await;
    let api: Api<AwsOrgConnection> = ns.api();
    for arn in [
        "arn:aws:iam::12345:role/orgconnect",
        "arn:aws:iam::111122223333:user/orgconnect",
        "not-an-arn",
    ] {
        let message = rejection(
            &api,
            &format!(
                "{{apiVersion: orgconnect.dev/v1alpha1, kind: AwsOrgConnection, \
                 metadata: {{name: bad}}, spec: {{roleArn: '{arn}'}}}}"
            ),
        )
        .await;
        assert_names(&message, "spec.roleArn", "must be an IAM role ARN");
    }
}

#[tokio::test]
async fn a_non_numeric_account_id_is_rejected_naming_the_field() {
    let ns = TestNamespace::new("bad-account").await;
    let members: Api<MemberAccount> = ns.api();
    let message = rejection(
        &members,
        r#"
apiVersion: orgconnect.dev/v1alpha1
kind: MemberAccount
metadata: { name: acme-12345678901a }
spec: { connection: acme, accountId: "12345678901a" }
"#,
    )
    .await;
    assert_names(&message, "spec.accountId", "should match");

    let connections: Api<AwsOrgConnection> = ns.api();
    let message = rejection(
        &connections,
        r#"
apiVersion: orgconnect.dev/v1alpha1
kind: AwsOrgConnection
metadata: { name: acme }
spec:
  roleArn: arn:aws:iam::111122223333:role/orgconnect
  accountSelector: { excludeAccounts: ["11112222333x"] }
"#,
    )
    .await;
    assert_names(
        &message,
        "spec.accountSelector.excludeAccounts[0]",
        "should match",
    );
}

#[tokio::test]
async fn a_negative_or_zero_concurrency_is_rejected_naming_the_field() {
    let ns = TestNamespace::new("bad-concurrency").await;
    let api: Api<AwsOrgConnection> = ns.api();
    for concurrency in [-1, 0] {
        let message = rejection(
            &api,
            &format!(
                r#"
apiVersion: orgconnect.dev/v1alpha1
kind: AwsOrgConnection
metadata: {{ name: acme }}
spec:
  roleArn: arn:aws:iam::111122223333:role/orgconnect
  memberAccess: {{ concurrency: {concurrency} }}
"#
            ),
        )
        .await;
        assert_names(
            &message,
            "spec.memberAccess.concurrency",
            "should be greater than or equal to 1",
        );
    }
}

#[tokio::test]
async fn durations_credentials_and_job_templates_are_validated() {
    let ns = TestNamespace::new("bad-misc").await;
    let connections: Api<AwsOrgConnection> = ns.api();
    let message = rejection(
        &connections,
        r#"
apiVersion: orgconnect.dev/v1alpha1
kind: AwsOrgConnection
metadata: { name: acme }
spec:
  roleArn: arn:aws:iam::111122223333:role/orgconnect
  discoveryInterval: ten minutes
"#,
    )
    .await;
    assert_names(&message, "spec.discoveryInterval", "must be a duration");

    let message = rejection(
        &connections,
        r#"
apiVersion: orgconnect.dev/v1alpha1
kind: AwsOrgConnection
metadata: { name: acme }
spec:
  roleArn: arn:aws:iam::111122223333:role/orgconnect
  credentials: { source: Secret }
"#,
    )
    .await;
    assert_names(&message, "spec.credentials", "secretRef is required");

    let message = rejection(
        &connections,
        r#"
apiVersion: orgconnect.dev/v1alpha1
kind: AwsOrgConnection
metadata: { name: acme }
spec:
  roleArn: arn:aws:iam::111122223333:role/orgconnect
  stackSet: { enabled: true }
"#,
    )
    .await;
    assert_names(&message, "spec", "OrgconnectMemberRole");

    let schedules: Api<SyncSchedule> = ns.api();
    let message = rejection(
        &schedules,
        r#"
apiVersion: orgconnect.dev/v1alpha1
kind: SyncSchedule
metadata: { name: nightly }
spec:
  connectionRef: { name: acme }
  jobTemplate: { spec: { backoffLimit: 1 } }
"#,
    )
    .await;
    assert_names(&message, "spec.jobTemplate.spec.template", "Required value");
}

#[tokio::test]
async fn a_member_accounts_identity_is_immutable() {
    let ns = TestNamespace::new("immutable").await;
    let api: Api<MemberAccount> = ns.api();
    let member: MemberAccount = serde_yaml::from_str(
        r#"
apiVersion: orgconnect.dev/v1alpha1
kind: MemberAccount
metadata: { name: acme-111122223333 }
spec: { connection: acme, accountId: "111122223333" }
"#,
    )
    .expect("manifest parses");
    api.create(&PostParams::default(), &member)
        .await
        .expect("valid member is accepted");
    let patch = serde_json::json!({ "spec": { "accountId": "444455556666" } });
    let err = api
        .patch(
            "acme-111122223333",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect_err("changing accountId is refused");
    let kube::Error::Api(status) = err else {
        panic!("unexpected error: {err}")
    };
    assert_names(&status.message, "spec.accountId", "is immutable");
}

/// The bed runs the cluster's controllers: a Deployment gets a ReplicaSet and Pods (which
/// the scheduler finds no node for), and deleting it takes them with it.
#[tokio::test]
async fn a_deployment_gets_a_replica_set_and_pods_that_go_with_it() {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{DeleteParams, ListParams};

    let ns = TestNamespace::new("controllers").await;
    let deployments: Api<Deployment> = ns.api();
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "busybox" }] },
            },
        },
    }))
    .expect("Deployment");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create Deployment");
    let replica_sets: Api<ReplicaSet> = ns.api();
    let pods: Api<Pod> = ns.api();
    let by_app = ListParams::default().labels("app=web");
    let pending = support::eventually(
        "a ReplicaSet and two Pods",
        std::time::Duration::from_secs(60),
        || async {
            let sets = replica_sets.list(&by_app).await.ok()?.items;
            let listed = pods.list(&by_app).await.ok()?.items;
            let owned = sets.len() == 1
                && sets[0]
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "Deployment" && o.name == "web");
            (owned && listed.len() == 2).then_some(listed)
        },
    )
    .await;
    // No node: the scheduler leaves them Pending.
    let phase = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.clone());
    assert!(
        pending
            .iter()
            .all(|p| phase(p).as_deref() == Some("Pending"))
    );

    deployments
        .delete("web", &DeleteParams::background())
        .await
        .expect("delete Deployment");
    support::eventually(
        "the ReplicaSet and Pods collected",
        std::time::Duration::from_secs(90),
        || async {
            let sets = replica_sets.list(&by_app).await.ok()?.items;
            let listed = pods.list(&by_app).await.ok()?.items;
            (sets.is_empty() && listed.is_empty()).then_some(())
        },
    )
    .await;
}
