//! The object store: XO objects of many pools by id, per-pool status with `wait_ready`, atomic resets,
//! incremental changes, queries, and one `Batch` per change set fanned out to subscribers.
//!
//! Pools are keyed by a caller-chosen *pool key* (xo-server uses the XAPI server id, since the pool uuid is
//! only known once connected). Ids are global: when two pools produce the same id (e.g. an SR reattached
//! with the same uuid), the first owner wins and the other copy is kept as a shadow, promoted when the
//! owner goes (xo-server's `_objectConflicts`).
//!
//! Lock order: a pool's state mutex, then the index lock. Batches are published while the index write
//! lock is held, so subscribers see them in index order.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{broadcast, watch};
use tracing::{debug, info};

use crate::filter::Filter;
use crate::object::{items_json, XoObject};
use crate::pool_state::{diff_sets, PoolDiff, PoolState};
use crate::sync::ObjectChange;
use xapi_types::RawRecord;

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// How many batches a subscriber may lag behind before it is cut off.
    pub subscriber_capacity: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            subscriber_capacity: 1024,
        }
    }
}

/// Connection status of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolStatus {
    /// Registered, first full load not done yet.
    Connecting,
    /// Objects loaded and kept up to date.
    Ready {
        /// The pool's uuid (`$pool` of its objects).
        pool_uuid: String,
    },
    /// Connection lost (objects may be kept until the next reset or cleared, see the sync driver).
    Disconnected {
        /// Why, when known.
        error: Option<String>,
        /// When the next attempt is due, when known.
        retry_in: Option<Duration>,
    },
}

/// Errors of [`Store::wait_ready`] and of writes to a pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// No pool registered under this key.
    #[error("unknown pool {0}")]
    UnknownPool(String),
    /// The pool was removed while waiting.
    #[error("pool {0} was removed")]
    Removed(String),
    /// The pool is disconnected.
    #[error("pool {key} is disconnected: {}", error.as_deref().unwrap_or("no error"))]
    Disconnected {
        /// Pool key.
        key: String,
        /// Last error.
        error: Option<String>,
    },
}

/// One change set, published once to every subscriber.
#[derive(Debug, Default)]
pub struct Batch {
    /// Objects added or updated (full objects).
    pub enter: Vec<Arc<XoObject>>,
    /// Ids of removed objects.
    pub exit: Vec<Arc<str>>,
    enter_json: OnceLock<Option<Arc<str>>>,
    exit_json: OnceLock<Option<Arc<str>>>,
}

/// Largest `all`/`enter` frame [`Batch::enter_frames`] makes (a few objects more at most): a WebSocket
/// connection keeps a write buffer as large as the largest frame it ever sent, so one 40 MiB notification for a
/// new 10k-VM pool would leave 40 MiB behind on every connection.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

impl Batch {
    /// A batch from parts.
    pub fn new(enter: Vec<Arc<XoObject>>, exit: Vec<Arc<str>>) -> Self {
        Batch {
            enter,
            exit,
            ..Batch::default()
        }
    }

    /// Nothing in it.
    pub fn is_empty(&self) -> bool {
        self.enter.is_empty() && self.exit.is_empty()
    }

    /// The `all` notification for the entered objects, serialised once and shared:
    /// `{"jsonrpc":"2.0","method":"all","params":{"type":"enter","items":{…}}}`; `None` if no object entered.
    pub fn enter_notification(&self) -> Option<Arc<str>> {
        self.enter_json
            .get_or_init(|| {
                (!self.enter.is_empty())
                    .then(|| enter_notification_for(self.enter.iter().map(|o| &**o)).into())
            })
            .clone()
    }

    /// The `all` notifications for the entered objects, split into frames of about [`MAX_FRAME_BYTES`] at most
    /// (one frame for most batches); empty if no object entered. Not cached: subscribers' channels keep the last
    /// batches for a while, and a whole pool's frames (~40 MiB at 10k VMs) must not stay with them.
    pub fn enter_frames(&self) -> Vec<String> {
        enter_notifications_for(self.enter.iter().map(|o| &**o), MAX_FRAME_BYTES)
    }

    /// The `all` notification for the exited ids (values are `0`), serialised once; `None` if none.
    pub fn exit_notification(&self) -> Option<Arc<str>> {
        self.exit_json
            .get_or_init(|| {
                (!self.exit.is_empty())
                    .then(|| exit_notification_for(self.exit.iter().map(|i| &**i)).into())
            })
            .clone()
    }
}

/// `all`/`enter` notification text for a subset of objects (e.g. after ACL filtering).
pub fn enter_notification_for<'a>(objects: impl IntoIterator<Item = &'a XoObject>) -> String {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"all\",\"params\":{{\"type\":\"enter\",\"items\":{}}}}}",
        items_json(objects)
    )
}

/// `all`/`enter` notifications for `objects`, a new frame started whenever one's items reach `max_bytes`.
pub fn enter_notifications_for<'a>(
    objects: impl IntoIterator<Item = &'a XoObject>,
    max_bytes: usize,
) -> Vec<String> {
    let mut frames = Vec::new();
    let mut part: Vec<&XoObject> = Vec::new();
    let mut size = 0;
    for o in objects {
        size += o.json_len() + o.id().len() + 4;
        part.push(o);
        if size >= max_bytes {
            frames.push(enter_notification_for(part.drain(..)));
            size = 0;
        }
    }
    if !part.is_empty() {
        frames.push(enter_notification_for(part));
    }
    frames
}

/// `all`/`exit` notification text for ids.
pub fn exit_notification_for<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut items = String::from("{");
    for (i, id) in ids.into_iter().enumerate() {
        if i > 0 {
            items.push(',');
        }
        items.push_str(&serde_json::to_string(id).unwrap_or_else(|_| "\"\"".into()));
        items.push_str(":0");
    }
    items.push('}');
    format!("{{\"jsonrpc\":\"2.0\",\"method\":\"all\",\"params\":{{\"type\":\"exit\",\"items\":{items}}}}}")
}

/// Why a subscription ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The subscriber fell behind by this many batches and has been cut off; it must resync
    /// (`xo.getAllObjects`) with a new subscription.
    #[error("subscriber lagged behind by {0} batches and was cut off")]
    Lagged(u64),
    /// The store is gone, or the subscription was already cut off.
    #[error("subscription closed")]
    Closed,
}

/// A subscriber's view of the batch stream. Never skips silently: falling behind ends it.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Arc<Batch>>,
    dead: bool,
}

impl Subscription {
    /// Next batch, in publication order.
    pub async fn recv(&mut self) -> Result<Arc<Batch>, SubscriptionError> {
        if self.dead {
            return Err(SubscriptionError::Closed);
        }
        match self.rx.recv().await {
            Ok(b) => Ok(b),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                self.dead = true;
                Err(SubscriptionError::Lagged(n))
            }
            Err(broadcast::error::RecvError::Closed) => {
                self.dead = true;
                Err(SubscriptionError::Closed)
            }
        }
    }

    /// Next batch if one is queued (`Ok(None)` when none).
    pub fn try_recv(&mut self) -> Result<Option<Arc<Batch>>, SubscriptionError> {
        if self.dead {
            return Err(SubscriptionError::Closed);
        }
        match self.rx.try_recv() {
            Ok(b) => Ok(Some(b)),
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                self.dead = true;
                Err(SubscriptionError::Lagged(n))
            }
            Err(broadcast::error::TryRecvError::Closed) => {
                self.dead = true;
                Err(SubscriptionError::Closed)
            }
        }
    }
}

#[derive(Debug)]
struct Slot {
    owner: Arc<str>,
    obj: Arc<XoObject>,
    shadows: Vec<(Arc<str>, Arc<XoObject>)>,
}

#[derive(Debug, Default)]
struct Index {
    objects: BTreeMap<Arc<str>, Slot>,
}

impl Index {
    /// Apply one pool's diff; returns the batch to publish.
    fn apply(&mut self, key: &Arc<str>, diff: PoolDiff) -> Batch {
        let mut enter = Vec::new();
        let mut exit = Vec::new();
        for id in diff.removed {
            let Some(slot) = self.objects.get_mut(&id) else {
                continue;
            };
            if slot.owner == *key {
                if slot.shadows.is_empty() {
                    self.objects.remove(&id);
                    exit.push(id);
                } else {
                    let (owner, obj) = slot.shadows.remove(0);
                    slot.owner = owner;
                    slot.obj = obj.clone();
                    enter.push(obj);
                }
            } else {
                slot.shadows.retain(|(k, _)| k != key);
            }
        }
        for obj in diff.upserts {
            match self.objects.get_mut(obj.id()) {
                Some(slot) if slot.owner == *key => {
                    slot.obj = obj.clone();
                    enter.push(obj);
                }
                Some(slot) => {
                    debug!(id = obj.id(), pool = %key, owner = %slot.owner, "id conflict: kept as shadow");
                    match slot.shadows.iter_mut().find(|(k, _)| k == key) {
                        Some(s) => s.1 = obj,
                        None => slot.shadows.push((key.clone(), obj)),
                    }
                }
                None => {
                    self.objects.insert(
                        obj.id_arc(),
                        Slot {
                            owner: key.clone(),
                            obj: obj.clone(),
                            shadows: Vec::new(),
                        },
                    );
                    enter.push(obj);
                }
            }
        }
        Batch::new(enter, exit)
    }
}

#[derive(Debug)]
struct Source {
    key: Arc<str>,
    state: Mutex<PoolState>,
    status: watch::Sender<PoolStatus>,
}

#[derive(Debug)]
struct Inner {
    index: RwLock<Index>,
    sources: RwLock<HashMap<Arc<str>, Arc<Source>>>,
    tx: broadcast::Sender<Arc<Batch>>,
}

/// The shared store (cheap to clone).
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(StoreConfig::default())
    }
}

impl Store {
    /// An empty store.
    pub fn new(config: StoreConfig) -> Self {
        let (tx, _) = broadcast::channel(config.subscriber_capacity.max(1));
        Store {
            inner: Arc::new(Inner {
                index: RwLock::new(Index::default()),
                sources: RwLock::new(HashMap::new()),
                tx,
            }),
        }
    }

    // ----------------------------------------------------------------- pools

    /// Register a pool key (status `Connecting`); `false` if it already exists (left untouched).
    pub fn register_pool(&self, key: &str) -> bool {
        let mut sources = self.inner.sources.write();
        if sources.contains_key(key) {
            return false;
        }
        let key: Arc<str> = key.into();
        let (status, _) = watch::channel(PoolStatus::Connecting);
        sources.insert(
            key.clone(),
            Arc::new(Source {
                key,
                state: Mutex::new(PoolState::default()),
                status,
            }),
        );
        true
    }

    fn source(&self, key: &str) -> Result<Arc<Source>, WaitError> {
        self.inner
            .sources
            .read()
            .get(key)
            .cloned()
            .ok_or_else(|| WaitError::UnknownPool(key.to_owned()))
    }

    /// Registered pool keys.
    pub fn pools(&self) -> Vec<String> {
        self.inner
            .sources
            .read()
            .keys()
            .map(|k| k.to_string())
            .collect()
    }

    /// Current status of a pool.
    pub fn status(&self, key: &str) -> Option<PoolStatus> {
        self.source(key).ok().map(|s| s.status.borrow().clone())
    }

    /// Set a pool's status (objects untouched).
    pub fn set_status(&self, key: &str, status: PoolStatus) -> Result<(), WaitError> {
        let src = self.source(key)?;
        src.status.send_replace(status);
        Ok(())
    }

    /// The pool uuid behind a key, once known.
    pub fn pool_uuid(&self, key: &str) -> Option<String> {
        let src = self.source(key).ok()?;
        let st = src.state.lock();
        st.pool_uuid_str().map(str::to_owned)
    }

    /// The key of the pool whose uuid is `pool_uuid` (xo-server's `_serverIdsByPool`).
    pub fn pool_key_of(&self, pool_uuid: &str) -> Option<String> {
        let sources: Vec<Arc<Source>> = self.inner.sources.read().values().cloned().collect();
        sources
            .into_iter()
            .find(|s| s.state.lock().pool_uuid_str() == Some(pool_uuid))
            .map(|s| s.key.to_string())
    }

    /// Wait until the pool is `Ready`; returns its uuid. Fails at once if it is unknown or disconnected,
    /// and as soon as it becomes disconnected or is removed.
    pub async fn wait_ready(&self, key: &str) -> Result<String, WaitError> {
        let mut rx = self.source(key)?.status.subscribe();
        loop {
            {
                let status = rx.borrow_and_update();
                match &*status {
                    PoolStatus::Ready { pool_uuid } => return Ok(pool_uuid.clone()),
                    PoolStatus::Disconnected { error, .. } => {
                        return Err(WaitError::Disconnected {
                            key: key.to_owned(),
                            error: error.clone(),
                        })
                    }
                    PoolStatus::Connecting => {}
                }
            }
            if rx.changed().await.is_err() {
                return Err(WaitError::Removed(key.to_owned()));
            }
        }
    }

    fn publish(&self, index: &mut Index, key: &Arc<str>, diff: PoolDiff) -> Option<Arc<Batch>> {
        let batch = index.apply(key, diff);
        if batch.is_empty() {
            return None;
        }
        let batch = Arc::new(batch);
        // No receivers is fine.
        let _ = self.inner.tx.send(batch.clone());
        Some(batch)
    }

    /// Replace all objects of a pool with those derived from a full load (`class → [(ref, record)]`),
    /// atomically: one batch with `enter` for new/changed objects and `exit` for gone ones. Sets the
    /// status to `Ready` (or `Disconnected` when the load has no `pool` record). The pool must be registered
    /// ([`Store::register_pool`]; the sync driver does it), so a removed pool is never resurrected.
    pub fn apply_reset(
        &self,
        key: &str,
        records: HashMap<String, Vec<(String, RawRecord)>>,
    ) -> Result<Option<Arc<Batch>>, WaitError> {
        self.source(key)?;
        // Derive outside any lock.
        let new_state = PoolState::from_records(records);
        let started = std::time::Instant::now();
        let src = self.source(key)?;
        let mut st = src.state.lock();
        if st.removed {
            return Err(WaitError::Removed(key.to_owned()));
        }
        let before: Vec<Arc<XoObject>> = st.objects().cloned().collect();
        let removed_flag = st.removed;
        *st = new_state;
        st.removed = removed_flag;
        let diff = diff_sets(before, st.objects().cloned().collect());
        let uuid = st.pool_uuid_str().map(str::to_owned);
        let batch = {
            let mut index = self.inner.index.write();
            self.publish(&mut index, &src.key, diff)
        };
        drop(st);
        tracing::debug!(
            pool = key,
            publish_ms = started.elapsed().as_millis() as u64,
            "full load published"
        );
        match uuid {
            Some(pool_uuid) => {
                info!(pool = key, %pool_uuid, "pool objects loaded");
                src.status.send_replace(PoolStatus::Ready { pool_uuid });
            }
            None => {
                src.status.send_replace(PoolStatus::Disconnected {
                    error: Some("no pool record in the full load".into()),
                    retry_in: None,
                });
            }
        }
        // The objects are out: now pack the records and objects (changes wait for it, readers don't).
        let started = std::time::Instant::now();
        src.state.lock().pack();
        tracing::debug!(
            pool = key,
            pack_ms = started.elapsed().as_millis() as u64,
            "full load packed"
        );
        Ok(batch)
    }

    /// Apply incremental record changes (XAPI `event.from` events), re-deriving dependent objects.
    pub fn apply_changes(
        &self,
        key: &str,
        changes: Vec<ObjectChange>,
    ) -> Result<Option<Arc<Batch>>, WaitError> {
        let src = self.source(key)?;
        let mut st = src.state.lock();
        if st.removed {
            return Err(WaitError::Removed(key.to_owned()));
        }
        let diff = st.apply_changes(changes);
        if diff.is_empty() {
            return Ok(None);
        }
        let mut index = self.inner.index.write();
        Ok(self.publish(&mut index, &src.key, diff))
    }

    /// Remove all objects of a pool (one `exit` batch) but keep it registered with `status`.
    pub fn clear_pool(
        &self,
        key: &str,
        status: PoolStatus,
    ) -> Result<Option<Arc<Batch>>, WaitError> {
        let src = self.source(key)?;
        let batch = {
            let mut st = src.state.lock();
            let ids = st.clear();
            let mut index = self.inner.index.write();
            self.publish(
                &mut index,
                &src.key,
                PoolDiff {
                    upserts: Vec::new(),
                    removed: ids,
                },
            )
        };
        src.status.send_replace(status);
        Ok(batch)
    }

    /// Forget a pool: its objects leave (one `exit` batch), waiters get `Removed`, later writes fail.
    /// This is what xo-server does when a server is disconnected (`xapi.xo.uninstall()`).
    pub fn remove_pool(&self, key: &str) -> Result<Option<Arc<Batch>>, WaitError> {
        let src = self
            .inner
            .sources
            .write()
            .remove(key)
            .ok_or_else(|| WaitError::UnknownPool(key.to_owned()))?;
        let mut st = src.state.lock();
        st.removed = true;
        let ids = st.clear();
        let mut index = self.inner.index.write();
        Ok(self.publish(
            &mut index,
            &src.key,
            PoolDiff {
                upserts: Vec::new(),
                removed: ids,
            },
        ))
    }

    // --------------------------------------------------------------- queries

    /// Object by XO id.
    pub fn get(&self, id: &str) -> Option<Arc<XoObject>> {
        self.inner
            .index
            .read()
            .objects
            .get(id)
            .map(|s| s.obj.clone())
    }

    /// Object derived from XAPI ref `xapi_ref` of pool `key` (that pool's copy, even when shadowed).
    pub fn get_by_ref(&self, key: &str, xapi_ref: &str) -> Option<Arc<XoObject>> {
        let src = self.source(key).ok()?;
        let st = src.state.lock();
        st.object_by_ref(xapi_ref)
    }

    /// Object by XAPI ref in any pool (xo-server's `getObject` fallback on `_xapiRef`).
    pub fn get_by_any_ref(&self, xapi_ref: &str) -> Option<Arc<XoObject>> {
        let sources: Vec<Arc<Source>> = self.inner.sources.read().values().cloned().collect();
        sources
            .iter()
            .find_map(|s| s.state.lock().object_by_ref(xapi_ref))
    }

    /// Number of XAPI records held for a pool.
    pub fn record_count(&self, key: &str) -> usize {
        self.source(key)
            .map_or(0, |s| s.state.lock().record_count())
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.inner.index.read().objects.len()
    }

    /// No objects at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Objects matching `pred`, at most `limit`, in id order.
    pub fn find(
        &self,
        pred: impl Fn(&XoObject) -> bool,
        limit: Option<usize>,
    ) -> Vec<Arc<XoObject>> {
        let index = self.inner.index.read();
        index
            .objects
            .values()
            .map(|s| &s.obj)
            .filter(|o| pred(o))
            .take(limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// `xo.getAllObjects({filter, limit})`.
    pub fn select(&self, filter: &Filter, limit: Option<usize>) -> Vec<Arc<XoObject>> {
        self.find(|o| o.matches(filter), limit)
    }

    /// Subscribe to batches published from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.inner.tx.subscribe(),
            dead: false,
        }
    }

    /// Current objects matching `filter` plus a subscription starting exactly after them (no gap, no
    /// duplicate): what a client needs to mirror the store.
    pub fn subscribe_with_snapshot(&self, filter: &Filter) -> (Vec<Arc<XoObject>>, Subscription) {
        let index = self.inner.index.read();
        let sub = Subscription {
            rx: self.inner.tx.subscribe(),
            dead: false,
        };
        let objs = index
            .objects
            .values()
            .filter(|s| s.obj.matches(filter))
            .map(|s| s.obj.clone())
            .collect();
        (objs, sub)
    }
}
