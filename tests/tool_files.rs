//! The tool files a sync run gets (`toolConfigs`), used by the real tools on the strict
//! bed: Cloud Custodian's c7n-org runs a policy across the run's accounts from the run's
//! `c7n-org-accounts.yml` and the Job's own environment; Steampipe's `aws.spc` is checked
//! against the plugin's documented connection fields and the run's profiles.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::Api;
use orgconnect::api::member_account::MemberPhase;
use orgconnect::api::{MemberAccount, SyncSchedule};
use support::aws::AwsBed;
use support::clients;
use support::eventually;
use support::iam::{delete_role, in_account};
use support::operator::{managing_role, members};
use support::org::OrgSpec;
use support::runs::{run_files, run_now};
use support::scenario::Scenario;

/// Where a run's files are mounted in its containers.
const MOUNT_PATH: &str = "/etc/orgconnect";

/// The alias each account gets, so what c7n-org reports names the account it reached.
fn alias(account: &str) -> String {
    format!("alias-{account}")
}

/// The environment of the Job's first container, each value as the pod would see it.
fn container_env(job: &Job) -> BTreeMap<String, String> {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| Some((e.name, e.value?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c7n_org_reaches_every_connected_account_from_the_run_and_tries_no_blocked_one() {
    let scenario = Scenario::build("tools", &OrgSpec::generated(5, 1, 2, 0))
        .operator_without_access()
        .start()
        .await;
    let Scenario { bed, org, ns, .. } = &scenario;
    let mut ids = org.member_accounts().map(|a| a.id.clone());
    let blocked = ids.next().expect("account");
    let connected: Vec<String> = ids.collect();
    for account in &connected {
        aws_sdk_iam::Client::new(&in_account(bed, account).await)
            .create_account_alias()
            .account_alias(alias(account))
            .send()
            .await
            .expect("CreateAccountAlias");
    }
    aws_sdk_iam::Client::new(&bed.sdk_config())
        .create_account_alias()
        .account_alias(alias(&org.managing_account_id))
        .send()
        .await
        .expect("CreateAccountAlias in the management account");
    delete_role(bed, &blocked, "OrganizationAccountAccessRole").await;
    scenario
        .connect_with_secret("acme", serde_json::json!({}))
        .await;
    let member_api: Api<MemberAccount> = ns.api();
    let total = org.accounts.len();
    let listed = eventually("every account probed", Duration::from_secs(60), || async {
        let listed = members(&member_api).await;
        (listed.len() == total
            && listed.iter().all(|m| {
                matches!(
                    m.status.as_ref().and_then(|s| s.phase),
                    Some(MemberPhase::Connected | MemberPhase::Blocked)
                )
            }))
        .then_some(listed)
    })
    .await;
    let phase_of = |id: &str| {
        listed
            .iter()
            .find(|m| m.spec.account_id == id)
            .and_then(|m| m.status.as_ref()?.phase)
    };
    assert_eq!(phase_of(&blocked), Some(MemberPhase::Blocked));
    let reachable: BTreeSet<String> = connected
        .iter()
        .chain([&org.managing_account_id])
        .cloned()
        .collect();
    let names: BTreeMap<String, String> = listed
        .iter()
        .map(|m| (m.spec.account_id.clone(), m.spec.name.clone()))
        .collect();

    let job = run_now(
        &ns.api::<SyncSchedule>(),
        &ns.api::<Job>(),
        "custodian",
        serde_json::json!({
            "regions": ["us-east-1"],
            "toolConfigs": ["C7nOrg", "Steampipe"],
        }),
        Duration::from_secs(30),
    )
    .await;
    let env = container_env(&job);
    assert_eq!(
        env["ORGCONNECT_C7N_ORG_ACCOUNTS"],
        format!("{MOUNT_PATH}/c7n-org-accounts.yml")
    );
    assert_eq!(
        env["ORGCONNECT_STEAMPIPE_CONFIG"],
        format!("{MOUNT_PATH}/aws.spc")
    );
    let data = run_files(&ns.api::<ConfigMap>(), &job).await;
    let credentials = ns
        .api::<Secret>()
        .get(&job.name_any())
        .await
        .expect("the run's credentials Secret")
        .data
        .and_then(|d| d.get("credentials").cloned())
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .expect("a credentials file");

    // The run's files where the pod mounts them, and the Job's environment pointing there.
    let dir = std::env::temp_dir().join(format!("orgconnect-tools-{}", ns.name));
    let mount = dir.join("mount");
    for (name, content) in data
        .iter()
        .chain([(&"credentials".to_owned(), &credentials)])
    {
        clients::write(&mount, name, content);
    }
    let accounts_file: serde_yaml::Value =
        serde_yaml::from_str(&data["c7n-org-accounts.yml"]).expect("YAML");
    let entries: BTreeSet<String> = accounts_file["accounts"]
        .as_sequence()
        .expect("accounts")
        .iter()
        .filter_map(|a| a["account_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(entries, reachable, "one entry per Connected account");

    check_steampipe_config(&data["aws.spc"], &data["aws-config"], &reachable);

    let policy = clients::write(
        &dir,
        "policy.yml",
        "policies:\n  - name: account-alias\n    resource: aws.account\n",
    );
    let output = dir.join("output");
    let c7n_org = std::env::var("ORGCONNECT_TESTBED_C7N_ORG").expect("the test bed's c7n-org");
    let mut command = Command::new(c7n_org);
    job_environment(&mut command, &env, &mount, &dir, bed);
    command
        .args(["run", "-c"])
        .arg(mount.join("c7n-org-accounts.yml"))
        .arg("-u")
        .arg(&policy)
        .arg("-s")
        .arg(&output)
        // Two accounts at once: the machine's cores, not c7n-org's default of four a core.
        .env("C7N_ORG_PARALLEL", "2");
    bed.proxy.reset_stats();
    let ran = command.output().expect("c7n-org runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(ran.status.success(), "c7n-org failed:\n{log}");
    assert!(
        !log.contains("unable to obtain credentials") && !log.contains("Access denied"),
        "c7n-org was refused somewhere:\n{log}"
    );

    // Every Connected account was reached, each through its own role: the alias c7n-org
    // read is that account's.
    for account in &reachable {
        let resources = output
            .join(&names[account])
            .join("us-east-1")
            .join("account-alias")
            .join("resources.json");
        let found: serde_json::Value = std::fs::read(&resources)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| panic!("no {} for {account}:\n{log}", resources.display()));
        assert_eq!(
            found[0]["account_name"].as_str(),
            Some(alias(account).as_str()),
            "c7n-org in {account} reached that account: {found}"
        );
    }
    // Nothing else was tried: the member roles assumed are the Connected accounts', never
    // the Blocked one's.
    let assumed: BTreeSet<String> = bed.proxy.assumed_roles().into_iter().collect();
    let members_reached: BTreeSet<String> = connected
        .iter()
        .map(|a| format!("arn:aws:iam::{a}:role/OrganizationAccountAccessRole"))
        .chain([managing_role(&org.managing_account_id)])
        .collect();
    assert_eq!(assumed, members_reached);
    assert!(
        !assumed.iter().any(|r| r.contains(&blocked)),
        "the Blocked account was tried"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sets `command` up as the run's container is: its environment with the mount path moved
/// to `mount`, a home of its own, and the bed's proxy as every service's endpoint.
fn job_environment(
    command: &mut Command,
    env: &BTreeMap<String, String>,
    mount: &Path,
    dir: &Path,
    bed: &AwsBed,
) {
    command.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    let mount = mount.to_string_lossy();
    for (name, value) in env {
        command.env(name, value.replace(MOUNT_PATH, &mount));
    }
    command
        .env("HOME", dir.join("home"))
        .env("AWS_ENDPOINT_URL", bed.proxy.url())
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

/// `aws.spc` holds one AWS plugin connection per account, each on a profile the run's AWS
/// config has, with only the plugin's documented fields, and the aggregator over them.
fn check_steampipe_config(spc: &str, aws_config: &str, accounts: &BTreeSet<String>) {
    let documented: BTreeSet<&str> = [
        "plugin",
        "type",
        "connections",
        "profile",
        "regions",
        "default_region",
    ]
    .into();
    let mut connections = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in spc.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("connection \"") {
            let name = rest.strip_suffix("\" {").expect("connection \"NAME\" {");
            // Steampipe's connection names: a letter or `_` first, then letters, digits
            // and `_`, at most 63 characters.
            assert!(
                name.len() <= 63
                    && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "connection name {name}"
            );
            current = Some(name.to_owned());
            connections.insert(name.to_owned(), BTreeMap::new());
        } else if line == "}" {
            current = None;
        } else {
            let (key, value) = line.split_once('=').expect("key = value");
            let key = key.trim();
            assert!(documented.contains(key), "undocumented field {key}");
            let name = current.clone().expect("a field inside a connection");
            connections
                .get_mut(&name)
                .expect("connection")
                .insert(key.to_owned(), value.trim().to_owned());
        }
    }
    let aggregator = &connections["aws_all"];
    assert_eq!(aggregator["type"], "\"aggregator\"");
    assert_eq!(aggregator["connections"], "[\"aws_*\"]");
    let per_account: BTreeSet<String> = connections
        .iter()
        .filter(|(name, _)| *name != "aws_all")
        .map(|(name, fields)| {
            let profile = fields["profile"].trim_matches('"').to_owned();
            assert_eq!(*name, format!("aws_{profile}"));
            assert_eq!(fields["plugin"], "\"aws\"");
            assert_eq!(fields["regions"], "[\"us-east-1\"]");
            assert!(aws_config.contains(&format!("[profile {profile}]\n")));
            profile
        })
        .collect();
    assert_eq!(&per_account, accounts);
}
