//! The organization diagram: Root, OUs and accounts with each account's phase and reason,
//! built from a connection's MemberAccounts and drawn as text, Mermaid, DOT or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::api::member_account::{MemberAccount, MemberPhase};
use crate::api::{AwsOrgConnection, ConditionType, find_condition};

/// An account in the diagram.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountNode {
    pub id: String,
    pub name: String,
    /// Pending until the account has been probed.
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The account's values of the AWS tags asked for (`orgconnect tree --tag KEY`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl AccountNode {
    fn blocked(&self) -> bool {
        self.phase == "Blocked"
    }
}

/// The root or an organizational unit, with what sits directly under it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitNode {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub units: Vec<UnitNode>,
    pub accounts: Vec<AccountNode>,
}

/// The whole diagram of one connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgTree {
    pub connection: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managing_account_id: Option<String>,
    pub root: UnitNode,
}

/// A unit being filled, its children keyed by OU id: names may repeat, and may hold any
/// character, `/` included.
#[derive(Default)]
struct Building {
    name: String,
    id: Option<String>,
    units: BTreeMap<String, Building>,
    accounts: Vec<AccountNode>,
}

impl Building {
    fn finish(self) -> UnitNode {
        let mut accounts = self.accounts;
        accounts.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        let mut units: Vec<UnitNode> = self.units.into_values().map(Building::finish).collect();
        units.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        UnitNode {
            name: self.name,
            id: self.id,
            units,
            accounts,
        }
    }
}

/// The OUs from the root down to where `member` sits, as (id, name). MemberAccounts
/// written before their OU lineage was recorded hang under their parent's id, named by
/// their whole path.
fn levels(member: &MemberAccount, root_id: Option<&str>) -> Vec<(String, String)> {
    let Some(ou) = member.spec.organizational_unit.as_ref() else {
        return Vec::new();
    };
    if !ou.lineage.is_empty() {
        return ou
            .lineage
            .iter()
            .map(|level| (level.id.clone(), level.name.clone()))
            .collect();
    }
    if Some(ou.id.as_str()) == root_id || ou.id.starts_with("r-") || ou.path == "Root" {
        return Vec::new();
    }
    let name = ou.path.strip_prefix("Root/").unwrap_or(&ou.path);
    vec![(ou.id.clone(), name.to_owned())]
}

/// Builds the diagram from the connection and its MemberAccounts, placing each account
/// under the OUs its lineage names, by id, with its values of the AWS tags `tag_keys`.
pub fn build(
    connection: &AwsOrgConnection,
    members: &[MemberAccount],
    tag_keys: &[String],
) -> OrgTree {
    let organization = connection
        .status
        .as_ref()
        .and_then(|s| s.organization.as_ref());
    let root_id = organization.and_then(|o| o.root_id.clone());
    let mut root = Building {
        name: "Root".to_owned(),
        id: root_id.clone(),
        ..Building::default()
    };
    for member in members {
        let mut node = &mut root;
        for (id, name) in levels(member, root_id.as_deref()) {
            node = node.units.entry(id.clone()).or_insert_with(|| Building {
                name,
                id: Some(id),
                ..Building::default()
            });
        }
        let status = member.status.as_ref();
        node.accounts.push(AccountNode {
            id: member.spec.account_id.clone(),
            name: member.spec.name.clone(),
            phase: format!(
                "{:?}",
                status.and_then(|s| s.phase).unwrap_or(MemberPhase::Pending)
            ),
            reason: status
                .and_then(|s| find_condition(&s.conditions, ConditionType::Connected))
                .map(|c| c.reason.clone()),
            tags: tag_keys
                .iter()
                .filter_map(|key| {
                    let value = status?.tags.get(key)?;
                    Some((key.clone(), value.clone()))
                })
                .collect(),
        });
    }
    OrgTree {
        connection: connection.metadata.name.clone().unwrap_or_default(),
        organization_id: organization.map(|o| o.id.clone()),
        managing_account_id: organization.map(|o| o.managing_account_id.clone()),
        root: root.finish(),
    }
}

fn count(unit: &UnitNode, totals: &mut BTreeMap<String, usize>) {
    for account in &unit.accounts {
        *totals.entry(account.phase.clone()).or_default() += 1;
    }
    for child in &unit.units {
        count(child, totals);
    }
}

/// A one-line summary: `50 accounts: 44 Connected, 5 Blocked, 1 Suspended`.
pub fn summary(tree: &OrgTree) -> String {
    let mut totals = BTreeMap::new();
    count(&tree.root, &mut totals);
    let total: usize = totals.values().sum();
    let parts: Vec<String> = totals
        .iter()
        .map(|(phase, n)| format!("{n} {phase}"))
        .collect();
    format!("{total} accounts: {}", parts.join(", "))
}

/// An indented tree; Blocked accounts in red when `color` (writing to a terminal).
pub fn render_text(tree: &OrgTree, color: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} — organization {} (managing account {})",
        tree.connection,
        tree.organization_id.as_deref().unwrap_or("?"),
        tree.managing_account_id.as_deref().unwrap_or("?")
    );
    let root_id = tree
        .root
        .id
        .as_deref()
        .map(|id| format!(" ({id})"))
        .unwrap_or_default();
    let _ = writeln!(out, "Root{root_id}");
    text_children(&tree.root, "", color, &mut out);
    let _ = writeln!(out, "{}", summary(tree));
    out
}

fn text_children(unit: &UnitNode, prefix: &str, color: bool, out: &mut String) {
    let count = unit.accounts.len() + unit.units.len();
    let mut index = 0;
    for account in &unit.accounts {
        index += 1;
        let branch = if index == count {
            "└── "
        } else {
            "├── "
        };
        let reason = account
            .reason
            .as_deref()
            .filter(|_| account.phase != "Connected")
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let tags = if account.tags.is_empty() {
            String::new()
        } else {
            let pairs: Vec<String> = account
                .tags
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            format!("  [{}]", pairs.join(", "))
        };
        let line = format!(
            "{} {}  {}{reason}{tags}",
            account.id, account.name, account.phase
        );
        if color && account.blocked() {
            let _ = writeln!(out, "{prefix}{branch}\x1b[31m{line}\x1b[0m");
        } else {
            let _ = writeln!(out, "{prefix}{branch}{line}");
        }
    }
    for child in &unit.units {
        index += 1;
        let last = index == count;
        let branch = if last { "└── " } else { "├── " };
        let id = child
            .id
            .as_deref()
            .map(|id| format!(" ({id})"))
            .unwrap_or_default();
        let _ = writeln!(out, "{prefix}{branch}{}/{id}", child.name);
        let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
        text_children(child, &deeper, color, out);
    }
}

/// Mermaid labels are quoted; quotes and angle brackets inside become entities.
fn mermaid_label(text: &str) -> String {
    text.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

/// A Mermaid flowchart; Blocked accounts get the `blocked` class (red).
pub fn render_mermaid(tree: &OrgTree) -> String {
    let mut out = String::from("flowchart TD\n");
    let mut blocked = Vec::new();
    let _ = writeln!(out, "  root[\"Root\"]");
    mermaid_unit(&tree.root, "root", &mut out, &mut blocked, &mut 0);
    let _ = writeln!(out, "  classDef blocked fill:#fdd,stroke:#c00,color:#900");
    if !blocked.is_empty() {
        let _ = writeln!(out, "  class {} blocked", blocked.join(","));
    }
    out
}

fn mermaid_unit(
    unit: &UnitNode,
    id: &str,
    out: &mut String,
    blocked: &mut Vec<String>,
    next: &mut usize,
) {
    for account in &unit.accounts {
        let node = format!("a{}", account.id);
        let reason = account
            .reason
            .as_deref()
            .filter(|_| account.phase != "Connected")
            .map(|r| format!(" · {r}"))
            .unwrap_or_default();
        let label = [
            mermaid_label(&account.name),
            mermaid_label(&account.id),
            mermaid_label(&format!("{}{reason}", account.phase)),
        ]
        .join("<br/>");
        let _ = writeln!(out, "  {node}[\"{label}\"]");
        let _ = writeln!(out, "  {id} --> {node}");
        if account.blocked() {
            blocked.push(node);
        }
    }
    for child in &unit.units {
        *next += 1;
        let node = format!("ou{next}");
        let _ = writeln!(out, "  {node}[\"{}\"]", mermaid_label(&child.name));
        let _ = writeln!(out, "  {id} --> {node}");
        mermaid_unit(child, &node, out, blocked, next);
    }
}

fn dot_label(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A Graphviz digraph; Blocked accounts drawn in red.
pub fn render_dot(tree: &OrgTree) -> String {
    let mut out = String::from(
        "digraph organization {\n  rankdir=LR;\n  node [shape=box];\n  root [label=\"Root\"];\n",
    );
    dot_unit(&tree.root, "root", &mut out, &mut 0);
    out.push_str("}\n");
    out
}

fn dot_unit(unit: &UnitNode, id: &str, out: &mut String, next: &mut usize) {
    for account in &unit.accounts {
        let node = format!("a{}", account.id);
        let color = if account.blocked() {
            ", color=red, fontcolor=red"
        } else {
            ""
        };
        let label = [&account.name, &account.id, &account.phase]
            .map(|part| dot_label(part))
            .join("\\n");
        let _ = writeln!(out, "  {node} [label=\"{label}\"{color}];");
        let _ = writeln!(out, "  {id} -> {node};");
    }
    for child in &unit.units {
        *next += 1;
        let node = format!("ou{next}");
        let _ = writeln!(
            out,
            "  {node} [label=\"{}\", shape=folder];",
            dot_label(&child.name)
        );
        let _ = writeln!(out, "  {id} -> {node};");
        dot_unit(child, &node, out, next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member under the OUs `lineage` names as `(id, name)`.
    fn member(
        id: &str,
        name: &str,
        lineage: &[(&str, &str)],
        phase: Option<MemberPhase>,
    ) -> MemberAccount {
        let path = std::iter::once("Root".to_owned())
            .chain(
                lineage
                    .iter()
                    .map(|(_, n)| crate::organization::escape_path_name(n)),
            )
            .collect::<Vec<_>>()
            .join("/");
        let parent = lineage.last().map_or("r-1", |(id, _)| *id);
        let lineage: Vec<serde_json::Value> = lineage
            .iter()
            .map(|(id, name)| serde_json::json!({ "id": id, "name": name }))
            .collect();
        let mut member = MemberAccount::new(
            &format!("acme-{id}"),
            serde_json::from_value(serde_json::json!({
                "connection": "acme", "accountId": id, "name": name,
                "organizationalUnit": { "id": parent, "path": path, "lineage": lineage },
            }))
            .expect("spec"),
        );
        member.status = phase.map(|phase| crate::api::MemberAccountStatus {
            phase: Some(phase),
            tags: BTreeMap::from([
                ("team".to_owned(), format!("team-{name}")),
                ("env".to_owned(), "prod".to_owned()),
            ]),
            ..Default::default()
        });
        member
    }

    fn tree() -> OrgTree {
        let connection = AwsOrgConnection::new(
            "acme",
            serde_json::from_value(
                serde_json::json!({"roleArn": "arn:aws:iam::111111111111:role/x"}),
            )
            .expect("spec"),
        );
        build(
            &connection,
            &[
                member(
                    "111111111111",
                    "management",
                    &[],
                    Some(MemberPhase::Connected),
                ),
                member(
                    "333333333333",
                    "cards",
                    &[("ou-prod", "Prod"), ("ou-pay", "Payments")],
                    Some(MemberPhase::Blocked),
                ),
                member("222222222222", "web", &[("ou-prod", "Prod")], None),
            ],
            &["team".to_owned()],
        )
    }

    #[test]
    fn shows_the_tags_asked_for() {
        let tree = tree();
        assert_eq!(
            tree.root.accounts[0].tags,
            BTreeMap::from([("team".to_owned(), "team-management".to_owned())])
        );
        // An account with no status has no tags to show.
        assert!(tree.root.units[0].accounts[0].tags.is_empty());
        let text = render_text(&tree, false);
        assert!(
            text.contains("111111111111 management  Connected  [team=team-management]"),
            "{text}"
        );
        assert!(
            !text.contains("env=prod"),
            "only the keys asked for: {text}"
        );
    }

    #[test]
    fn places_accounts_under_their_ou_path() {
        let tree = tree();
        assert_eq!(tree.root.accounts.len(), 1);
        let prod = &tree.root.units[0];
        assert_eq!(
            (prod.name.as_str(), prod.id.as_deref()),
            ("Prod", Some("ou-prod"))
        );
        assert_eq!(prod.accounts[0].phase, "Pending");
        assert_eq!(prod.units[0].name, "Payments");
        assert_eq!(prod.units[0].accounts[0].id, "333333333333");
        assert_eq!(
            summary(&tree),
            "3 accounts: 1 Blocked, 1 Connected, 1 Pending"
        );
    }

    #[test]
    fn ous_are_told_apart_by_id_whatever_their_names() {
        let connection = AwsOrgConnection::new(
            "acme",
            serde_json::from_value(
                serde_json::json!({"roleArn": "arn:aws:iam::111111111111:role/x"}),
            )
            .expect("spec"),
        );
        // `Prod/EU` under the root, and `EU` under `Prod`: once both `Root/Prod/EU`.
        let tree = build(
            &connection,
            &[
                member("222222222222", "slash", &[("ou-slash", "Prod/EU")], None),
                member(
                    "333333333333",
                    "nested",
                    &[("ou-prod", "Prod"), ("ou-eu", "EU")],
                    None,
                ),
            ],
            &[],
        );
        let names: Vec<(&str, Option<&str>)> = tree
            .root
            .units
            .iter()
            .map(|u| (u.name.as_str(), u.id.as_deref()))
            .collect();
        assert_eq!(
            names,
            [("Prod", Some("ou-prod")), ("Prod/EU", Some("ou-slash"))]
        );
        assert_eq!(tree.root.units[1].accounts[0].id, "222222222222");
        assert_eq!(tree.root.units[0].units[0].accounts[0].id, "333333333333");
        let text = render_text(&tree, false);
        // An OU holding only OUs is drawn with its id too.
        assert!(text.contains("├── Prod/ (ou-prod)"), "{text}");
        assert!(text.contains("│   └── EU/ (ou-eu)"), "{text}");
        assert!(text.contains("└── Prod/EU/ (ou-slash)"), "{text}");
    }

    #[test]
    fn text_is_plain_unless_colored() {
        let tree = tree();
        let plain = render_text(&tree, false);
        assert!(!plain.contains('\x1b'));
        assert!(plain.contains("└── Prod/ (ou-prod)"), "{plain}");
        assert!(plain.contains("    └── Payments/ (ou-pay)"), "{plain}");
        assert!(render_text(&tree, true).contains("\x1b[31m333333333333 cards  Blocked"));
    }

    #[test]
    fn mermaid_marks_blocked_accounts() {
        let mermaid = render_mermaid(&tree());
        assert!(mermaid.starts_with("flowchart TD\n"));
        assert!(mermaid.contains("  class a333333333333 blocked"));
        assert!(mermaid.contains("  ou1 --> ou2"));
        let dot = render_dot(&tree());
        assert!(dot.contains("a333333333333 [label=\"cards\\n333333333333\\nBlocked\", color=red"));
    }
}
