//! The operator as a separate process: the real `orgconnect run` binary against the test
//! bed, its AWS calls through the test's fault proxy.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::aws::AwsBed;
use super::kube::KUBECONFIG_ENV;

/// A running `orgconnect run`; killed (SIGKILL) when dropped.
pub struct OperatorProcess {
    pub child: Child,
    /// Where its /healthz, /readyz and /metrics answer.
    pub http: SocketAddr,
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address no one listens on now.
fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
}

/// The program `name` built beside the running one (`target/<profile>/examples/x` finds
/// `target/<profile>/name`), for the demo and the benchmark.
pub fn beside_current_exe(name: &str) -> Result<std::path::PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .ok_or("cannot locate the build directory")?;
    if !binary.exists() {
        return Err(format!(
            "{} is missing: build it first (`cargo build --bin {name}`)",
            binary.display()
        ));
    }
    Ok(binary)
}

/// The peak resident set size of process `pid` (VmHWM), in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

impl OperatorProcess {
    /// Starts `binary run ARGS` as replica `name`, with the bed's base credentials as its
    /// default AWS chain and the bed's kubeconfig. Its logs go to `log` (or are dropped).
    pub fn spawn(
        binary: &Path,
        bed: &AwsBed,
        name: &str,
        args: &[&str],
        log: Option<&Path>,
    ) -> Self {
        let kubeconfig = std::env::var(KUBECONFIG_ENV)
            .unwrap_or_else(|_| panic!("{KUBECONFIG_ENV} is not set: run under scripts/testbed"));
        Self::spawn_with_kubeconfig(binary, bed, name, args, log, Path::new(&kubeconfig))
    }

    /// Like [`OperatorProcess::spawn`], reaching the API server through `kubeconfig`
    /// (for example an [`super::apiserver_proxy::ApiServerProxy`]'s).
    pub fn spawn_with_kubeconfig(
        binary: &Path,
        bed: &AwsBed,
        name: &str,
        args: &[&str],
        log: Option<&Path>,
        kubeconfig: &Path,
    ) -> Self {
        let http = free_address();
        let output = || match log {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Stdio::from)
                .unwrap_or_else(|e| panic!("opening {}: {e}", path.display())),
            None => Stdio::null(),
        };
        let mut command = Command::new(binary);
        command
            .arg("run")
            .args(["--http-address", &http.to_string()])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", name);
        let child = bed
            .aws_env(&mut command)
            .env("RUST_LOG", "info")
            .stdout(output())
            .stderr(output())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        Self { child, http }
    }

    /// GETs `path` from its HTTP endpoints: the status code and body, or `None` while it
    /// does not answer.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        super::http_get(self.http, path).await
    }
}
