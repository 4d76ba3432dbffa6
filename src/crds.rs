//! The CustomResourceDefinitions, generated from the API types.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use crate::api::{AwsOrgConnection, MemberAccount, SyncSchedule};

/// The three CRDs, in a stable order, each field's description as `kubectl explain`
/// prints it (see [`explained`]).
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        AwsOrgConnection::crd(),
        MemberAccount::crd(),
        SyncSchedule::crd(),
    ]
    .into_iter()
    .map(|mut crd| {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                explained(schema);
            }
        }
        crd
    })
    .collect()
}

/// The CRDs as one multi-document YAML stream, as `orgconnect crds` prints it and
/// `crds/orgconnect.yaml` holds it.
pub fn to_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

/// Rewrites every description under `schema` to read well in `kubectl explain`: one
/// paragraph (a doc comment's line breaks are only where its source wrapped), ending with
/// the field's default and limits from the schema itself, so the text can never disagree
/// with what the API server applies. An array's items lose their type's description when
/// the field has its own, which `kubectl explain` would otherwise print run together.
///
/// Written here because schemars keeps doc comments verbatim and kube-derive offers no
/// hook between the two.
pub fn explained(schema: &mut JSONSchemaProps) {
    if let Some(description) = schema.description.take() {
        schema.description = Some(paragraph(&description, schema));
    }
    let described = schema.description.is_some();
    for property in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        explained(property);
    }
    match &mut schema.items {
        Some(JSONSchemaPropsOrArray::Schema(items)) => {
            if described {
                items.description = None;
            }
            explained(items);
        }
        Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().for_each(explained),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = &mut schema.additional_properties {
        explained(values);
    }
    for branch in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of]
        .into_iter()
        .flatten()
        .flatten()
    {
        explained(branch);
    }
}

/// Whether `description` already says what its field defaults to.
pub fn states_default(description: &str) -> bool {
    let lower = description.to_lowercase();
    ["defaults to", "(default", "by default"]
        .iter()
        .any(|phrase| lower.contains(phrase))
}

/// `description` on one line, with the default and limits of `schema` appended.
fn paragraph(description: &str, schema: &JSONSchemaProps) -> String {
    let mut text = description.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut add = |sentence: String| {
        if !text.ends_with('.') {
            text.push('.');
        }
        text.push(' ');
        text.push_str(&sentence);
    };
    if let Some(default) = &schema.default
        && !states_default(description)
    {
        let value = match &default.0 {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        add(format!("Defaults to `{value}`."));
    }
    // The limits the API server's validation rules set (durations' least values) and
    // immutability, in the rules' own words.
    for rule in schema.x_kubernetes_validations.iter().flatten() {
        match rule.message.as_deref() {
            Some(message) if message.contains("at least") || message.contains("at most") => {
                let mut sentence = message.to_owned();
                if let Some(first) = sentence.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                add(format!("{sentence}."));
            }
            Some("is immutable") => add("Cannot be changed once set.".to_owned()),
            _ => {}
        }
    }
    if let Some(range) = bounds(schema.minimum, schema.maximum) {
        add(format!("{range}."));
    }
    let lengths = bounds(
        schema.min_length.map(|n| n as f64),
        schema.max_length.map(|n| n as f64),
    );
    if let Some(range) = lengths {
        add(format!("{range} characters."));
    }
    let items = bounds(
        schema.min_items.map(|n| n as f64),
        schema.max_items.map(|n| n as f64),
    );
    if let Some(range) = items {
        add(format!("{range} items."));
    }
    text
}

/// "Between 1 and 1000", "At least 0", "At most 5", or nothing.
fn bounds(min: Option<f64>, max: Option<f64>) -> Option<String> {
    // Schema bounds are whole numbers here; printed without a fraction.
    let number = |n: f64| format!("{n}");
    match (min.filter(|n| *n > 0.0), max) {
        (Some(min), Some(max)) => Some(format!("Between {} and {}", number(min), number(max))),
        (Some(min), None) => Some(format!("At least {}", number(min))),
        (None, Some(max)) => Some(format!("At most {}", number(max))),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON;

    fn field(description: &str) -> JSONSchemaProps {
        JSONSchemaProps {
            description: Some(description.to_owned()),
            ..JSONSchemaProps::default()
        }
    }

    #[test]
    fn a_wrapped_doc_comment_becomes_one_paragraph_with_its_default_and_limits() {
        let mut schema = JSONSchemaProps {
            default: Some(JSON(serde_json::json!(16))),
            minimum: Some(1.0),
            maximum: Some(1000.0),
            ..field("How many accounts are probed\nat the same time")
        };
        explained(&mut schema);
        assert_eq!(
            schema.description.as_deref(),
            Some(
                "How many accounts are probed at the same time. Defaults to `16`. Between 1 and \
                 1000."
            )
        );
    }

    #[test]
    fn a_default_the_text_already_names_is_not_repeated() {
        let mut schema = JSONSchemaProps {
            default: Some(JSON(serde_json::json!("Forbid"))),
            ..field("`Forbid` (default, skip the new run) or `Allow`.")
        };
        explained(&mut schema);
        assert_eq!(
            schema.description.as_deref(),
            Some("`Forbid` (default, skip the new run) or `Allow`.")
        );
    }

    #[test]
    fn strings_and_lists_state_their_lengths_and_a_zero_minimum_is_left_out() {
        let mut name = JSONSchemaProps {
            min_length: Some(1),
            max_length: Some(253),
            ..field("The name")
        };
        let mut count = JSONSchemaProps {
            minimum: Some(0.0),
            ..field("A count.")
        };
        let mut list = JSONSchemaProps {
            max_items: Some(5),
            ..field("The OUs.")
        };
        for schema in [&mut name, &mut count, &mut list] {
            explained(schema);
        }
        assert_eq!(
            name.description.as_deref(),
            Some("The name. Between 1 and 253 characters.")
        );
        assert_eq!(count.description.as_deref(), Some("A count."));
        assert_eq!(
            list.description.as_deref(),
            Some("The OUs. At most 5 items.")
        );
    }

    #[test]
    fn an_array_with_its_own_description_drops_its_items_type_description() {
        let mut schema = JSONSchemaProps {
            items: Some(JSONSchemaPropsOrArray::Schema(Box::new(field(
                "One observation.",
            )))),
            ..field("The conditions.")
        };
        explained(&mut schema);
        let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items else {
            panic!("items");
        };
        assert_eq!(items.description, None);
    }
}
