//! `crds/orgconnect.yaml` must be exactly what `orgconnect crds` prints.

#[test]
fn committed_crds_match_the_api_types() {
    let generated = orgconnect::crds::to_yaml().expect("CRDs serialize");
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/orgconnect.yaml"))
            .expect("crds/orgconnect.yaml exists");
    assert!(
        generated == committed,
        "crds/orgconnect.yaml is stale: run `cargo run -- crds > crds/orgconnect.yaml` and commit it"
    );
}

#[test]
fn every_schema_property_is_documented() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) else {
            if let Some(items) = schema.get("items") {
                walk(&format!("{path}[]"), items, missing);
            }
            return;
        };
        for (name, property) in properties {
            let here = format!("{path}.{name}");
            let inherited = matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
            if !inherited && property.get("description").is_none() {
                missing.push(here.clone());
            }
            walk(&here, property, missing);
        }
    }
    let mut missing = Vec::new();
    for crd in orgconnect::crds::all() {
        let kind = crd.spec.names.kind.clone();
        for version in &crd.spec.versions {
            let schema = serde_json::to_value(&version.schema).expect("schema serializes");
            walk(&kind, &schema["openAPIV3Schema"], &mut missing);
        }
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:#?}"
    );
}
