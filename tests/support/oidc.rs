//! Web identity tokens as AWS checks them: a Kubernetes service account token, issued by
//! the bed's kube-apiserver through the TokenRequest API (as the kubelet does for a pod's
//! projected token), verified against the keys its issuer publishes at `/openid/v1/jwks`.
//! STS does this for IRSA (AssumeRoleWithWebIdentity), the EKS Pod Identity agent for
//! Pod Identity.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};

/// The issuer the bed's kube-apiserver signs service account tokens as
/// (`--service-account-issuer`).
pub const ISSUER: &str = "https://kubernetes.default.svc";

/// The audience IRSA tokens carry, and the client id of the IAM OIDC provider.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// The audience EKS Pod Identity tokens carry.
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";

/// What a verified token says.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Claims {
    pub iss: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match serde::Deserialize::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// Why a token was refused, as STS names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Expired,
    Invalid(String),
}

/// The issuer a token names, read without verifying it (to find the keys that verify it).
pub fn issuer_of(token: &str) -> Option<String> {
    let mut unverified = Validation::new(Algorithm::RS256);
    unverified.insecure_disable_signature_validation();
    unverified.validate_exp = false;
    unverified.validate_aud = false;
    unverified.required_spec_claims.clear();
    let key = DecodingKey::from_secret(&[]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &unverified)
        .ok()
        .and_then(|data| data.claims["iss"].as_str().map(str::to_owned))
}

/// Verifies `token`'s signature with `keys` (its issuer's JWKS), its issuer and expiry.
pub fn verify(token: &str, issuer: &str, keys: &JwkSet) -> Result<Claims, Refusal> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| Refusal::Invalid(e.to_string()))?;
    let jwk = header
        .kid
        .as_deref()
        .and_then(|kid| keys.find(kid))
        .ok_or_else(|| Refusal::Invalid("no key of the issuer signed this token".to_owned()))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| Refusal::Invalid(e.to_string()))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    // The audience is checked by the caller, against what it accepts.
    validation.validate_aud = false;
    jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => Refusal::Expired,
            _ => Refusal::Invalid(e.to_string()),
        })
}

/// The keys the bed's kube-apiserver signs service account tokens with.
pub async fn issuer_keys(client: &kube::Client) -> JwkSet {
    let request = hyper::http::Request::get("/openid/v1/jwks")
        .body(Vec::new())
        .expect("a JWKS request");
    let text = client
        .request_text(request)
        .await
        .expect("the issuer's JWKS");
    serde_json::from_str(&text).expect("a JWKS")
}

/// A token for service account `name` with `audience`, as the kubelet projects it into a
/// pod.
pub async fn service_account_token(
    accounts: &Api<ServiceAccount>,
    name: &str,
    audience: &str,
) -> String {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![audience.to_owned()]),
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .and_then(|s| s.token)
        .expect("a token")
}
