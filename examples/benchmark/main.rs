//! The scale benchmark: a generated organization (5,000 accounts in 210 OUs by default),
//! 3% of them blocked and 20 ms added to every AWS call at the fault proxy, the real
//! `orgconnect run` (release build) against the test bed. It prints one table:
//!
//! - time from applying the connection until every MemberAccount has a phase;
//! - AWS calls by operation and API-server writes during that convergence, and the same
//!   for a second full cycle (re-discovery and a probe of every account) with nothing
//!   changed;
//! - the operator's peak RSS;
//! - the floor: the same probes made straight from a loop with the same concurrency
//!   (what the emulator behind the proxy can serve);
//! - `baseline.sh`, the aws-cli script a platform engineer would otherwise write, on the
//!   same organization and proxy (probing a sample of accounts, extrapolated), and the
//!   ratio between the two.
//!
//! ```sh
//! scripts/testbed run -- sh -c 'cargo build --release --locked --bin orgconnect --example benchmark \
//!   && cargo run --release --locked --example benchmark'
//! ```

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use orgconnect::api::member_account::MemberPhase;
use orgconnect::api::{AwsOrgConnection, MemberAccount};
use support::aws::AwsBed;
use support::kube::TestNamespace;
use support::operator::{apply_connection, managing_role};
use support::org::{OrgSpec, seed};
use support::process::{OperatorProcess, beside_current_exe, peak_rss};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Benchmark orgconnect against the test bed.
#[derive(Parser)]
struct Args {
    /// Accounts in the organization, the managing account included.
    #[arg(long, default_value_t = 5000)]
    accounts: usize,
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
    let binary = beside_current_exe("orgconnect")?;
    let bed = AwsBed::new().await;
    let spec = OrgSpec::generated(args.accounts.saturating_sub(1), 2, args.fanout, 0);
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

    let floor = floor(&bed, &org, args.concurrency).await?;
    let external_id = connections
        .get("bench")
        .await?
        .status
        .and_then(|s| s.external_id)
        .ok_or("the connection has no ExternalId")?;
    let baseline = baseline(&bed, &org, &external_id, args.baseline_sample)?;

    print_table(
        &args,
        &org,
        blocked.len(),
        blocked_seen,
        &first,
        &quiet,
        rss,
        floor,
        &baseline,
    );
    let unchanged = ns
        .api::<MemberAccount>()
        .list(&ListParams::default())
        .await?
        .items
        .len();
    if unchanged != expected || blocked_seen != blocked.len() {
        return Err(format!(
            "expected {expected} accounts with {} Blocked; saw {unchanged} with {blocked_seen} Blocked",
            blocked.len()
        )
        .into());
    }
    Ok(())
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
    let request = hyper::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
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

/// The same probes (one AssumeRole into each member role) straight from a loop at the
/// same concurrency: what the emulator behind the proxy can serve.
async fn floor(bed: &AwsBed, org: &support::org::SeededOrg, concurrency: u32) -> Result<Duration> {
    let sts = aws_sdk_sts::Client::new(&bed.sdk_config());
    let started = Instant::now();
    let probes = futures::stream::iter(org.member_accounts().map(|a| a.id.clone()))
        .map(|account| {
            let sts = sts.clone();
            async move {
                let role = format!("arn:aws:iam::{account}:role/OrganizationAccountAccessRole");
                let _ = sts
                    .assume_role()
                    .role_arn(role)
                    .role_session_name("floor")
                    .send()
                    .await;
            }
        })
        .buffer_unordered(usize::try_from(concurrency)?);
    probes.for_each(|()| async {}).await;
    Ok(started.elapsed())
}

/// What baseline.sh measured.
struct Baseline {
    accounts: usize,
    listing: Duration,
    sampled: usize,
    probing: Duration,
    calls: u64,
}

impl Baseline {
    /// Listing, plus probing every account at the sampled pace.
    fn extrapolated(&self) -> Duration {
        let per_account = self.probing.as_secs_f64() / self.sampled.max(1) as f64;
        self.listing + Duration::from_secs_f64(per_account * self.accounts as f64)
    }
}

fn baseline(
    bed: &AwsBed,
    org: &support::org::SeededOrg,
    external_id: &str,
    sample: usize,
) -> Result<Baseline> {
    let aws = std::env::var("ORGCONNECT_TESTBED_AWS_CLI")
        .map_err(|_| "ORGCONNECT_TESTBED_AWS_CLI is not set: run under scripts/testbed")?;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/benchmark/baseline.sh"
    );
    bed.proxy.reset_stats();
    let output = Command::new(script)
        .args([
            &managing_role(&org.managing_account_id),
            external_id,
            "OrganizationAccountAccessRole",
            &sample.to_string(),
        ])
        .env("AWS_CLI", aws)
        .env("AWS_ENDPOINT_URL", bed.proxy.url())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", bed.credentials.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", bed.credentials.secret_access_key())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "baseline.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let millis = |prefix: &str| -> Option<(usize, Duration)> {
        let line = stderr.lines().find(|l| l.starts_with(prefix))?;
        let mut words = line.split_whitespace();
        let count = words.nth(1)?.parse().ok()?;
        let ms = words.nth(2)?.parse().ok()?;
        Some((count, Duration::from_millis(ms)))
    };
    let (accounts, listing) = millis("listed").ok_or("baseline.sh printed no listing time")?;
    let (sampled, probing) = millis("probed").ok_or("baseline.sh printed no probing time")?;
    Ok(Baseline {
        accounts,
        listing,
        sampled,
        probing,
        calls: bed.proxy.call_counts().values().sum(),
    })
}

#[allow(clippy::too_many_arguments)]
fn print_table(
    args: &Args,
    org: &support::org::SeededOrg,
    blocked: usize,
    blocked_seen: usize,
    first: &Cycle,
    quiet: &Cycle,
    rss: u64,
    floor: Duration,
    baseline: &Baseline,
) {
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
    let script = baseline.extrapolated();
    println!();
    println!(
        "orgconnect benchmark: {} accounts in {} OUs, {blocked} blocked at the proxy, {} ms added to every AWS call, memberAccess.concurrency {}",
        org.accounts.len(),
        org.ous.len(),
        args.latency_ms,
        args.concurrency
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| apply → every MemberAccount has a phase | {:.1} s ({blocked_seen} Blocked) |",
        first.took.as_secs_f64()
    );
    println!("| AWS calls, first cycle | {} |", calls(first));
    println!("| API-server writes, first cycle | {} |", writes(first));
    println!(
        "| quiet cycle (re-discovery, every account probed again) | {:.1} s |",
        quiet.took.as_secs_f64()
    );
    println!("| AWS calls, quiet cycle | {} |", calls(quiet));
    println!(
        "| API-server writes, quiet cycle (1 is the benchmark's own spec patch) | {} |",
        writes(quiet)
    );
    println!(
        "| operator peak RSS | {:.1} MiB |",
        rss as f64 / (1024.0 * 1024.0)
    );
    println!(
        "| floor: the same probes from a plain loop, same concurrency | {:.1} s |",
        floor.as_secs_f64()
    );
    println!(
        "| aws-cli script: listing {} accounts | {:.1} s |",
        baseline.accounts,
        baseline.listing.as_secs_f64()
    );
    println!(
        "| aws-cli script: probing {} accounts (measured) | {:.1} s ({} AWS calls in all) |",
        baseline.sampled,
        baseline.probing.as_secs_f64(),
        baseline.calls
    );
    println!(
        "| aws-cli script, extrapolated to {} accounts | {:.0} s |",
        baseline.accounts,
        script.as_secs_f64()
    );
    println!(
        "| orgconnect vs the script | {:.0}× faster |",
        script.as_secs_f64() / first.took.as_secs_f64().max(0.001)
    );
}
