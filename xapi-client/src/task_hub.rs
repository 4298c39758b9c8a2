//! One shared `event.from(["task"], …)` loop per client that wakes every task waiter, instead of a long poll per
//! awaited task (XO's approach: a thousand concurrent async calls cost one connection, not a thousand).

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Map, Value};
use tokio::sync::oneshot;
use xapi_types::Ref;

use crate::events::{parse_event_batch, ClassNames, Op};
use crate::{Client, Error, Result};

/// Server-side timeout of each task-watching `event.from`.
const TASK_EVENT_TIMEOUT: f64 = 60.0;

/// Consecutive `event.from` failures tolerated (with a growing pause) before failing every waiter.
const MAX_RETRIES: u32 = 3;

type Waiter = oneshot::Sender<Result<Map<String, Value>>>;

/// Waiters by task, and the state of the shared loop.
#[derive(Default)]
pub(crate) struct TaskHub {
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    waiters: HashMap<Ref, Vec<Waiter>>,
    running: bool,
    /// Last `event.from` token; kept across loop restarts so a restarted loop sees only newer changes.
    token: String,
}

pub(crate) fn is_finished(rec: &Map<String, Value>) -> bool {
    matches!(
        rec.get("status").and_then(Value::as_str),
        Some("success" | "failure" | "cancelled")
    )
}

impl TaskHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a waiter; true if the caller must start the loop.
    fn register(&self, task: &Ref, tx: Waiter) -> bool {
        let mut st = self.lock();
        st.waiters.entry(task.clone()).or_default().push(tx);
        !std::mem::replace(&mut st.running, true)
    }

    /// Resolve every waiter of `task`.
    fn resolve(&self, task: &Ref, outcome: Result<Map<String, Value>>) {
        let waiters = self.lock().waiters.remove(task);
        send_all(waiters.unwrap_or_default(), outcome);
    }
}

fn send_all(waiters: Vec<Waiter>, outcome: Result<Map<String, Value>>) {
    let n = waiters.len();
    let mut outcome = Some(outcome);
    for (i, w) in waiters.into_iter().enumerate() {
        let o = if i + 1 == n {
            outcome.take()
        } else {
            outcome.clone()
        };
        if let Some(o) = o {
            let _ = w.send(o);
        }
    }
}

impl Client {
    /// Wait until the task is finished (status success, failure or cancelled) and return its final record,
    /// through the client's shared `event.from(["task"], …)` loop (no polling). [`Error::TaskVanished`] if the task
    /// is destroyed first. Dropping the future stops waiting (the task itself goes on; see
    /// [`Client::cancel_task`]).
    pub async fn wait_task(&self, task: &Ref) -> Result<Map<String, Value>> {
        let (tx, rx) = oneshot::channel();
        if self.inner.tasks.register(task, tx) {
            tokio::spawn(task_loop(self.clone()));
        }
        // Registered first, checked second: a completion either happened before this read (seen here) or after
        // it (seen by the loop, whose token cannot be past it without this read seeing it).
        self.check_task(task).await;
        rx.await
            .unwrap_or_else(|_| Err(Error::Transport("task watcher stopped".into())))
    }

    /// Resolve the waiters of `task` if it is already finished or gone (or cannot be read).
    async fn check_task(&self, task: &Ref) {
        match self.get_record("task", task).await {
            Ok(rec) if is_finished(&rec) => self.inner.tasks.resolve(task, Ok(rec)),
            Ok(_) => {}
            Err(Error::Xapi(e)) if e.code == "HANDLE_INVALID" => self
                .inner
                .tasks
                .resolve(task, Err(Error::TaskVanished(task.0.clone()))),
            Err(e) => self.inner.tasks.resolve(task, Err(e)),
        }
    }
}

/// The shared loop: runs while someone waits.
async fn task_loop(client: Client) {
    let hub = &client.inner.tasks;
    let classes = vec!["task".to_owned()];
    let names = ClassNames::new(["task"]);
    let mut failures = 0u32;
    loop {
        let token = {
            let mut st = hub.lock();
            st.waiters.retain(|_, ws| {
                ws.retain(|w| !w.is_closed());
                !ws.is_empty()
            });
            if st.waiters.is_empty() {
                st.running = false;
                return;
            }
            st.token.clone()
        };
        let batch = client
            .event_from_raw(&classes, &token, TASK_EVENT_TIMEOUT, true)
            .await
            .and_then(|v| parse_event_batch(v, &names));
        match batch {
            Ok(batch) => {
                failures = 0;
                let mut done = Vec::new();
                {
                    let mut st = hub.lock();
                    st.token = batch.token;
                    for ch in batch.changes {
                        let outcome = match (ch.op, ch.snapshot) {
                            (Op::Del, _) => Err(Error::TaskVanished(ch.obj_ref.0.clone())),
                            (_, Some(s)) => match s.decode() {
                                s if is_finished(&s) => Ok(s),
                                _ => continue,
                            },
                            _ => continue,
                        };
                        if let Some(ws) = st.waiters.remove(&ch.obj_ref) {
                            done.push((ws, outcome));
                        }
                    }
                }
                for (ws, outcome) in done {
                    send_all(ws, outcome);
                }
            }
            Err(e) if e.xapi_code() == Some("EVENTS_LOST") => {
                // Start over from the beginning; tasks that vanished meanwhile are found by reading them.
                hub.lock().token.clear();
                let tasks: Vec<Ref> = hub.lock().waiters.keys().cloned().collect();
                for t in tasks {
                    client.check_task(&t).await;
                }
            }
            Err(e) if failures < MAX_RETRIES => {
                failures += 1;
                tracing::debug!(attempt = failures, "task watcher failed, retrying: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200) * failures).await;
            }
            Err(e) => {
                tracing::debug!("task watcher failed: {e}");
                let waiters = {
                    let mut st = hub.lock();
                    st.running = false;
                    st.token.clear();
                    std::mem::take(&mut st.waiters)
                };
                for (_, ws) in waiters {
                    send_all(ws, Err(e.clone()));
                }
                return;
            }
        }
    }
}
