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

/// What `kubectl explain` prints: each description one paragraph (no line break from the
/// source's wrapping), every defaulted field naming its default, every bounded one its
/// bounds, and an array's items not repeating a type's text under the field's own.
#[test]
fn descriptions_are_one_paragraph_with_defaults_and_limits() {
    fn walk(path: &str, schema: &serde_json::Value, problems: &mut Vec<String>) {
        if let Some(description) = schema.get("description").and_then(|d| d.as_str()) {
            if description.contains('\n') {
                problems.push(format!("{path}: a line break in {description:?}"));
            }
            if let Some(default) = schema.get("default") {
                let named = match default {
                    serde_json::Value::String(s) => description.contains(&format!("`{s}`")),
                    other => description.contains(&other.to_string()),
                };
                if !(named || orgconnect::crds::states_default(description)) {
                    problems.push(format!("{path}: default {default} not named"));
                }
            }
            for bound in ["minimum", "maximum", "maxLength", "maxItems"] {
                let Some(value) = schema.get(bound).and_then(|v| v.as_f64()) else {
                    continue;
                };
                if value > 0.0 && !description.contains(&format!("{value}")) {
                    problems.push(format!("{path}: {bound} {value} not stated"));
                }
            }
            if schema["items"].get("description").is_some() {
                problems.push(format!("{path}: its items repeat a description"));
            }
        } else if path.contains('.') && !path.ends_with("[]") {
            problems.push(format!("{path}: no description"));
        }
        for (name, property) in schema
            .get("properties")
            .and_then(|p| p.as_object())
            .into_iter()
            .flatten()
        {
            if !matches!(name.as_str(), "apiVersion" | "kind" | "metadata") {
                walk(&format!("{path}.{name}"), property, problems);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, problems);
        }
    }
    let mut problems = Vec::new();
    for crd in orgconnect::crds::all() {
        for version in &crd.spec.versions {
            let schema = serde_json::to_value(&version.schema).expect("schema serializes");
            walk(
                &crd.spec.names.kind,
                &schema["openAPIV3Schema"],
                &mut problems,
            );
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
