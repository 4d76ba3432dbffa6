//! Lists a whole organization through AWS Organizations: the organization, its root,
//! every OU at any depth, and every account with its parent, at AWS's page sizes, many
//! parents at once. Any
//! failed page fails the whole discovery, so a partial listing is never mistaken for the
//! organization.

use std::collections::BTreeMap;

use aws_sdk_organizations::Client;
use aws_sdk_organizations::types::ChildType;
use futures::{StreamExt, TryStreamExt};

use super::error::{AwsFailure, FailureKind, classify};
use crate::api::member_account::{AwsAccountStatus, JoinedMethod};
use crate::organization::{Account, OrganizationSnapshot, Unit};

/// AWS's largest page for ListAccounts.
const ACCOUNTS_PAGE_SIZE: i32 = 20;
/// AWS's largest page for the per-parent listings.
const CHILDREN_PAGE_SIZE: i32 = 20;

/// What DescribeOrganization says, before anything is listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrganizationHeader {
    pub id: String,
    pub managing_account_id: String,
    pub feature_set: String,
}

/// DescribeOrganization: any account of an organization may call it, so it tells whether
/// the caller is the managing account before the listing calls, which only that account
/// may make.
pub async fn describe_organization(client: &Client) -> Result<OrganizationHeader, AwsFailure> {
    let organization = client
        .describe_organization()
        .send()
        .await
        .map_err(|e| classify("DescribeOrganization", &e))?
        .organization
        .ok_or_else(|| AwsFailure {
            operation: "DescribeOrganization",
            kind: FailureKind::Other,
            code: None,
            message: "the response described no organization".to_owned(),
        })?;
    Ok(OrganizationHeader {
        id: organization.id().unwrap_or_default().to_owned(),
        managing_account_id: organization
            .master_account_id()
            .unwrap_or_default()
            .to_owned(),
        feature_set: organization
            .feature_set()
            .map(|f| f.as_str().to_owned())
            .unwrap_or_default(),
    })
}

/// Told of accounts as the listing finds them, with the organization as far as it is
/// listed by then: every OU above those accounts, none of the accounts.
pub type OnAccounts<'a> = dyn FnMut(&OrganizationSnapshot, &[Account]) + Send + 'a;

/// Reads accounts' AWS tags during a listing (ListTagsForResource, every page), at most
/// `limit` calls in flight across the whole listing. A managing role that may not read
/// tags (one made from an older template) is asked once: the listing goes on without
/// tags, and [`TagReader::denied`] says so afterwards. Throttled calls are retried by the
/// SDK's standard retry; any other failure fails the listing, as a failed page does.
pub struct TagReader {
    permits: tokio::sync::Semaphore,
    limit: usize,
    denied: std::sync::atomic::AtomicBool,
}

impl TagReader {
    pub fn new(limit: usize) -> Self {
        Self {
            permits: tokio::sync::Semaphore::new(limit.max(1)),
            limit: limit.max(1),
            denied: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the managing role was refused ListTagsForResource.
    pub fn denied(&self) -> bool {
        self.denied.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fills in the tags of `accounts` (left `None` once reading was refused).
    async fn read(&self, client: &Client, accounts: &mut [Account]) -> Result<(), AwsFailure> {
        let ids: Vec<String> = accounts.iter().map(|a| a.id.clone()).collect();
        let read: Vec<Option<BTreeMap<String, String>>> = futures::stream::iter(ids)
            .map(|id| self.read_one(client, id))
            .buffered(self.limit)
            .try_collect()
            .await?;
        for (account, tags) in accounts.iter_mut().zip(read) {
            account.tags = tags;
        }
        Ok(())
    }

    /// The tags of account `id`, or `None` once reading was refused.
    async fn read_one(
        &self,
        client: &Client,
        id: String,
    ) -> Result<Option<BTreeMap<String, String>>, AwsFailure> {
        if self.denied() {
            return Ok(None);
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return Ok(None);
        };
        match account_tags(client, &id).await {
            Ok(tags) => Ok(Some(tags)),
            Err(failure) if failure.kind == FailureKind::AccessDenied => {
                if !self.denied.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(error = %failure,
                        "the managing role may not call ListTagsForResource; accounts are \
                         listed without their tags: update the role from the current template");
                }
                Ok(None)
            }
            Err(failure) => Err(failure),
        }
    }
}

/// Every tag of account `id`.
async fn account_tags(client: &Client, id: &str) -> Result<BTreeMap<String, String>, AwsFailure> {
    let mut pages = client
        .list_tags_for_resource()
        .resource_id(id)
        .into_paginator()
        .send();
    let mut tags = BTreeMap::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| classify("ListTagsForResource", &e))?;
        tags.extend(
            page.tags()
                .iter()
                .map(|tag| (tag.key().to_owned(), tag.value().to_owned())),
        );
    }
    Ok(tags)
}

/// Lists the whole organization described by `header`; `concurrency` bounds the listing
/// calls in flight; `tags`, when given, reads every account's tags as it is listed. `on_accounts` hears of each parent's accounts as they are listed (the
/// older listing tells nothing before it is complete).
///
/// Each parent (the root, then every OU as soon as its parent's listing finds it) is
/// asked for its OUs and, with ListAccountsForParent, its accounts: each account comes
/// with its parent and state in one pass, and the pages of different parents are fetched
/// side by side rather than one ListAccounts page after another. A managing role made
/// from an older template, which may call ListAccounts and ListChildren but not
/// ListAccountsForParent, is listed the older way.
pub async fn list_organization(
    client: &Client,
    header: OrganizationHeader,
    concurrency: usize,
    tags: Option<&TagReader>,
    on_accounts: &mut OnAccounts<'_>,
) -> Result<OrganizationSnapshot, AwsFailure> {
    let roots = client
        .list_roots()
        .send()
        .await
        .map_err(|e| classify("ListRoots", &e))?;
    let root_id = roots
        .roots()
        .first()
        .and_then(|root| root.id())
        .unwrap_or_default()
        .to_owned();

    let mut org = OrganizationSnapshot {
        id: header.id,
        managing_account_id: header.managing_account_id,
        feature_set: header.feature_set,
        root_id,
        units: BTreeMap::new(),
        accounts: Vec::new(),
    };
    match walk(client, &mut org, concurrency, tags, on_accounts).await {
        Ok(()) => {}
        Err(failure)
            if failure.kind == FailureKind::AccessDenied
                && failure.operation == "ListAccountsForParent" =>
        {
            tracing::warn!(error = %failure,
                "the managing role may not call ListAccountsForParent; listing with ListAccounts \
                 and ListChildren, which is slower: update the role from the current template");
            (org.units, org.accounts) = legacy_walk(client, &org.root_id, concurrency).await?;
            if let Some(reader) = tags {
                reader.read(client, &mut org.accounts).await?;
            }
        }
        Err(failure) => return Err(failure),
    }
    Ok(org)
}

/// One listing call's worth of work: a parent's OUs, or its accounts.
enum Listing {
    Units(String),
    Accounts(String),
}

/// What a [`Listing`] found.
enum Found {
    Units(Vec<(String, Unit)>),
    Accounts(Vec<Account>),
}

/// Every OU and every account under `org`'s root, into `org`. A parent's accounts and
/// its OUs are listed as soon as the parent is known, `concurrency` parents' listings at a
/// time.
async fn walk(
    client: &Client,
    org: &mut OrganizationSnapshot,
    concurrency: usize,
    tags: Option<&TagReader>,
    on_accounts: &mut OnAccounts<'_>,
) -> Result<(), AwsFailure> {
    let mut queue = std::collections::VecDeque::from([
        Listing::Units(org.root_id.clone()),
        Listing::Accounts(org.root_id.clone()),
    ]);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut seen = std::collections::HashSet::new();
    loop {
        while in_flight.len() < concurrency.max(1)
            && let Some(listing) = queue.pop_front()
        {
            in_flight.push(list(client, listing, tags));
        }
        let Some(found) = in_flight.next().await else {
            break;
        };
        match found? {
            Found::Units(children) => {
                for (id, unit) in children {
                    if org.units.insert(id.clone(), unit).is_none() {
                        queue.push_back(Listing::Units(id.clone()));
                        queue.push_back(Listing::Accounts(id));
                    }
                }
            }
            // An account that moved while the organization was listed may be found under
            // both parents: the first listing wins until the next discovery.
            Found::Accounts(found) => {
                let found: Vec<Account> = found
                    .into_iter()
                    .filter(|account| seen.insert(account.id.clone()))
                    .collect();
                on_accounts(org, &found);
                org.accounts.extend(found);
            }
        }
    }
    Ok(())
}

/// Runs one listing, every page of it; a parent's accounts come with their tags when
/// `tags` reads them.
async fn list(
    client: &Client,
    listing: Listing,
    tags: Option<&TagReader>,
) -> Result<Found, AwsFailure> {
    match listing {
        Listing::Units(parent_id) => {
            let mut pages = client
                .list_organizational_units_for_parent()
                .parent_id(&parent_id)
                .max_results(CHILDREN_PAGE_SIZE)
                .into_paginator()
                .send();
            let mut found = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify("ListOrganizationalUnitsForParent", &e))?;
                for ou in page.organizational_units() {
                    let Some(id) = ou.id() else { continue };
                    found.push((
                        id.to_owned(),
                        Unit {
                            name: ou.name().unwrap_or(id).to_owned(),
                            parent_id: parent_id.clone(),
                        },
                    ));
                }
            }
            Ok(Found::Units(found))
        }
        Listing::Accounts(parent_id) => {
            let mut pages = client
                .list_accounts_for_parent()
                .parent_id(&parent_id)
                .max_results(CHILDREN_PAGE_SIZE)
                .into_paginator()
                .send();
            let mut found = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify("ListAccountsForParent", &e))?;
                found.extend(
                    page.accounts()
                        .iter()
                        .filter_map(|account| account_of(account, &parent_id)),
                );
            }
            if let Some(reader) = tags {
                reader.read(client, &mut found).await?;
            }
            Ok(Found::Accounts(found))
        }
    }
}

/// The older listing, for a managing role that may not call ListAccountsForParent: the
/// OUs level by level and the ListAccounts chain side by side, then each account's parent
/// from ListChildren.
async fn legacy_walk(
    client: &Client,
    root_id: &str,
    concurrency: usize,
) -> Result<(BTreeMap<String, Unit>, Vec<Account>), AwsFailure> {
    let units_and_parents = async {
        let units = list_units(client, root_id, concurrency).await?;
        let parents = list_account_parents(client, root_id, &units, concurrency).await?;
        Ok::<_, AwsFailure>((units, parents))
    };
    let ((units, parents), mut accounts) =
        futures::try_join!(units_and_parents, list_accounts(client))?;
    // An account whose parent was not listed (it moved while discovery ran) is placed
    // under the root until the next discovery.
    for account in &mut accounts {
        account.parent_id = parents
            .get(&account.id)
            .map_or(root_id, String::as_str)
            .to_owned();
    }
    Ok((units, accounts))
}

/// Every OU under the root, level by level.
async fn list_units(
    client: &Client,
    root_id: &str,
    concurrency: usize,
) -> Result<BTreeMap<String, Unit>, AwsFailure> {
    let mut units = BTreeMap::new();
    let mut level = vec![root_id.to_owned()];
    while !level.is_empty() {
        let children: Vec<Found> = futures::stream::iter(level)
            .map(|parent_id| list(client, Listing::Units(parent_id), None))
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        level = Vec::new();
        for found in children {
            let Found::Units(children) = found else {
                continue;
            };
            for (id, unit) in children {
                if units.insert(id.clone(), unit).is_none() {
                    level.push(id);
                }
            }
        }
    }
    Ok(units)
}

/// Account id -> parent id, from the account children of the root and of every OU.
async fn list_account_parents(
    client: &Client,
    root_id: &str,
    units: &BTreeMap<String, Unit>,
    concurrency: usize,
) -> Result<BTreeMap<String, String>, AwsFailure> {
    let parents = std::iter::once(root_id.to_owned()).chain(units.keys().cloned());
    let listed: Vec<Vec<(String, String)>> = futures::stream::iter(parents)
        .map(|parent_id| async move {
            let mut pages = client
                .list_children()
                .parent_id(&parent_id)
                .child_type(ChildType::Account)
                .max_results(CHILDREN_PAGE_SIZE)
                .into_paginator()
                .send();
            let mut found = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify("ListChildren", &e))?;
                for child in page.children() {
                    if let Some(id) = child.id() {
                        found.push((id.to_owned(), parent_id.clone()));
                    }
                }
            }
            Ok::<_, AwsFailure>(found)
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    Ok(listed.into_iter().flatten().collect())
}

/// Every account, in pages of [`ACCOUNTS_PAGE_SIZE`], its parent not yet known.
async fn list_accounts(client: &Client) -> Result<Vec<Account>, AwsFailure> {
    let mut pages = client
        .list_accounts()
        .max_results(ACCOUNTS_PAGE_SIZE)
        .into_paginator()
        .send();
    let mut accounts = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| classify("ListAccounts", &e))?;
        accounts.extend(
            page.accounts()
                .iter()
                .filter_map(|account| account_of(account, "")),
        );
    }
    Ok(accounts)
}

/// An account as AWS lists it, under `parent_id`.
fn account_of(account: &aws_sdk_organizations::types::Account, parent_id: &str) -> Option<Account> {
    Some(Account {
        id: account.id()?.to_owned(),
        name: account.name().unwrap_or_default().to_owned(),
        email: account.email().unwrap_or_default().to_owned(),
        status: account_state(
            account.state().map(|s| s.as_str()),
            account.status().map(|s| s.as_str()),
        ),
        joined_method: account.joined_method().and_then(|m| match m.as_str() {
            "CREATED" => Some(JoinedMethod::Created),
            "INVITED" => Some(JoinedMethod::Invited),
            _ => None,
        }),
        parent_id: parent_id.to_owned(),
        tags: None,
    })
}

/// The account's state: AWS's `State`, or the retired `Status` where no `State` is given
/// (the values `Status` had are spelled the same in `State`).
fn account_state(state: Option<&str>, status: Option<&str>) -> Option<AwsAccountStatus> {
    match state {
        Some(state) => AwsAccountStatus::from_aws_str(state),
        None => status.and_then(AwsAccountStatus::from_aws_str),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_wins_over_the_retired_status() {
        assert_eq!(
            account_state(Some("CLOSED"), Some("SUSPENDED")),
            Some(AwsAccountStatus::Closed)
        );
        assert_eq!(
            account_state(Some("PENDING_ACTIVATION"), None),
            Some(AwsAccountStatus::PendingActivation)
        );
        assert_eq!(
            account_state(None, Some("PENDING_CLOSURE")),
            Some(AwsAccountStatus::PendingClosure)
        );
        assert_eq!(account_state(None, None), None);
        assert_eq!(account_state(Some("SOMETHING_NEW"), Some("ACTIVE")), None);
    }
}
