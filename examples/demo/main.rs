//! The one-command demo (`make demo`): an emulated organization of 40 accounts in nested
//! OUs, three of them blocked and one suspended, the real `orgconnect run` against the
//! test bed, the example manifests applied, and what a platform engineer then sees:
//! `kubectl get aoc,ma,ss`, the sync Job a run starts, and `orgconnect tree`.
//!
//! Runs under `scripts/testbed run`, which provides the API server and moto. On a
//! terminal it keeps everything running until Ctrl-C so you can look around; otherwise it
//! exits, non-zero unless every account got a phase and Connected and Blocked both show.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::IsTerminal;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::discovery::pinned_kind;
use kube::{Client, ResourceExt};
use orgconnect::api::MemberAccount;
use orgconnect::api::member_account::MemberPhase;
use serde::Deserialize;
use support::aws::AwsBed;
use support::iam::delete_role;
use support::kube::{KUBECONFIG_ENV, install_crds};
use support::org::{OrgSpec, OuSpec, seed};
use support::process::OperatorProcess;
use support::scenario::deploy_generated_role;

const NAMESPACE: &str = "orgconnect-demo";
/// The examples the demo applies, in order.
const EXAMPLES: [&str; 2] = ["connection.yaml", "sync-schedule.yaml"];
const BLOCKED: usize = 3;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match demo().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("demo: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn step(what: &str) {
    println!("\n==> {what}");
}

async fn demo() -> Result<()> {
    let binary = support::process::beside_current_exe("orgconnect")?;
    let kubeconfig = std::env::var(KUBECONFIG_ENV)
        .map_err(|_| format!("{KUBECONFIG_ENV} is not set: run under `scripts/testbed run`"))?;
    let kubectl = std::env::var("ORGCONNECT_TESTBED_KUBECTL").unwrap_or_else(|_| "kubectl".into());

    step("an emulated AWS organization (moto), behind a proxy that enforces IAM as AWS does");
    let bed = AwsBed::new().await;
    let spec = OrgSpec {
        root_accounts: 3,
        ous: vec![
            OuSpec::new("Prod")
                .accounts(10)
                .child(OuSpec::new("Payments").accounts(6)),
            OuSpec::new("Dev")
                .accounts(12)
                .child(OuSpec::new("Sandbox").accounts(4).suspended(1)),
            OuSpec::new("Security").accounts(3),
        ],
    };
    let org = seed(&bed.sdk_config(), &spec).await;
    // Accounts without an OrganizationAccountAccessRole, as accounts that joined by
    // invitation are; the last of them is reported as invited.
    let blocked: Vec<String> = org
        .member_accounts()
        .filter(|a| !a.suspended && a.path.contains("Payments"))
        .take(BLOCKED)
        .map(|a| a.id.clone())
        .collect();
    for account in &blocked {
        delete_role(&bed, account, "OrganizationAccountAccessRole").await;
    }
    bed.proxy.report_invited(blocked.last().cloned());
    // Every account tagged with its team, as organizations tag accounts for cost and
    // ownership: the MemberAccounts carry the tag as a label and in status.
    let organizations = aws_sdk_organizations::Client::new(&bed.sdk_config());
    for account in org.member_accounts() {
        let team = account
            .path
            .rsplit('/')
            .next()
            .filter(|name| *name != "Root")
            .unwrap_or("platform")
            .to_lowercase();
        let tag = aws_sdk_organizations::types::Tag::builder()
            .key("team")
            .value(team)
            .build()?;
        organizations
            .tag_resource()
            .resource_id(&account.id)
            .tags(tag)
            .send()
            .await?;
    }
    bed.proxy.enforce_iam();
    println!(
        "organization {} with {} accounts (managing account {}); blocked: {}",
        org.id,
        org.accounts.len(),
        org.managing_account_id,
        blocked.join(", ")
    );

    step("the CRDs and a namespace on the API server");
    let client = support::kube::client().await;
    install_crds(&client).await;
    ensure_namespace(&client).await?;
    let connections: Api<orgconnect::api::AwsOrgConnection> =
        Api::namespaced(client.clone(), NAMESPACE);
    if !connections
        .list(&ListParams::default())
        .await?
        .items
        .is_empty()
    {
        return Err(format!(
            "namespace {NAMESPACE} already holds connections: the demo needs a fresh test bed (`make demo` starts one)"
        )
        .into());
    }

    step("the operator: orgconnect run --namespace orgconnect-demo");
    let log = std::env::temp_dir().join("orgconnect-demo-operator.log");
    let _ = std::fs::remove_file(&log);
    let operator = OperatorProcess::spawn(
        &binary,
        &bed,
        "orgconnect-demo",
        &["--namespace", NAMESPACE, "--log-format", "text"],
        Some(&log),
    );
    println!("logs: {}", log.display());

    step("the examples: kubectl apply -f examples/connection.yaml -f examples/sync-schedule.yaml");
    let role = format!("arn:aws:iam::{}:role/orgconnect", org.managing_account_id);
    let started = Instant::now();
    for example in EXAMPLES {
        apply_example(&client, example, &role).await?;
    }

    step(
        "the managing role, for the ExternalId the operator generated: \
         orgconnect template managing-role --connection acme, deployed with CloudFormation",
    );
    deploy_generated_role(&bed, &client, NAMESPACE, "acme", &bed.sdk_config()).await;
    println!("stack orgconnect created in {}", org.managing_account_id);

    step("waiting until every account has a phase");
    let members: Api<MemberAccount> = Api::namespaced(client.clone(), NAMESPACE);
    let expected = org.accounts.len();
    let phases = wait_for_phases(&members, expected).await?;
    println!(
        "{expected} accounts with a phase after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let lag = wait_for_counts(&client, &phases).await?;
    println!(
        "the connection's counts agreed with them {:.1} s later",
        lag.as_secs_f64()
    );

    step("a sync run now: kubectl annotate ss acme-inventory orgconnect.dev/run=now");
    let job = run_now(&client).await?;
    println!("Job {job} created with the run's AWS config (one profile per Connected account)");

    step("kubectl get aoc,ma,ss");
    show(
        Command::new(&kubectl)
            .args(["get", "aoc,ma,ss", "-n", NAMESPACE])
            .env("KUBECONFIG", &kubeconfig),
    )?;
    step("orgconnect tree acme --tag team");
    show(
        Command::new(&binary)
            .args(["tree", "acme", "-n", NAMESPACE, "--tag", "team"])
            .env("KUBECONFIG", &kubeconfig),
    )?;
    step("kubectl get ma -l tags.orgconnect.dev/team=payments (the AWS tag as a label)");
    show(
        Command::new(&kubectl)
            .args([
                "get",
                "ma",
                "-n",
                NAMESPACE,
                "-l",
                "tags.orgconnect.dev/team=payments",
            ])
            .env("KUBECONFIG", &kubeconfig),
    )?;

    let connected = phases
        .iter()
        .filter(|p| **p == MemberPhase::Connected)
        .count();
    let blocked_now = phases
        .iter()
        .filter(|p| **p == MemberPhase::Blocked)
        .count();
    if connected == 0 || blocked_now != BLOCKED {
        return Err(format!(
            "expected Connected accounts and {BLOCKED} Blocked; saw {connected} Connected, {blocked_now} Blocked"
        )
        .into());
    }

    if std::io::stdin().is_terminal() {
        step("everything keeps running; in another terminal:");
        println!("  export KUBECONFIG={kubeconfig}");
        println!("  kubectl get ma -n {NAMESPACE} -o wide");
        println!("  kubectl describe ma -n {NAMESPACE} acme-{}", blocked[0]);
        println!("Ctrl-C stops the demo and the test bed.");
        tokio::signal::ctrl_c().await?;
    }
    drop(operator);
    Ok(())
}

async fn ensure_namespace(client: &Client) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(NAMESPACE).await?.is_none() {
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(NAMESPACE.to_owned()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces
            .create(&PostParams::default(), &namespace)
            .await?;
    }
    Ok(())
}

/// Applies every object of `examples/<file>`, pointing connections at `role`.
async fn apply_example(client: &Client, file: &str, role: &str) -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file);
    let text = std::fs::read_to_string(&path)?;
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document)?;
        if value.is_null() {
            continue;
        }
        let mut object: DynamicObject = serde_yaml::from_value(value)?;
        let types = object.types.clone().ok_or("an example without a kind")?;
        if types.kind == "AwsOrgConnection" {
            object.data["spec"]["roleArn"] = serde_json::Value::from(role);
        }
        let gvk = kube::api::GroupVersionKind::try_from(&types)?;
        let (resource, _) = pinned_kind(client, &gvk).await?;
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &resource);
        let name = object.name_any();
        api.patch(
            &name,
            &PatchParams::apply("orgconnect-demo").force(),
            &Patch::Apply(&object),
        )
        .await?;
        println!("{} {name} applied", types.kind);
    }
    Ok(())
}

/// Waits until all `expected` MemberAccounts exist with a phase other than Pending.
async fn wait_for_phases(api: &Api<MemberAccount>, expected: usize) -> Result<Vec<MemberPhase>> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let phases: Vec<MemberPhase> = api
            .list(&ListParams::default())
            .await?
            .into_iter()
            .filter_map(|m| m.status.and_then(|s| s.phase))
            .filter(|p| *p != MemberPhase::Pending)
            .collect();
        if phases.len() == expected {
            return Ok(phases);
        }
        if Instant::now() > deadline {
            return Err(
                format!("only {} of {expected} accounts have a phase", phases.len()).into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until connection `acme` counts what `phases` hold, and says how long that took:
/// the counts trail the MemberAccounts by a few seconds while probes land.
async fn wait_for_counts(client: &Client, phases: &[MemberPhase]) -> Result<Duration> {
    let connections: Api<orgconnect::api::AwsOrgConnection> =
        Api::namespaced(client.clone(), NAMESPACE);
    let count = |phase| phases.iter().filter(|p| **p == phase).count();
    let want = (
        phases.len(),
        count(MemberPhase::Connected),
        count(MemberPhase::Blocked),
    );
    let started = Instant::now();
    loop {
        let counts = connections
            .get("acme")
            .await?
            .status
            .and_then(|s| s.accounts);
        let seen = counts.map(|c| {
            let n = |v: i32| usize::try_from(v).unwrap_or(0);
            (n(c.total), n(c.connected), n(c.blocked))
        });
        if seen == Some(want) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "the connection counts {seen:?} (total, connected, blocked); its accounts hold {want:?}"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asks the example schedule for a run now and waits for its Job.
async fn run_now(client: &Client) -> Result<String> {
    let schedules: Api<orgconnect::api::SyncSchedule> = Api::namespaced(client.clone(), NAMESPACE);
    let annotation = serde_json::json!({
        "metadata": { "annotations": { "orgconnect.dev/run": "now" } }
    });
    schedules
        .patch(
            "acme-inventory",
            &PatchParams::default(),
            &Patch::Merge(&annotation),
        )
        .await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(job) = jobs.list(&ListParams::default()).await?.items.first() {
            return Ok(job.name_any());
        }
        if Instant::now() > deadline {
            return Err("no sync Job was created".into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn show(command: &mut Command) -> Result<()> {
    let status = command.status()?;
    if !status.success() {
        return Err(format!("{command:?} failed: {status}").into());
    }
    Ok(())
}
