//! The per-pool sync driver: consumes a stream of [`SyncInput`] (full loads, event batches, disconnections)
//! and keeps the [`Store`] up to date. It knows nothing of the XAPI client; xo-server adapts the client's
//! watcher into `SyncInput`.
//!
//! Disconnection policy (xo-server's `eventFetchingError` handling): on `Disconnected` the pool's status
//! becomes `Disconnected` but its objects stay visible; if no `Reset`/`Changes` arrives within
//! `SyncConfig::forget_after` (XO's `xapiMarkDisconnectedDelay`), they are removed (`exit`). The next `Reset`
//! swaps the objects atomically. When the input stream ends, the objects are removed (XO's
//! `xapi.xo.uninstall()` on disconnect) and the pool stays registered as `Disconnected`.

use std::collections::HashMap;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::store::{PoolStatus, Store, WaitError};
use xapi_types::RawRecord;

/// Full loads with at least this many records are derived on a blocking thread (smaller ones take
/// well under a millisecond and stay inline).
const BLOCKING_RESET_RECORDS: usize = 2_000;

/// Event operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    /// Object created.
    Add,
    /// Object modified.
    Mod,
    /// Object destroyed.
    Del,
}

/// One XAPI event.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectChange {
    /// XAPI class (any case: `VM` or `vm`).
    pub class: String,
    /// Object ref.
    pub r#ref: String,
    /// What happened.
    pub op: ChangeOp,
    /// The new record for `add`/`mod` (canonical form), as JSON text.
    pub snapshot: Option<RawRecord>,
}

/// What the pool watcher reports.
#[derive(Debug, Clone)]
pub enum SyncInput {
    /// A full load: every record of every watched class (`class → [(ref, record)]`).
    Reset {
        /// Records by class, as JSON text.
        records: HashMap<String, Vec<(String, RawRecord)>>,
    },
    /// One `event.from` batch.
    Changes(Vec<ObjectChange>),
    /// The watcher lost the connection and will retry.
    Disconnected {
        /// Why (must not contain secrets).
        error: String,
        /// When it retries, if known.
        retry_in: Option<Duration>,
    },
}

/// Driver settings.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// How long a disconnected pool keeps its objects (`None`: until the next reset or stream end).
    /// Defaults to 5 minutes.
    pub forget_after: Option<Duration>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            forget_after: Some(Duration::from_secs(300)),
        }
    }
}

/// A running driver.
#[derive(Debug)]
pub struct PoolSyncHandle {
    key: String,
    task: JoinHandle<()>,
}

impl PoolSyncHandle {
    /// The pool key it feeds.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the driver has ended (stream finished or pool removed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stop the driver (objects are left as they are; call `Store::remove_pool` to drop them).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Wait for the driver to end by itself.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Spawn the driver for pool `key` with default settings. Registers the pool (status `Connecting`).
pub fn spawn_pool_sync<S>(store: Store, key: impl Into<String>, input: S) -> PoolSyncHandle
where
    S: Stream<Item = SyncInput> + Send + 'static,
{
    spawn_pool_sync_with(store, key, input, SyncConfig::default())
}

/// Spawn the driver with explicit settings.
pub fn spawn_pool_sync_with<S>(
    store: Store,
    key: impl Into<String>,
    input: S,
    config: SyncConfig,
) -> PoolSyncHandle
where
    S: Stream<Item = SyncInput> + Send + 'static,
{
    let key = key.into();
    if !store.register_pool(&key) {
        let _ = store.set_status(&key, PoolStatus::Connecting);
    }
    let task = tokio::spawn(run(store, key.clone(), Box::pin(input), config));
    PoolSyncHandle { key, task }
}

async fn run<S>(store: Store, key: String, mut input: std::pin::Pin<Box<S>>, config: SyncConfig)
where
    S: Stream<Item = SyncInput> + Send + 'static,
{
    let mut forget_at: Option<Instant> = None;
    loop {
        let next = match forget_at {
            Some(deadline) => tokio::select! {
                item = input.next() => Some(item),
                () = tokio::time::sleep_until(deadline) => None,
            },
            None => Some(input.next().await),
        };
        let result: Result<(), WaitError> = match next {
            // Disconnected for too long: drop the objects, keep the status.
            None => {
                forget_at = None;
                let status = store.status(&key).unwrap_or(PoolStatus::Connecting);
                debug!(pool = %key, "disconnected for too long: forgetting objects");
                store.clear_pool(&key, status).map(drop)
            }
            Some(None) => {
                debug!(pool = %key, "watcher stream ended");
                let _ = store.clear_pool(
                    &key,
                    PoolStatus::Disconnected {
                        error: None,
                        retry_in: None,
                    },
                );
                return;
            }
            Some(Some(SyncInput::Reset { records })) => {
                forget_at = None;
                let count: usize = records.values().map(Vec::len).sum();
                if count < BLOCKING_RESET_RECORDS {
                    store.apply_reset(&key, records).map(drop)
                } else {
                    // A large full load's derivation takes long (≈ 0.3 s per 10,000 VMs): keep it off
                    // the async workers. The raw records are consumed on that thread too.
                    let (s, k) = (store.clone(), key.clone());
                    match tokio::task::spawn_blocking(move || s.apply_reset(&k, records).map(drop))
                        .await
                    {
                        Ok(r) => r,
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        Err(_) => return,
                    }
                }
            }
            Some(Some(SyncInput::Changes(changes))) => {
                forget_at = None;
                let r = store.apply_changes(&key, changes).map(drop);
                // Events flow again: back to Ready if we know the pool.
                if !matches!(store.status(&key), Some(PoolStatus::Ready { .. })) {
                    if let Some(pool_uuid) = store.pool_uuid(&key) {
                        let _ = store.set_status(&key, PoolStatus::Ready { pool_uuid });
                    }
                }
                r
            }
            Some(Some(SyncInput::Disconnected { error, retry_in })) => {
                warn!(pool = %key, %error, "pool disconnected");
                if forget_at.is_none() {
                    forget_at = config.forget_after.map(|d| Instant::now() + d);
                }
                store.set_status(
                    &key,
                    PoolStatus::Disconnected {
                        error: Some(error),
                        retry_in,
                    },
                )
            }
        };
        if let Err(e) = result {
            debug!(pool = %key, error = %e, "pool gone; sync driver stops");
            return;
        }
    }
}
