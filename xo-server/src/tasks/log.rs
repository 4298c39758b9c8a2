//! The in-memory task log: live and finished root tasks (ids sortable by creation time), the last `keep`
//! finished ones kept, change notification for watchers (`?wait=` of the REST API) through a per-task
//! `tokio::sync::watch` channel that only exists while someone watches.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::sync::watch;

use super::abort::AbortSignal;
use super::handle::Task;
use super::node::{Node, Status};
use crate::app::now_ms;

/// Finished root tasks kept by default.
pub const DEFAULT_KEEP: usize = 1000;

/// Task log errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// No task with this id (never existed, removed, or not live for an abort).
    #[error("no such task {0}")]
    NoSuchTask(String),
    /// The task is still running.
    #[error("task {0} is still pending")]
    Pending(String),
}

/// Latest snapshot of a watched task (`None` until the first change after subscribing).
pub type TaskWatch = watch::Receiver<Option<Arc<Value>>>;

struct Root {
    node: Node,
    updated_at: i64,
    signal: Arc<AbortSignal>,
    clear_on_success: bool,
    watch: Option<watch::Sender<Option<Arc<Value>>>>,
}

impl Root {
    fn to_json(&self) -> Value {
        let mut v = self.node.to_json();
        if let Value::Object(m) = &mut v {
            m.insert("updatedAt".into(), self.updated_at.into());
        }
        v
    }

    fn touched(&mut self, now: i64) {
        self.updated_at = now;
        if let Some(tx) = &self.watch {
            if tx.receiver_count() > 0 {
                tx.send_replace(Some(Arc::new(self.to_json())));
            } else {
                self.watch = None;
            }
        }
    }
}

#[derive(Default)]
struct State {
    roots: BTreeMap<String, Root>,
    finished: VecDeque<String>,
}

/// Options of [`TaskLog::create_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateOptions {
    /// Forget the task once it ends with `success` (XO's `clearLogOnSuccess`, used for API calls).
    pub clear_on_success: bool,
}

/// XO's task log (an app component: [`crate::App::tasks`]).
pub struct TaskLog {
    state: Mutex<State>,
    keep: AtomicUsize,
}

impl std::fmt::Debug for TaskLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskLog")
            .field("tasks", &self.state.lock().roots.len())
            .field("keep", &self.keep.load(Ordering::Relaxed))
            .finish()
    }
}

/// `Date.now().toString(36).padStart(9, '0')`: compact and sortable.
fn format_id(ms: i64) -> String {
    let s = base36(ms.max(0) as u128);
    format!("{s:0>9}")
}

pub(crate) fn base36(mut n: u128) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

impl TaskLog {
    /// An empty log keeping the last `keep` finished root tasks.
    pub fn new(keep: usize) -> Arc<TaskLog> {
        Arc::new(TaskLog {
            state: Mutex::new(State::default()),
            keep: AtomicUsize::new(keep),
        })
    }

    /// Changes how many finished root tasks are kept (applied at the next end of a task).
    pub fn set_keep(&self, keep: usize) {
        self.keep.store(keep, Ordering::Relaxed);
    }

    /// Starts a root task named `name` with extra `properties` (e.g. `objectId`, `userId`, `type`).
    pub fn create(self: &Arc<Self>, name: &str, properties: Map<String, Value>) -> Task {
        self.create_with(name, properties, CreateOptions::default())
    }

    /// [`TaskLog::create`] with options.
    pub fn create_with(
        self: &Arc<Self>,
        name: &str,
        properties: Map<String, Value>,
        options: CreateOptions,
    ) -> Task {
        self.create_at(name, properties, options, now_ms())
    }

    /// [`TaskLog::create_with`] for a task that started at `start` (ms epoch).
    pub(crate) fn create_at(
        self: &Arc<Self>,
        name: &str,
        mut properties: Map<String, Value>,
        options: CreateOptions,
        start: i64,
    ) -> Task {
        properties.insert("name".into(), Value::String(name.to_owned()));
        let signal = Arc::new(AbortSignal::default());
        let now = start;
        let mut state = self.state.lock();
        let mut ms = now;
        let mut id = format_id(ms);
        while state.roots.contains_key(&id) {
            ms += 1;
            id = format_id(ms);
        }
        state.roots.insert(
            id.clone(),
            Root {
                node: Node::new(id.clone(), properties, now),
                updated_at: now_ms(),
                signal: signal.clone(),
                clear_on_success: options.clear_on_success,
                watch: None,
            },
        );
        drop(state);
        Task::new(self.clone(), Arc::from(id.as_str()), Vec::new(), id, signal)
    }

    /// The log entry of a root task.
    pub fn get(&self, id: &str) -> Result<Value, TaskError> {
        self.state
            .lock()
            .roots
            .get(id)
            .map(Root::to_json)
            .ok_or_else(|| TaskError::NoSuchTask(id.to_owned()))
    }

    /// Root tasks, oldest first, that pass `filter`; at most `limit`.
    pub fn list(&self, filter: impl Fn(&Value) -> bool, limit: Option<usize>) -> Vec<Value> {
        let state = self.state.lock();
        let mut out = Vec::new();
        for r in state.roots.values() {
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            let v = r.to_json();
            if filter(&v) {
                out.push(v);
            }
        }
        out
    }

    /// How many root tasks the log holds.
    pub fn len(&self) -> usize {
        self.state.lock().roots.len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests the abort of a live root task (its sub-tasks share the signal).
    pub fn abort(&self, id: &str) -> Result<(), TaskError> {
        let mut state = self.state.lock();
        let root = state
            .roots
            .get_mut(id)
            .filter(|r| r.node.status == Status::Pending)
            .ok_or_else(|| TaskError::NoSuchTask(id.to_owned()))?;
        root.signal.abort();
        let now = now_ms();
        root.node.abortion_requested_at.get_or_insert(now);
        root.touched(now);
        Ok(())
    }

    /// Removes a finished root task.
    pub fn delete(&self, id: &str) -> Result<(), TaskError> {
        let mut state = self.state.lock();
        match state.roots.get(id) {
            None => return Err(TaskError::NoSuchTask(id.to_owned())),
            Some(r) if r.node.status == Status::Pending => {
                return Err(TaskError::Pending(id.to_owned()))
            }
            Some(_) => {}
        }
        state.roots.remove(id);
        state.finished.retain(|f| f != id);
        Ok(())
    }

    /// Removes every finished root task.
    pub fn clear(&self) {
        let mut state = self.state.lock();
        state.roots.retain(|_, r| r.node.status == Status::Pending);
        state.finished.clear();
    }

    /// The current entry of a root task and a receiver of its next snapshots (each change sends one; the
    /// channel closes when the task leaves the log).
    pub fn watch(&self, id: &str) -> Result<(Value, TaskWatch), TaskError> {
        let mut state = self.state.lock();
        let root = state
            .roots
            .get_mut(id)
            .ok_or_else(|| TaskError::NoSuchTask(id.to_owned()))?;
        let rx = match &root.watch {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(None);
                root.watch = Some(tx);
                rx
            }
        };
        Ok((root.to_json(), rx))
    }

    /// Closes every watch channel: pending `?wait` requests answer with the last state they saw (used at
    /// shutdown, so that no request waits for a task that will never end).
    pub fn release_watchers(&self) {
        for r in self.state.lock().roots.values_mut() {
            r.watch = None;
        }
    }

    /// How many watchers ([`TaskLog::watch`] receivers) a root task has.
    pub fn watchers(&self, id: &str) -> usize {
        self.state
            .lock()
            .roots
            .get(id)
            .and_then(|r| r.watch.as_ref())
            .map_or(0, |tx| tx.receiver_count())
    }

    /// Applies `f` to the task at `path` under root `root` (no-op once the root left the log).
    pub(crate) fn update<R>(
        &self,
        root: &str,
        path: &[usize],
        f: impl FnOnce(&mut Node) -> R,
    ) -> Option<R> {
        let mut state = self.state.lock();
        let r = state.roots.get_mut(root)?;
        let out = f(r.node.at_mut(path)?);
        r.touched(now_ms());
        Some(out)
    }

    /// Ends the task at `path` (if still pending): `aborted` instead of `status` once an abort was requested.
    pub(crate) fn end(
        &self,
        root: &str,
        path: &[usize],
        status: Status,
        result: Option<Value>,
    ) -> bool {
        let now = now_ms();
        let mut state = self.state.lock();
        let Some(r) = state.roots.get_mut(root) else {
            return false;
        };
        let aborted = r.signal.is_aborted();
        let Some(node) = r.node.at_mut(path) else {
            return false;
        };
        if node.status != Status::Pending {
            return false;
        }
        node.status = if aborted && matches!(status, Status::Success | Status::Failure) {
            Status::Aborted
        } else {
            status
        };
        node.end = Some(now);
        node.result = result;
        if !path.is_empty() {
            r.touched(now);
            return true;
        }
        r.node.interrupt_pending_children(now);
        r.touched(now);
        if r.clear_on_success && r.node.status == Status::Success {
            state.roots.remove(root);
            return true;
        }
        state.finished.push_back(root.to_owned());
        let keep = self.keep.load(Ordering::Relaxed);
        while state.finished.len() > keep {
            if let Some(old) = state.finished.pop_front() {
                state.roots.remove(&old);
            }
        }
        true
    }

    /// Requests `interrupted` for a task still pending when its owner went away.
    pub(crate) fn interrupt(&self, root: &str, path: &[usize]) {
        self.end(root, path, Status::Interrupted, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_base36_padded() {
        assert_eq!(format_id(0), "000000000");
        // (1700000000000).toString(36).padStart(9, "0") in node
        assert_eq!(format_id(1_700_000_000_000), "0loyw3v28");
        assert_eq!(base36(35), "z");
    }

    #[test]
    fn keeps_the_last_finished_roots() {
        let log = TaskLog::new(2);
        let tasks: Vec<Task> = (0..4)
            .map(|i| log.create(&format!("t{i}"), Map::new()))
            .collect();
        for t in &tasks {
            t.success(json!(true));
        }
        let names: Vec<Value> = log
            .list(|_| true, None)
            .into_iter()
            .map(|t| t["properties"]["name"].clone())
            .collect();
        assert_eq!(names, [json!("t2"), json!("t3")]);
        // pending ones are never evicted
        let p = log.create("pending", Map::new());
        log.set_keep(0);
        log.create("x", Map::new())
            .failure(json!({"message": "no"}));
        assert_eq!(log.len(), 1);
        assert_eq!(log.get(p.id()).unwrap()["status"], "pending");
        assert_eq!(
            log.delete(p.id()),
            Err(TaskError::Pending(p.id().to_owned()))
        );
        assert_eq!(
            log.delete("nope"),
            Err(TaskError::NoSuchTask("nope".into()))
        );
    }

    #[test]
    fn sub_tasks_progress_and_abort() {
        let log = TaskLog::new(10);
        let root = log.create("root", Map::new());
        let sub = root.subtask("sub", Map::new());
        sub.set_progress(50);
        sub.info("halfway", json!({"n": 1}));
        root.warning("careful", Value::Null);
        assert!(!sub.is_aborted());
        log.abort(root.id()).unwrap();
        assert!(sub.is_aborted());
        sub.success(json!(1));
        let v = log.get(root.id()).unwrap();
        assert!(v["abortionRequestedAt"].is_number());
        assert_eq!(v["tasks"][0]["status"], "aborted");
        assert_eq!(v["tasks"][0]["properties"]["progress"], 50);
        assert_eq!(
            v["tasks"][0]["infos"],
            json!([{"message": "halfway", "data": {"n": 1}}])
        );
        assert_eq!(v["warnings"], json!([{"message": "careful", "data": null}]));
        let pending = root.subtask("left", Map::new());
        root.failure(json!({"message": "stop"}));
        let v = log.get(root.id()).unwrap();
        assert_eq!(v["status"], "aborted");
        assert_eq!(v["tasks"][1]["status"], "interrupted");
        // ended tasks ignore further changes; aborting a finished task is refused
        pending.success(json!(2));
        assert_eq!(
            log.get(root.id()).unwrap()["tasks"][1]["status"],
            "interrupted"
        );
        assert!(log.abort(root.id()).is_err());
    }

    #[test]
    fn cleared_on_success_but_kept_on_failure() {
        let log = TaskLog::new(10);
        let opts = CreateOptions {
            clear_on_success: true,
        };
        let ok = log.create_with("API call: a.b", Map::new(), opts);
        let (snapshot, mut rx) = log.watch(ok.id()).unwrap();
        assert_eq!(snapshot["status"], "pending");
        ok.success(json!(true));
        assert!(log.get(ok.id()).is_err());
        // the watcher still sees the final state
        assert!(rx.has_changed().unwrap_or(true));
        assert_eq!(
            rx.borrow_and_update().as_ref().unwrap()["status"],
            "success"
        );
        let ko = log.create_with("API call: a.c", Map::new(), opts);
        ko.failure(json!({"code": 1}));
        assert_eq!(log.get(ko.id()).unwrap()["result"], json!({"code": 1}));
        log.clear();
        assert!(log.is_empty());
        // released watchers see their channel close
        let pending = log.create("pending", Map::new());
        let (_, rx) = log.watch(pending.id()).unwrap();
        assert_eq!(log.watchers(pending.id()), 1);
        log.release_watchers();
        assert!(rx.has_changed().is_err());
        assert_eq!(log.watchers(pending.id()), 0);
    }
}
