//! Every manifest under `examples/` is accepted by the real API server as written.

mod support;

use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::pinned_kind;
use serde::Deserialize;
use support::kube::TestNamespace;

#[tokio::test]
async fn every_example_applies_to_the_api_server() {
    let ns = TestNamespace::new("examples").await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("examples/ exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples found");
    let mut applied = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("example is readable");
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(document).expect("example is YAML");
            if value.is_null() {
                continue;
            }
            let object: DynamicObject =
                serde_yaml::from_value(value).expect("example is an object");
            let types = object
                .types
                .clone()
                .expect("example has apiVersion and kind");
            let gvk = GroupVersionKind::try_from(&types).expect("valid apiVersion");
            let (resource, _) = pinned_kind(&ns.client, &gvk)
                .await
                .unwrap_or_else(|e| panic!("{}: unknown kind {gvk:?}: {e}", file.display()));
            let api: Api<DynamicObject> =
                Api::namespaced_with(ns.client.clone(), &ns.name, &resource);
            let name = object.metadata.name.clone().expect("example is named");
            api.patch(
                &name,
                &PatchParams::apply("orgconnect-examples"),
                &Patch::Apply(&object),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {} {name} rejected: {e}", file.display(), types.kind));
            applied += 1;
        }
    }
    assert!(applied >= 4, "applied {applied} objects");
}
