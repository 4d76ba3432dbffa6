//! Shared support for the integration tests, which run against the test bed
//! (`scripts/testbed`): a real kube-apiserver with etcd, and moto behind a fault proxy.
#![allow(dead_code)]

pub mod apiserver_proxy;
pub mod aws;
pub mod clients;
pub mod fault_proxy;
pub mod iam;
pub mod kube;
pub mod oidc;
pub mod operator;
pub mod org;
pub mod pod_identity;
pub mod process;
pub mod runs;
pub mod scenario;
pub mod testbed;

/// Polls `check` until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A name unique to this test run, for namespaces and AWS principals.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{:x}{:x}{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// GETs `path` over plain HTTP/1.0 from `address`: the status code and body, or `None`
/// when nothing answers there.
pub async fn http_get(address: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    http_request(address, "GET", path).await
}

/// POSTs an empty body to `path` over plain HTTP/1.0 (moto's `/moto-api/` endpoints).
pub async fn http_post(address: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    http_request(address, "POST", path).await
}

async fn http_request(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream
        .write_all(
            format!("{method} {path} HTTP/1.0\r\nHost: operator\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        )
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// The value of the sample `series` (name and labels, exactly) in a Prometheus exposition.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}
