//! The managing-role session of each connection: base credentials, then AssumeRole with
//! the ExternalId, cached until shortly before the credentials expire so reconciles do not
//! call STS each time.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::{Region, SdkConfig};
use aws_sdk_sts::config::{Credentials, SharedCredentialsProvider};

use super::arn::RoleArn;
use super::error::{AwsFailure, classify};

/// Credentials are renewed this long before they expire.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// How long the managing-role session lasts (AWS's default and the role-chaining limit).
const SESSION_DURATION_SECONDS: i32 = 3600;

/// Where the operator's own identity comes from before it assumes the managing role.
#[derive(Clone, Debug)]
pub enum BaseCredentials {
    /// The operator's default AWS chain (IRSA, EKS Pod Identity, environment).
    DefaultChain,
    /// An IAM user's access keys from a Secret. `version` identifies the Secret's content
    /// (uid and resourceVersion), so a changed Secret starts a new session.
    Keys {
        credentials: Credentials,
        version: String,
    },
}

impl BaseCredentials {
    fn version(&self) -> &str {
        match self {
            Self::DefaultChain => "default-chain",
            Self::Keys { version, .. } => version,
        }
    }
}

/// What to assume.
#[derive(Clone, Debug)]
pub struct AssumeRequest {
    pub role_arn: RoleArn,
    pub external_id: String,
    pub session_name: String,
    pub region: String,
    pub base: BaseCredentials,
}

impl AssumeRequest {
    /// Identifies everything that, when changed, needs a new session. Holds no secret.
    fn fingerprint(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        (
            self.role_arn.to_string(),
            &self.external_id,
            &self.session_name,
            &self.region,
            self.base.version(),
        )
            .hash(&mut hasher);
        hasher.finish()
    }
}

/// AssumeRole of the managing role failed.
#[derive(Clone, Debug)]
pub struct AssumeFailure {
    pub failure: AwsFailure,
    /// The principal the operator runs as (GetCallerIdentity), when it could be asked.
    pub principal: Option<String>,
}

/// A live session in the managing account.
#[derive(Clone, Debug)]
pub struct ManagingSession {
    /// SDK configuration acting as the managing role.
    pub config: SdkConfig,
    pub expires: SystemTime,
    /// Identifies what the session was made from (role, ExternalId, base credentials).
    pub fingerprint: u64,
    /// Whether this call assumed the role (false: served from the cache).
    pub fresh: bool,
    /// Whether the session differs in what it was made from from the one before it (or
    /// there was none): members should be probed again.
    pub changed: bool,
    /// The principal the base credentials belong to (GetCallerIdentity), when known.
    pub principal: Option<String>,
}

#[derive(Clone)]
struct Cached {
    principal: Option<String>,
    fingerprint: u64,
    config: SdkConfig,
    expires: SystemTime,
}

/// Managing-role sessions by connection.
pub struct SessionCache {
    base: SdkConfig,
    sessions: Mutex<HashMap<String, Cached>>,
}

impl SessionCache {
    /// `base` is the operator's own SDK configuration (default chain, endpoint, retries).
    pub fn new(base: SdkConfig) -> Self {
        Self {
            base,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        crate::lock(&self.sessions)
    }

    /// SDK configuration with the base credentials of `request`, in its region.
    pub fn base_config(&self, request: &AssumeRequest) -> SdkConfig {
        let mut builder = self
            .base
            .to_builder()
            .region(Region::new(request.region.clone()));
        if let BaseCredentials::Keys { credentials, .. } = &request.base {
            builder =
                builder.credentials_provider(SharedCredentialsProvider::new(credentials.clone()));
        }
        builder.build()
    }

    /// The managing-role session for connection `key`, from the cache while it is valid
    /// for `request`, else by AssumeRole.
    pub async fn session(
        &self,
        key: &str,
        request: &AssumeRequest,
    ) -> Result<ManagingSession, AssumeFailure> {
        let fingerprint = request.fingerprint();
        let now = SystemTime::now();
        let previous = self.lock().get(key).cloned();
        if let Some(cached) = &previous
            && cached.fingerprint == fingerprint
            && cached.expires > now + RENEW_BEFORE_EXPIRY
        {
            return Ok(ManagingSession {
                config: cached.config.clone(),
                expires: cached.expires,
                fingerprint,
                fresh: false,
                changed: false,
                principal: cached.principal.clone(),
            });
        }
        let changed = previous
            .as_ref()
            .is_none_or(|p| p.fingerprint != fingerprint);

        let base = self.base_config(request);
        let sts = super::clients::sts(&base);
        let assumed = sts
            .assume_role()
            .role_arn(request.role_arn.to_string())
            .external_id(&request.external_id)
            .role_session_name(&request.session_name)
            .duration_seconds(SESSION_DURATION_SECONDS)
            .send()
            .await;
        let credentials = match assumed {
            Ok(output) => output.credentials,
            Err(err) => {
                self.forget(key);
                let failure = classify("AssumeRole", &err);
                let principal = if failure.kind.is_transient() {
                    None
                } else {
                    caller_identity(&sts).await
                };
                return Err(AssumeFailure { failure, principal });
            }
        };
        let Some(credentials) = credentials else {
            return Err(AssumeFailure {
                failure: AwsFailure {
                    operation: "AssumeRole",
                    kind: super::error::FailureKind::Other,
                    code: None,
                    message: "the response carried no credentials".into(),
                },
                principal: None,
            });
        };
        let (config, expires) = session_config(&base, &credentials, now);
        // Who the operator is, for the trust policy the templates print (one call a session).
        let principal = if changed {
            caller_identity(&sts).await
        } else {
            previous.and_then(|p| p.principal)
        };
        self.lock().insert(
            key.to_owned(),
            Cached {
                principal: principal.clone(),
                fingerprint,
                config: config.clone(),
                expires,
            },
        );
        Ok(ManagingSession {
            config,
            expires,
            fingerprint,
            fresh: true,
            changed,
            principal,
        })
    }

    /// The cached session of connection `key` while it has time left; member probes use
    /// it and never assume the managing role themselves.
    pub fn current(&self, key: &str) -> Option<ManagingSession> {
        let cached = self.lock().get(key).cloned()?;
        (cached.expires > SystemTime::now() + RENEW_BEFORE_EXPIRY / 2).then(|| ManagingSession {
            config: cached.config,
            expires: cached.expires,
            fingerprint: cached.fingerprint,
            fresh: false,
            changed: false,
            principal: cached.principal,
        })
    }

    /// Drops the session of connection `key` (deleted, or its credentials changed).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

async fn caller_identity(sts: &aws_sdk_sts::Client) -> Option<String> {
    let identity = sts.get_caller_identity().send().await.ok()?;
    identity.arn().map(str::to_owned)
}

/// The SDK configuration that signs with the assumed role's `credentials`, and when they
/// expire.
fn session_config(
    base: &SdkConfig,
    credentials: &aws_sdk_sts::types::Credentials,
    now: SystemTime,
) -> (SdkConfig, SystemTime) {
    let expires = SystemTime::try_from(*credentials.expiration())
        .unwrap_or_else(|_| now + Duration::from_secs(SESSION_DURATION_SECONDS as u64));
    let session_credentials = Credentials::new(
        credentials.access_key_id(),
        credentials.secret_access_key(),
        Some(credentials.session_token().to_owned()),
        Some(expires),
        "orgconnect-managing-role",
    );
    let config = base
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(session_credentials))
        .build();
    (config, expires)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_changes_with_what_needs_a_new_session() {
        let request = AssumeRequest {
            role_arn: "arn:aws:iam::111122223333:role/orgconnect"
                .parse()
                .expect("valid"),
            external_id: "id-1".into(),
            session_name: "s".into(),
            region: "us-east-1".into(),
            base: BaseCredentials::DefaultChain,
        };
        let mut other = request.clone();
        other.external_id = "id-2".into();
        assert_ne!(request.fingerprint(), other.fingerprint());
        let mut keys = request.clone();
        keys.base = BaseCredentials::Keys {
            credentials: Credentials::new("AKIA", "secret", None, None, "test"),
            version: "uid:1".into(),
        };
        assert_ne!(request.fingerprint(), keys.fingerprint());
        assert_eq!(request.fingerprint(), request.clone().fingerprint());
    }
}
