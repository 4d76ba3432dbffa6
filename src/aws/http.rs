//! The HTTP client every AWS SDK client of the operator uses: hyper with rustls on the
//! `ring` provider (the TLS stack the Kubernetes client uses too, so the binary carries
//! one), TCP_NODELAY, and the standard `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`
//! environment honoured, as corporate networks need.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::Connector;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// Connect and read timeouts: what distinguishes one connector from another.
type TimeoutKey = (Option<Duration>, Option<Duration>);

/// Builds one connector per distinct timeout setting and reuses it, as the SDK expects
/// of an `HttpClient`.
#[derive(Debug, Default)]
struct ProxyAwareClient {
    connectors: Mutex<HashMap<TimeoutKey, SharedHttpConnector>>,
}

impl HttpClient for ProxyAwareClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self
            .connectors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        connectors
            .entry(key)
            .or_insert_with(|| {
                let mut builder = Connector::builder()
                    .connector_settings(settings.clone())
                    .enable_tcp_nodelay(true)
                    .proxy_config(ProxyConfig::from_env());
                builder.set_sleep_impl(components.sleep_impl());
                SharedHttpConnector::new(
                    builder
                        .tls_provider(Provider::Rustls(CryptoMode::Ring))
                        .build(),
                )
            })
            .clone()
    }
}

/// An HTTPS-capable client for the AWS SDK that honours the proxy environment (plain HTTP
/// endpoints work too, which is what `AWS_ENDPOINT_URL` emulators use).
pub fn https_client() -> SharedHttpClient {
    SharedHttpClient::new(ProxyAwareClient::default())
}

/// How the operator retries AWS calls: throttling and 5xx are retried with exponential
/// backoff and jitter, several times, before a call counts as failed.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(8)
        .with_max_backoff(Duration::from_secs(20))
}

/// The operator's base AWS configuration from its environment: the default credential
/// chain (IRSA web identity, EKS Pod Identity, environment variables, profiles),
/// `AWS_REGION`, `AWS_ENDPOINT_URL`, and the client and retries above.
pub async fn sdk_config_from_env() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(retry_config())
        .load()
        .await
}
