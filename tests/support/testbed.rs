//! Faults of the test bed itself: restarting one of its parts with `scripts/testbed
//! restart`, and seeding moto's random generator so that a restarted moto, seeded again
//! with the same calls in the same order, holds the same organization with the same ids.

use std::path::Path;
use std::time::{Duration, Instant};

use super::aws::MOTO_URL_ENV;

/// A part of the bed `scripts/testbed restart` knows.
#[derive(Clone, Copy, Debug)]
pub enum Component {
    KubeApiserver,
    Etcd,
    Moto,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Self::KubeApiserver => "kube-apiserver",
            Self::Etcd => "etcd",
            Self::Moto => "moto",
        }
    }
}

/// Stops and starts `component` with the bed's state, ports and certificates (the
/// `ORGCONNECT_TESTBED_*` environment `scripts/testbed env` exports), returning once it
/// answers again; how long it took.
pub async fn restart(component: Component) -> Duration {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/testbed");
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&script)
            .args(["restart", component.name()])
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .expect("the restart task ran")
    .unwrap_or_else(|e| panic!("running scripts/testbed restart {}: {e}", component.name()));
    assert!(
        output.status.success(),
        "scripts/testbed restart {} failed: {}",
        component.name(),
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

/// Seeds moto's random generator (`POST /moto-api/seed`): the ids it generates next
/// (organizations, roots, OUs, accounts) follow from `value` and the calls made.
pub async fn seed_moto_random(value: u64) {
    let url = std::env::var(MOTO_URL_ENV)
        .unwrap_or_else(|_| panic!("{MOTO_URL_ENV} is not set: run under scripts/testbed"));
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("{MOTO_URL_ENV}={url} is not http://HOST:PORT: {e}"));
    let answer = super::http_post(address, &format!("/moto-api/seed?a={value}")).await;
    assert!(
        matches!(answer, Some((200, _))),
        "seeding moto's random generator: {answer:?}"
    );
}
