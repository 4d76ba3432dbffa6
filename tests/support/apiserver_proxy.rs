//! A TCP proxy in front of the test bed's API server, so that one client (an operator
//! process) sees a slow control plane: every chunk the client sends waits `delay` before
//! it is passed on, so each request reaches the API server that much later, while
//! answers and watch events come back at once. TLS passes through untouched: the
//! kubeconfig it writes names the proxy at 127.0.0.1, which the serving certificate
//! covers. While the API server is away (a restart) the proxy closes its clients'
//! connections, as the API server itself would. `block` cuts the client off (a network
//! partition): nothing passes either way, and new connections wait, until `unblock`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::kube::KUBECONFIG_ENV;

/// A running proxy; stops accepting when dropped.
pub struct ApiServerProxy {
    /// A kubeconfig like the bed's, naming the proxy.
    pub kubeconfig: PathBuf,
    delay_ms: Arc<AtomicU64>,
    blocked: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Drop for ApiServerProxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

impl ApiServerProxy {
    /// Starts a proxy (no delay yet) in front of the API server of the bed's kubeconfig.
    pub async fn start() -> Self {
        let path = std::env::var(KUBECONFIG_ENV)
            .unwrap_or_else(|_| panic!("{KUBECONFIG_ENV} is not set: run under scripts/testbed"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading the bed's kubeconfig {path}: {e}"));
        let server = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("server:"))
            .map(str::trim)
            .expect("the bed's kubeconfig names a server")
            .to_owned();
        let upstream: SocketAddr = server
            .trim_start_matches("https://")
            .parse()
            .unwrap_or_else(|e| panic!("server {server} is not https://IP:PORT: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the API server proxy");
        let address = listener.local_addr().expect("proxy address");
        let kubeconfig = std::env::temp_dir().join(format!(
            "orgconnect-kubeconfig-proxy-{}",
            super::unique_suffix()
        ));
        std::fs::write(
            &kubeconfig,
            text.replace(&server, &format!("https://{address}")),
        )
        .expect("write the proxy's kubeconfig");
        let delay_ms = Arc::new(AtomicU64::new(0));
        let blocked = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            delay_ms.clone(),
            blocked.clone(),
        ));
        Self {
            kubeconfig,
            delay_ms,
            blocked,
            task,
        }
    }

    /// From now on, every chunk a client sends waits `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Cuts the client off from the API server until [`ApiServerProxy::unblock`].
    pub fn block(&self) {
        self.blocked.store(true, Ordering::Relaxed);
    }

    pub fn unblock(&self) {
        self.blocked.store(false, Ordering::Relaxed);
    }
}

/// Returns once the proxy is not blocked.
async fn open(blocked: &AtomicBool) {
    while blocked.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    blocked: Arc<AtomicBool>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(relay(client, upstream, delay_ms.clone(), blocked.clone()));
    }
}

/// Copies one connection both ways, delaying what the client sends and holding both
/// directions while blocked; when either side closes, both are closed.
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    blocked: Arc<AtomicBool>,
) {
    open(&blocked).await;
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = client_read.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            let delay = delay_ms.load(Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            open(&blocked).await;
            server_write.write_all(&buffer[..n]).await?;
        }
    };
    let answers = async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = server_read.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            open(&blocked).await;
            client_write.write_all(&buffer[..n]).await?;
        }
    };
    tokio::select! {
        _ = requests => {}
        _ = answers => {}
    }
}
