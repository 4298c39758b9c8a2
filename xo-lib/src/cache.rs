//! An object cache kept in sync with xo-server: a full snapshot from `xo.getAllObjects`, then `all`
//! notifications (`enter` = added/updated full objects, `exit` = removed ids). After a reconnection
//! (signed in again) or when events were missed, it resyncs: notifications received while the snapshot
//! is fetched are replayed on top of it, so the cache converges to the server's state.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::{json, Map, Value};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;

use crate::client::{Event, Xo};
use crate::error::{Error, Result};
use crate::types::{Notification, ObjectsChange};

/// A change of the cache.
#[derive(Clone, Debug, PartialEq)]
pub enum CacheEvent {
    /// These objects were added or updated.
    Entered(Vec<String>),
    /// These objects were removed.
    Exited(Vec<String>),
    /// The whole content was replaced by a fresh snapshot (the `generation` it now has).
    Resynced(u64),
}

struct State {
    objects: HashMap<String, Value>,
    generation: u64,
}

struct Inner {
    state: RwLock<State>,
    changes: broadcast::Sender<CacheEvent>,
}

impl Inner {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, n: &Notification) {
        match n.objects_change() {
            Some(ObjectsChange::Enter(items)) => {
                let ids: Vec<String> = items.keys().cloned().collect();
                self.write().objects.extend(items);
                let _ = self.changes.send(CacheEvent::Entered(ids));
            }
            Some(ObjectsChange::Exit(ids)) => {
                {
                    let mut s = self.write();
                    for id in &ids {
                        s.objects.remove(id);
                    }
                }
                let _ = self.changes.send(CacheEvent::Exited(ids));
            }
            None => {}
        }
    }

    fn replace(&self, objects: Map<String, Value>) {
        let generation = {
            let mut s = self.write();
            s.objects = objects.into_iter().collect();
            s.generation += 1;
            s.generation
        };
        let _ = self.changes.send(CacheEvent::Resynced(generation));
    }
}

/// The object cache (cheap to clone; the sync task stops when the last clone is dropped).
#[derive(Clone)]
pub struct ObjectCache {
    inner: Arc<Inner>,
    task: Arc<AbortOnDrop>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for ObjectCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.inner.read();
        f.debug_struct("ObjectCache")
            .field("objects", &s.objects.len())
            .field("generation", &s.generation)
            .finish()
    }
}

async fn fetch(xo: &Xo) -> Result<Map<String, Value>> {
    match xo.call("xo.getAllObjects", json!({})).await? {
        Value::Object(m) => Ok(m),
        other => Err(Error::Decode(format!(
            "xo.getAllObjects returned {}",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Fetches a snapshot while buffering notifications, then installs it and replays them. `Ok(false)`
/// when events were missed during the fetch (try again).
async fn resync(xo: &Xo, inner: &Inner, events: &mut broadcast::Receiver<Event>) -> Result<bool> {
    let call = fetch(xo);
    tokio::pin!(call);
    let mut buffered = Vec::new();
    let snapshot = loop {
        tokio::select! {
            r = &mut call => break r?,
            ev = events.recv() => match ev {
                Ok(Event::Notification(n)) => buffered.push(n),
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return Ok(false),
                Err(RecvError::Closed) => return Err(Error::ConnectionClosed),
            }
        }
    };
    inner.replace(snapshot);
    for n in &buffered {
        inner.apply(n);
    }
    Ok(true)
}

async fn run(xo: Xo, inner: Arc<Inner>, mut events: broadcast::Receiver<Event>) {
    let mut needs_sync = false;
    loop {
        if needs_sync {
            match resync(&xo, &inner, &mut events).await {
                Ok(true) => needs_sync = false,
                Ok(false) => continue,
                Err(e) => {
                    // the connection went away: wait for the next sign-in
                    tracing::debug!(error = %e, "object cache resync failed");
                    needs_sync = false;
                }
            }
        }
        match events.recv().await {
            Ok(Event::Notification(n)) => inner.apply(&n),
            Ok(Event::SignedIn(_)) => needs_sync = true,
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => {
                tracing::info!(missed = n, "object cache missed events, resyncing");
                needs_sync = true;
            }
            Err(RecvError::Closed) => return,
        }
    }
}

impl ObjectCache {
    /// Loads every object with `xo.getAllObjects` (the client must be signed in) and keeps them in sync.
    pub async fn start(xo: &Xo) -> Result<ObjectCache> {
        let (changes, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            state: RwLock::new(State {
                objects: HashMap::new(),
                generation: 0,
            }),
            changes,
        });
        let mut events = xo.events();
        loop {
            if resync(xo, &inner, &mut events).await? {
                break;
            }
        }
        let task = tokio::spawn(run(xo.clone(), inner.clone(), events));
        Ok(ObjectCache {
            inner,
            task: Arc::new(AbortOnDrop(task)),
        })
    }

    /// One object by id.
    pub fn get(&self, id: &str) -> Option<Value> {
        self.inner.read().objects.get(id).cloned()
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.inner.read().objects.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many full snapshots were installed (1 after start, +1 per resync).
    pub fn generation(&self) -> u64 {
        self.inner.read().generation
    }

    /// All objects (cloned).
    pub fn objects(&self) -> HashMap<String, Value> {
        self.inner.read().objects.clone()
    }

    /// The objects matching `pred`.
    pub fn find(&self, mut pred: impl FnMut(&Value) -> bool) -> Vec<Value> {
        self.inner
            .read()
            .objects
            .values()
            .filter(|v| pred(v))
            .cloned()
            .collect()
    }

    /// The objects of one XO type (`VM`, `host`, `SR`, `VM-template`…).
    pub fn of_type(&self, ty: &str) -> Vec<Value> {
        self.find(|v| v.get("type").and_then(Value::as_str) == Some(ty))
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<CacheEvent> {
        self.inner.changes.subscribe()
    }

    /// Waits until `f` returns `Some` for the current content (checked now and after every change).
    /// Wrap in `tokio::time::timeout` to bound the wait.
    pub async fn wait_until<T>(
        &self,
        mut f: impl FnMut(&HashMap<String, Value>) -> Option<T>,
    ) -> T {
        let mut changes = self.subscribe();
        loop {
            if let Some(t) = f(&self.inner.read().objects) {
                return t;
            }
            match changes.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }

    /// Whether the sync task still runs.
    pub fn is_running(&self) -> bool {
        !self.task.0.is_finished()
    }
}
