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
            instance: std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| "orgconnect".to_owned()),
        };
        Operator::new(client, aws, settings)
            .run(shutdown_signal())
            .await;
        Ok(())
    })
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
