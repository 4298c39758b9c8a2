//! [`Task`]: the handle code holds on a running task (progress, infos, warnings, sub-tasks, end, abort signal),
//! and the task-local "current task" (XO's `AsyncLocalStorage` of `@vates/task`).

use std::future::Future;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::abort::AbortSignal;
use super::log::{base36, TaskLog};
use super::node::{Node, Status};
use crate::app::now_ms;
use crate::error::ApiError;

/// What the current tokio task runs inside: a task, or an API call whose task is created on demand.
#[derive(Clone)]
pub(crate) enum Current {
    Task(Task),
    Lazy(Arc<super::api_call::LazyTask>),
}

tokio::task_local! {
    pub(crate) static CURRENT: Current;
}

/// A handle on a task of the [`TaskLog`] (cheap to clone). Changes after the task ended are ignored.
#[derive(Clone)]
pub struct Task {
    log: Arc<TaskLog>,
    root: Arc<str>,
    path: Arc<[usize]>,
    id: Arc<str>,
    signal: Arc<AbortSignal>,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id)
            .field("root", &self.root)
            .finish()
    }
}

impl Task {
    pub(crate) fn new(
        log: Arc<TaskLog>,
        root: Arc<str>,
        path: Vec<usize>,
        id: String,
        signal: Arc<AbortSignal>,
    ) -> Task {
        Task {
            log,
            root,
            path: path.into(),
            id: id.into(),
            signal,
        }
    }

    /// This task's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The id of its root task (what the REST API serves).
    pub fn root_id(&self) -> &str {
        &self.root
    }

    /// The task the current tokio task runs inside ([`Task::scope`]; inside an API method, its `API call` task,
    /// created on first use), if any.
    pub fn current() -> Option<Task> {
        CURRENT
            .try_with(|c| match c {
                Current::Task(t) => t.clone(),
                Current::Lazy(l) => l.task(),
            })
            .ok()
    }

    /// Runs `fut` with this task as [`Task::current`].
    pub async fn scope<F: Future>(&self, fut: F) -> F::Output {
        CURRENT.scope(Current::Task(self.clone()), fut).await
    }

    /// Sets a property (`properties.<name>`); the latest value wins.
    pub fn set_property(&self, name: &str, value: Value) {
        self.log.update(&self.root, &self.path, |n| {
            n.properties.insert(name.to_owned(), value);
        });
    }

    /// Sets `properties.progress` (0 to 100, clamped).
    pub fn set_progress(&self, percent: u8) {
        self.set_property("progress", json!(percent.min(100)));
    }

    /// Adds an info `{message, data}`.
    pub fn info(&self, message: &str, data: Value) {
        self.log.update(&self.root, &self.path, |n| {
            n.infos.push(json!({"message": message, "data": data}));
        });
    }

    /// Adds a warning `{message, data}`.
    pub fn warning(&self, message: &str, data: Value) {
        self.log.update(&self.root, &self.path, |n| {
            n.warnings.push(json!({"message": message, "data": data}));
        });
    }

    /// Starts a sub-task (it shares this task's abort signal). Once this task has left the log the sub-task
    /// is detached: its changes are ignored.
    pub fn subtask(&self, name: &str, mut properties: Map<String, Value>) -> Task {
        properties.insert("name".into(), Value::String(name.to_owned()));
        let id = base36(uuid::Uuid::new_v4().as_u128() >> 64);
        let node = Node::new(id.clone(), properties, now_ms());
        let index = self.log.update(&self.root, &self.path, |n| {
            n.tasks.push(node);
            n.tasks.len() - 1
        });
        let mut path = self.path.to_vec();
        path.push(index.unwrap_or(usize::MAX));
        Task::new(
            self.log.clone(),
            self.root.clone(),
            path,
            id,
            self.signal.clone(),
        )
    }

    /// Ends with `success` (or `aborted` if an abort was requested).
    pub fn success(&self, result: Value) {
        self.log
            .end(&self.root, &self.path, Status::Success, Some(result));
    }

    /// Ends with `failure` (or `aborted` if an abort was requested); `error` is the serialised error.
    pub fn failure(&self, error: Value) {
        self.log
            .end(&self.root, &self.path, Status::Failure, Some(error));
    }

    /// Whether an abort of this task (or of its root) was requested.
    pub fn is_aborted(&self) -> bool {
        self.signal.is_aborted()
    }

    /// Resolves once an abort is requested.
    pub async fn aborted(&self) {
        self.signal.aborted().await
    }

    /// Ends with `interrupted` if still pending (its owner went away).
    pub(crate) fn interrupt(&self) {
        self.log.interrupt(&self.root, &self.path);
    }

    /// Ends with the outcome of a call: `success` with the value, `failure` with the error as an admin sees it.
    pub(crate) fn end_with(&self, outcome: &Result<Value, ApiError>) {
        match outcome {
            Ok(v) => self.success(v.clone()),
            Err(e) => self.failure(e.to_json(true)),
        }
    }

    /// Runs `fut` inside this task (as [`Task::current`]) and ends the task with its outcome: `success` with
    /// the value, `failure` with the error as an admin sees it; `interrupted` if the future is dropped first.
    pub async fn run<F>(&self, fut: F) -> Result<Value, ApiError>
    where
        F: Future<Output = Result<Value, ApiError>>,
    {
        struct Guard<'a>(Option<&'a Task>);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                if let Some(t) = self.0 {
                    t.interrupt();
                }
            }
        }
        let mut guard = Guard(Some(self));
        let out = self.scope(fut).await;
        guard.0 = None;
        self.end_with(&out);
        out
    }
}
