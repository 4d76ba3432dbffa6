//! The scale benchmark: a generated organization (5,000 accounts in 210 OUs by default),
//! 3% of them blocked and 20 ms added to every AWS call at the fault proxy (optionally a
//! share of every operation throttled), the real `orgconnect run` (release build) against
//! the test bed. For each size asked for (`--accounts 1000,5000,20000`) it prints a table,
//! and at the end one row per size:
//!
//! - time from applying the connection until every MemberAccount has a phase;
//! - AWS calls by operation and API-server writes during that convergence, and the same
//!   for a second full cycle (re-discovery and a probe of every account) with nothing
//!   changed;
//! - the operator's peak RSS;
//! - the floors, measured in the same run: the AWS calls orgconnect makes (the managing
//!   session, discovery parent by parent, one AssumeRole per member account) from a plain
//!   loop at the same concurrency, with the proxy's IAM reads forgotten as before a first
//!   cycle; and, separately, the API server taking the writes orgconnect makes (one
//!   MemberAccount and one status per account) at the operator's write concurrency;
//! - the peers, on the same organization and proxy: `peer.py`, the concurrent boto3 script
//!   a strong engineer writes (list the organization, assume each member role, at the
//!   same concurrency), and `baseline.sh`, the serial aws-cli script most people write
//!   (probing a sample of accounts, extrapolated).
//!
//! ```sh
//! scripts/testbed run -- sh -c 'cargo build --release --locked --bin orgconnect --example benchmark \
//!   && cargo run --release --locked --example benchmark -- --accounts 1000,5000'
//! # slow, throttling AWS:
//!   ... --example benchmark -- --accounts 1200 --latency-ms 100 --throttle 0.2
//! ```

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use orgconnect::api::member_account::MemberPhase;
use orgconnect::api::{AwsOrgConnection, MemberAccount};
use support::aws::AwsBed;
use support::kube::TestNamespace;
use support::operator::{apply_connection, managing_role};
use support::org::{OrgSpec, SeededOrg, seed};
use support::process::{OperatorProcess, beside_current_exe, peak_rss};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Benchmark orgconnect against the test bed.
#[derive(Parser)]
struct Args {
    /// Accounts in the organization, the managing account included; several sizes
    /// (`1000,5000,20000`) are measured one after another, each in an organization of its own.
    #[arg(long, value_delimiter = ',', default_value = "5000")]
    accounts: Vec<usize>,
    /// OUs per level (two levels: fanout + fanout² OUs).
    #[arg(long, default_value_t = 14)]
    fanout: usize,
    /// Every Nth member account is blocked at the proxy (33: 3%).
    #[arg(long, default_value_t = 33)]
    block_every: usize,
    /// Added to every AWS call at the proxy, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// The connection's memberAccess.concurrency.
    #[arg(long, default_value_t = 16)]
    concurrency: u32,
    /// Share (0.0 to 1.0) of every AWS operation's calls throttled at the proxy.
    #[arg(long, default_value_t = 0.0)]
    throttle: f64,
    /// Read every account's AWS tags at each discovery (`accountTags.enabled`, one
    /// ListTagsForResource per account). Off by default: the peers and floors read no tags.
    #[arg(long)]
    read_tags: bool,
    /// Accounts the aws-cli baseline probes (its time is extrapolated to all accounts).
    #[arg(long, default_value_t = 100)]
    baseline_sample: usize,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match benchmark(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("benchmark: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// What one cycle cost.
struct Cycle {
    took: Duration,
    calls: BTreeMap<String, u64>,
    writes: BTreeMap<String, f64>,
}

async fn benchmark(args: Args) -> Result<()> {
    let mut rows = Vec::new();
    for &accounts in &args.accounts {
        let row = measure(&args, accounts).await?;
        print_table(&args, &row);
        rows.push(row);
    }
    print_summary(&args, &rows);
    Ok(())
}

/// One size, measured.
struct Row {
    accounts: usize,
    ous: usize,
    blocked: usize,
    blocked_seen: usize,
    first: Cycle,
    quiet: Cycle,
    rss: u64,
    aws_floor: Duration,
    api_floor: Duration,
    /// The AWS floor and the API floor run at the same time.
    both_floors: Duration,
    boto3: Script,
    cli: Script,
}

impl Row {
    /// The floor orgconnect is held to: AWS and the API server each at their own pace.
    fn floor(&self) -> Duration {
        self.aws_floor.max(self.api_floor)
    }
}

async fn measure(args: &Args, accounts: usize) -> Result<Row> {
    let binary = beside_current_exe("orgconnect")?;
    let bed = AwsBed::new().await;
    let spec = OrgSpec::generated(accounts.saturating_sub(1), 2, args.fanout, 0);
    let seeding = Instant::now();
    let org = seed(&bed.sdk_config(), &spec).await;
    eprintln!(
        "seeded {} accounts in {} OUs in {:.0} s",
        org.accounts.len(),
        org.ous.len(),
        seeding.elapsed().as_secs_f64()
    );
    let blocked: Vec<String> = org
        .member_accounts()
        .step_by(args.block_every.max(1))
        .map(|a| a.id.clone())
        .collect();
    bed.proxy.deny_assume_role(blocked.iter().cloned());
    // The strict bed: the managing role from its template, IAM evaluated on every call.
    // The aws-cli script lists the organization with ListAccounts, as people write it;
    // orgconnect's template grants only ListAccountsForParent, so the role gets both.
    let external_id = format!("bench-{}", support::unique_suffix());
    support::iam::deploy_managing_role(
        &bed,
        &external_id,
        "OrganizationAccountAccessRole",
        |template| {
            support::iam::replace_action(
                template,
                "organizations:ListAccountsForParent",
                &[
                    "organizations:ListAccountsForParent",
                    "organizations:ListAccounts",
                ],
            )
        },
    )
    .await;
    bed.proxy.enforce_iam();
    bed.proxy.latency(Duration::from_millis(args.latency_ms));
    if args.throttle > 0.0 {
        bed.proxy.throttle("*", args.throttle);
    }

    let ns = TestNamespace::new("bench").await;
    let log = std::env::temp_dir().join("orgconnect-benchmark-operator.log");
    let operator = OperatorProcess::spawn(
        &binary,
        &bed,
        "orgconnect-benchmark",
        &["--namespace", &ns.name],
        Some(&log),
    );
    support::eventually("the operator ready", Duration::from_secs(60), || async {
        (operator.get("/readyz").await?.0 == 200).then_some(())
    })
    .await;

    // The first cycle: apply, then wait until every account has a phase.
    let members: Api<MemberAccount> = ns.api();
    let (store, writer) = reflector::store::<MemberAccount>();
    let watch = tokio::spawn(
        reflector(writer, watcher(members.clone(), watcher::Config::default()))
            .default_backoff()
            .touched_objects()
            .for_each(|_| async {}),
    );
    bed.proxy.reset_stats();
    let writes_before = api_writes(&ns.client).await?;
    let started = Instant::now();
    let connections: Api<AwsOrgConnection> = ns.api();
    apply_connection(
        &connections,
        "bench",
        serde_json::json!({
            "roleArn": managing_role(&org.managing_account_id),
            "externalId": external_id,
            "memberAccess": { "concurrency": args.concurrency },
            "accountTags": { "enabled": args.read_tags },
        }),
    )
    .await;
    let expected = org.accounts.len();
    let phases = loop {
        let phased: Vec<MemberPhase> = store
            .state()
            .iter()
            .filter_map(|m| m.status.as_ref().and_then(|s| s.phase))
            .filter(|p| *p != MemberPhase::Pending)
            .collect();
        if phased.len() == expected {
            break phased;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(
                format!("only {} of {expected} accounts have a phase", phased.len()).into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let converged = started.elapsed();
    quiesce(&bed).await;
    let first = Cycle {
        took: converged,
        calls: bed.proxy.call_counts(),
        writes: delta(&writes_before, &api_writes(&ns.client).await?),
    };
    let blocked_seen = phases
        .iter()
        .filter(|p| **p == MemberPhase::Blocked)
        .count();

    // The quiet cycle: a spec change makes the operator discover again and probe every
    // account; nothing in AWS changed.
    bed.proxy.reset_stats();
    let writes_before = api_writes(&ns.client).await?;
    let started = Instant::now();
    connections
        .patch(
            "bench",
            &PatchParams::default(),
            &Patch::Merge(
                &serde_json::json!({ "spec": { "memberAccess": { "probeInterval": "31m" } } }),
            ),
        )
        .await?;
    let member_count = u64::try_from(expected - 1)?;
    let reprobed = loop {
        if bed.proxy.calls("AssumeRole") >= member_count {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err("the quiet cycle did not probe every account".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    quiesce(&bed).await;
    let quiet = Cycle {
        took: reprobed,
        calls: bed.proxy.call_counts(),
        writes: delta(&writes_before, &api_writes(&ns.client).await?),
    };
    let rss = peak_rss(operator.child.id()).unwrap_or(0);
    drop(operator);
    watch.abort();

    let external_id = retried(|| connections.get("bench"))
        .await?
        .status
        .and_then(|s| s.external_id)
        .ok_or("the connection has no ExternalId")?;
    let unchanged = count(&members).await?;
    if unchanged != expected || blocked_seen != blocked.len() {
        return Err(format!(
            "expected {expected} accounts with {} Blocked; saw {unchanged} with {blocked_seen} Blocked",
            blocked.len()
        )
        .into());
    }
    drop(ns);

    // Each of these starts, as orgconnect's first cycle did, from a proxy that has not read
    // any trust policy or organization from moto yet.
    bed.proxy.forget_iam_reads();
    let aws_alone = aws_floor(&bed, &org, &external_id, args.concurrency).await?;
    let api_alone = api_floor(&org).await?;
    // Both floors at once: on a machine of a few cores, the emulator and the API server
    // share the CPU, as they do during orgconnect's cycle.
    bed.proxy.forget_iam_reads();
    let started = Instant::now();
    let (aws, api) = tokio::join!(
        aws_floor(&bed, &org, &external_id, args.concurrency),
        api_floor(&org)
    );
    aws?;
    api?;
    let both_floors = started.elapsed();
    bed.proxy.forget_iam_reads();
    let boto3 = peer(&bed, &org, &external_id, args.concurrency)?;
    bed.proxy.forget_iam_reads();
    let cli = baseline(&bed, &org, &external_id, args.baseline_sample)?;
    Ok(Row {
        accounts: org.accounts.len(),
        ous: org.ous.len(),
        blocked: blocked.len(),
        blocked_seen,
        first,
        quiet,
        rss,
        aws_floor: aws_alone,
        api_floor: api_alone,
        both_floors,
        boto3,
        cli,
    })
}

/// Waits until no AWS call has reached the proxy for two seconds.
async fn quiesce(bed: &AwsBed) {
    let mut last = (bed.proxy.call_counts(), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = bed.proxy.call_counts();
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(2) {
            return;
        }
    }
}

/// Write requests the API server has served, by resource, from its own metrics.
async fn api_writes(client: &Client) -> Result<BTreeMap<String, f64>> {
    let text = retried(|| async {
        let request = hyper::Request::get("/metrics")
            .body(Vec::new())
            .map_err(kube::Error::HttpError)?;
        client.request_text(request).await
    })
    .await?;
    let mut writes = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let verb = label("verb");
        if !matches!(verb.as_str(), "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE") {
            continue;
        }
        let resource = match label("subresource").as_str() {
            "" => label("resource"),
            sub => format!("{}/{sub}", label("resource")),
        };
        *writes.entry(resource).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(writes)
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// The AWS calls orgconnect makes, from a plain loop: the managing session, every parent's
/// OUs and accounts (eight parents at once, as orgconnect's discovery), then one
/// AssumeRole into each member role from that session at the probes' concurrency.
async fn aws_floor(
    bed: &AwsBed,
    org: &SeededOrg,
    external_id: &str,
    concurrency: u32,
) -> Result<Duration> {
    // orgconnect's own retry policy, so a throttled call is retried as orgconnect's is.
    let retried = |config: aws_config::SdkConfig| {
        config
            .into_builder()
            .retry_config(orgconnect::aws::retry_config())
            .build()
    };
    let started = Instant::now();
    let managing = aws_sdk_sts::Client::new(&retried(bed.sdk_config()))
        .assume_role()
        .role_arn(managing_role(&org.managing_account_id))
        .role_session_name("floor")
        .external_id(external_id)
        .send()
        .await?
        .credentials
        .ok_or("AssumeRole returned no credentials")?;
    let managing = retried(bed.sdk_config_with(aws_sdk_sts::config::Credentials::new(
        managing.access_key_id,
        managing.secret_access_key,
        Some(managing.session_token),
        None,
        "floor",
    )));
    let organizations = aws_sdk_organizations::Client::new(&managing);
    organizations.describe_organization().send().await?;
    organizations.list_roots().send().await?;
    let parents = std::iter::once(org.root_id.clone()).chain(org.ous.iter().map(|o| o.id.clone()));
    futures::stream::iter(parents)
        .map(|parent| {
            let organizations = organizations.clone();
            async move {
                let mut units = organizations
                    .list_organizational_units_for_parent()
                    .parent_id(&parent)
                    .into_paginator()
                    .send();
                while let Some(page) = units.next().await {
                    page?;
                }
                let mut accounts = organizations
                    .list_accounts_for_parent()
                    .parent_id(&parent)
                    .into_paginator()
                    .send();
                while let Some(page) = accounts.next().await {
                    page?;
                }
                Ok::<_, Box<dyn std::error::Error>>(())
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let sts = aws_sdk_sts::Client::new(&managing);
    futures::stream::iter(org.member_accounts().map(|a| a.id.clone()))
        .map(|account| {
            let sts = sts.clone();
            async move {
                let role = format!("arn:aws:iam::{account}:role/OrganizationAccountAccessRole");
                // Blocked accounts are refused; the call is what counts.
                let _ = sts
                    .assume_role()
                    .role_arn(role)
                    .role_session_name("floor")
                    .send()
                    .await;
            }
        })
        .buffer_unordered(usize::try_from(concurrency)?)
        .for_each(|()| async {})
        .await;
    Ok(started.elapsed())
}

/// The API server taking the writes orgconnect makes for `org`: one MemberAccount applied
/// and one status written per account, sixteen at once (the operator's write
/// concurrency), in a namespace of its own.
async fn api_floor(org: &SeededOrg) -> Result<Duration> {
    let ns = TestNamespace::new("bench-floor").await;
    let members: Api<MemberAccount> = ns.api();
    let started = Instant::now();
    let writes = futures::stream::iter(org.accounts.iter().enumerate())
        .map(|(i, account)| {
            let members = members.clone();
            async move {
                let name = format!("floor-{}", account.id);
                let manifest = serde_json::json!({
                    "apiVersion": "orgconnect.dev/v1alpha1",
                    "kind": "MemberAccount",
                    "metadata": { "name": name, "labels": {
                        "orgconnect.dev/connection": "floor",
                        "orgconnect.dev/account-id": account.id,
                    } },
                    "spec": {
                        "connection": "floor",
                        "accountId": account.id,
                        "name": account.name,
                        "email": format!("{}@example.com", account.name),
                    },
                });
                let params = PatchParams::apply("orgconnect").force();
                let apply = Patch::Apply(&manifest);
                retried(|| members.patch(&name, &params, &apply)).await?;
                let phase = if i % 33 == 0 { "Blocked" } else { "Connected" };
                let status = serde_json::json!({ "status": { "phase": phase } });
                let (merge, plain) = (Patch::Merge(&status), PatchParams::default());
                retried(|| members.patch_status(&name, &plain, &merge)).await?;
                Ok::<_, kube::Error>(())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let took = started.elapsed();
    writes
        .into_iter()
        .collect::<std::result::Result<Vec<_>, _>>()?;
    // Only to keep etcd small for the rows that follow: a loaded API server may time out
    // a collection this large, and what is left lives in a namespace nothing watches.
    let (delete, all) = (DeleteParams::default(), ListParams::default());
    if let Err(error) = retried(|| members.delete_collection(&delete, &all)).await {
        eprintln!("benchmark: the API floor's objects were not all deleted: {error}");
    }
    Ok(took)
}

/// How many objects `api` holds, listed a page at a time (one list of tens of thousands of
/// objects can outlast the API server's request timeout).
async fn count<K>(api: &Api<K>) -> std::result::Result<usize, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = ListParams::default().limit(500);
    let mut total = 0;
    loop {
        let page = retried(|| api.list_metadata(&params)).await?;
        total += page.items.len();
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(total),
        }
    }
}

/// `call`, again after a connection the API server dropped (as the operator's controllers
/// retry a failed write): a loaded API server on a small machine resets the odd one.
async fn retried<T, F>(call: impl Fn() -> F) -> std::result::Result<T, kube::Error>
where
    F: std::future::Future<Output = std::result::Result<T, kube::Error>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(kube::Error::Service(_) | kube::Error::HyperError(_)) if attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            result => return result,
        }
    }
}

/// What a peer script measured: its listing, and its probing of `sampled` accounts.
struct Script {
    accounts: usize,
    listing: Duration,
    sampled: usize,
    probing: Duration,
    calls: u64,
}

impl Script {
    /// Listing, plus probing every account at the sampled pace.
    fn extrapolated(&self) -> Duration {
        let per_account = self.probing.as_secs_f64() / self.sampled.max(1) as f64;
        self.listing + Duration::from_secs_f64(per_account * self.accounts as f64)
    }

    /// Runs `command` against the proxy with the bed's base keys and reads its times.
    fn run(bed: &AwsBed, mut command: Command, name: &str) -> Result<Self> {
        bed.proxy.reset_stats();
        let output = bed.aws_env(&mut command).output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(format!("{name} failed: {stderr}").into());
        }
        let millis = |prefix: &str| -> Option<(usize, Duration)> {
            let line = stderr.lines().find(|l| l.starts_with(prefix))?;
            let mut words = line.split_whitespace();
            let count = words.nth(1)?.parse().ok()?;
            let ms = words.nth(2)?.parse().ok()?;
            Some((count, Duration::from_millis(ms)))
        };
        let (accounts, listing) =
            millis("listed").ok_or_else(|| format!("{name} printed no listing time"))?;
        let (sampled, probing) =
            millis("probed").ok_or_else(|| format!("{name} printed no probing time"))?;
        Ok(Self {
            accounts,
            listing,
            sampled,
            probing,
            calls: bed.proxy.call_counts().values().sum(),
        })
    }
}

/// `peer.py`, the concurrent boto3 script, with the bed's boto3 (moto's own environment).
fn peer(bed: &AwsBed, org: &SeededOrg, external_id: &str, concurrency: u32) -> Result<Script> {
    let cache = std::env::var("ORGCONNECT_TESTBED_CACHE")
        .map_err(|_| "ORGCONNECT_TESTBED_CACHE is not set: run under scripts/testbed")?;
    let moto = std::env::var("ORGCONNECT_MOTO_VERSION")
        .map_err(|_| "ORGCONNECT_MOTO_VERSION is not set: run under scripts/testbed")?;
    let python = format!("{cache}/moto-{moto}/bin/python");
    let mut command = Command::new(python);
    command.args([
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/benchmark/peer.py"),
        &managing_role(&org.managing_account_id),
        external_id,
        "OrganizationAccountAccessRole",
        &concurrency.to_string(),
    ]);
    Script::run(bed, command, "peer.py")
}

/// `baseline.sh`, the serial aws-cli script, probing the first `sample` accounts.
fn baseline(bed: &AwsBed, org: &SeededOrg, external_id: &str, sample: usize) -> Result<Script> {
    let aws = std::env::var("ORGCONNECT_TESTBED_AWS_CLI")
        .map_err(|_| "ORGCONNECT_TESTBED_AWS_CLI is not set: run under scripts/testbed")?;
    let mut command = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/benchmark/baseline.sh"
    ));
    command
        .args([
            &managing_role(&org.managing_account_id),
            external_id,
            "OrganizationAccountAccessRole",
            &sample.to_string(),
        ])
        .env("AWS_CLI", aws);
    Script::run(bed, command, "baseline.sh")
}

fn print_table(args: &Args, row: &Row) {
    let calls = |cycle: &Cycle| {
        let total: u64 = cycle.calls.values().sum();
        let by_op: Vec<String> = cycle
            .calls
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect();
        format!("{total} ({})", by_op.join(", "))
    };
    let writes = |cycle: &Cycle| {
        let total: f64 = cycle.writes.values().sum();
        let by_resource: Vec<String> = cycle
            .writes
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        format!("{total} ({})", by_resource.join(", "))
    };
    let secs = |d: Duration| d.as_secs_f64();
    let (first, quiet) = (&row.first, &row.quiet);
    println!();
    println!(
        "orgconnect benchmark: {} accounts in {} OUs, {} blocked at the proxy, {} ms added to every AWS call, {:.0}% of every operation throttled, memberAccess.concurrency {}",
        row.accounts,
        row.ous,
        row.blocked,
        args.latency_ms,
        args.throttle * 100.0,
        args.concurrency
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| apply → every MemberAccount has a phase | {:.1} s ({} Blocked) |",
        secs(first.took),
        row.blocked_seen
    );
    println!("| AWS calls, first cycle | {} |", calls(first));
    println!("| API-server writes, first cycle | {} |", writes(first));
    println!(
        "| quiet cycle (re-discovery, every account probed again) | {:.1} s |",
        secs(quiet.took)
    );
    println!("| AWS calls, quiet cycle | {} |", calls(quiet));
    println!(
        "| API-server writes, quiet cycle (1 is the benchmark's own spec patch) | {} |",
        writes(quiet)
    );
    println!(
        "| operator peak RSS | {:.1} MiB |",
        row.rss as f64 / (1024.0 * 1024.0)
    );
    println!(
        "| AWS floor: orgconnect's calls from a plain loop, same concurrency | {:.1} s |",
        secs(row.aws_floor)
    );
    println!(
        "| API floor: one MemberAccount and one status per account, 16 at once | {:.1} s |",
        secs(row.api_floor)
    );
    println!(
        "| orgconnect vs the floor (the larger of the two) | {:.2}× |",
        secs(first.took) / secs(row.floor()).max(0.001)
    );
    println!(
        "| both floors at once, sharing the machine as orgconnect's cycle does | {:.1} s (orgconnect {:.2}× of it) |",
        secs(row.both_floors),
        secs(first.took) / secs(row.both_floors).max(0.001)
    );
    println!(
        "| boto3 script (peer.py, {} at once): listing {} accounts, probing them | {:.1} s + {:.1} s = {:.1} s ({} AWS calls) |",
        args.concurrency,
        row.boto3.accounts,
        secs(row.boto3.listing),
        secs(row.boto3.probing),
        secs(row.boto3.extrapolated()),
        row.boto3.calls
    );
    println!(
        "| orgconnect vs the boto3 script | {:.2}× its time |",
        secs(first.took) / secs(row.boto3.extrapolated()).max(0.001)
    );
    println!(
        "| aws-cli script (baseline.sh, serial): listing, then {} accounts probed | {:.1} s + {:.1} s ({} AWS calls) |",
        row.cli.sampled,
        secs(row.cli.listing),
        secs(row.cli.probing),
        row.cli.calls
    );
    println!(
        "| aws-cli script, extrapolated to {} accounts | {:.0} s ({:.0}× orgconnect's time) |",
        row.cli.accounts,
        secs(row.cli.extrapolated()),
        secs(row.cli.extrapolated()) / secs(first.took).max(0.001)
    );
}

/// One row per size, so the cost curve is visible.
fn print_summary(args: &Args, rows: &[Row]) {
    println!();
    println!(
        "{} ms per AWS call, {:.0}% throttled, concurrency {}:",
        args.latency_ms,
        args.throttle * 100.0,
        args.concurrency
    );
    println!(
        "| accounts | orgconnect | ms per account | AWS floor | API floor | vs floor | both floors at once | vs both | boto3 script | vs boto3 | aws-cli script (extrapolated) | quiet cycle | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let secs = |d: Duration| d.as_secs_f64();
        let took = secs(row.first.took);
        println!(
            "| {} | {took:.1} s | {:.1} | {:.1} s | {:.1} s | {:.2}× | {:.1} s | {:.2}× | {:.1} s | {:.2}× | {:.0} s | {:.1} s | {:.1} MiB |",
            row.accounts,
            took * 1000.0 / row.accounts.max(1) as f64,
            secs(row.aws_floor),
            secs(row.api_floor),
            took / secs(row.floor()).max(0.001),
            secs(row.both_floors),
            took / secs(row.both_floors).max(0.001),
            secs(row.boto3.extrapolated()),
            took / secs(row.boto3.extrapolated()).max(0.001),
            secs(row.cli.extrapolated()),
            secs(row.quiet.took),
            row.rss as f64 / (1024.0 * 1024.0)
        );
    }
}
