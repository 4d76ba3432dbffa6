//! The EKS Pod Identity agent, as a pod meets it: an HTTP endpoint on a loopback address
//! serving container credentials (`AWS_CONTAINER_CREDENTIALS_FULL_URI`) to a caller that
//! presents its service account token in `Authorization`
//! (`AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`). The service account's association names
//! the role; the session comes from the bed's [`SessionIssuer`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::fault_proxy::SessionIssuer;

/// A running agent; stops when dropped.
pub struct PodIdentityAgent {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for PodIdentityAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Pod Identity associations: (namespace, service account) -> role ARN.
pub type Associations = HashMap<(String, String), String>;

impl PodIdentityAgent {
    pub async fn start(issuer: SessionIssuer, associations: Associations) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind agent");
        let addr = listener.local_addr().expect("agent address");
        let state = Arc::new((issuer, associations));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(serve(&state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, task }
    }

    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI` for pods of the bed (EKS's is
    /// `http://169.254.170.23/v1/credentials`; the SDKs accept any loopback address).
    pub fn url(&self) -> String {
        format!("http://{}/v1/credentials", self.addr)
    }
}

async fn serve(
    (issuer, associations): &(SessionIssuer, Associations),
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let answer = |status: StatusCode, body: serde_json::Value| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    };
    let refuse = |status: StatusCode, message: String| {
        answer(
            status,
            serde_json::json!({ "code": "AccessDeniedException", "message": message }),
        )
    };
    let token = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim();
    let claims = match issuer.verify(token) {
        Ok(claims) => claims,
        Err(why) => return refuse(StatusCode::UNAUTHORIZED, why),
    };
    let service_account = claims
        .sub
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .map(|(ns, name)| (ns.to_owned(), name.to_owned()));
    let Some(role) = service_account.and_then(|sa| associations.get(&sa)) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("no Pod Identity association for {}", claims.sub),
        );
    };
    match issuer.pod_session(role).await {
        Ok(session) => answer(
            StatusCode::OK,
            serde_json::json!({
                "AccessKeyId": session.access_key_id,
                "SecretAccessKey": session.secret_access_key,
                "Token": session.session_token,
                "Expiration": session.expiration,
                "AccountId": role.split(':').nth(4).unwrap_or_default(),
            }),
        ),
        Err(why) => refuse(StatusCode::BAD_REQUEST, why),
    }
}
