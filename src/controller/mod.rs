//! The controllers: one reconciler a kind, the shared context, and the wiring that
//! watches the API server and feeds them.

mod access;
mod connection;
mod connection_status;
mod context;
mod credentials;
mod member;
mod member_role;
pub mod members;
pub mod names;
mod probe_status;
mod reconcile;
mod revoke;
mod shared;
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
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info};

use crate::api::connection::CredentialSource;
use crate::api::{AwsOrgConnection, MemberAccount, SyncSchedule};
use crate::aws::session::SessionCache;
use k8s_openapi::api::batch::v1::Job;
use shared::{Follow, SharedWatch};

pub use connection_status::COUNTS_LAG;
pub use context::{Diagnostics, RUN_PART_BYTES, Settings};
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
    ///
    /// Each kind is watched once. MemberAccounts, the kind there are thousands of, fill one
    /// cache shared by the connection controller (which owns them) and the member
    /// controller; connections fill one cache shared by their controller and the sync
    /// controller, which hears when a schedule's connection changes or goes (see
    /// [`shared`]).
    ///
    /// Long on purpose: the wiring of every watch to every controller, read top to bottom.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
        let shutdown = shutdown.shared();
        let connections_config = match &self.settings.label_selector {
            Some(selector) => watcher::Config::default().labels(selector),
            None => watcher::Config::default(),
        };
        // The MemberAccounts: the connection controller owns them (and recreates one
        // deleted by hand), the member controller reconciles them.
        let mut members = SharedWatch::<MemberAccount>::new();
        // The connection controller hears of a deletion at once, and of phase changes
        // from the member controller, coalesced; a status write alone wakes no connection.
        let owned_members = members.subscribe(Follow::Deletions);
        let probed_members = members.subscribe(Follow::Changes);
        let members_store = members.store();
        let (members_listed, members_ready) = tokio::sync::watch::channel(false);
        let members_watch = members.run(
            watcher(
                self.api::<MemberAccount>(),
                watcher::Config::default().labels(names::CONNECTION_LABEL),
            )
            .modify(slim),
            members_listed,
            shutdown.clone(),
        );
        // The connections: their controller reconciles them; a schedule reports at once
        // when its connection changes, goes or comes back.
        let mut connections = SharedWatch::<AwsOrgConnection>::new();
        let reconciled_connections = connections.subscribe(Follow::Changes);
        let schedule_connections = connections.subscribe(Follow::ChangesAndDeletions);
        let connections_store = connections.store();
        let (connections_listed, connections_ready) = tokio::sync::watch::channel(false);
        let connections_watch = connections.run(
            watcher(self.api::<AwsOrgConnection>(), connections_config.clone()).modify(slim),
            connections_listed,
            shutdown.clone(),
        );
        // Only Secret metadata is watched: key material is read when needed, never cached.
        let secret_events = watcher(
            self.api::<PartialObjectMeta<Secret>>(),
            watcher::Config::default(),
        )
        .default_backoff()
        .touched_objects();

        let (probe_tx, mut probe_rx) = tokio::sync::mpsc::unbounded_channel();
        let (counts_tx, counts_rx) = tokio::sync::mpsc::unbounded_channel();
        let context = Arc::new(context::Context::new(
            self.client.clone(),
            self.settings.clone(),
            SessionCache::new(self.aws.clone()),
            context::Caches {
                members: members_store.clone(),
                connections: connections_store.clone(),
                members_ready,
                connections_ready,
            },
            context::Channels {
                probe_requests: probe_tx,
                counts_changed: counts_tx,
            },
            self.diagnostics.clone(),
            self.health.clone(),
        ));
        info!(
            namespace = self.settings.namespace.as_deref().unwrap_or("*"),
            selector = self.settings.label_selector.as_deref().unwrap_or(""),
            "orgconnect controllers starting"
        );
        let secret_connections = connections_store.clone();
        let connection_controller =
            Controller::for_shared_stream(reconciled_connections, connections_store)
                .with_config(ControllerConfig::default().concurrency(16))
                .owns_shared_stream(owned_members)
                .reconcile_on(context::coalesce(counts_rx, context::COUNTS_COALESCE))
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
                    reconcile::error_policy,
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
        let member_controller = Controller::for_shared_stream(probed_members, members_store)
            .with_config(ControllerConfig::default().concurrency(
                u16::try_from(self.settings.probe_concurrency.max(1)).unwrap_or(u16::MAX),
            ))
            .reconcile_on(probe_requests)
            .graceful_shutdown_on(shutdown.clone())
            .run(member::reconcile, reconcile::error_policy, context.clone())
            .for_each(|result| async move {
                match result {
                    Ok((object, _)) => debug!(member = %object, "reconciled"),
                    Err(err) => debug!(error = %err, "member reconcile did not complete"),
                }
            });
        let sync_controller = Controller::new(self.api::<SyncSchedule>(), connections_config);
        let schedules = sync_controller.store();
        let sync_controller = sync_controller
            .owns(
                self.api::<Job>(),
                watcher::Config::default().labels(names::SCHEDULE_LABEL),
            )
            .watches_shared_stream(schedule_connections, move |connection| {
                let namespace = connection.namespace();
                let name = connection.name_any();
                schedules
                    .state()
                    .into_iter()
                    .filter(|s| s.namespace() == namespace && s.spec.connection_ref.name == name)
                    .map(|s| ObjectRef::from_obj(s.as_ref()))
                    .collect::<Vec<_>>()
            })
            .graceful_shutdown_on(shutdown)
            .run(sync::reconcile, reconcile::error_policy, context)
            .for_each(|result| async move {
                match result {
                    Ok((object, _)) => debug!(schedule = %object, "reconciled"),
                    Err(err) => {
                        debug!(error = %err, "sync schedule reconcile did not complete")
                    }
                }
            });
        futures::join!(
            members_watch,
            connections_watch,
            connection_controller,
            member_controller,
            sync_controller
        );
        info!("orgconnect controllers stopped");
    }
}

/// Drops what the operator never reads from the objects it caches (their managedFields),
/// so the caches of thousands of MemberAccounts stay small.
fn slim<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}
