//! Whether a role's trust policy lets a principal assume it, pure: used before a sync run
//! to tell a Job's identity (an IRSA or Pod Identity role) that the managing role does not
//! trust it, instead of letting every profile of the run fail with AccessDenied.
//!
//! Only what can be judged from the document is judged: principals by ARN, account root or
//! account id, `sts:AssumeRole` by wildcard, and the `sts:ExternalId` condition. A
//! statement with any other condition, `NotPrincipal` or `NotAction` makes the answer
//! [`TrustVerdict::Unknown`], and the run starts as before.

use serde_json::Value;
use wildmatch::WildMatch;

/// What a trust policy says about one principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustVerdict {
    /// An Allow statement lets the principal in with the ExternalId, and no Deny keeps it
    /// out.
    Trusted,
    /// No Allow statement lets the principal in, or a Deny keeps it out.
    NotTrusted,
    /// The document holds something this cannot judge (named here).
    Unknown(String),
}

/// The trust statement that lets `principal` assume a role with `external_id`.
pub fn trust_statement(principal: &str, external_id: &str) -> Value {
    serde_json::json!({
        "Effect": "Allow",
        "Principal": { "AWS": principal },
        "Action": "sts:AssumeRole",
        "Condition": { "StringEquals": { "sts:ExternalId": external_id } },
    })
}

/// A policy document as IAM returns it (URL-encoded JSON), or plain JSON.
pub fn parse_document(raw: &str) -> Option<Value> {
    serde_json::from_str(raw).ok().or_else(|| {
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .ok()?;
        serde_json::from_str(&decoded).ok()
    })
}

/// Whether `trust` lets `principal` (an IAM role or user ARN) call `sts:AssumeRole`
/// presenting `external_id`.
pub fn trust_verdict(trust: &Value, principal: &str, external_id: &str) -> TrustVerdict {
    let account = principal.split(':').nth(4).unwrap_or_default();
    let mut allowed = false;
    let mut unknown = None;
    for statement in statements(trust) {
        let applies = match applies(&statement, principal, account, external_id) {
            Ok(applies) => applies,
            Err(why) => {
                unknown.get_or_insert(why);
                continue;
            }
        };
        match statement["Effect"].as_str() {
            Some("Deny") if applies => return TrustVerdict::NotTrusted,
            Some("Allow") if applies => allowed = true,
            _ => {}
        }
    }
    match (allowed, unknown) {
        (true, None) => TrustVerdict::Trusted,
        (_, Some(why)) => TrustVerdict::Unknown(why),
        (false, None) => TrustVerdict::NotTrusted,
    }
}

fn statements(policy: &Value) -> Vec<Value> {
    match &policy["Statement"] {
        Value::Array(all) => all.clone(),
        Value::Null => Vec::new(),
        one => vec![one.clone()],
    }
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `statement` covers `principal` assuming the role with `external_id`; `Err`
/// when it cannot be told.
fn applies(
    statement: &Value,
    principal: &str,
    account: &str,
    external_id: &str,
) -> Result<bool, String> {
    for unsupported in ["NotPrincipal", "NotAction"] {
        if statement.get(unsupported).is_some() {
            return Err(format!("a statement uses {unsupported}"));
        }
    }
    let root = format!("arn:aws:iam::{account}:root");
    let principals = match &statement["Principal"] {
        Value::String(any) => vec![any.clone()],
        other => strings(&other["AWS"]),
    };
    let principal_ok = principals
        .iter()
        .any(|p| p == "*" || p == principal || *p == root || p == account);
    let action_ok = strings(&statement["Action"])
        .iter()
        .any(|a| WildMatch::new_case_insensitive(a).matches("sts:AssumeRole"));
    if !(principal_ok && action_ok) {
        return Ok(false);
    }
    let Some(conditions) = statement.get("Condition").and_then(Value::as_object) else {
        return Ok(true);
    };
    for (operator, keys) in conditions {
        let Some(keys) = keys.as_object() else {
            return Err(format!("condition {operator} is not an object"));
        };
        for (key, wanted) in keys {
            if !key.eq_ignore_ascii_case("sts:ExternalId") {
                return Err(format!("a statement has condition {operator} {key}"));
            }
            let wanted = strings(wanted);
            let holds = match operator.as_str() {
                "StringEquals" => wanted.iter().any(|w| w == external_id),
                "StringLike" => wanted
                    .iter()
                    .any(|w| WildMatch::new(w).matches(external_id)),
                other => return Err(format!("a statement has condition {other} {key}")),
            };
            if !holds {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const JOB: &str = "arn:aws:iam::222222222222:role/jobs/inventory-sync";

    fn trust(statements: Value) -> Value {
        json!({ "Version": "2012-10-17", "Statement": statements })
    }

    #[test]
    fn the_principal_its_account_or_anyone_is_trusted_with_the_external_id() {
        for principal in [
            json!(JOB),
            json!("arn:aws:iam::222222222222:root"),
            json!("*"),
        ] {
            let policy = trust(json!([{
                "Effect": "Allow",
                "Principal": { "AWS": [ "arn:aws:iam::111111111111:role/operator", principal ] },
                "Action": "sts:AssumeRole",
                "Condition": { "StringEquals": { "sts:ExternalId": "ext-1" } },
            }]));
            assert_eq!(trust_verdict(&policy, JOB, "ext-1"), TrustVerdict::Trusted);
            assert_eq!(
                trust_verdict(&policy, JOB, "ext-2"),
                TrustVerdict::NotTrusted,
                "another ExternalId"
            );
        }
    }

    #[test]
    fn another_principal_or_action_is_not_trust() {
        let operator_only = trust(json!({
            "Effect": "Allow",
            "Principal": { "AWS": "arn:aws:iam::111111111111:role/operator" },
            "Action": ["sts:AssumeRole", "sts:TagSession"],
        }));
        assert_eq!(
            trust_verdict(&operator_only, JOB, "x"),
            TrustVerdict::NotTrusted
        );
        let other_action = trust(json!([{
            "Effect": "Allow", "Principal": { "AWS": JOB }, "Action": "sts:TagSession",
        }]));
        assert_eq!(
            trust_verdict(&other_action, JOB, "x"),
            TrustVerdict::NotTrusted
        );
        let wildcard = trust(json!([{
            "Effect": "Allow", "Principal": { "AWS": JOB }, "Action": "STS:*",
        }]));
        assert_eq!(trust_verdict(&wildcard, JOB, "x"), TrustVerdict::Trusted);
    }

    #[test]
    fn a_deny_wins_and_what_cannot_be_judged_is_unknown() {
        let denied = trust(json!([
            { "Effect": "Allow", "Principal": { "AWS": JOB }, "Action": "sts:AssumeRole" },
            { "Effect": "Deny", "Principal": "*", "Action": "sts:*" },
        ]));
        assert_eq!(trust_verdict(&denied, JOB, "x"), TrustVerdict::NotTrusted);
        let conditional = trust(json!([{
            "Effect": "Allow", "Principal": { "AWS": JOB }, "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "aws:PrincipalOrgID": "o-abc" } },
        }]));
        assert!(matches!(
            trust_verdict(&conditional, JOB, "x"),
            TrustVerdict::Unknown(why) if why.contains("aws:PrincipalOrgID")
        ));
    }

    #[test]
    fn reads_documents_as_iam_returns_them() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            parse_document(encoded),
            Some(json!({ "Version": "2012-10-17", "Statement": [] }))
        );
        assert!(parse_document("{\"Statement\": []}").is_some());
        assert_eq!(parse_document("not a policy"), None);
        let statement = trust_statement(JOB, "ext-1");
        assert_eq!(
            trust_verdict(&trust(json!([statement])), JOB, "ext-1"),
            TrustVerdict::Trusted,
            "the statement the message tells to add is enough"
        );
    }
}
