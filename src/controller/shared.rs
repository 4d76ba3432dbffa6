//! One watch, one cache, several controllers: a kind's watch fills one store and hands
//! every event to each controller that follows the kind.
//!
//! Written here rather than taken from kube's shared streams (`reflector::store_shared`
//! and `ReflectHandle`): those pass on applied objects only, never deletions
//! (kube-rs/kube#1590), and a handle whose object was deleted before it was read returns
//! `Pending` without arranging to be woken, so the controller behind it hears nothing
//! more until something else wakes it. Here a deletion reaches the subscribers that ask
//! for it, carrying the object's last state. As with any watch, an object deleted while
//! the watch was down and re-listing is only dropped from the store, never announced.

use std::future::Future;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::watcher;
use tokio::sync::mpsc;

/// How many events a subscriber that has not caught up may have waiting before the
/// watch waits for it.
const BUFFER: usize = 1024;

/// Which events a subscriber hears of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Objects created, changed or listed: what a controller reconciles.
    Changes,
    /// Deletions too: what a controller that maps the kind to another one needs.
    ChangesAndDeletions,
    /// Deletions only: an owner that recreates what was deleted, and hears of other
    /// changes some other way.
    Deletions,
}

impl Follow {
    fn wants(self, event: &watcher::Event<impl Sized>) -> bool {
        match event {
            watcher::Event::Apply(_) | watcher::Event::InitApply(_) => self != Follow::Deletions,
            watcher::Event::Delete(_) => self != Follow::Changes,
            watcher::Event::Init | watcher::Event::InitDone => false,
        }
    }
}

/// A kind's one watch: its store, and the subscribers its events go to.
pub struct SharedWatch<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    writer: reflector::store::Writer<K>,
    subscribers: Vec<(Follow, mpsc::Sender<Arc<K>>)>,
}

impl<K> SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    pub fn new() -> Self {
        let (store, writer) = reflector::store();
        Self {
            store,
            writer,
            subscribers: Vec::new(),
        }
    }

    /// The cache the watch fills; it is updated before any subscriber hears of a change.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// A stream of the objects whose events `follow` names, in the order the watch saw
    /// them.
    pub fn subscribe(&mut self, follow: Follow) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (sender, mut receiver) = mpsc::channel(BUFFER);
        self.subscribers.push((follow, sender));
        futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
    }

    /// Runs `watch` until `shutdown`: each event updates the store, then reaches every
    /// subscriber that follows it. `listed` turns true once the store holds a complete
    /// listing. Errors are retried by the watch's default backoff.
    pub async fn run(
        self,
        watch: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send,
        listed: tokio::sync::watch::Sender<bool>,
        shutdown: impl Future<Output = ()>,
    ) {
        let Self {
            writer,
            mut subscribers,
            ..
        } = self;
        let events = reflector(writer, watch)
            .default_backoff()
            .take_until(shutdown);
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(kind = %K::kind(&()), %error, "watch failed; retrying with backoff");
                    continue;
                }
            };
            if matches!(event, watcher::Event::InitDone) {
                let _ = listed.send(true);
            }
            let wanted: Vec<bool> = subscribers
                .iter()
                .map(|(follow, _)| follow.wants(&event))
                .collect();
            if !wanted.contains(&true) {
                continue;
            }
            let object = match event {
                watcher::Event::Apply(object)
                | watcher::Event::InitApply(object)
                | watcher::Event::Delete(object) => Arc::new(object),
                watcher::Event::Init | watcher::Event::InitDone => continue,
            };
            // A subscriber whose controller has stopped is dropped, not waited for.
            let mut gone = Vec::new();
            for (index, ((_, sender), wanted)) in subscribers.iter().zip(wanted).enumerate() {
                if wanted && sender.send(object.clone()).await.is_err() {
                    gone.push(index);
                }
            }
            for index in gone.into_iter().rev() {
                subscribers.swap_remove(index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn map(name: &str) -> ConfigMap {
        let mut object = ConfigMap::default();
        object.metadata.name = Some(name.to_owned());
        object.metadata.namespace = Some("ns".to_owned());
        object
    }

    fn names(objects: &[Arc<ConfigMap>]) -> Vec<String> {
        objects
            .iter()
            .map(|o| o.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[tokio::test]
    async fn deletions_reach_the_subscribers_that_follow_them_after_the_store_has_them() {
        let mut shared = SharedWatch::<ConfigMap>::new();
        let store = shared.store();
        let changes = shared.subscribe(Follow::Changes);
        let everything = shared.subscribe(Follow::ChangesAndDeletions);
        let events = futures::stream::iter([
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(map("a"))),
            Ok(watcher::Event::InitDone),
            Ok(watcher::Event::Apply(map("b"))),
            Ok(watcher::Event::Delete(map("a"))),
        ]);
        let (listed, ready) = tokio::sync::watch::channel(false);
        shared.run(events, listed, futures::future::pending()).await;

        assert!(*ready.borrow(), "the listing completed");
        let changes: Vec<_> = changes.collect().await;
        let everything: Vec<_> = everything.collect().await;
        assert_eq!(names(&changes), ["a", "b"]);
        assert_eq!(names(&everything), ["a", "b", "a"]);
        let mut cached: Vec<_> = store
            .state()
            .iter()
            .filter_map(|o| o.metadata.name.clone())
            .collect();
        cached.sort();
        assert_eq!(cached, ["b"], "the deleted object left the store");
    }

    #[tokio::test]
    async fn a_subscriber_that_went_away_does_not_hold_up_the_watch() {
        let mut shared = SharedWatch::<ConfigMap>::new();
        drop(shared.subscribe(Follow::Changes));
        let kept = shared.subscribe(Follow::Changes);
        let events = futures::stream::iter(
            (0..BUFFER * 2).map(|n| Ok(watcher::Event::Apply(map(&format!("m{n}"))))),
        );
        let (listed, _ready) = tokio::sync::watch::channel(false);
        let run = tokio::spawn(shared.run(events, listed, futures::future::pending()));
        let heard = kept.count().await;
        run.await.expect("the watch ran to its end");
        assert_eq!(heard, BUFFER * 2);
    }
}
