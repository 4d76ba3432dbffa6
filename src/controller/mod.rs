//! The controllers: one reconciler a kind, the shared context, and the wiring that
//! watches the API server and feeds them.

mod connection;
mod connection_status;
mod context;
mod credentials;
mod member;
pub mod members;
pub mod names;
mod probe_status;
mod revoke;
mod stackset;
pub mod sync;
pub mod sync_config;
pub mod sync_plan;

use std::future::Future;
use std::sync::Arc;

use aws_config::SdkConfig;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info};

use crate::api::connection::CredentialSource;
use crate::api::{AwsOrgConnection, MemberAccount, SyncSchedule};
use crate::aws::session::SessionCache;
use k8s_openapi::api::batch::v1::Job;

pub use context::{Diagnostics, Settings};
pub use names::{FIELD_MANAGER, FINALIZER};

/// The operator: its controllers, ready to run.
pub struct Operator {
    client: Client,
    aws: SdkConfig,
    settings: Settings,
    diagnostics: Arc<Diagnostics>,
    health: Arc<crate::server::Health>,
}

impl Operator {
    /// `aws` is the operator's own AWS configuration: default credential chain, endpoint,
    /// retries (see [`crate::aws::sdk_config_from_env`]).
    pub fn new(client: Client, aws: SdkConfig, settings: Settings) -> Self {
        Self {
            client,
            aws,
            settings,
            diagnostics: Arc::new(Diagnostics::default()),
            health: Arc::new(crate::server::Health::default()),
        }
    }

    /// Readiness and metrics, for the HTTP endpoints.
    pub fn health(&self) -> Arc<crate::server::Health> {
        self.health.clone()
    }

    /// Counters of what the controllers did.
    pub fn diagnostics(&self) -> Arc<Diagnostics> {
        self.diagnostics.clone()
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match &self.settings.namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        }
    }

    /// Runs until `shutdown` resolves, then finishes the reconciles in flight.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
        let connections_config = match &self.settings.label_selector {
            Some(selector) => watcher::Config::default().labels(selector),
            None => watcher::Config::default(),
        };
        let connections_config_for_schedules = connections_config.clone();
        let (members, members_writer) = reflector::store::<MemberAccount>();
        let member_events = reflector(
            members_writer,
            watcher(
                self.api::<MemberAccount>(),
                watcher::Config::default().labels(names::CONNECTION_LABEL),
            )
            .modify(slim),
        )
        .default_backoff()
        .touched_objects();
        // Only Secret metadata is watched: key material is read when needed, never cached.
        let secret_events = watcher(
            self.api::<PartialObjectMeta<Secret>>(),
            watcher::Config::default(),
        )
        .default_backoff()
        .touched_objects();

        // Connections as the schedules see them: this store is updated before a schedule
        // hears that its connection changed (or went), so its reconcile sees the change.
        let (schedule_connections, schedule_connections_writer) =
            reflector::store::<AwsOrgConnection>();
        let connection_events = reflector(
            schedule_connections_writer,
            watcher(self.api::<AwsOrgConnection>(), connections_config.clone()).modify(slim),
        )
        .default_backoff()
        .touched_objects();

        let controller = Controller::new(self.api::<AwsOrgConnection>(), connections_config)
            .with_config(ControllerConfig::default().concurrency(16));
        let connections = controller.store();
        let (probe_tx, mut probe_rx) = tokio::sync::mpsc::unbounded_channel();
        let context = Arc::new(context::Context::new(
            self.client.clone(),
            self.settings.clone(),
            SessionCache::new(self.aws.clone()),
            (members, connections.clone(), schedule_connections),
            probe_tx,
            self.diagnostics.clone(),
            self.health.clone(),
        ));
        info!(
            namespace = self.settings.namespace.as_deref().unwrap_or("*"),
            selector = self.settings.label_selector.as_deref().unwrap_or(""),
            "orgconnect controllers starting"
        );
        let shutdown = shutdown.shared();
        let sync_shutdown = shutdown.clone();
        let sync_context = context.clone();
        let secret_connections = connections.clone();
        let connection_controller = controller
            .owns_stream(member_events)
            .watches_stream(secret_events, move |secret| {
                let namespace = secret.namespace();
                let name = secret.name_any();
                secret_connections
                    .state()
                    .into_iter()
                    .filter(|c| c.namespace() == namespace)
                    .filter(|c| {
                        c.spec.credentials.source == CredentialSource::Secret
                            && c.spec
                                .credentials
                                .secret_ref
                                .as_ref()
                                .is_some_and(|r| r.name == name)
                    })
                    .map(|c| ObjectRef::from_obj(c.as_ref()))
                    .collect::<Vec<_>>()
            })
            .graceful_shutdown_on(shutdown.clone())
            .run(
                connection::reconcile,
                connection::error_policy,
                context.clone(),
            )
            .for_each(|result| async move {
                match result {
                    Ok((object, _)) => debug!(connection = %object, "reconciled"),
                    Err(err) => debug!(error = %err, "reconcile did not complete"),
                }
            });

        // Probe requests from the connection reconciler (new credentials, new spec).
        let probe_requests = futures::stream::poll_fn(move |cx| probe_rx.poll_recv(cx));
        let (member_cache, member_cache_writer) = reflector::store::<MemberAccount>();
        let member_triggers = reflector(
            member_cache_writer,
            watcher(
                self.api::<MemberAccount>(),
                watcher::Config::default().labels(names::CONNECTION_LABEL),
            )
            .modify(slim),
        )
        .default_backoff()
        .touched_objects();
        let member_controller = Controller::for_stream(member_triggers, member_cache)
            .with_config(ControllerConfig::default().concurrency(
                u16::try_from(self.settings.probe_concurrency.max(1)).unwrap_or(u16::MAX),
            ))
            .reconcile_on(probe_requests)
            .graceful_shutdown_on(shutdown)
            .run(member::reconcile, member::error_policy, context)
            .for_each(|result| async move {
                match result {
                    Ok((object, _)) => debug!(member = %object, "reconciled"),
                    Err(err) => debug!(error = %err, "member reconcile did not complete"),
                }
            });
        let sync_controller =
            Controller::new(self.api::<SyncSchedule>(), connections_config_for_schedules);
        // A schedule reports at once when its connection goes (or comes back).
        let schedules = sync_controller.store();
        let sync_controller = sync_controller
            .owns(
                self.api::<Job>(),
                watcher::Config::default().labels(names::SCHEDULE_LABEL),
            )
            .watches_stream(connection_events, move |connection| {
                let namespace = connection.namespace();
                let name = connection.name_any();
                schedules
                    .state()
                    .into_iter()
                    .filter(|s| s.namespace() == namespace && s.spec.connection_ref.name == name)
                    .map(|s| ObjectRef::from_obj(s.as_ref()))
                    .collect::<Vec<_>>()
            })
            .graceful_shutdown_on(sync_shutdown)
            .run(sync::reconcile, sync::error_policy, sync_context)
            .for_each(|result| async move {
                match result {
                    Ok((object, _)) => debug!(schedule = %object, "reconciled"),
                    Err(err) => {
                        debug!(error = %err, "sync schedule reconcile did not complete")
                    }
                }
            });
        futures::join!(connection_controller, member_controller, sync_controller);
        info!("orgconnect controllers stopped");
    }
}

/// Drops what the operator never reads from the objects it caches (their managedFields),
/// so the caches of thousands of MemberAccounts stay small.
fn slim<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}
