//! Forwards every xo-cache batch to the WebSocket clients as XO's `all` notifications: the `enter` and
//! `exit` frames are serialised once per batch (by the cache) and shared by every connection.
//!
//! The forwarder knows which object ids it has announced (entered and not exited since). If it falls
//! behind the cache (its queue overflowed: [`xo_cache::SubscriptionError::Lagged`]), it resubscribes
//! together with a snapshot of the cache and sends one resync batch: `exit` for every announced id that
//! is gone, `enter` for every current object. Clients (which apply `enter` as add-or-replace) end up
//! with exactly the cache's objects (for non-admins: the ones they may view), whatever the missed
//! batches held.

use std::collections::HashSet;
use std::sync::Arc;

use xo_cache::{Batch, Filter, Subscription, SubscriptionError};

use super::Pools;
use crate::app::{App, WeakApp};

impl Pools {
    /// Starts the forwarder once (before the first pool sync, so no batch is missed).
    pub(crate) fn ensure_forwarder(&self, app: &App) {
        let mut slot = self.forwarder.lock();
        if slot.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let (forwarder, sub) = Forwarder::start(&self.cache);
        *slot = Some(tokio::spawn(run(forwarder, sub, app.downgrade())));
    }
}

/// The ids clients were told about, and the cache they come from.
struct Forwarder {
    cache: xo_cache::Store,
    announced: HashSet<Arc<str>>,
}

impl Forwarder {
    /// A subscription starting exactly after the cache's current objects, which count as announced
    /// (clients read them with `xo.getAllObjects`).
    fn start(cache: &xo_cache::Store) -> (Self, Subscription) {
        let (objects, sub) = cache.subscribe_with_snapshot(&Filter::All);
        let announced = objects.iter().map(|o| o.id_arc()).collect();
        (
            Self {
                cache: cache.clone(),
                announced,
            },
            sub,
        )
    }

    /// Records what a forwarded batch announces.
    fn track(&mut self, batch: &Batch) {
        for id in &batch.exit {
            self.announced.remove(id);
        }
        for o in &batch.enter {
            if !self.announced.contains(o.id()) {
                self.announced.insert(o.id_arc());
            }
        }
    }

    /// After a lag: a new subscription and the batch that brings clients from what was announced to
    /// the cache's current state.
    fn resync(&mut self) -> (Batch, Subscription) {
        let (objects, sub) = self.cache.subscribe_with_snapshot(&Filter::All);
        let current: HashSet<Arc<str>> = objects.iter().map(|o| o.id_arc()).collect();
        let gone: Vec<Arc<str>> = self
            .announced
            .iter()
            .filter(|id| !current.contains(*id))
            .cloned()
            .collect();
        self.announced = current;
        (Batch::new(objects, gone), sub)
    }
}

async fn run(mut fwd: Forwarder, mut sub: Subscription, app: WeakApp) {
    loop {
        match sub.recv().await {
            Ok(batch) => {
                fwd.track(&batch);
                let Some(app) = app.upgrade() else { return };
                crate::plugins::publish_batch(&app, &batch);
            }
            Err(SubscriptionError::Lagged(n)) => {
                let (batch, new_sub) = fwd.resync();
                sub = new_sub;
                tracing::warn!(
                    batches = n,
                    enter = batch.enter.len(),
                    exit = batch.exit.len(),
                    "notification forwarder lagged: resyncing clients"
                );
                let Some(app) = app.upgrade() else { return };
                // The access control sees the resync batch as a regular one: its exits are visible to
                // whoever saw those objects, its enters re-evaluate every current object. (Resetting it
                // first with `visibility::resync` would hide the exits from non-admins.)
                if !batch.is_empty() {
                    crate::plugins::publish_batch(&app, &batch);
                }
            }
            Err(SubscriptionError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lag_resync_exits_what_is_gone_and_enters_the_rest() {
        let cache = xo_cache::Store::new(xo_cache::StoreConfig {
            subscriber_capacity: 1,
        });
        let (mut fwd, _sub) = Forwarder::start(&cache);
        assert!(fwd.announced.is_empty());
        // a batch forwarded normally is tracked
        let a: Arc<str> = "a".into();
        fwd.announced.insert(a.clone());
        fwd.announced.insert("b".into());
        fwd.track(&Batch::new(Vec::new(), vec![a]));
        assert_eq!(fwd.announced.len(), 1);
        // nothing in the cache: a resync exits what was announced
        let (batch, mut sub) = fwd.resync();
        assert!(batch.enter.is_empty());
        assert_eq!(batch.exit, vec![Arc::<str>::from("b")]);
        assert!(fwd.announced.is_empty());
        assert!(sub.try_recv().unwrap().is_none());
    }
}
