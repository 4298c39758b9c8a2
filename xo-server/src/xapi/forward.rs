//! Forwards every xo-cache batch to the WebSocket clients as XO's `all` notifications: the `enter` and
//! `exit` frames are serialised once per batch (by the cache) and shared by every connection.

use xo_cache::SubscriptionError;

use super::Pools;
use crate::app::{App, WeakApp};

impl Pools {
    /// Starts the forwarder once (before the first pool sync, so no batch is missed).
    pub(crate) fn ensure_forwarder(&self, app: &App) {
        let mut slot = self.forwarder.lock();
        if slot.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        *slot = Some(tokio::spawn(run(self.cache.clone(), app.downgrade())));
    }
}

async fn run(cache: xo_cache::Store, app: WeakApp) {
    let mut sub = cache.subscribe();
    loop {
        match sub.recv().await {
            Ok(batch) => {
                let Some(app) = app.upgrade() else { return };
                crate::plugins::publish_batch(&app, &batch);
            }
            Err(SubscriptionError::Lagged(n)) => {
                tracing::warn!(
                    batches = n,
                    "notification forwarder lagged: clients missed changes"
                );
                sub = cache.subscribe();
                if let Some(app) = app.upgrade() {
                    crate::plugins::visibility::resync(&app);
                }
            }
            Err(SubscriptionError::Closed) => return,
        }
    }
}
