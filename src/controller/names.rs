//! Every name the operator gives and owns: its field manager and finalizer, the labels it
//! puts on what it creates, and the builders of MemberAccount, Job, StackSet and
//! role-session names, with the one stable hash that shortens them all. A leaf: nothing of
//! the controllers is imported here.

use jiff::Timestamp;
use kube::ResourceExt;

use crate::api::AwsOrgConnection;

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "orgconnect";
/// The finalizer that removes a connection's MemberAccounts before it goes.
pub const FINALIZER: &str = "orgconnect.dev/cleanup";

/// Label naming the connection a MemberAccount belongs to.
pub const CONNECTION_LABEL: &str = "orgconnect.dev/connection";
/// Label holding the account id.
pub const ACCOUNT_LABEL: &str = "orgconnect.dev/account-id";
/// Label holding the id of the account's parent OU (or root).
pub const OU_LABEL: &str = "orgconnect.dev/ou-id";
/// Label on every Job and ConfigMap of a schedule.
pub const SCHEDULE_LABEL: &str = "orgconnect.dev/sync-schedule";
/// The prefix of the labels that mirror an account's AWS tags: `tags.orgconnect.dev/<key>`.
pub const TAG_LABEL_PREFIX: &str = "tags.orgconnect.dev/";
/// The field manager of a MemberAccount's `status.tags`, which discovery writes beside the
/// member controller's status (its own manager, so neither write removes the other's).
pub const TAGS_FIELD_MANAGER: &str = "orgconnect-tags";

/// The labels mirroring `tags`: each tag whose key is a valid label name (at most 63
/// characters, alphanumerics with `-`, `_` and `.` inside) and whose value is a valid label
/// value (the same, or empty), as `tags.orgconnect.dev/<key>: <value>`. Any other tag (a
/// key with `:` or `/`, a value with spaces or over 63 characters) stays in `status.tags`
/// only.
pub fn tag_labels(
    tags: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    tags.iter()
        .filter(|(key, value)| {
            !key.is_empty() && label_syntax(key) && (value.is_empty() || label_syntax(value))
        })
        .map(|(key, value)| (format!("{TAG_LABEL_PREFIX}{key}"), value.clone()))
        .collect()
}

/// Whether `text` is a label name or non-empty label value.
fn label_syntax(text: &str) -> bool {
    let bytes = text.as_bytes();
    let inner = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    text.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.iter().all(inner)
}

/// Eight hex digits of FNV-1a over `value`: the same in every build and release (unlike
/// `DefaultHasher`), since it ends up in names and labels that outlive the process and
/// that `orgconnect tree` computes too.
pub(crate) fn short_hash(value: &str) -> String {
    let hash = value.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    format!("{hash:08x}")
}

/// `value` as a label value: itself when it fits in 63 characters, else a prefix and a
/// hash of the whole, so distinct names stay distinct.
pub fn label_value(value: &str) -> String {
    if value.len() <= 63 {
        return value.to_owned();
    }
    let prefix: String = value.chars().take(54).collect();
    let prefix = prefix.trim_end_matches(['-', '.', '_']);
    format!("{prefix}-{}", short_hash(value))
}

/// `<connection>-<accountId>`, shortened with a hash when the connection's name is too
/// long for the 253-character limit.
pub fn member_name(connection: &str, account_id: &str) -> String {
    let name = format!("{connection}-{account_id}");
    if name.len() <= 253 {
        return name;
    }
    let keep = 253 - account_id.len() - 1 - 9;
    let prefix: String = connection.chars().take(keep).collect();
    let prefix = prefix.trim_end_matches(['-', '.']);
    format!("{prefix}-{}-{account_id}", short_hash(connection))
}

/// The label selector matching a connection's MemberAccounts.
pub fn connection_selector(connection: &str) -> String {
    format!("{CONNECTION_LABEL}={}", label_value(connection))
}

/// A Job name for a slot: `<schedule>-<minutes since the epoch>` (a scheduled run) or
/// `<schedule>-run-<seconds>` (a manual one), at most 63 characters, deterministic so a
/// restarted operator never starts a slot twice.
pub fn job_name(schedule: &str, slot: Timestamp, manual: bool) -> String {
    let suffix = if manual {
        format!("run-{}", slot.as_second())
    } else {
        slot.as_second().div_euclid(60).to_string()
    };
    let name = format!("{schedule}-{suffix}");
    if name.len() <= 63 {
        return name;
    }
    // Stable across builds and releases: a restarted (or upgraded) operator must name a
    // slot's Job as its predecessor did.
    let hash = short_hash(schedule);
    let keep = 63 - suffix.len() - hash.len() - 2;
    let prefix: String = schedule.chars().take(keep).collect();
    format!("{}-{hash}-{suffix}", prefix.trim_end_matches(['-', '.']))
}

/// A valid `RoleSessionName` (`[\w+=,.@-]`, 2 to 64 characters) naming the connection.
pub fn session_name(namespace: &str, name: &str) -> String {
    let raw = format!("orgconnect-{namespace}-{name}");
    let mut cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.len() > 64 {
        let suffix = format!("-{}", short_hash(&raw));
        cleaned.truncate(64 - suffix.len());
        cleaned.push_str(&suffix);
    }
    cleaned
}

/// The StackSet's name: `spec.stackSet.name`, else `orgconnect-<namespace>-<connection>`.
/// Connection names may hold dots, which CloudFormation does not allow; when the name had
/// to be changed or shortened (to 128 characters) it ends with a hash of the whole, so
/// `a.b` and `a-b` never share a StackSet. A StackSet made under the name releases before
/// the hash gave it (`status.stackSet.name`) keeps that name.
pub fn stack_set_name(connection: &AwsOrgConnection) -> String {
    if let Some(name) = &connection.spec.stack_set.name {
        return name.clone();
    }
    let namespace = connection.namespace().unwrap_or_default();
    let name = connection.name_any();
    let legacy = legacy_stack_set_name(&namespace, &name);
    let adopted = connection
        .status
        .as_ref()
        .and_then(|s| s.stack_set.as_ref())
        .is_some_and(|s| s.name == legacy);
    if adopted {
        return legacy;
    }
    let raw = format!("orgconnect-{namespace}-{name}");
    let cleaned = stack_set_characters(&raw);
    if cleaned == raw && raw.len() <= 128 {
        return raw;
    }
    let suffix = format!("-{}", short_hash(&raw));
    let prefix: String = cleaned.chars().take(128 - suffix.len()).collect();
    format!("{prefix}{suffix}")
}

/// The name releases before the hash gave a connection's StackSet.
fn legacy_stack_set_name(namespace: &str, name: &str) -> String {
    stack_set_characters(&format!("orgconnect-{namespace}-{name}"))
        .chars()
        .take(128)
        .collect()
}

/// `raw` with every character CloudFormation forbids in a StackSet name made `-`.
fn stack_set_characters(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ts: &str) -> Timestamp {
        ts.parse().expect("timestamp")
    }

    #[test]
    fn names_and_labels_fit_kubernetes_limits() {
        assert_eq!(member_name("acme", "222222222222"), "acme-222222222222");
        let long = "c".repeat(253);
        let name = member_name(&long, "222222222222");
        assert!(name.len() <= 253, "{}", name.len());
        assert!(name.ends_with("-222222222222"));
        assert_ne!(name, member_name(&"c".repeat(252), "222222222222"));
        assert_eq!(label_value("acme"), "acme");
        assert!(label_value(&long).len() <= 63);
        assert_ne!(label_value(&long), label_value(&"c".repeat(252)));
        assert_eq!(label_value(&"c".repeat(63)), "c".repeat(63));
    }

    #[test]
    fn shortened_names_are_the_same_in_every_build() {
        // FNV-1a's published values: a changed hash would orphan existing labels.
        assert_eq!(short_hash(""), "811c9dc5");
        assert_eq!(short_hash("a"), "e40c292c");
        let long = format!("{}-x", "c".repeat(70));
        assert_eq!(
            label_value(&long),
            format!("{}-{}", "c".repeat(54), short_hash(&long))
        );
    }

    #[test]
    fn names_are_deterministic_and_short() {
        let slot = at("2026-03-01T10:30:00Z");
        assert_eq!(job_name("sync", slot, false), "sync-29539350");
        assert_eq!(job_name("sync", slot, false), job_name("sync", slot, false));
        assert_eq!(job_name("sync", slot, true), "sync-run-1772361000");
        let long = "s".repeat(253);
        assert!(job_name(&long, slot, false).len() <= 63);
        assert!(job_name(&long, slot, true).ends_with("-run-1772361000"));
        assert_eq!(
            job_name(&long, slot, false),
            format!("{}-{}-29539350", "s".repeat(45), short_hash(&long))
        );
    }

    #[test]
    fn session_names_are_valid_and_bounded() {
        assert_eq!(session_name("team-a", "acme"), "orgconnect-team-a-acme");
        let long = session_name("ns", &"x".repeat(253));
        assert_eq!(long.len(), 64);
        assert!(long.starts_with("orgconnect-ns-xxx"));
        assert_ne!(long, session_name("ns", &"x".repeat(252)));
        let odd = session_name("ns", "a_b/c");
        assert!(
            odd.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
        );
    }

    fn connection(namespace: &str, name: &str) -> AwsOrgConnection {
        let mut connection = AwsOrgConnection::new(
            name,
            serde_json::from_value(
                serde_json::json!({"roleArn": "arn:aws:iam::111111111111:role/x"}),
            )
            .expect("spec"),
        );
        connection.metadata.namespace = Some(namespace.to_owned());
        connection
    }

    #[test]
    fn stack_set_names_are_valid_and_never_shared() {
        assert_eq!(
            stack_set_name(&connection("team-a", "acme")),
            "orgconnect-team-a-acme"
        );
        let dotted = stack_set_name(&connection("team-a", "a.b"));
        let dashed = stack_set_name(&connection("team-a", "a-b"));
        assert_ne!(dotted, dashed, "a.b and a-b get StackSets of their own");
        assert_eq!(dashed, "orgconnect-team-a-a-b");
        assert!(dotted.starts_with("orgconnect-team-a-a-b-"));
        let long = stack_set_name(&connection("team-a", &"c".repeat(253)));
        assert_eq!(long.len(), 128);
        assert_ne!(
            long,
            stack_set_name(&connection("team-a", &"c".repeat(252)))
        );
        for name in [&dotted, &long] {
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        }
    }

    #[test]
    fn a_stack_set_made_under_the_old_name_keeps_it() {
        let mut old = connection("team-a", "a.b");
        old.status = Some(
            serde_json::from_value(serde_json::json!({
                "stackSet": { "name": "orgconnect-team-a-a-b", "instances": 3 },
            }))
            .expect("status"),
        );
        assert_eq!(stack_set_name(&old), "orgconnect-team-a-a-b");
        // Any other name in status (a spec.stackSet.name since removed) is not adopted.
        let mut renamed = connection("team-a", "a.b");
        renamed.status = Some(
            serde_json::from_value(serde_json::json!({
                "stackSet": { "name": "custom", "instances": 3 },
            }))
            .expect("status"),
        );
        assert_ne!(stack_set_name(&renamed), "custom");
    }

    #[test]
    fn tags_with_label_syntax_become_labels_and_others_stay_out() {
        let long = "v".repeat(64);
        let tags = std::collections::BTreeMap::from([
            ("team".to_owned(), "payments".to_owned()),
            ("cost-center".to_owned(), "42".to_owned()),
            ("empty".to_owned(), String::new()),
            ("Env.Name_2".to_owned(), "Prod-EU".to_owned()),
            ("aws:cloudformation:stack-name".to_owned(), "s".to_owned()),
            ("team/owner".to_owned(), "x".to_owned()),
            ("owner".to_owned(), "Jane Doe".to_owned()),
            ("long".to_owned(), long),
            ("-edge".to_owned(), "x".to_owned()),
            ("k".repeat(64), "x".to_owned()),
        ]);
        let labels = tag_labels(&tags);
        assert_eq!(
            labels,
            std::collections::BTreeMap::from([
                (
                    "tags.orgconnect.dev/Env.Name_2".to_owned(),
                    "Prod-EU".to_owned()
                ),
                (
                    "tags.orgconnect.dev/cost-center".to_owned(),
                    "42".to_owned()
                ),
                ("tags.orgconnect.dev/empty".to_owned(), String::new()),
                ("tags.orgconnect.dev/team".to_owned(), "payments".to_owned()),
            ])
        );
    }
}
