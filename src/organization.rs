//! What discovery found in an AWS Organization, and the pure questions asked of it: where
//! an account sits (`Root/Prod/Payments`) and which accounts a selector keeps.

use std::collections::{BTreeMap, HashSet};

use crate::api::connection::AccountSelector;
use crate::api::member_account::{AwsAccountStatus, JoinedMethod};

/// An organizational unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub name: String,
    /// The parent OU or root id.
    pub parent_id: String,
}

/// An account as Organizations reports it, with the parent it sits under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub email: String,
    pub status: Option<AwsAccountStatus>,
    pub joined_method: Option<JoinedMethod>,
    /// The parent OU or root id.
    pub parent_id: String,
    /// The account's AWS tags; `None` when they were not read.
    pub tags: Option<BTreeMap<String, String>>,
}

impl Account {
    /// Whether the tag parts of `selector` keep this account: it carries every tag of
    /// `includeTags` and none of `excludeTags`. An account whose tags were not read is
    /// kept only by a selector that names no tags.
    pub fn selected_by_tags(&self, selector: &AccountSelector) -> bool {
        if !selector.names_tags() {
            return true;
        }
        let Some(tags) = &self.tags else {
            return false;
        };
        selector.include_tags.iter().all(|m| m.matches(tags))
            && !selector.exclude_tags.iter().any(|m| m.matches(tags))
    }
}

/// A complete listing of an organization: every page of every call succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrganizationSnapshot {
    pub id: String,
    pub managing_account_id: String,
    pub feature_set: String,
    pub root_id: String,
    /// Every OU, by id.
    pub units: BTreeMap<String, Unit>,
    /// Every account, the managing account included.
    pub accounts: Vec<Account>,
}

impl OrganizationSnapshot {
    /// The OUs from the root down to `parent_id` as (id, name); empty for the root. An
    /// unknown id (an OU created while discovery ran) ends the lineage, named by its id.
    pub fn lineage(&self, parent_id: &str) -> Vec<(String, String)> {
        let mut levels = Vec::new();
        let mut current = parent_id;
        let mut seen = HashSet::new();
        while current != self.root_id {
            if !seen.insert(current) {
                break;
            }
            match self.units.get(current) {
                Some(unit) => {
                    levels.push((current.to_owned(), unit.name.clone()));
                    current = &unit.parent_id;
                }
                None => {
                    levels.push((current.to_owned(), current.to_owned()));
                    break;
                }
            }
        }
        levels.reverse();
        levels
    }

    /// The names from the root down to `parent_id`, e.g. `Root/Prod/Payments`, each name's
    /// `/` and `\` escaped with `\`, so two OUs never share a path.
    pub fn path_of(&self, parent_id: &str) -> String {
        let mut path = String::from("Root");
        for (_, name) in self.lineage(parent_id) {
            path.push('/');
            path.push_str(&escape_path_name(&name));
        }
        path
    }

    /// Whether `parent_id` is `ancestor` or lies beneath it.
    pub fn is_within(&self, parent_id: &str, ancestor: &str) -> bool {
        let mut current = parent_id;
        let mut seen = HashSet::new();
        loop {
            if current == ancestor {
                return true;
            }
            if current == self.root_id || !seen.insert(current) {
                return false;
            }
            match self.units.get(current) {
                Some(unit) => current = &unit.parent_id,
                None => return false,
            }
        }
    }

    /// The accounts `selector` keeps, in listing order.
    pub fn select<'a>(&'a self, selector: &AccountSelector) -> Vec<&'a Account> {
        let excluded: HashSet<&str> = selector
            .exclude_accounts
            .iter()
            .map(String::as_str)
            .collect();
        self.accounts
            .iter()
            .filter(|account| !excluded.contains(account.id.as_str()))
            .filter(|account| account.selected_by_tags(selector))
            .filter(|account| {
                selector.include_organizational_units.is_empty()
                    || selector
                        .include_organizational_units
                        .iter()
                        .any(|ou| self.is_within(&account.parent_id, ou))
            })
            .collect()
    }

    /// Selector entries naming OUs or roots this organization does not have.
    pub fn unknown_units<'a>(&self, selector: &'a AccountSelector) -> Vec<&'a str> {
        selector
            .include_organizational_units
            .iter()
            .map(String::as_str)
            .filter(|id| *id != self.root_id && !self.units.contains_key(*id))
            .collect()
    }
}

/// An OU name as one level of a path: `\` and `/` escaped with `\`.
pub fn escape_path_name(name: &str) -> String {
    name.replace('\\', "\\\\").replace('/', "\\/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str, parent_id: &str) -> Account {
        Account {
            id: id.to_owned(),
            name: format!("name-{id}"),
            email: format!("{id}@example.org"),
            status: Some(AwsAccountStatus::Active),
            joined_method: Some(JoinedMethod::Created),
            parent_id: parent_id.to_owned(),
            tags: None,
        }
    }

    fn unit(name: &str, parent_id: &str) -> Unit {
        Unit {
            name: name.to_owned(),
            parent_id: parent_id.to_owned(),
        }
    }

    /// Root ─ Prod ─ Payments, Root ─ Sandbox.
    fn org() -> OrganizationSnapshot {
        OrganizationSnapshot {
            id: "o-abc".into(),
            managing_account_id: "111111111111".into(),
            feature_set: "ALL".into(),
            root_id: "r-root".into(),
            units: BTreeMap::from([
                ("ou-prod".into(), unit("Prod", "r-root")),
                ("ou-pay".into(), unit("Payments", "ou-prod")),
                ("ou-sand".into(), unit("Sandbox", "r-root")),
            ]),
            accounts: vec![
                account("111111111111", "r-root"),
                account("222222222222", "ou-prod"),
                account("333333333333", "ou-pay"),
                account("444444444444", "ou-sand"),
            ],
        }
    }

    fn ids(accounts: Vec<&Account>) -> Vec<&str> {
        accounts.into_iter().map(|a| a.id.as_str()).collect()
    }

    #[test]
    fn paths_name_every_level_from_the_root() {
        let org = org();
        assert_eq!(org.path_of("r-root"), "Root");
        assert_eq!(org.path_of("ou-prod"), "Root/Prod");
        assert_eq!(org.path_of("ou-pay"), "Root/Prod/Payments");
        assert_eq!(org.path_of("ou-new"), "Root/ou-new");
    }

    #[test]
    fn a_slash_in_an_ou_name_never_makes_two_ous_one_path() {
        let mut org = org();
        org.units
            .insert("ou-slash".into(), unit("Prod/Payments", "r-root"));
        org.units.insert("ou-back".into(), unit("a\\b", "r-root"));
        assert_eq!(org.path_of("ou-slash"), "Root/Prod\\/Payments");
        assert_ne!(org.path_of("ou-slash"), org.path_of("ou-pay"));
        assert_eq!(org.path_of("ou-back"), "Root/a\\\\b");
        assert_eq!(
            org.lineage("ou-pay"),
            [
                ("ou-prod".to_owned(), "Prod".to_owned()),
                ("ou-pay".to_owned(), "Payments".to_owned())
            ]
        );
        assert!(org.lineage("r-root").is_empty());
    }

    #[test]
    fn paths_survive_a_cycle() {
        let mut org = org();
        org.units.insert("ou-a".into(), unit("A", "ou-b"));
        org.units.insert("ou-b".into(), unit("B", "ou-a"));
        assert_eq!(org.path_of("ou-a"), "Root/B/A");
        assert!(!org.is_within("ou-a", "ou-prod"));
    }

    #[test]
    fn empty_selector_keeps_everything() {
        assert_eq!(org().select(&AccountSelector::default()).len(), 4);
    }

    #[test]
    fn include_keeps_accounts_at_any_depth_below_the_unit() {
        let selector = AccountSelector {
            include_organizational_units: vec!["ou-prod".into()],
            ..AccountSelector::default()
        };
        assert_eq!(
            ids(org().select(&selector)),
            ["222222222222", "333333333333"]
        );
    }

    #[test]
    fn exclude_wins_over_include() {
        let selector = AccountSelector {
            include_organizational_units: vec!["ou-prod".into(), "ou-sand".into()],
            exclude_accounts: vec!["333333333333".into()],
            ..AccountSelector::default()
        };
        assert_eq!(
            ids(org().select(&selector)),
            ["222222222222", "444444444444"]
        );
    }

    #[test]
    fn names_selector_units_the_organization_lacks() {
        let selector = AccountSelector {
            include_organizational_units: vec!["r-root".into(), "ou-gone".into()],
            ..AccountSelector::default()
        };
        assert_eq!(org().unknown_units(&selector), ["ou-gone"]);
    }

    #[test]
    fn tags_include_with_every_match_and_exclude_with_any() {
        let mut org = org();
        let tagged = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        org.accounts[0].tags = tagged(&[("env", "prod"), ("team", "pay")]);
        org.accounts[1].tags = tagged(&[("env", "prod"), ("team", "web"), ("legacy", "")]);
        org.accounts[2].tags = tagged(&[("env", "dev")]);
        org.accounts[3].tags = None;
        let matching = |key: &str, values: &[&str]| crate::api::connection::TagMatch {
            key: key.to_owned(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        };
        let selector = AccountSelector {
            include_tags: vec![matching("env", &["prod", "staging"]), matching("team", &[])],
            ..AccountSelector::default()
        };
        let all: Vec<String> = org.accounts.iter().map(|a| a.id.clone()).collect();
        assert_eq!(
            ids(org.select(&selector)),
            [all[0].as_str(), all[1].as_str()]
        );
        let selector = AccountSelector {
            exclude_tags: vec![matching("legacy", &[]), matching("env", &["dev"])],
            ..AccountSelector::default()
        };
        // Accounts whose tags were not read are kept by no tag selector.
        assert_eq!(ids(org.select(&selector)), [all[0].as_str()]);
        // Without tag rules, unread tags do not matter.
        assert_eq!(org.select(&AccountSelector::default()).len(), 4);
    }
}
