//! What every reconciler shares, written once: the metrics around each reconcile, one
//! error policy with a per-object backoff, the status write (server-side apply, only
//! when it changed), and create and delete calls that take 409 and 404 for what they
//! mean. Each reconciler then only fetches, decides (in its pure module) and applies.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::context::{self, Context, Diagnostics, backoff, jitter, object_key};
use super::names::FIELD_MANAGER;
use crate::error::{Error, Result};
use crate::metrics::{ErrorLabels, KindLabels};

/// How soon a revoke whose StackSet operation is running looks again.
const REVOKE_POLL: Duration = Duration::from_secs(5);

/// The name metrics and logs give a kind, and the kind's own failure counter in the
/// diagnostics, if it has one.
pub trait Kind {
    const KIND: &'static str;

    fn failure_counter(_diagnostics: &Diagnostics) -> Option<&std::sync::atomic::AtomicU64> {
        None
    }
}

impl Kind for crate::api::AwsOrgConnection {
    const KIND: &'static str = "AwsOrgConnection";

    fn failure_counter(diagnostics: &Diagnostics) -> Option<&std::sync::atomic::AtomicU64> {
        Some(&diagnostics.connection_failures)
    }
}
impl Kind for crate::api::MemberAccount {
    const KIND: &'static str = "MemberAccount";
}
impl Kind for crate::api::SyncSchedule {
    const KIND: &'static str = "SyncSchedule";
}

/// Runs one reconcile of `object`, counting it and timing it by kind; a success clears
/// the object's backoff.
pub async fn observed<K, F>(ctx: &Context, object: &K, reconcile: F) -> Result<Action>
where
    K: Kind + Resource,
    F: Future<Output = Result<Action>>,
{
    let labels = KindLabels { kind: K::KIND };
    ctx.health.metrics.reconciles.get_or_create(&labels).inc();
    let started = std::time::Instant::now();
    let result = reconcile.await;
    ctx.health
        .metrics
        .duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.backoff_cleared(&backoff_key::<K>(object));
    }
    result
}

fn backoff_key<K: Kind + Resource>(object: &K) -> String {
    context::backoff_key(K::KIND, &object_key(object))
}

/// The error policy of every controller: a revoke in progress or blocked waits as it
/// says; anything else is counted and logged, and retried after a backoff of the object's
/// own (5 s doubling to 5 min, with jitter), never in a hot loop.
pub fn error_policy<K>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: Kind + Resource,
{
    let key = object_key(object.as_ref());
    if let Error::Finalizer(inner) = error
        && let kube::runtime::finalizer::Error::CleanupFailed(cleanup) = inner.as_ref()
    {
        match cleanup {
            Error::RevokeInProgress(step) => {
                info!(kind = K::KIND, object = %key, step = %step, "revoking");
                return Action::requeue(REVOKE_POLL);
            }
            Error::RevokeBlocked { problem, retry_in } => {
                warn!(kind = K::KIND, object = %key, problem = %problem, retry_in = ?retry_in,
                    "revoke blocked; retrying with backoff");
                return Action::requeue(*retry_in);
            }
            _ => {}
        }
    }
    if let Some(counter) = K::failure_counter(&ctx.diagnostics) {
        Diagnostics::add(counter, 1);
    }
    ctx.health
        .metrics
        .failures
        .get_or_create(&ErrorLabels {
            kind: K::KIND,
            error: error.label(),
        })
        .inc();
    let failures = ctx.backoff_failed(&backoff_key(object.as_ref()));
    let wait = backoff(failures);
    warn!(kind = K::KIND, object = %key, error = %error, error_kind = error.label(),
        failures, retry_in = ?wait, "reconcile failed; retrying");
    Action::requeue(wait + jitter(wait / 4))
}

/// Writes `status` to `object` by server-side apply when it differs from `current`;
/// whether it wrote.
pub async fn write_status<K, S>(api: &Api<K>, object: &K, current: &S, status: &S) -> Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize + PartialEq,
{
    if current == status {
        return Ok(false);
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(true)
}

/// Creates `object`; one that exists already (409) is left as it is. Whether it created.
pub async fn create_once<K>(api: &Api<K>, object: &K) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Deletes `name`; one already gone (404) is fine. Whether it was there.
pub async fn delete_if_present<K>(api: &Api<K>, name: &str, params: &DeleteParams) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Deletes every object of `names`, `concurrency` at a time; those already gone are fine.
pub async fn delete_all<K>(api: &Api<K>, names: Vec<String>, concurrency: usize) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    futures::stream::iter(names)
        .map(|name| async move { delete_if_present(api, &name, &DeleteParams::default()).await })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}
