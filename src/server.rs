//! The operator's HTTP endpoints: `/healthz` (the process runs), `/readyz` (the caches
//! are synced) and `/metrics` (Prometheus).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::warn;

use crate::metrics::Metrics;

/// What the endpoints report.
#[derive(Default)]
pub struct Health {
    pub ready: AtomicBool,
    pub metrics: Metrics,
}

impl Health {
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert("content-type", value);
    }
    response
}

fn route(health: &Health, path: &str) -> Response<Full<Bytes>> {
    match path {
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" if health.ready.load(Ordering::Relaxed) => {
            respond(StatusCode::OK, "text/plain", "ready\n".to_owned())
        }
        "/readyz" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "caches not synced\n".to_owned(),
        ),
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            health.metrics.encode(),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    }
}

/// Serves the endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, health: Arc<Health>) {
    accept_each(
        || listener.accept(),
        |stream: tokio::net::TcpStream| {
            let _ = stream.set_nodelay(true);
            let health = health.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let response = route(&health, request.uri().path());
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        },
    )
    .await;
}

/// Hands every accepted connection to `handle`. A failed accept (out of file descriptors,
/// say) is logged and waited out, 50 ms doubling to 2 s, instead of retried at once in a
/// loop that would hold a core.
async fn accept_each<S, A, F>(mut accept: impl FnMut() -> F, mut handle: impl FnMut(S))
where
    F: std::future::Future<Output = std::io::Result<(S, A)>>,
{
    const FIRST: Duration = Duration::from_millis(50);
    const MOST: Duration = Duration::from_secs(2);
    let mut wait = FIRST;
    loop {
        match accept().await {
            Ok((stream, _)) => {
                wait = FIRST;
                handle(stream);
            }
            Err(error) => {
                warn!(%error, retry_in = ?wait, "the health and metrics endpoint could not accept a connection");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MOST);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(start_paused = true)]
    async fn failed_accepts_are_waited_out_not_retried_in_a_loop() {
        let attempts = AtomicUsize::new(0);
        let accept = || {
            let n = attempts.fetch_add(1, Ordering::Relaxed);
            async move {
                if n > 1000 {
                    // A hot loop never yields: stop it here so the test can fail.
                    std::future::pending::<()>().await;
                }
                Err::<((), ()), _>(std::io::Error::other("too many open files"))
            }
        };
        let ten_seconds =
            tokio::time::timeout(Duration::from_secs(10), accept_each(accept, |()| {}));
        assert!(ten_seconds.await.is_err(), "the loop runs until stopped");
        let attempts = attempts.load(Ordering::Relaxed);
        // 50 ms doubling to 2 s: 0.05+0.1+0.2+0.4+0.8+1.6 then 2 s each, about ten tries.
        assert!(
            (5..=12).contains(&attempts),
            "{attempts} accepts in ten seconds"
        );
    }
}
