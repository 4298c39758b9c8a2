//! The `API call: <method>` task every JSON-RPC call runs inside (XO `xo-mixins/api.mjs`): properties
//! `{name, method, params, type: 'api.call', userId?}`, forgotten once it succeeds (`clearLogOnSuccess`), so the
//! log keeps the failed and the running calls. Methods XO never logs ([`NO_LOG`]) run without a task. Unlike XO,
//! secret-looking params (passwords, tokens, OTPs, keys) are replaced with `* obfuscated *` before being stored.
//!
//! Cost: creating a task for every call costs measurable throughput (about a quarter of `session.getUser`
//! calls/s in `examples/bench_server.rs`), while a successful call leaves nothing behind anyway. So the task is
//! created lazily: a call whose handler completes at its first poll (no I/O wait, e.g. `session.getUser`) and
//! succeeds is never recorded, one that fails is recorded as a failed task (start = call start); a call that
//! waits (first poll pending) gets its pending task at once, as does a handler asking for
//! [`Task::current`]. What the log shows is XO's; only the never-observable pending phase of instant calls is
//! skipped.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;

use serde_json::{Map, Value};

use super::handle::{Current, CURRENT};
use super::{CreateOptions, Task, TaskLog};
use crate::app::now_ms;
use crate::error::ApiError;

/// Methods run without a task (XO's `NO_LOG_METHODS`).
pub const NO_LOG: &[&str] = &[
    "host.stats",
    "pool.listMissingPatches",
    "proxy.getApplianceUpdaterState",
    "pool.getGuestSecureBootReadiness",
    "vm.getSecurebootReadiness",
];

/// What replaces a secret value.
pub const REDACTED: &str = "* obfuscated *";

/// Whether a params key holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("token")
        || k.contains("secret")
        || k.contains("passphrase")
        || k == "otp"
        || k == "encryptionkey"
        || k == "apikey"
        || k == "privatekey"
}

/// A copy of `value` with every secret-keyed value (at any depth) replaced by [`REDACTED`].
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(redact_map(m)),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        other => other.clone(),
    }
}

fn redact_map(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k) && !v.is_null() {
                Value::String(REDACTED.into())
            } else {
                redact(v)
            };
            (k.clone(), v)
        })
        .collect()
}

/// The task of one API call, created on first need.
pub struct LazyTask {
    log: Arc<TaskLog>,
    method: String,
    params: Map<String, Value>,
    user_id: Option<String>,
    start: i64,
    task: OnceLock<Task>,
}

impl std::fmt::Debug for LazyTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyTask")
            .field("method", &self.method)
            .field("task", &self.task.get())
            .finish_non_exhaustive()
    }
}

impl LazyTask {
    /// The call's task, created now if it does not exist yet.
    pub fn task(&self) -> Task {
        self.task
            .get_or_init(|| {
                let mut properties = Map::new();
                properties.insert("method".into(), Value::String(self.method.clone()));
                properties.insert("params".into(), Value::Object(self.params.clone()));
                properties.insert("type".into(), Value::String("api.call".into()));
                if let Some(u) = &self.user_id {
                    properties.insert("userId".into(), Value::String(u.clone()));
                }
                self.log.create_at(
                    &format!("API call: {}", self.method),
                    properties,
                    CreateOptions {
                        clear_on_success: true,
                    },
                    self.start,
                )
            })
            .clone()
    }
}

/// Prepares the task of a call to `method` (validated `params`, caller `user_id`); `None` for [`NO_LOG`] methods.
pub fn prepare(
    log: &Arc<TaskLog>,
    method: &str,
    params: &Map<String, Value>,
    user_id: Option<&str>,
) -> Option<Arc<LazyTask>> {
    if NO_LOG.contains(&method) {
        return None;
    }
    Some(Arc::new(LazyTask {
        log: log.clone(),
        method: method.to_owned(),
        params: redact_map(params),
        user_id: user_id.map(str::to_owned),
        start: now_ms(),
        task: OnceLock::new(),
    }))
}

/// Runs the handler future `fut` of a call prepared with [`prepare`] (see the module doc for when the task is
/// recorded); the call's outcome.
pub async fn run<F>(lazy: Option<Arc<LazyTask>>, fut: F) -> Result<Value, ApiError>
where
    F: Future<Output = Result<Value, ApiError>>,
{
    let Some(lazy) = lazy else {
        return fut.await;
    };
    let mut fut = pin!(CURRENT.scope(Current::Lazy(lazy.clone()), fut));
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    if let Poll::Ready(out) = first {
        match lazy.task.get() {
            Some(task) => task.end_with(&out),
            None if out.is_err() => lazy.task().end_with(&out),
            None => {}
        }
        return out;
    }
    struct Guard(Option<Task>);
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(t) = self.0.take() {
                t.interrupt();
            }
        }
    }
    let task = lazy.task();
    let mut guard = Guard(Some(task.clone()));
    let out = fut.await;
    guard.0 = None;
    task.end_with(&out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let p = json!({"email": "a@b", "password": "pw", "nested": [{"authenticationToken": "t", "x": 1}],
            "otp": "123456", "bind": {"dn": "cn=x", "password": null}});
        assert_eq!(
            redact(&p),
            json!({"email": "a@b", "password": REDACTED, "nested": [{"authenticationToken": REDACTED, "x": 1}],
                "otp": REDACTED, "bind": {"dn": "cn=x", "password": null}})
        );
    }

    #[test]
    fn no_log_methods_get_no_task() {
        let log = TaskLog::new(10);
        assert!(prepare(&log, "host.stats", &Map::new(), None).is_none());
        let t = prepare(&log, "vm.start", &Map::new(), Some("u1"))
            .unwrap()
            .task();
        let v = log.get(t.id()).unwrap();
        assert_eq!(v["properties"]["name"], "API call: vm.start");
        assert_eq!(v["properties"]["type"], "api.call");
        assert_eq!(v["properties"]["userId"], "u1");
    }

    #[tokio::test]
    async fn instant_successes_leave_no_trace_failures_and_waits_do() {
        let log = TaskLog::new(10);
        let p = |m: &str| prepare(&log, m, &Map::new(), None);
        assert_eq!(run(p("a.ok"), async { Ok(json!(1)) }).await, Ok(json!(1)));
        assert!(log.is_empty());
        let e = run(p("a.ko"), async { Err(ApiError::internal("no")) }).await;
        assert!(e.is_err());
        let failed = log.list(|_| true, None);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0]["status"], "failure");
        assert_eq!(failed[0]["properties"]["method"], "a.ko");
        // a call that waits is visible while it runs
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let log2 = log.clone();
        let call = tokio::spawn(async move {
            let lazy = prepare(&log2, "a.wait", &Map::new(), None);
            run(lazy, async move {
                let _ = rx.await;
                Ok(json!(2))
            })
            .await
        });
        loop {
            if !log.list(|t| t["status"] == "pending", None).is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        tx.send(()).unwrap();
        assert_eq!(call.await.unwrap(), Ok(json!(2)));
        assert_eq!(log.len(), 1, "the successful wait is forgotten");
        // a handler asking for its task gets it, even when instant
        let r = run(p("a.current"), async {
            let t = Task::current().unwrap();
            t.set_progress(100);
            Ok(json!(t.id().to_owned()))
        })
        .await
        .unwrap();
        assert!(
            log.get(r.as_str().unwrap()).is_err(),
            "succeeded, so forgotten"
        );
    }
}
