//! Every manifest under `examples/`, subdirectories included, is accepted by the real API
//! server as written (only its namespace is replaced by the test's own).
//!
//! The bed has no Argo CD, so the test installs a small stand-in for the
//! `applications.argoproj.io` CRD (Argo CD's required fields, the rest kept as given); the
//! Application example must still name everything Argo CD needs, which the test checks
//! itself.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::pinned_kind;
use serde::Deserialize;
use support::eventually;
use support::kube::TestNamespace;

/// Every `*.yaml` under `dir`, at any depth, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The objects of a multi-document YAML file.
fn objects(file: &Path) -> Vec<DynamicObject> {
    let text = std::fs::read_to_string(file).expect("example is readable");
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| serde_yaml::Value::deserialize(document).expect("example is YAML"))
        .filter(|value| !value.is_null())
        .map(|value| {
            serde_yaml::from_value(value)
                .unwrap_or_else(|e| panic!("{}: not an object: {e}", file.display()))
        })
        .collect()
}

/// A stand-in for Argo CD's Application CRD: the fields Argo CD requires, typed; anything
/// else kept as given.
fn application_crd() -> CustomResourceDefinition {
    let open_object = serde_json::json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    });
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "applications.argoproj.io" },
        "spec": {
            "group": "argoproj.io",
            "scope": "Namespaced",
            "names": {
                "kind": "Application",
                "listKind": "ApplicationList",
                "plural": "applications",
                "singular": "application",
                "shortNames": ["app", "apps"],
            },
            "versions": [{
                "name": "v1alpha1",
                "served": true,
                "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "required": ["metadata", "spec"],
                    "properties": {
                        "apiVersion": { "type": "string" },
                        "kind": { "type": "string" },
                        "metadata": { "type": "object" },
                        "spec": {
                            "type": "object",
                            "required": ["destination", "project"],
                            "x-kubernetes-preserve-unknown-fields": true,
                            "properties": {
                                "project": { "type": "string" },
                                "destination": {
                                    "type": "object",
                                    "properties": {
                                        "server": { "type": "string" },
                                        "name": { "type": "string" },
                                        "namespace": { "type": "string" },
                                    },
                                },
                                "source": {
                                    "type": "object",
                                    "required": ["repoURL"],
                                    "x-kubernetes-preserve-unknown-fields": true,
                                    "properties": {
                                        "repoURL": { "type": "string" },
                                        "path": { "type": "string" },
                                        "targetRevision": { "type": "string" },
                                    },
                                },
                                "syncPolicy": open_object,
                            },
                        },
                        "status": open_object,
                    },
                }},
            }],
        },
    }))
    .expect("a valid CustomResourceDefinition")
}

/// Installs the Application stand-in and waits until it is Established.
async fn install_application_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = application_crd();
    let name = crd.metadata.name.clone().expect("named");
    crds.patch(
        &name,
        &PatchParams::apply("orgconnect-examples").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap_or_else(|e| panic!("installing CRD {name}: {e}"));
    eventually(
        "CRD applications.argoproj.io Established",
        Duration::from_secs(30),
        || {
            let crds = crds.clone();
            let name = name.clone();
            async move {
                let established = crds
                    .get(&name)
                    .await
                    .ok()?
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

/// What Argo CD needs from an Application to sync a git directory.
fn assert_application_is_complete(file: &Path, object: &DynamicObject) {
    let spec = &object.data["spec"];
    for (what, value) in [
        ("spec.project", &spec["project"]),
        ("spec.source.repoURL", &spec["source"]["repoURL"]),
        ("spec.source.path", &spec["source"]["path"]),
        (
            "spec.source.targetRevision",
            &spec["source"]["targetRevision"],
        ),
        (
            "spec.destination.namespace",
            &spec["destination"]["namespace"],
        ),
    ] {
        assert!(
            value.as_str().is_some_and(|s| !s.is_empty()),
            "{}: Application without {what}",
            file.display()
        );
    }
    let destination = &spec["destination"];
    assert!(
        destination["server"].is_string() != destination["name"].is_string(),
        "{}: an Application's destination names a server or a cluster name, exactly one",
        file.display()
    );
    assert_eq!(
        object.metadata.namespace.as_deref(),
        Some("argocd"),
        "{}: Applications live in Argo CD's namespace",
        file.display()
    );
}

#[tokio::test]
async fn every_example_applies_to_the_api_server() {
    let ns = TestNamespace::new("examples").await;
    install_application_crd(&ns.client).await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let files = yaml_files(&dir);
    assert!(
        files.iter().any(|f| f.parent() != Some(dir.as_path())),
        "no examples in subdirectories found"
    );
    let mut applied = Vec::new();
    for file in &files {
        for mut object in objects(file) {
            let types = object
                .types
                .clone()
                .unwrap_or_else(|| panic!("{}: an object without a kind", file.display()));
            if types.kind == "Application" {
                assert_application_is_complete(file, &object);
            }
            let gvk = GroupVersionKind::try_from(&types).expect("valid apiVersion");
            // The API server learns about a new CRD's kind a moment after Established.
            let (resource, _) = eventually(
                &format!("{}: the API server to serve {gvk:?}", file.display()),
                Duration::from_secs(30),
                || async { pinned_kind(&ns.client, &gvk).await.ok() },
            )
            .await;
            // Examples name the namespace they belong in (argocd, for Argo CD's objects) or
            // none; here each goes to the test's own.
            object.metadata.namespace = Some(ns.name.clone());
            let api: Api<DynamicObject> =
                Api::namespaced_with(ns.client.clone(), &ns.name, &resource);
            let name = object
                .metadata
                .name
                .clone()
                .unwrap_or_else(|| panic!("{}: an unnamed {}", file.display(), types.kind));
            api.patch(
                &name,
                &PatchParams::apply("orgconnect-examples"),
                &Patch::Apply(&object),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {} {name} rejected: {e}", file.display(), types.kind));
            applied.push(format!("{}/{name}", types.kind));
        }
    }
    for expected in [
        "AwsOrgConnection/acme",
        "SyncSchedule/acme-inventory",
        "SyncSchedule/acme-cloudquery",
        "ConfigMap/acme-cloudquery",
        "Application/orgconnect-team-a",
        "ConfigMap/argocd-cm",
    ] {
        assert!(
            applied.iter().any(|a| a == expected),
            "{expected} was not among the examples applied: {applied:?}"
        );
    }
}
