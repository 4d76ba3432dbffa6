//! The tools a sync Job runs, run for real on a run's generated AWS config: the bed's
//! aws-cli (v1, botocore), boto3 (a small script) and a Go program on aws-sdk-go-v2
//! (`tests/clients/go-sts`). Each selects an account's profile, by `AWS_PROFILE` and (the
//! CLI) by `--profile`, calls GetCallerIdentity and, in member accounts, lists the
//! account's IAM roles, and the account id of both answers is checked.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::aws::AwsBed;

/// How a run's Job is set up: its config file and the environment its pod would have.
pub struct JobEnvironment {
    pub config: PathBuf,
    /// The run's credentials file (Secret identity only).
    pub credentials: Option<PathBuf>,
    /// What EKS puts in the pod for the identity (Pod Identity's agent URI and token file).
    pub env: Vec<(String, String)>,
}

impl JobEnvironment {
    fn command(&self, bed: &AwsBed, program: &str) -> Command {
        let mut command = Command::new(program);
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            "HTTP_PROXY",
            "HTTPS_PROXY",
        ] {
            command.env_remove(var);
        }
        // No credentials file unless the run has one: nothing of this machine's.
        let credentials = self
            .credentials
            .clone()
            .unwrap_or_else(|| self.config.with_extension("no-credentials"));
        // A home of the run's own, as a pod has: aws-cli caches role sessions under it.
        let home = self.config.with_extension("home");
        command
            .env("HOME", home)
            .env("AWS_CONFIG_FILE", &self.config)
            .env("AWS_SHARED_CREDENTIALS_FILE", credentials)
            .env("AWS_ENDPOINT_URL", bed.proxy.url())
            // aws-sdk-go-v2 makes the AssumeRole hops with an STS client of their own,
            // which the service's own variable reaches.
            .env("AWS_ENDPOINT_URL_STS", bed.proxy.url())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }
}

/// Runs every client with every profile of `accounts`; panics naming the client and the
/// account when one fails or reaches another account. `managing_account` is reached only
/// with GetCallerIdentity (the managing role may read the organization, not list roles).
pub fn run_clients(
    bed: &AwsBed,
    job: &JobEnvironment,
    accounts: &[String],
    managing_account: &str,
) {
    let aws = std::env::var("ORGCONNECT_TESTBED_AWS_CLI").expect("the test bed's aws CLI");
    let cache = std::env::var("ORGCONNECT_TESTBED_CACHE").expect("the test bed's cache");
    let moto = std::env::var("ORGCONNECT_MOTO_VERSION").expect("the moto version");
    let python = format!("{cache}/moto-{moto}/bin/python");
    let go = std::env::var("ORGCONNECT_TESTBED_GO_STS").expect("the test bed's Go client");
    let boto3 = "import boto3, json, sys\n\
        session = boto3.Session()\n\
        out = session.client('sts').get_caller_identity()\n\
        if sys.argv[1:] == ['--list-roles']:\n    \
            out['Roles'] = [r['Arn'] for r in session.client('iam').list_roles()['Roles']]\n\
        print(json.dumps({k: out[k] for k in ('Account', 'Arn', 'Roles') if k in out}))";
    for account in accounts {
        let member = account != managing_account;
        let mut runs: Vec<(&str, Command)> = Vec::new();
        let mut by_env = job.command(bed, &aws);
        by_env.args(["sts", "get-caller-identity", "--output", "json"]);
        by_env.env("AWS_PROFILE", account);
        runs.push(("aws-cli, AWS_PROFILE", by_env));
        let mut by_flag = job.command(bed, &aws);
        by_flag.args([
            "sts",
            "get-caller-identity",
            "--output",
            "json",
            "--profile",
        ]);
        by_flag.arg(account);
        runs.push(("aws-cli, --profile", by_flag));
        if member {
            let mut list = job.command(bed, &aws);
            list.args([
                "iam",
                "list-roles",
                "--output",
                "json",
                "--query",
                "{Roles: Roles[].Arn}",
            ]);
            list.env("AWS_PROFILE", account);
            runs.push(("aws-cli iam list-roles, AWS_PROFILE", list));
        }
        let mut by_boto3 = job.command(bed, &python);
        by_boto3.args(["-c", boto3]);
        if member {
            by_boto3.arg("--list-roles");
        }
        by_boto3.env("AWS_PROFILE", account);
        runs.push(("boto3, AWS_PROFILE", by_boto3));
        let mut by_go = job.command(bed, &go);
        if member {
            by_go.arg("-list-roles");
        }
        by_go.env("AWS_PROFILE", account);
        runs.push(("aws-sdk-go-v2, AWS_PROFILE", by_go));
        for (client, mut command) in runs {
            let answer = run(client, account, &mut command);
            if let Some(reached) = answer.get("Account") {
                assert_eq!(
                    reached,
                    account.as_str(),
                    "{client}: profile {account} reaches its account"
                );
            }
            if let Some(roles) = answer.get("Roles") {
                let roles: Vec<&str> = roles
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.as_str())
                    .collect();
                assert!(
                    !roles.is_empty(),
                    "{client}: account {account} lists its roles"
                );
                assert!(
                    roles
                        .iter()
                        .all(|r| r.starts_with(&format!("arn:aws:iam::{account}:role/"))),
                    "{client}: profile {account} lists the roles of its own account: {roles:?}"
                );
            }
        }
    }
}

/// Runs `command`; its JSON answer, or a panic with what it printed.
fn run(client: &str, account: &str, command: &mut Command) -> serde_json::Value {
    let output = command.output().expect("the client runs");
    assert!(
        output.status.success(),
        "{client} {account}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{client} {account} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Runs the aws-cli once with `account`'s profile and returns what it printed on stderr
/// when it failed (`None` when it succeeded).
pub fn refused_with(bed: &AwsBed, job: &JobEnvironment, account: &str) -> Option<String> {
    let aws = std::env::var("ORGCONNECT_TESTBED_AWS_CLI").expect("the test bed's aws CLI");
    let mut command = job.command(bed, &aws);
    command
        .args(["sts", "get-caller-identity", "--output", "json"])
        .env("AWS_PROFILE", account);
    let output = command.output().expect("the client runs");
    (!output.status.success()).then(|| String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Writes `content` to `dir/name`; its path.
pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("the run's directory");
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write a run file");
    path
}
