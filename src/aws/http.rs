//! The HTTP client the AWS SDK clients share: hyper with rustls on the `ring` provider,
//! the same TLS stack the Kubernetes client uses, so the binary carries one.

use aws_smithy_http_client::{
    Builder,
    tls::{Provider, rustls_provider::CryptoMode},
};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// An HTTPS-capable client for the AWS SDK (plain HTTP endpoints work too, which is what
/// `AWS_ENDPOINT_URL` emulators use).
pub fn https_client() -> SharedHttpClient {
    Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}
