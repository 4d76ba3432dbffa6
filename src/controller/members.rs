//! The MemberAccounts a connection should own, decided from a discovery: pure functions
//! that build the desired objects and compare them with what exists.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::api::AwsOrgConnection;
use crate::api::member_account::{
    MemberAccount, MemberAccountSpec, MemberAccountStatus, OrganizationalUnitRef, UnitLevel,
};
use crate::organization::{Account, OrganizationSnapshot};

use super::names::{
    ACCOUNT_LABEL, CONNECTION_LABEL, OU_LABEL, TAG_LABEL_PREFIX, label_value, member_name,
    tag_labels,
};

fn owner_reference(connection: &AwsOrgConnection) -> Option<OwnerReference> {
    connection.controller_owner_ref(&())
}

/// The MemberAccount for `account`, holding only the fields the operator owns; `paused`
/// and `roleName` are left out so server-side apply never touches a user's choice.
pub fn desired_member(
    connection: &AwsOrgConnection,
    org: &OrganizationSnapshot,
    account: &Account,
) -> MemberAccount {
    let connection_name = connection.name_any();
    let tags = account.tags.clone().unwrap_or_default();
    let mut labels = tag_labels(&tags);
    labels.extend([
        (CONNECTION_LABEL.to_owned(), label_value(&connection_name)),
        (ACCOUNT_LABEL.to_owned(), account.id.clone()),
        (OU_LABEL.to_owned(), label_value(&account.parent_id)),
    ]);
    MemberAccount {
        metadata: ObjectMeta {
            name: Some(member_name(&connection_name, &account.id)),
            namespace: connection.namespace(),
            labels: Some(labels),
            owner_references: owner_reference(connection).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: MemberAccountSpec {
            connection: connection_name,
            account_id: account.id.clone(),
            name: account.name.clone(),
            email: account.email.clone(),
            organizational_unit: Some(OrganizationalUnitRef {
                id: account.parent_id.clone(),
                path: org.path_of(&account.parent_id),
                lineage: org
                    .lineage(&account.parent_id)
                    .into_iter()
                    .map(|(id, name)| UnitLevel { id, name })
                    .collect(),
            }),
            joined_method: account.joined_method,
            aws_status: account.status,
            management_account: (account.id == org.managing_account_id).then_some(true),
            paused: None,
            role_name: None,
        },
        // Only `tags`, which discovery writes under a field manager of its own.
        status: Some(MemberAccountStatus {
            tags,
            ..MemberAccountStatus::default()
        }),
    }
}

/// Fills in, for an account whose tags were not read although the connection reads tags
/// (the managing role was refused ListTagsForResource), the tags its MemberAccount has: a
/// refused read never strips an account's tag labels or drops it from a tag selection.
/// With `accountTags.enabled` false the tags stay unread, and are removed.
pub fn keep_unread_tags(
    connection: &AwsOrgConnection,
    account: &mut Account,
    existing: Option<&MemberAccount>,
) {
    if connection.spec.account_tags.enabled
        && account.tags.is_none()
        && let Some(existing) = existing
    {
        account.tags = Some(desired_tags(existing));
    }
}

/// The tags discovery wants in `member`'s status.
pub fn desired_tags(member: &MemberAccount) -> BTreeMap<String, String> {
    member
        .status
        .as_ref()
        .map(|s| s.tags.clone())
        .unwrap_or_default()
}

/// Whether `existing` already carries everything the operator would apply.
pub fn up_to_date(existing: &MemberAccount, desired: &MemberAccount) -> bool {
    // Tag labels of tags the account no longer has count as a difference too.
    let labels_match = desired
        .labels()
        .iter()
        .all(|(key, value)| existing.labels().get(key) == Some(value))
        && existing
            .labels()
            .keys()
            .filter(|key| key.starts_with(TAG_LABEL_PREFIX))
            .all(|key| desired.labels().contains_key(key));
    let tags_match = desired_tags(existing) == desired_tags(desired);
    let owner_match = desired.owner_references().iter().all(|owner| {
        existing
            .owner_references()
            .iter()
            .any(|o| o.uid == owner.uid)
    });
    let (have, want) = (&existing.spec, &desired.spec);
    labels_match
        && tags_match
        && owner_match
        && have.connection == want.connection
        && have.account_id == want.account_id
        && have.name == want.name
        && have.email == want.email
        && have.organizational_unit == want.organizational_unit
        && have.joined_method == want.joined_method
        && have.aws_status == want.aws_status
        && have.management_account == want.management_account
}

/// What to write after a complete discovery.
#[derive(Debug, Default)]
pub struct MemberPlan {
    /// Objects to create or update (server-side apply).
    pub apply: Vec<MemberAccount>,
    /// Names of MemberAccounts whose accounts left the organization or the selection.
    pub delete: Vec<String>,
    /// Objects already up to date.
    pub unchanged: usize,
}

/// Compares the desired MemberAccounts with the connection's existing ones.
pub fn plan(desired: Vec<MemberAccount>, existing: &[Arc<MemberAccount>]) -> MemberPlan {
    let by_account: HashMap<&str, &MemberAccount> = existing
        .iter()
        .map(|m| (m.spec.account_id.as_str(), m.as_ref()))
        .collect();
    let wanted: std::collections::HashSet<String> =
        desired.iter().map(|m| m.spec.account_id.clone()).collect();
    let mut plan = MemberPlan::default();
    for member in desired {
        match by_account.get(member.spec.account_id.as_str()) {
            Some(current) if up_to_date(current, &member) => plan.unchanged += 1,
            _ => plan.apply.push(member),
        }
    }
    plan.delete = existing
        .iter()
        .filter(|m| !wanted.contains(&m.spec.account_id))
        .map(|m| m.name_any())
        .collect();
    plan.delete.sort();
    plan
}

/// The MemberAccounts a discovery writes while the organization is still being listed,
/// so their probes start before the listing ends: each selected account whose
/// MemberAccount is missing or out of date, as its parent's accounts arrive.
///
/// Only a selector that names no OUs writes early: an OU it names may turn out not to
/// exist, and then the MemberAccounts are left as they are. Nothing is deleted early; a
/// complete listing decides that.
pub struct EarlyWrites<'a> {
    connection: &'a AwsOrgConnection,
    existing: HashMap<String, Arc<MemberAccount>>,
    excluded: HashSet<&'a str>,
    /// The accounts whose MemberAccount was handed out to be written.
    pub sent: HashSet<String>,
}

impl<'a> EarlyWrites<'a> {
    /// `None` when the connection's selector names OUs.
    pub fn new(connection: &'a AwsOrgConnection, existing: &[Arc<MemberAccount>]) -> Option<Self> {
        let selector = &connection.spec.account_selector;
        selector
            .include_organizational_units
            .is_empty()
            .then(|| Self {
                connection,
                existing: existing
                    .iter()
                    .map(|m| (m.spec.account_id.clone(), m.clone()))
                    .collect(),
                excluded: selector
                    .exclude_accounts
                    .iter()
                    .map(String::as_str)
                    .collect(),
                sent: HashSet::new(),
            })
    }

    /// The MemberAccounts to write now for `accounts`, just listed; `org` holds every OU
    /// above them, so their OU paths are final.
    pub fn found(
        &mut self,
        org: &OrganizationSnapshot,
        accounts: &[Account],
    ) -> Vec<MemberAccount> {
        let mut write = Vec::new();
        for account in accounts {
            // Only an account whose tags were refused is copied, to take its known tags.
            let filled;
            let account = if account.tags.is_none() {
                let mut copy = account.clone();
                let known = self.existing.get(&copy.id).cloned();
                keep_unread_tags(self.connection, &mut copy, known.as_deref());
                filled = copy;
                &filled
            } else {
                account
            };
            if self.excluded.contains(account.id.as_str())
                || self.sent.contains(&account.id)
                || !account.selected_by_tags(&self.connection.spec.account_selector)
            {
                continue;
            }
            let desired = desired_member(self.connection, org, account);
            let current = self.existing.get(&account.id);
            if current.is_none_or(|current| !up_to_date(current, &desired)) {
                self.sent.insert(account.id.clone());
                write.push(desired);
            }
        }
        write
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::member_account::AwsAccountStatus;
    use crate::organization::Unit;

    fn connection() -> AwsOrgConnection {
        let mut connection = AwsOrgConnection::new(
            "acme",
            serde_json::from_value(serde_json::json!({
                "roleArn": "arn:aws:iam::111111111111:role/orgconnect"
            }))
            .expect("spec"),
        );
        connection.metadata.namespace = Some("team".into());
        connection.metadata.uid = Some("uid-1".into());
        connection
    }

    fn org() -> OrganizationSnapshot {
        OrganizationSnapshot {
            id: "o-1".into(),
            managing_account_id: "111111111111".into(),
            feature_set: "ALL".into(),
            root_id: "r-1".into(),
            units: BTreeMap::from([(
                "ou-1".into(),
                Unit {
                    name: "Prod".into(),
                    parent_id: "r-1".into(),
                },
            )]),
            accounts: vec![account("222222222222", "ou-1")],
        }
    }

    fn account(id: &str, parent: &str) -> Account {
        Account {
            id: id.into(),
            name: format!("n{id}"),
            email: format!("{id}@example.org"),
            status: Some(AwsAccountStatus::Active),
            joined_method: None,
            parent_id: parent.into(),
            tags: None,
        }
    }

    #[test]
    fn desired_member_carries_the_ou_path_labels_and_owner() {
        let member = desired_member(&connection(), &org(), &account("222222222222", "ou-1"));
        assert_eq!(member.name_any(), "acme-222222222222");
        assert_eq!(member.namespace().as_deref(), Some("team"));
        assert_eq!(
            member
                .spec
                .organizational_unit
                .as_ref()
                .map(|ou| ou.path.as_str()),
            Some("Root/Prod")
        );
        assert_eq!(
            member.labels().get(OU_LABEL).map(String::as_str),
            Some("ou-1")
        );
        assert_eq!(member.owner_references()[0].uid, "uid-1");
        let applied = serde_json::to_value(&member).expect("serializes");
        assert!(
            applied["spec"].get("paused").is_none(),
            "user fields are never applied"
        );
        assert!(applied["spec"].get("roleName").is_none());
    }

    #[test]
    fn tags_become_status_and_labels_and_a_changed_or_removed_tag_is_a_change() {
        let connection = connection();
        let org = org();
        let mut tagged = account("222222222222", "ou-1");
        tagged.tags = Some(BTreeMap::from([
            ("team".to_owned(), "payments".to_owned()),
            ("owner".to_owned(), "Jane Doe".to_owned()),
        ]));
        let member = desired_member(&connection, &org, &tagged);
        assert_eq!(
            member
                .labels()
                .get("tags.orgconnect.dev/team")
                .map(String::as_str),
            Some("payments")
        );
        assert!(!member.labels().contains_key("tags.orgconnect.dev/owner"));
        assert_eq!(desired_tags(&member).len(), 2, "every tag is in status");
        assert!(up_to_date(&member, &member));

        // A tag's value changed: the labels and status differ.
        let mut changed = tagged.clone();
        if let Some(tags) = changed.tags.as_mut() {
            tags.insert("team".into(), "cards".into());
        }
        assert!(!up_to_date(
            &member,
            &desired_member(&connection, &org, &changed)
        ));
        // A tag removed: its label must go too, though every desired label is present.
        let mut removed = tagged.clone();
        if let Some(tags) = removed.tags.as_mut() {
            tags.remove("team");
        }
        assert!(!up_to_date(
            &member,
            &desired_member(&connection, &org, &removed)
        ));
        // Tags not read (the connection opted out): no tag labels and no tags are wanted.
        let unread = desired_member(&connection, &org, &account("222222222222", "ou-1"));
        assert!(desired_tags(&unread).is_empty());
        assert!(!up_to_date(&member, &unread));
        // The status applied with the spec never holds more than the tags.
        let status = serde_json::to_value(&member.status).expect("serializes");
        assert_eq!(status.as_object().map(|o| o.len()), Some(1), "{status}");
    }

    #[test]
    fn tags_that_could_not_be_read_are_kept_unless_the_connection_opted_out() {
        let org = org();
        let mut tagged = account("222222222222", "ou-1");
        tagged.tags = Some(BTreeMap::from([("team".to_owned(), "payments".to_owned())]));
        let existing = desired_member(&connection(), &org, &tagged);
        // Read refused: the account comes without tags, and keeps the ones it had.
        let mut unread = account("222222222222", "ou-1");
        keep_unread_tags(&connection(), &mut unread, Some(&existing));
        assert_eq!(unread.tags, tagged.tags);
        assert!(up_to_date(
            &existing,
            &desired_member(&connection(), &org, &unread)
        ));
        // Opted out: unread tags are removed.
        let mut opted_out = connection();
        opted_out.spec.account_tags.enabled = false;
        let mut unread = account("222222222222", "ou-1");
        keep_unread_tags(&opted_out, &mut unread, Some(&existing));
        assert_eq!(unread.tags, None);
    }

    #[test]
    fn plan_applies_changes_only_and_deletes_accounts_that_left() {
        let connection = connection();
        let org = org();
        let same = desired_member(&connection, &org, &account("222222222222", "ou-1"));
        let mut user_paused = same.clone();
        user_paused.spec.paused = Some(true);
        let moved = desired_member(&connection, &org, &account("333333333333", "r-1"));
        let gone = desired_member(&connection, &org, &account("444444444444", "r-1"));
        let existing = vec![Arc::new(user_paused), Arc::new(moved), Arc::new(gone)];
        let desired = vec![
            same,
            desired_member(&connection, &org, &account("333333333333", "ou-1")),
            desired_member(&connection, &org, &account("555555555555", "ou-1")),
        ];
        let plan = plan(desired, &existing);
        assert_eq!(
            plan.unchanged, 1,
            "a user's paused flag is not a difference"
        );
        let applied: Vec<_> = plan
            .apply
            .iter()
            .map(|m| m.spec.account_id.as_str())
            .collect();
        assert_eq!(applied, ["333333333333", "555555555555"]);
        assert_eq!(plan.delete, ["acme-444444444444"]);
    }

    #[test]
    fn early_writes_send_each_new_or_changed_account_once_and_skip_excluded_ones() {
        let mut connection = connection();
        connection.spec.account_selector.exclude_accounts = vec!["666666666666".into()];
        let org = org();
        let same = desired_member(&connection, &org, &account("222222222222", "ou-1"));
        let moved = desired_member(&connection, &org, &account("333333333333", "r-1"));
        let existing = vec![Arc::new(same), Arc::new(moved)];
        let mut early = EarlyWrites::new(&connection, &existing).expect("no OUs named");
        let found = [
            account("222222222222", "ou-1"),
            account("333333333333", "ou-1"),
            account("555555555555", "ou-1"),
            account("666666666666", "ou-1"),
        ];
        let written: Vec<_> = early
            .found(&org, &found)
            .into_iter()
            .map(|m| {
                (
                    m.spec.account_id,
                    m.spec.organizational_unit.map(|ou| ou.path),
                )
            })
            .collect();
        let prod = Some("Root/Prod".to_owned());
        assert_eq!(
            written,
            [
                ("333333333333".to_owned(), prod.clone()),
                ("555555555555".to_owned(), prod)
            ]
        );
        // Listed again (an account found under two parents): not sent twice.
        assert!(early.found(&org, &found[1..2]).is_empty());
        assert_eq!(early.sent.len(), 2);
    }

    #[test]
    fn a_selector_naming_ous_writes_nothing_early() {
        let mut connection = connection();
        connection
            .spec
            .account_selector
            .include_organizational_units = vec!["ou-1".into()];
        assert!(EarlyWrites::new(&connection, &[]).is_none());
    }
}
