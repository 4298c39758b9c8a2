//! The pool watcher: a [`Stream`] of [`WatchEvent`]s from an initial full load followed by `event.from` changes,
//! resyncing on `EVENTS_LOST`/session loss and backing off (exponential, capped) on connection failures.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use xapi_types::{RawRecord, Ref};

use crate::events::{parse_event_batch_retained, ClassNames, ObjectChange, Op};
use crate::{Client, Error, Result};

/// Records of one class, `(ref, record)` pairs; each record is kept as the JSON text it arrived in.
pub type ClassRecords = Vec<(Ref, RawRecord)>;

/// Which fields of each record to keep: `keep(class, field)` (class in datamodel spelling). Records are trimmed
/// as they are split from the wire, so dropped fields never take memory.
#[derive(Clone)]
pub struct FieldFilter(Arc<KeepField>);

/// `keep(class, field)`.
type KeepField = dyn Fn(&str, &str) -> bool + Send + Sync;

impl FieldFilter {
    pub fn new(keep: impl Fn(&str, &str) -> bool + Send + Sync + 'static) -> Self {
        FieldFilter(Arc::new(keep))
    }

    /// Whether `field` of a `class` record is kept.
    pub fn keeps(&self, class: &str, field: &str) -> bool {
        (self.0)(class, field)
    }
}

impl std::fmt::Debug for FieldFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FieldFilter")
    }
}

/// What the watcher should follow and how.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Classes in datamodel spelling (`VM`, `host`, …). `None`: every class with `get_all_records` in
    /// `system.listMethods` (as XO does).
    pub classes: Option<Vec<String>>,
    /// Server-side `event.from` timeout in seconds (XO: 60.1); the client waits 6 s more.
    pub timeout_secs: f64,
    /// Pause before each `event.from`, to let bursts coalesce server-side (XO: 200 ms). Zero by default.
    pub debounce: Duration,
    /// First reconnect delay after a failure; doubled on each consecutive failure up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Events buffered between the watcher task and the consumer (the watcher waits when full).
    pub channel_capacity: usize,
    /// Keep only some fields of each record (full loads and event snapshots); `None`: every field.
    pub fields: Option<FieldFilter>,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            classes: None,
            timeout_secs: 60.1,
            debounce: Duration::ZERO,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            channel_capacity: 16,
            fields: None,
        }
    }
}

/// One item of the watcher stream.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// A complete snapshot of every watched class (key: datamodel class name; present even when empty).
    /// Replace everything known about the pool with it, atomically. Sent first, and again after every resync.
    Reset {
        records: HashMap<String, ClassRecords>,
    },
    /// Incremental changes since the previous item, in server order, at most one per object per batch.
    Changes(Vec<ObjectChange>),
    /// The connection or session failed; the watcher retries in `retry_in` and then sends a fresh `Reset`.
    Disconnected { error: String, retry_in: Duration },
}

/// The watcher stream. Dropping it stops the background task (and its pending `event.from`).
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::Receiver<WatchEvent>,
    task: JoinHandle<()>,
}

impl Stream for Watch {
    type Item = WatchEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Watch the pool: see [`WatchEvent`] for the protocol. Must be called inside a tokio runtime.
    pub fn watch(&self, opts: WatchOptions) -> Watch {
        let (tx, rx) = mpsc::channel(opts.channel_capacity.max(1));
        let task = tokio::spawn(run(self.clone(), opts, tx));
        Watch { rx, task }
    }
}

struct Loaded {
    classes: Vec<String>,
    names: ClassNames,
    token: String,
    records: HashMap<String, ClassRecords>,
}

/// Consecutive immediate resyncs (EVENTS_LOST / SESSION_INVALID) allowed before backing off.
const MAX_QUICK_RESYNCS: u32 = 3;

async fn run(client: Client, opts: WatchOptions, tx: mpsc::Sender<WatchEvent>) {
    let mut backoff = opts.backoff_initial;
    let mut quick_resyncs = 0u32;
    let mut after_connection_error = false;
    loop {
        let failure = match load(&client, &opts, after_connection_error).await {
            Err(e) => e,
            Ok(Loaded {
                classes,
                names,
                mut token,
                records,
            }) => {
                let task_class = classes
                    .iter()
                    .find(|c| c.eq_ignore_ascii_case("task"))
                    .cloned();
                let mut tasks: Option<HashSet<Ref>> = task_class.as_ref().map(|c| {
                    records
                        .get(c)
                        .map(|v| v.iter().map(|(r, _)| r.clone()).collect())
                        .unwrap_or_default()
                });
                tracing::debug!(classes = records.len(), "pool loaded");
                if tx.send(WatchEvent::Reset { records }).await.is_err() {
                    return;
                }
                backoff = opts.backoff_initial;
                after_connection_error = false;
                loop {
                    if !opts.debounce.is_zero() {
                        tokio::time::sleep(opts.debounce).await;
                    }
                    let batch = match client
                        .event_from_raw(&classes, &token, opts.timeout_secs, false)
                        .await
                        .and_then(|v| parse_event_batch_retained(v, &names, opts.fields.as_ref()))
                    {
                        Ok(b) => b,
                        Err(e) => break e,
                    };
                    quick_resyncs = 0;
                    token = batch.token;
                    let mut changes = batch.changes;
                    if let (Some(set), Some(class)) = (tasks.as_mut(), task_class.as_deref()) {
                        if let Err(e) =
                            track_tasks(&client, class, set, &mut changes, &batch.valid_ref_counts)
                                .await
                        {
                            break e;
                        }
                    }
                    if !changes.is_empty() && tx.send(WatchEvent::Changes(changes)).await.is_err() {
                        return;
                    }
                }
            }
        };
        if matches!(failure.xapi_code(), Some("EVENTS_LOST" | "SESSION_INVALID"))
            && quick_resyncs < MAX_QUICK_RESYNCS
        {
            quick_resyncs += 1;
            tracing::info!("event stream reset ({failure}), reloading the pool");
            continue;
        }
        quick_resyncs = 0;
        after_connection_error = failure.is_connection_error();
        tracing::warn!(retry_in = ?backoff, "pool watcher failed: {failure}");
        let ev = WatchEvent::Disconnected {
            error: failure.to_string(),
            retry_in: backoff,
        };
        if tx.send(ev).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(opts.backoff_max.max(opts.backoff_initial));
    }
}

/// Initial load: token first (`event.inject("pool", pool)`), then every class's records, fetched concurrently
/// (bounded by the client's concurrency limit).
async fn load(client: &Client, opts: &WatchOptions, fresh_login: bool) -> Result<Loaded> {
    if fresh_login {
        client.login().await?;
    }
    let classes = match &opts.classes {
        Some(c) => c.clone(),
        None => client.record_classes().await?,
    };
    let pool = client.pool_ref().await?;
    let token = client.event_inject("pool", &pool).await?;
    let fetches = classes.iter().map(|c| async move {
        let recs = match &opts.fields {
            None => client.get_all_records_raw(c).await,
            Some(f) => client.get_all_records_retained(c, |k| f.keeps(c, k)).await,
        };
        (c, recs)
    });
    let mut records = HashMap::with_capacity(classes.len());
    for (class, result) in futures::future::join_all(fetches).await {
        match result {
            Ok(recs) => {
                records.insert(class.clone(), recs);
            }
            Err(Error::Xapi(e))
                if matches!(
                    e.code.as_str(),
                    "MESSAGE_REMOVED" | "MESSAGE_METHOD_UNKNOWN"
                ) =>
            {
                tracing::debug!(class, "skipping class: {e}");
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(hosts) = records
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v)
    {
        let addresses: Vec<String> = hosts
            .iter()
            .filter_map(|(_, h)| h.get_str("address"))
            .filter(|a| !a.is_empty())
            .collect();
        if !addresses.is_empty() {
            client.set_pool_hosts(addresses);
        }
    }
    let names = ClassNames::new(classes.iter().map(String::as_str));
    Ok(Loaded {
        classes,
        names,
        token,
        records,
    })
}

/// Keep the set of known tasks and, when the server's task count disagrees (tasks can vanish without events on a
/// toolstack restart), reload the tasks and add the difference as changes (as XO does).
async fn track_tasks(
    client: &Client,
    class: &str,
    known: &mut HashSet<Ref>,
    changes: &mut Vec<ObjectChange>,
    counts: &HashMap<String, i64>,
) -> Result<()> {
    for ch in changes.iter().filter(|c| c.class == class) {
        match ch.op {
            Op::Del => known.remove(&ch.obj_ref),
            Op::Add | Op::Mod => known.insert(ch.obj_ref.clone()),
        };
    }
    let Some(&count) = counts.get("task") else {
        return Ok(());
    };
    if count == known.len() as i64 {
        return Ok(());
    }
    tracing::debug!(
        count,
        known = known.len(),
        "task count mismatch, reloading tasks"
    );
    let fresh = client.get_all_records_raw(class).await?;
    let fresh_refs: HashSet<Ref> = fresh.iter().map(|(r, _)| r.clone()).collect();
    for gone in known.difference(&fresh_refs) {
        changes.push(ObjectChange {
            class: class.to_owned(),
            obj_ref: gone.clone(),
            op: Op::Del,
            snapshot: None,
        });
    }
    for (r, rec) in fresh {
        if !known.contains(&r) {
            changes.push(ObjectChange {
                class: class.to_owned(),
                obj_ref: r,
                op: Op::Add,
                snapshot: Some(rec),
            });
        }
    }
    *known = fresh_refs;
    Ok(())
}
