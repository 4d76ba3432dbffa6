//! A connection's base credentials: the operator's default chain, or an IAM user's access
//! keys from a Secret in the connection's namespace. Key material never leaves this
//! module except inside `aws_sdk_sts::config::Credentials`, whose Debug output redacts it.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::api::connection::{CredentialSource, Credentials as CredentialsSpec, SecretKeysRef};
use crate::aws::session::BaseCredentials;

/// Why the base credentials cannot be used; each is a condition reason with its fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialProblem {
    /// `source: Secret` without `secretRef` (only possible on a server without CEL).
    SecretRefMissing,
    /// The reference names another namespace.
    NamespaceRefused { requested: String, own: String },
    /// The Secret does not exist (yet).
    SecretNotFound { name: String },
    /// The Secret lacks a key, or its value is empty.
    KeyMissing { secret: String, key: String },
    /// A value is not UTF-8 text.
    KeyInvalid { secret: String, key: String },
}

impl CredentialProblem {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SecretRefMissing => "SecretRefMissing",
            Self::NamespaceRefused { .. } => "SecretNamespaceRefused",
            Self::SecretNotFound { .. } => "SecretNotFound",
            Self::KeyMissing { .. } => "SecretKeyMissing",
            Self::KeyInvalid { .. } => "SecretKeyInvalid",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::SecretRefMissing => {
                "credentials.source is Secret but credentials.secretRef is not set".to_owned()
            }
            Self::NamespaceRefused { requested, own } => format!(
                "credentials.secretRef names namespace {requested:?}; only Secrets in the \
                 connection's own namespace {own:?} may be used"
            ),
            Self::SecretNotFound { name } => format!(
                "Secret {name:?} does not exist in this namespace; create it with the IAM \
                 user's access keys and the connection recovers by itself"
            ),
            Self::KeyMissing { secret, key } => format!(
                "Secret {secret:?} has no non-empty key {key:?}; add it, or point \
                 credentials.secretRef at the keys the Secret has"
            ),
            Self::KeyInvalid { secret, key } => {
                format!("the value of key {key:?} in Secret {secret:?} is not text")
            }
        }
    }
}

/// The Secret a connection reads, if any, after the namespace check.
pub fn secret_name<'a>(
    spec: &'a CredentialsSpec,
    own_namespace: &str,
) -> Result<Option<&'a SecretKeysRef>, CredentialProblem> {
    if spec.source == CredentialSource::DefaultChain {
        return Ok(None);
    }
    let Some(reference) = spec.secret_ref.as_ref() else {
        return Err(CredentialProblem::SecretRefMissing);
    };
    match reference.namespace.as_deref() {
        Some(requested) if !requested.is_empty() && requested != own_namespace => {
            Err(CredentialProblem::NamespaceRefused {
                requested: requested.to_owned(),
                own: own_namespace.to_owned(),
            })
        }
        _ => Ok(Some(reference)),
    }
}

fn value(
    secret: &Secret,
    reference: &SecretKeysRef,
    key: &str,
) -> Result<Option<String>, CredentialProblem> {
    let Some(bytes) = secret.data.as_ref().and_then(|data| data.get(key)) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&bytes.0).map_err(|_| CredentialProblem::KeyInvalid {
        secret: reference.name.clone(),
        key: key.to_owned(),
    })?;
    let text = text.trim();
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// Reads the base credentials `spec` names for a connection in `namespace`: the default
/// chain, or the keys of its Secret, read now (key material is never cached).
pub async fn read_base_credentials(
    client: &kube::Client,
    spec: &CredentialsSpec,
    namespace: &str,
) -> kube::Result<Result<BaseCredentials, CredentialProblem>> {
    let reference = match secret_name(spec, namespace) {
        Ok(None) => return Ok(Ok(BaseCredentials::DefaultChain)),
        Ok(Some(reference)) => reference,
        Err(problem) => return Ok(Err(problem)),
    };
    let secrets: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    Ok(match secrets.get_opt(&reference.name).await? {
        None => Err(CredentialProblem::SecretNotFound {
            name: reference.name.clone(),
        }),
        Some(secret) => keys_from_secret(&secret, reference),
    })
}

/// The access keys in `secret`. Values are trimmed, since a trailing newline from
/// `echo` is a common mistake.
fn keys_from_secret(
    secret: &Secret,
    reference: &SecretKeysRef,
) -> Result<BaseCredentials, CredentialProblem> {
    let required = |key: &str| {
        value(secret, reference, key)?.ok_or_else(|| CredentialProblem::KeyMissing {
            secret: reference.name.clone(),
            key: key.to_owned(),
        })
    };
    let access_key_id = required(&reference.access_key_id_key)?;
    let secret_access_key = required(&reference.secret_access_key_key)?;
    let session_token = value(secret, reference, &reference.session_token_key)?;
    let version = format!(
        "{}:{}",
        secret.uid().unwrap_or_default(),
        secret.resource_version().unwrap_or_default()
    );
    Ok(BaseCredentials::Keys {
        credentials: aws_sdk_sts::config::Credentials::new(
            access_key_id,
            secret_access_key,
            session_token,
            None,
            "orgconnect-secret",
        ),
        version,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn reference() -> SecretKeysRef {
        serde_json::from_value(serde_json::json!({"name": "keys"})).expect("reference")
    }

    fn secret(data: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn reads_trimmed_keys_and_hides_them_from_debug() {
        let base = keys_from_secret(
            &secret(&[
                ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE\n"),
                ("AWS_SECRET_ACCESS_KEY", "s3cr3t-value"),
            ]),
            &reference(),
        )
        .expect("keys");
        let BaseCredentials::Keys { credentials, .. } = &base else {
            panic!("keys expected")
        };
        assert_eq!(credentials.access_key_id(), "AKIAEXAMPLE");
        assert!(!format!("{base:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn names_the_missing_or_empty_key() {
        let problem = keys_from_secret(&secret(&[("AWS_ACCESS_KEY_ID", "AKIA")]), &reference())
            .expect_err("incomplete");
        assert_eq!(problem.reason(), "SecretKeyMissing");
        assert!(problem.message().contains("AWS_SECRET_ACCESS_KEY"));
        let empty = keys_from_secret(
            &secret(&[
                ("AWS_ACCESS_KEY_ID", "AKIA"),
                ("AWS_SECRET_ACCESS_KEY", "  "),
            ]),
            &reference(),
        )
        .expect_err("empty");
        assert_eq!(empty.reason(), "SecretKeyMissing");
        assert_eq!(
            keys_from_secret(&Secret::default(), &reference())
                .expect_err("no data")
                .reason(),
            "SecretKeyMissing"
        );
    }

    #[test]
    fn refuses_other_namespaces() {
        let spec: CredentialsSpec = serde_json::from_value(serde_json::json!({
            "source": "Secret", "secretRef": {"name": "keys", "namespace": "other"}
        }))
        .expect("spec");
        assert_eq!(
            secret_name(&spec, "team").expect_err("refused").reason(),
            "SecretNamespaceRefused"
        );
        let own: CredentialsSpec = serde_json::from_value(serde_json::json!({
            "source": "Secret", "secretRef": {"name": "keys", "namespace": "team"}
        }))
        .expect("spec");
        assert!(secret_name(&own, "team").expect("allowed").is_some());
        assert!(
            secret_name(&CredentialsSpec::default(), "team")
                .expect("default")
                .is_none()
        );
    }
}
