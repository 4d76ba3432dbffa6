//! The AWS side of the test bed: moto behind a per-test fault proxy, with a managing
//! account of the test's own so tests in parallel never share an organization.

use std::hash::{Hash, Hasher};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::config::Credentials;

use super::fault_proxy::FaultProxy;

/// The environment variable `scripts/testbed env` sets to moto's URL.
pub const MOTO_URL_ENV: &str = "ORGCONNECT_TESTBED_MOTO_URL";

fn new_principal(proxy: &FaultProxy) -> (String, Credentials) {
    let suffix = super::unique_suffix();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    suffix.hash(&mut hasher);
    let account_id = format!(
        "{:012}",
        100_000_000_000 + hasher.finish() % 800_000_000_000
    );
    let access_key_id = format!("AKIATEST{}", suffix.to_uppercase());
    let secret = format!("test-secret-{suffix}");
    proxy.map_principal(&access_key_id, &secret, &account_id);
    let credentials = Credentials::new(access_key_id, secret, None, None, "orgconnect-tests");
    (account_id, credentials)
}

/// One test's view of AWS.
pub struct AwsBed {
    /// The proxy every call of the test goes through.
    pub proxy: FaultProxy,
    /// The account the test's base credentials act in: the organization's managing account.
    pub managing_account_id: String,
    /// The base credentials (an IAM user's keys, in the Secret route).
    pub credentials: Credentials,
}

impl AwsBed {
    /// Points `command` at the bed as a process of the operator's would be: the proxy as
    /// every service's endpoint, the base principal's keys, and no file or instance
    /// metadata of this machine's.
    pub fn aws_env<'c>(
        &self,
        command: &'c mut std::process::Command,
    ) -> &'c mut std::process::Command {
        command
            .env("AWS_ENDPOINT_URL", self.proxy.url())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", self.credentials.access_key_id())
            .env(
                "AWS_SECRET_ACCESS_KEY",
                self.credentials.secret_access_key(),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    }

    pub async fn new() -> Self {
        let moto = std::env::var(MOTO_URL_ENV).unwrap_or_else(|_| {
            panic!(
                "{MOTO_URL_ENV} is not set: run the tests with `scripts/testbed run -- cargo test`"
            )
        });
        let proxy = FaultProxy::start(&moto).await;
        let (managing_account_id, credentials) = new_principal(&proxy);
        Self {
            proxy,
            managing_account_id,
            credentials,
        }
    }

    /// Another principal in an account of its own (for a second organization), mapped
    /// at the proxy: its account id and access keys.
    pub fn add_principal(&self) -> (String, Credentials) {
        new_principal(&self.proxy)
    }

    /// Access keys the proxy maps to no account: moto's default account, where no
    /// organization exists.
    pub fn unmapped_credentials(&self) -> Credentials {
        let suffix = super::unique_suffix();
        let (key, secret) = (
            format!("AKIAOTHER{}", suffix.to_uppercase()),
            format!("other-secret-{suffix}"),
        );
        self.proxy.hold_key(&key, &secret);
        Credentials::new(key, secret, None, None, "orgconnect-tests")
    }

    /// The operator's base AWS configuration for a test: `credentials` as its default
    /// chain, and the operator's own retry policy with a short first backoff so tests of
    /// retried failures stay fast.
    pub fn operator_config(&self, credentials: Credentials) -> SdkConfig {
        self.sdk_config_with(credentials)
            .into_builder()
            .retry_config(
                orgconnect::aws::retry_config()
                    .with_initial_backoff(std::time::Duration::from_millis(10)),
            )
            .build()
    }

    /// SDK configuration with the test's base credentials, pointed at the proxy.
    pub fn sdk_config(&self) -> SdkConfig {
        self.sdk_config_with(self.credentials.clone())
    }

    /// SDK configuration with other credentials (for example assumed-role ones).
    pub fn sdk_config_with(&self, credentials: Credentials) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.proxy.url())
            .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(
                credentials,
            ))
            .http_client(orgconnect::aws::https_client())
            .sleep_impl(aws_smithy_async::rt::sleep::default_async_sleep().expect("tokio sleep"))
            .build()
    }
}
