//! The Kubernetes side of the test bed: a client for the real API server, the CRDs
//! installed, and a fresh namespace per test.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::eventually;

/// The environment variable `scripts/testbed env` sets to the bed's kubeconfig.
pub const KUBECONFIG_ENV: &str = "ORGCONNECT_TESTBED_KUBECONFIG";

/// Server-side applies object `name` of kind `K` with `metadata` (labels, annotations)
/// and `spec`, as a user's `kubectl apply --server-side` would.
pub async fn apply<K>(
    api: &Api<K>,
    name: &str,
    metadata: serde_json::Value,
    spec: serde_json::Value,
) -> K
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let mut meta = serde_json::json!({ "name": name });
    if let (Some(meta), Some(extra)) = (meta.as_object_mut(), metadata.as_object()) {
        meta.extend(extra.clone());
    }
    let manifest = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": meta,
        "spec": spec,
    });
    api.patch(
        name,
        &PatchParams::apply("test-user"),
        &Patch::Apply(&manifest),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {} {name}: {e}", K::kind(&())))
}

/// A client for the test bed's API server.
pub async fn client() -> Client {
    let path = std::env::var(KUBECONFIG_ENV).unwrap_or_else(|_| {
        panic!(
            "{KUBECONFIG_ENV} is not set: run the tests with `scripts/testbed run -- cargo test`"
        )
    });
    let kubeconfig = Kubeconfig::read_from(&path).expect("test bed kubeconfig is readable");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("test bed kubeconfig is valid");
    Client::try_from(config).expect("client for the test bed")
}

/// Installs (server-side apply, idempotent) the orgconnect CRDs and waits until the API
/// server reports each Established.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("orgconnect-tests").force();
    for crd in orgconnect::crds::all() {
        let name = crd.metadata.name.clone().expect("CRDs are named");
        crds.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        eventually(
            &format!("CRD {name} Established"),
            Duration::from_secs(30),
            || {
                let crds = crds.clone();
                let name = name.clone();
                async move {
                    let crd = crds.get(&name).await.ok()?;
                    let established = crd
                        .status?
                        .conditions?
                        .into_iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    established.then_some(())
                }
            },
        )
        .await;
    }
}

/// A test's own namespace on the test bed, with a client. The bed is disposable (its
/// etcd is wiped when it stops, and it runs no namespace controller), so namespaces are
/// not deleted.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    /// Creates `<prefix>-<unique>` after installing the CRDs.
    pub async fn new(prefix: &str) -> Self {
        let client = client().await;
        install_crds(&client).await;
        let name = format!("{prefix}-{}", super::unique_suffix());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("orgconnect.dev/test".to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        Self { client, name }
    }

    /// The Events (events.k8s.io/v1, as the operator records them) about object `name`
    /// with `reason`.
    pub async fn events(
        &self,
        name: &str,
        reason: &str,
    ) -> Vec<k8s_openapi::api::events::v1::Event> {
        let api: Api<k8s_openapi::api::events::v1::Event> = self.api();
        api.list(&kube::api::ListParams::default())
            .await
            .expect("list Events")
            .items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
            })
            .collect()
    }

    /// Waits (30 s) for an Event of `type_` (`Normal`, `Warning`) and `reason` about object
    /// `name`, and returns it.
    pub async fn wait_event(
        &self,
        name: &str,
        type_: &str,
        reason: &str,
    ) -> k8s_openapi::api::events::v1::Event {
        eventually(
            &format!("a {type_} {reason} Event about {name}"),
            Duration::from_secs(30),
            || async {
                self.events(name, reason)
                    .await
                    .into_iter()
                    .find(|e| e.type_.as_deref() == Some(type_))
            },
        )
        .await
    }

    /// An API for a namespaced kind in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}
