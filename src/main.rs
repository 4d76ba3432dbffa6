use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use orgconnect::controller::{Operator, Settings};
use tracing_subscriber::EnvFilter;

/// orgconnect connects a Kubernetes cluster to AWS Organizations.
#[derive(Parser)]
#[command(name = "orgconnect", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator's controllers against the cluster of the current kubeconfig or
    /// service account.
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML (apply with `kubectl apply -f -`).
    Crds,
    /// Print a CloudFormation template: the managing-account role, or the member role to
    /// deploy with a service-managed StackSet.
    Template(TemplateArgs),
    /// Draw a connection's organization: Root, OUs and accounts with phase and reason.
    Tree(TreeArgs),
    /// Test a connection from a terminal, without a cluster: assume the role, describe
    /// and list the organization, probe member accounts. Exits 0 only if all pass.
    Check(CheckArgs),
    /// Assemble a large sync run's files from its parts (the first init container of its
    /// Job runs this).
    RenderRun(RenderRunArgs),
}

#[derive(clap::Args)]
struct RenderRunArgs {
    /// The folder holding the run's parts (and its credentials file, if any).
    #[arg(long)]
    from: std::path::PathBuf,
    /// The folder to write `aws-config`, `accounts.json` (and `credentials`) into.
    #[arg(long)]
    to: std::path::PathBuf,
}

#[derive(clap::Args)]
struct TemplateArgs {
    #[arg(value_enum)]
    kind: TemplateKind,
    /// Permission level: read data only, or also start and stop tagged instances.
    #[arg(long, value_enum)]
    policy: Option<PolicyLevel>,
    #[arg(long, value_enum, default_value_t = TemplateFormat::Yaml)]
    format: TemplateFormat,
    /// The principal the operator runs as (managing-role template).
    #[arg(long)]
    principal: Option<String>,
    /// The ExternalId (managing-role template).
    #[arg(long)]
    external_id: Option<String>,
    /// The member role's name.
    #[arg(long)]
    member_role: Option<String>,
    /// The managing account (member-role template).
    #[arg(long)]
    managing_account: Option<String>,
    /// The managing role's name (member-role template).
    #[arg(long)]
    managing_role: Option<String>,
    /// Also grant the managing role what an operator-managed StackSet needs
    /// (managing-role template; implied by a connection with spec.stackSet.enabled).
    #[arg(long)]
    stack_set: bool,
    /// Also trust this principal (the role sync Jobs run as), with the same ExternalId;
    /// repeatable (managing-role template).
    #[arg(long = "trust", value_name = "ARN")]
    trust: Vec<String>,
    /// Fill the template from this AwsOrgConnection in the cluster; the managing role
    /// then also trusts the IRSA roles its SyncSchedules' Jobs run as.
    #[arg(long)]
    connection: Option<String>,
    #[arg(short, long)]
    namespace: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum TemplateKind {
    ManagingRole,
    MemberStackset,
}

#[derive(Clone, Copy, ValueEnum)]
enum PolicyLevel {
    DataOnly,
    DataAndScheduling,
}

#[derive(Clone, Copy, ValueEnum)]
enum TemplateFormat {
    Yaml,
    Json,
}

#[derive(clap::Args)]
struct TreeArgs {
    /// The AwsOrgConnection.
    connection: String,
    /// Its namespace (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
    #[arg(short, long, value_enum, default_value_t = TreeFormat::Text)]
    output: TreeFormat,
    /// Show each account's value of this AWS tag (repeatable), from `status.tags`.
    #[arg(long = "tag", value_name = "KEY")]
    tags: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum TreeFormat {
    Text,
    Mermaid,
    Dot,
    Json,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// The managing-account role to assume.
    #[arg(long)]
    role_arn: String,
    /// The ExternalId to present.
    #[arg(long)]
    external_id: Option<String>,
    /// The role assumed in member accounts.
    #[arg(long, default_value = "OrganizationAccountAccessRole")]
    member_role: String,
    /// The ExternalId presented to member roles, if they require one.
    #[arg(long)]
    member_external_id: Option<String>,
    /// How many member accounts to probe.
    #[arg(long, default_value_t = 5, conflicts_with = "all")]
    sample: usize,
    /// Probe every member account.
    #[arg(long)]
    all: bool,
    /// Region of the STS endpoint (default: AWS_REGION, else us-east-1).
    #[arg(long)]
    region: Option<String>,
    #[arg(short, long, value_enum, default_value_t = CheckFormat::Text)]
    output: CheckFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum CheckFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (all namespaces when unset).
    #[arg(long, env = "ORGCONNECT_NAMESPACE")]
    namespace: Option<String>,
    /// Reconcile only AwsOrgConnections matching this label selector.
    #[arg(long, env = "ORGCONNECT_SELECTOR")]
    selector: Option<String>,
    /// Refuse spec.externalId: every connection uses an ExternalId the operator generated,
    /// so one tenant of a shared cluster cannot present another tenant's id.
    #[arg(long, env = "ORGCONNECT_REQUIRE_GENERATED_EXTERNAL_ID")]
    require_generated_external_id: bool,
    /// Organizations listing calls in flight per discovery.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    discovery_concurrency: u16,
    /// Member probes in flight across all connections (each connection is also bounded by
    /// its memberAccess.concurrency).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    probe_concurrency: u16,
    /// The operator's own image: a sync run whose files outgrow one ConfigMap (about 3,300
    /// accounts) gets an init container of it that assembles them. Without it such a run
    /// is refused with RunTooLarge.
    #[arg(long, env = "ORGCONNECT_RUN_IMAGE")]
    run_image: Option<String>,
    /// The most bytes of a large run's files one ConfigMap holds.
    #[arg(long, default_value_t = orgconnect::controller::RUN_PART_BYTES,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(4096..=1_000_000))]
    run_part_bytes: usize,
    /// Run several replicas with one active: elect a leader on a coordination.k8s.io Lease.
    #[arg(long, env = "ORGCONNECT_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the Lease (default: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    /// Name of the Lease.
    #[arg(long, default_value = "orgconnect")]
    leader_election_lease: String,
    /// How long a follower waits, after it last saw the Lease change, before taking it
    /// over (whole seconds).
    #[arg(long, default_value = "15s", value_parser = lease_duration)]
    leader_election_lease_duration: std::time::Duration,
    /// How long the leader keeps trying to renew the Lease before it stops leading; shorter
    /// than the lease duration (default: two thirds of it, 10s for 15s).
    #[arg(long, value_parser = positive_duration)]
    leader_election_renew_deadline: Option<std::time::Duration>,
    /// How often the leader renews and followers look (default: a seventh and a half of
    /// the lease duration, 2s for 15s).
    #[arg(long, value_parser = positive_duration)]
    leader_election_retry_period: Option<std::time::Duration>,
    /// Where /healthz, /readyz and /metrics are served.
    #[arg(long, default_value = "0.0.0.0:8080", env = "ORGCONNECT_HTTP_ADDRESS")]
    http_address: std::net::SocketAddr,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Json, env = "ORGCONNECT_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds => print_crds(),
        Command::Run(args) => run(args),
        Command::Tree(args) => tree(args),
        Command::Template(args) => template(args),
        Command::RenderRun(args) => render_run(&args),
        Command::Check(args) => match check(args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(err) => Err(err),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("orgconnect: {err}");
            ExitCode::FAILURE
        }
    }
}

fn print_crds() -> Result<(), Box<dyn std::error::Error>> {
    let yaml = orgconnect::crds::to_yaml()?;
    std::io::stdout().lock().write_all(yaml.as_bytes())?;
    Ok(())
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Joins the parts in `args.from` and writes the run's files into `args.to`.
fn render_run(args: &RenderRunArgs) -> Result<(), Box<dyn std::error::Error>> {
    use orgconnect::controller::sync_config::join;
    let mut parts: Vec<std::path::PathBuf> = std::fs::read_dir(&args.from)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("run-") && n.ends_with(".json"))
        })
        .collect();
    parts.sort();
    let texts = parts
        .iter()
        .map(std::fs::read_to_string)
        .collect::<Result<Vec<_>, _>>()?;
    let input = join(&texts)?;
    let mut files = input.files();
    let credentials = args.from.join("credentials");
    if credentials.exists() {
        files.insert(
            "credentials".to_owned(),
            std::fs::read_to_string(credentials)?,
        );
    }
    for (name, text) in &files {
        std::fs::write(args.to.join(name), text)?;
    }
    eprintln!(
        "orgconnect: rendered {} accounts from {} parts into {}",
        input.accounts.len(),
        parts.len(),
        args.to.display()
    );
    Ok(())
}

/// A connection, and the roles its sync Jobs run as.
type TemplateConnection = (Option<orgconnect::api::AwsOrgConnection>, Vec<String>);

/// The connection `--connection` names, and the roles its sync Jobs run as; nothing
/// without `--connection`.
fn template_connection(
    args: &TemplateArgs,
) -> Result<TemplateConnection, Box<dyn std::error::Error>> {
    Ok(match &args.connection {
        None => (None, Vec::new()),
        Some(name) => runtime()?
            .block_on(async {
                let client = kube::Client::try_default().await?;
                let namespace = args
                    .namespace
                    .clone()
                    .unwrap_or_else(|| client.default_namespace().to_owned());
                let api: kube::Api<orgconnect::api::AwsOrgConnection> =
                    kube::Api::namespaced(client.clone(), &namespace);
                let connection = api
                    .get_opt(name)
                    .await?
                    .ok_or_else(|| format!("AwsOrgConnection {namespace}/{name} not found"))?;
                let principals = job_principals(&client, &namespace, &connection).await?;
                Ok((Some(connection), principals))
            })
            .map_err(|e: Box<dyn std::error::Error>| e)?,
    })
}

fn template(args: TemplateArgs) -> Result<(), Box<dyn std::error::Error>> {
    use orgconnect::api::connection::AccessPolicy;
    use orgconnect::templates::{
        ManagingRoleOptions, MemberRoleOptions, managing_role, member_role, render,
    };

    let (connection, job_principals) = template_connection(&args)?;
    let mut trusted_jobs = args.trust.clone();
    for principal in job_principals {
        if !trusted_jobs.contains(&principal) {
            trusted_jobs.push(principal);
        }
    }
    let policy = match (args.policy, &connection) {
        (Some(PolicyLevel::DataOnly), _) => AccessPolicy::DataOnly,
        (Some(PolicyLevel::DataAndScheduling), _) => AccessPolicy::DataAndScheduling,
        (None, Some(c)) => c.spec.access_policy,
        (None, None) => AccessPolicy::DataOnly,
    };
    let role: Option<orgconnect::aws::arn::RoleArn> = connection
        .as_ref()
        .and_then(|c| c.spec.role_arn.parse().ok());
    let template = match args.kind {
        TemplateKind::ManagingRole => managing_role(&ManagingRoleOptions {
            policy,
            principal: args.principal.or_else(|| {
                connection
                    .as_ref()
                    .and_then(|c| c.status.as_ref())
                    .and_then(|s| s.operator_principal.clone())
            }),
            external_id: args.external_id.or_else(|| {
                let c = connection.as_ref()?;
                c.status
                    .as_ref()
                    .and_then(|s| s.external_id.clone())
                    .or_else(|| c.spec.external_id.clone())
            }),
            member_role_name: args.member_role.or_else(|| {
                connection
                    .as_ref()
                    .map(|c| c.spec.member_access.role_name.clone())
            }),
            stack_set: args.stack_set
                || connection
                    .as_ref()
                    .is_some_and(|c| c.spec.stack_set.enabled),
            role_name: role.as_ref().map(|r| r.role_name().to_owned()),
            role_path: role.as_ref().map(orgconnect::aws::arn::RoleArn::path),
            job_principals: trusted_jobs,
        }),
        TemplateKind::MemberStackset => member_role(&MemberRoleOptions {
            policy,
            managing_account_id: args
                .managing_account
                .or_else(|| role.as_ref().map(|r| r.account_id.clone())),
            managing_role_name: args
                .managing_role
                .or_else(|| role.as_ref().map(|r| r.role_name().to_owned())),
            managing_role_path: role.as_ref().map(orgconnect::aws::arn::RoleArn::path),
            member_role_name: args.member_role,
        }),
    };
    let out = render(&template, matches!(args.format, TemplateFormat::Json))?;
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

/// The roles the Jobs of `connection`'s SyncSchedules run as, which the managing role must
/// trust beside the operator: IRSA roles from their service accounts, and the Pod Identity
/// roles their specs name. Jobs with the connection's Secret present the operator's own
/// principal; a schedule whose Pod Identity role is not named is reported on stderr.
async fn job_principals(
    client: &kube::Client,
    namespace: &str,
    connection: &orgconnect::api::AwsOrgConnection,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    use kube::ResourceExt;
    use orgconnect::controller::sync::{job_identity_with, job_principal, job_service_account};
    use orgconnect::controller::sync_config::JobIdentity;

    let schedules: kube::Api<orgconnect::api::SyncSchedule> =
        kube::Api::namespaced(client.clone(), namespace);
    let mut principals = Vec::new();
    for schedule in schedules.list(&kube::api::ListParams::default()).await? {
        if schedule.spec.connection_ref.name != connection.name_any() {
            continue;
        }
        let account = job_service_account(&schedule);
        let identity = job_identity_with(client, namespace, connection, &account).await?;
        match (&identity, job_principal(&schedule, connection, &identity)) {
            (JobIdentity::SharedCredentials, _) => {}
            (_, Some(role_arn)) => {
                if !principals.contains(&role_arn) {
                    principals.push(role_arn);
                }
            }
            (_, None) => eprintln!(
                "note: SyncSchedule {} runs as service account {account} with no IRSA role; \
                 if EKS Pod Identity gives it a role, set its spec.podIdentityRoleArn or add \
                 that role with --trust",
                schedule.name_any()
            ),
        }
    }
    Ok(principals)
}

fn tree(args: TreeArgs) -> Result<(), Box<dyn std::error::Error>> {
    use kube::api::{Api, ListParams};
    use orgconnect::api::{AwsOrgConnection, MemberAccount};
    use std::io::IsTerminal;

    runtime()?.block_on(async {
        let client = kube::Client::try_default().await?;
        let namespace = args
            .namespace
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let connections: Api<AwsOrgConnection> = Api::namespaced(client.clone(), &namespace);
        let connection = connections
            .get_opt(&args.connection)
            .await?
            .ok_or_else(|| format!("AwsOrgConnection {namespace}/{} not found", args.connection))?;
        let members: Api<MemberAccount> = Api::namespaced(client, &namespace);
        let selector = orgconnect::controller::names::connection_selector(&args.connection);
        let listed: Vec<MemberAccount> = members
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .filter(|m| m.spec.connection == args.connection)
            .collect();
        let tree = orgconnect::tree::build(&connection, &listed, &args.tags);
        let out = match args.output {
            TreeFormat::Text => {
                orgconnect::tree::render_text(&tree, std::io::stdout().is_terminal())
            }
            TreeFormat::Mermaid => orgconnect::tree::render_mermaid(&tree),
            TreeFormat::Dot => orgconnect::tree::render_dot(&tree),
            TreeFormat::Json => serde_json::to_string_pretty(&tree)? + "\n",
        };
        std::io::stdout().lock().write_all(out.as_bytes())?;
        Ok(())
    })
}

/// Returns whether every step passed.
fn check(args: CheckArgs) -> Result<bool, Box<dyn std::error::Error>> {
    runtime()?.block_on(async {
        let base = orgconnect::aws::sdk_config_from_env().await;
        let region = args
            .region
            .or_else(|| base.region().map(|r| r.to_string()))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let request = orgconnect::check::CheckRequest {
            role_arn: args.role_arn,
            external_id: args.external_id,
            member_role: args.member_role,
            member_external_id: args.member_external_id,
            sample: (!args.all).then_some(args.sample),
            region,
        };
        let report = orgconnect::check::run(base, &request).await;
        let out = match args.output {
            CheckFormat::Text => report.to_text(),
            CheckFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        };
        std::io::stdout().lock().write_all(out.as_bytes())?;
        Ok(report.ok)
    })
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,kube=warn,aws_config=warn,aws_smithy_runtime=warn")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = kube::Client::try_default().await?;
        let aws = orgconnect::aws::sdk_config_from_env().await;
        let settings = Settings {
            namespace: args.namespace,
            label_selector: args.selector,
            require_generated_external_id: args.require_generated_external_id,
            discovery_concurrency: usize::from(args.discovery_concurrency),
            probe_concurrency: usize::from(args.probe_concurrency),
            run_image: args.run_image,
            run_part_bytes: args.run_part_bytes,
            instance: std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| "orgconnect".to_owned()),
        };
        // Unique per process, so two replicas with one host name never share the Lease.
        let identity = format!("{}_{:08x}", settings.instance, rand::random::<u32>());
        let operator = Operator::new(client.clone(), aws, settings);
        let listener = tokio::net::TcpListener::bind(args.http_address).await?;
        tracing::info!(address = %args.http_address, "serving /healthz, /readyz and /metrics");
        let server = tokio::spawn(orgconnect::server::serve(listener, operator.health()));
        if !args.leader_election {
            operator.run(shutdown_signal()).await;
            server.abort();
            return Ok(());
        }
        let derived = orgconnect::leader::Timings::from_lease(args.leader_election_lease_duration);
        let timings = orgconnect::leader::Timings::new(
            args.leader_election_lease_duration,
            args.leader_election_renew_deadline
                .unwrap_or(derived.renew_deadline),
            args.leader_election_retry_period
                .unwrap_or(derived.retry_period),
        )?;
        let elector = std::sync::Arc::new(orgconnect::leader::Elector::new(
            client,
            &args.leader_election_namespace,
            &args.leader_election_lease,
            &identity,
            timings,
        ));
        tokio::select! {
            () = elector.acquire() => {},
            () = shutdown_signal() => return Ok(()),
        }
        lead(operator, &elector, timings).await?;
        server.abort();
        Ok(())
    })
}

/// Runs the controllers while this replica holds the Lease. Losing it stops them (or,
/// should they not stop in time, leaves them) and is an error, so the process exits; a
/// SIGTERM stops them and hands the Lease over.
async fn lead(
    operator: Operator,
    elector: &std::sync::Arc<orgconnect::leader::Elector>,
    timings: orgconnect::leader::Timings,
) -> Result<(), Box<dyn std::error::Error>> {
    let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(false);
    let holder = elector.clone();
    let hold = tokio::spawn(async move {
        holder.hold().await;
        let _ = lost_tx.send(true);
    });
    let mut stopping = lost_rx.clone();
    let stop = async move {
        tokio::select! {
            () = shutdown_signal() => {},
            _ = stopping.wait_for(|lost| *lost) => {},
        }
    };
    let run = operator.run(stop);
    tokio::pin!(run);
    // A replica that lost the Lease must stop reconciling before a follower can start:
    // its controllers get half the margin between the renew deadline and the lease
    // duration to stop, then the process leaves them.
    let grace = timings
        .lease_duration
        .saturating_sub(timings.renew_deadline)
        / 2;
    let abandon = async {
        let _ = lost_rx.wait_for(|lost| *lost).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = &mut run => {},
        () = abandon => tracing::warn!(?grace, "the controllers did not stop in time; leaving them"),
    }
    hold.abort();
    if *lost_rx.borrow() {
        return Err("lost the leader Lease; exiting so a new leader takes over".into());
    }
    // Stopped (SIGTERM): hand the Lease over now rather than after a lease duration.
    if let Err(err) = elector.release().await {
        tracing::warn!(error = %err, "could not release the Lease; a follower takes it once it expires");
    }
    Ok(())
}

/// A duration above zero, such as `10s` or `500ms`.
fn positive_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be above zero".to_owned());
    }
    Ok(duration)
}

/// A Lease duration, as [`orgconnect::leader::check_lease_duration`] accepts it.
fn lease_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    orgconnect::leader::check_lease_duration(duration)?;
    Ok(duration)
}

/// Resolves on SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
