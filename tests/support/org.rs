//! Seeds moto with an organization described in code: nested OUs, accounts, suspended
//! accounts.

use aws_config::SdkConfig;
use aws_sdk_organizations::Client;
use aws_sdk_organizations::types::OrganizationFeatureSet;
use futures::{StreamExt, TryStreamExt};

/// An organizational unit to create, with its accounts and child OUs.
#[derive(Clone, Debug, Default)]
pub struct OuSpec {
    pub name: String,
    /// Active accounts directly in this OU.
    pub accounts: usize,
    /// Suspended accounts directly in this OU (closed after creation).
    pub suspended: usize,
    pub children: Vec<OuSpec>,
}

impl OuSpec {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }

    pub fn accounts(mut self, n: usize) -> Self {
        self.accounts = n;
        self
    }

    pub fn suspended(mut self, n: usize) -> Self {
        self.suspended = n;
        self
    }

    pub fn child(mut self, child: OuSpec) -> Self {
        self.children.push(child);
        self
    }
}

/// An organization to create.
#[derive(Clone, Debug, Default)]
pub struct OrgSpec {
    /// Accounts directly under the root, besides the managing account.
    pub root_accounts: usize,
    pub ous: Vec<OuSpec>,
}

impl OrgSpec {
    /// `accounts` accounts directly under the root, besides the managing one.
    pub fn flat(accounts: usize) -> Self {
        Self {
            root_accounts: accounts,
            ous: Vec::new(),
        }
    }

    /// `total` active accounts spread evenly over `fanout` OUs per level, `depth` levels
    /// deep (every OU at every level holds accounts), plus `suspended` suspended ones.
    pub fn generated(total: usize, depth: usize, fanout: usize, suspended: usize) -> Self {
        fn level(prefix: &str, depth: usize, fanout: usize) -> Vec<OuSpec> {
            if depth == 0 {
                return Vec::new();
            }
            (0..fanout)
                .map(|i| {
                    let name = format!("{prefix}{i}");
                    OuSpec {
                        children: level(&format!("{name}-"), depth - 1, fanout),
                        ..OuSpec::new(&name)
                    }
                })
                .collect()
        }
        let ous = level("ou", depth, fanout);
        let mut spec = OrgSpec {
            root_accounts: 0,
            ous,
        };
        let count = spec.ou_count().max(1);
        spec.visit_mut(&mut |index, ou| {
            ou.accounts = total / count + usize::from(index < total % count);
            ou.suspended = suspended / count + usize::from(index < suspended % count);
        });
        if spec.ous.is_empty() {
            spec.root_accounts = total;
        }
        spec
    }

    fn ou_count(&self) -> usize {
        let mut n = 0;
        self.visit(&mut |_| n += 1);
        n
    }

    fn visit(&self, f: &mut impl FnMut(&OuSpec)) {
        fn walk(ous: &[OuSpec], f: &mut impl FnMut(&OuSpec)) {
            for ou in ous {
                f(ou);
                walk(&ou.children, f);
            }
        }
        walk(&self.ous, f);
    }

    fn visit_mut(&mut self, f: &mut impl FnMut(usize, &mut OuSpec)) {
        fn walk(ous: &mut [OuSpec], index: &mut usize, f: &mut impl FnMut(usize, &mut OuSpec)) {
            for ou in ous {
                f(*index, ou);
                *index += 1;
                walk(&mut ou.children, index, f);
            }
        }
        walk(&mut self.ous, &mut 0, f);
    }
}

/// An OU that was created.
#[derive(Clone, Debug)]
pub struct SeededOu {
    pub id: String,
    pub parent_id: String,
    /// `Root/A/B`.
    pub path: String,
    pub depth: usize,
}

/// An account that was created (or the managing account).
#[derive(Clone, Debug)]
pub struct SeededAccount {
    pub id: String,
    pub name: String,
    pub parent_id: String,
    pub path: String,
    pub suspended: bool,
}

/// The organization as created in moto.
#[derive(Clone, Debug)]
pub struct SeededOrg {
    pub id: String,
    pub root_id: String,
    pub managing_account_id: String,
    pub ous: Vec<SeededOu>,
    /// Every account, the managing one included.
    pub accounts: Vec<SeededAccount>,
}

impl SeededOrg {
    pub fn member_accounts(&self) -> impl Iterator<Item = &SeededAccount> {
        self.accounts
            .iter()
            .filter(|a| a.id != self.managing_account_id)
    }
}

struct PendingAccount {
    name: String,
    parent_id: String,
    path: String,
    suspended: bool,
}

/// Creates the organization in the account `config`'s credentials act in.
pub async fn seed(config: &SdkConfig, spec: &OrgSpec) -> SeededOrg {
    seed_with(config, spec, 16, &super::unique_suffix()).await
}

/// Like [`seed`], one call at a time and with e-mail addresses made from `suffix`: after
/// moto's random generator is seeded with the same value
/// ([`super::testbed::seed_moto_random`]), the same calls in the same order give the
/// same organization with the same ids, so a restarted moto can be re-seeded identically.
pub async fn seed_in_order(config: &SdkConfig, spec: &OrgSpec, suffix: &str) -> SeededOrg {
    seed_with(config, spec, 1, suffix).await
}

async fn seed_with(
    config: &SdkConfig,
    spec: &OrgSpec,
    concurrency: usize,
    suffix: &str,
) -> SeededOrg {
    let client = Client::new(config);
    let org = client
        .create_organization()
        .feature_set(OrganizationFeatureSet::All)
        .send()
        .await
        .expect("CreateOrganization")
        .organization
        .expect("organization");
    let roots = client.list_roots().send().await.expect("ListRoots");
    let root_id = roots.roots()[0].id().expect("root id").to_owned();
    let managing_account_id = org.master_account_id().expect("master account").to_owned();

    let mut ous = Vec::new();
    let mut pending = Vec::new();
    let mut push_accounts = |parent_id: &str, path: &str, active: usize, suspended: usize| {
        for i in 0..active + suspended {
            pending.push(PendingAccount {
                name: format!("{}-{}", path.replace(['/', '\\'], "-").to_lowercase(), i),
                parent_id: parent_id.to_owned(),
                path: path.to_owned(),
                suspended: i >= active,
            });
        }
    };
    push_accounts(&root_id, "Root", spec.root_accounts, 0);

    // Breadth-first, so each parent exists before its children.
    let mut queue: Vec<(String, String, usize, OuSpec)> = spec
        .ous
        .iter()
        .map(|ou| (root_id.clone(), "Root".to_owned(), 1, ou.clone()))
        .collect();
    while !queue.is_empty() {
        let mut next = Vec::new();
        for (parent_id, parent_path, depth, ou) in queue {
            let created = client
                .create_organizational_unit()
                .parent_id(&parent_id)
                .name(&ou.name)
                .send()
                .await
                .expect("CreateOrganizationalUnit")
                .organizational_unit
                .expect("OU");
            let id = created.id().expect("OU id").to_owned();
            let path = format!(
                "{parent_path}/{}",
                orgconnect::organization::escape_path_name(&ou.name)
            );
            push_accounts(&id, &path, ou.accounts, ou.suspended);
            for child in &ou.children {
                next.push((id.clone(), path.clone(), depth + 1, child.clone()));
            }
            ous.push(SeededOu {
                id,
                parent_id,
                path,
                depth,
            });
        }
        queue = next;
    }

    let root = root_id.clone();
    let mut accounts: Vec<SeededAccount> = futures::stream::iter(pending)
        .map(|account| {
            let client = client.clone();
            let root = root.clone();
            async move { create_account(&client, &root, account, suffix).await }
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await
        .expect("seeding accounts");
    accounts.push(SeededAccount {
        id: managing_account_id.clone(),
        name: "management".to_owned(),
        parent_id: root_id.clone(),
        path: "Root".to_owned(),
        suspended: false,
    });
    SeededOrg {
        id: org.id().expect("organization id").to_owned(),
        root_id,
        managing_account_id,
        ous,
        accounts,
    }
}

async fn create_account(
    client: &Client,
    root_id: &str,
    account: PendingAccount,
    suffix: &str,
) -> Result<SeededAccount, aws_sdk_organizations::Error> {
    let status = client
        .create_account()
        .account_name(&account.name)
        .email(format!("{}-{suffix}@example.org", account.name))
        .send()
        .await?
        .create_account_status
        .expect("CreateAccountStatus");
    let id = status.account_id().expect("account id").to_owned();
    if account.parent_id != root_id {
        client
            .move_account()
            .account_id(&id)
            .source_parent_id(root_id)
            .destination_parent_id(&account.parent_id)
            .send()
            .await?;
    }
    if account.suspended {
        client.close_account().account_id(&id).send().await?;
    }
    Ok(SeededAccount {
        id,
        name: account.name,
        parent_id: account.parent_id,
        path: account.path,
        suspended: account.suspended,
    })
}
