//! Shared state of one simulated pool: the DB behind a mutex + condvar, configuration, sessions, tasks, faults.
//!
//! Writers use [`PoolState::write`] (locks, runs the closure, wakes `event.from` waiters). Readers use
//! [`PoolState::read`]. Task helpers implement XAPI's task life cycle (§5.3 of the spec).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use serde_json::json;
use xapi_types::{Ref, Type, Value, XapiError};

use crate::db::{rec, Db};
use crate::faults::Faults;

/// Configuration of a pool, fixed at build time.
#[derive(Clone)]
pub struct SimConfig {
    pub user: String,
    pub password: String,
    /// Delay before answering `SESSION_AUTHENTICATION_FAILED` (XAPI: ~5 s; default 0 here).
    pub auth_failure_delay: Duration,
    /// Bound of a legacy `event.next` queue (entries) before `EVENTS_LOST`.
    pub legacy_queue_limit: usize,
    /// Server-side batching delay of `event.from` (XAPI: 50 ms).
    pub event_batching: Duration,
    /// Bytes per second that disk streams (`/export`, `/export_raw_vdi`) are paced to, like a host bound by its
    /// storage or network (`None`: as fast as the simulator goes).
    pub export_rate: Option<u64>,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("auth_failure_delay", &self.auth_failure_delay)
            .field("legacy_queue_limit", &self.legacy_queue_limit)
            .field("event_batching", &self.event_batching)
            .field("export_rate", &self.export_rate)
            .finish()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            user: "root".into(),
            password: "root".into(),
            auth_failure_delay: Duration::ZERO,
            legacy_queue_limit: 10_000,
            event_batching: Duration::from_millis(50),
            export_rate: None,
        }
    }
}

/// A legacy `event.register` subscription.
#[derive(Debug, Clone)]
pub struct LegacyRegistration {
    /// Lower-case class names, or `*`.
    pub classes: HashSet<String>,
    /// Last change-log id delivered.
    pub cursor: u64,
}

/// The state of one pool, shared by all its host listeners (`Arc<PoolState>`).
#[derive(Debug)]
pub struct PoolState {
    db: Mutex<Db>,
    changed: Condvar,
    pub config: SimConfig,
    pub faults: Faults,
    shutdown: AtomicBool,
    /// Sessions made by `slave_local_login_with_password` (valid only on their host, even a slave).
    pub(crate) local_sessions: Mutex<HashSet<Ref>>,
    /// Legacy event registrations per session.
    pub(crate) legacy: Mutex<HashMap<Ref, LegacyRegistration>>,
    /// Console screens (text + RFB) per VM, served on `/console`.
    pub consoles: crate::console::Consoles,
    /// Ejected members: the pool each now masters alone, and its ref there (their listeners serve it).
    reborn: Mutex<HashMap<Ref, (std::sync::Arc<PoolState>, Ref)>>,
}

impl PoolState {
    pub fn new(db: Db, config: SimConfig) -> Self {
        PoolState {
            db: Mutex::new(db),
            changed: Condvar::new(),
            config,
            faults: Faults::default(),
            shutdown: AtomicBool::new(false),
            local_sessions: Mutex::new(HashSet::new()),
            legacy: Mutex::new(HashMap::new()),
            consoles: crate::console::Consoles::default(),
            reborn: Mutex::new(HashMap::new()),
        }
    }

    /// Run `f` with shared access to the DB.
    pub fn read<R>(&self, f: impl FnOnce(&Db) -> R) -> R {
        f(&self.db.lock())
    }

    /// Run `f` with exclusive access to the DB, then wake every blocked `event.from` / `event.next`.
    pub fn write<R>(&self, f: impl FnOnce(&mut Db) -> R) -> R {
        let out = f(&mut self.db.lock());
        self.changed.notify_all();
        out
    }

    /// Raw lock (for event waiting). Call [`PoolState::notify`] after writing through it.
    pub fn lock(&self) -> MutexGuard<'_, Db> {
        self.db.lock()
    }

    /// Wake every waiter.
    pub fn notify(&self) {
        self.changed.notify_all();
    }

    /// Wait for a write (or a notify) until `deadline`; false on timeout.
    pub fn wait_until(&self, guard: &mut MutexGuard<'_, Db>, deadline: Instant) -> bool {
        !self.changed.wait_until(guard, deadline).timed_out()
    }

    /// True once the pool is shutting down (blocked calls return early).
    pub fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Marks the pool (and the pools its ejected members made) as shutting down and wakes blocked calls.
    pub(crate) fn set_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.notify();
        let reborn: Vec<_> = self
            .reborn
            .lock()
            .values()
            .map(|(p, _)| p.clone())
            .collect();
        for p in reborn {
            p.set_shutdown();
        }
    }

    /// The pool object.
    pub fn pool_ref(&self) -> Ref {
        self.read(|db| db.refs("pool").into_iter().next().unwrap_or_else(Ref::null))
    }

    /// The current master (`pool.master`).
    pub fn master(&self) -> Ref {
        self.read(master_of)
    }

    /// `host.address` of a host ("" if unknown).
    pub fn host_address(&self, host: &Ref) -> String {
        self.read(|db| str_field(db, "host", host, "address"))
    }

    /// Hosts in creation order of their address (127.0.0.1, .2, …).
    pub fn hosts(&self) -> Vec<Ref> {
        self.read(|db| {
            let mut v: Vec<(String, Ref)> = db
                .all("host")
                .map(|(r, h)| (h["address"].as_str().unwrap_or("").to_owned(), r.clone()))
                .collect();
            v.sort_by_key(|(a, _)| {
                a.parse::<std::net::Ipv4Addr>()
                    .map(u32::from)
                    .unwrap_or(u32::MAX)
            });
            v.into_iter().map(|(_, r)| r).collect()
        })
    }

    // ----- sessions -----

    /// Create a session row for `user` on `host`.
    pub fn create_session(&self, user: &str, host: &Ref, originator: &str, local: bool) -> Ref {
        let now = now_xapi();
        let r = self.write(|db| {
            db.insert(
                "session",
                rec([
                    ("this_host", json!(host.0)),
                    ("last_active", json!(now)),
                    ("validation_time", json!(now)),
                    ("pool", json!(false)),
                    ("is_local_superuser", json!(true)),
                    ("auth_user_name", json!(user)),
                    ("originator", json!(originator)),
                    ("rbac_permissions", json!([])),
                    ("other_config", json!({})),
                    ("client_certificate", json!(false)),
                ]),
            )
        });
        let r = r.unwrap_or_else(|_| Ref::null());
        if local {
            self.local_sessions.lock().insert(r.clone());
        }
        r
    }

    /// Destroy a session (logout); wakes blocked calls so they answer `SESSION_INVALID`.
    pub fn destroy_session(&self, session: &Ref) {
        self.local_sessions.lock().remove(session);
        self.legacy.lock().remove(session);
        self.write(|db| {
            let _ = db.destroy("session", session);
        });
    }

    /// Whether a session exists.
    pub fn session_valid(&self, session: &Ref) -> bool {
        self.read(|db| db.exists("session", session))
    }

    /// `SESSION_INVALID [ref]` unless the session exists.
    pub fn check_session(&self, session: &Ref) -> Result<(), XapiError> {
        if self.session_valid(session) {
            Ok(())
        } else {
            Err(XapiError::new("SESSION_INVALID", [session.0.clone()]))
        }
    }

    /// True for a `slave_local_login_with_password` session.
    pub fn is_local_session(&self, session: &Ref) -> bool {
        self.local_sessions.lock().contains(session)
    }

    // ----- pool topology -----

    /// Simulate a toolstack restart on `host`: every session whose `this_host` is that host is destroyed.
    pub fn restart_host(&self, host: &Ref) {
        let gone: Vec<Ref> = self.read(|db| {
            db.find("session", |s| {
                s.get("this_host").and_then(Value::as_str) == Some(host.as_str())
            })
        });
        for s in gone {
            self.destroy_session(&s);
        }
    }

    /// `host` left this pool and is now `alone` in `pool`: what its listener serves from now on.
    pub fn set_reborn(&self, host: &Ref, pool: std::sync::Arc<PoolState>, alone: Ref) {
        self.reborn.lock().insert(host.clone(), (pool, alone));
    }

    /// The pool an ejected member masters now, and its ref there.
    pub fn reborn(&self, host: &Ref) -> Option<(std::sync::Arc<PoolState>, Ref)> {
        self.reborn.lock().get(host).cloned()
    }

    /// Make `host` the master: `pool.master` moves; the old master now answers `HOST_IS_SLAVE`.
    pub fn designate_master(&self, host: &Ref) -> Result<(), XapiError> {
        self.write(|db| {
            db.record("host", host)?;
            let pool = db
                .refs("pool")
                .into_iter()
                .next()
                .ok_or_else(|| XapiError::internal("no pool"))?;
            db.set_field("pool", &pool, "master", json!(host.0))
        })
    }

    // ----- tasks -----

    /// Create a pending task (as `task.create` / `Async.*` do).
    pub fn create_task(
        &self,
        label: &str,
        description: &str,
        host: &Ref,
        cancellable: bool,
    ) -> Ref {
        let now = now_xapi();
        self.write(|db| {
            db.insert(
                "task",
                rec([
                    ("name_label", json!(label)),
                    ("name_description", json!(description)),
                    (
                        "allowed_operations",
                        if cancellable {
                            json!(["cancel"])
                        } else {
                            json!([])
                        },
                    ),
                    ("created", json!(now)),
                    ("finished", json!(xapi_types::datetime::EPOCH)),
                    ("status", json!("pending")),
                    ("resident_on", json!(host.0)),
                    ("progress", json!(0.0)),
                    ("type", json!("<none/>")),
                ]),
            )
            .unwrap_or_else(|_| Ref::null())
        })
    }

    /// Set a pending task's progress (0..1).
    pub fn set_task_progress(&self, task: &Ref, progress: f64) {
        self.write(|db| {
            let _ = db.set_field("task", task, "progress", json!(progress));
        });
    }

    /// True when `task.cancel` was called on the task.
    pub fn task_cancelling(&self, task: &Ref) -> bool {
        self.read(|db| str_field(db, "task", task, "status") == "cancelling")
    }

    /// Finish a task: `success` with `result` = the XML-RPC text of the value (typed by `result_type`),
    /// or `failure` / `cancelled` (code `TASK_CANCELLED`) with `error_info`.
    pub fn complete_task(
        &self,
        task: &Ref,
        outcome: &Result<Value, XapiError>,
        result_type: &Type,
    ) {
        let now = now_xapi();
        let (status, result, error_info) = match outcome {
            Ok(v) => ("success", task_result_text(v, result_type), json!([])),
            Err(e) if e.code == "TASK_CANCELLED" => {
                ("cancelled", String::new(), json!(e.to_description()))
            }
            Err(e) => ("failure", String::new(), json!(e.to_description())),
        };
        self.write(|db| {
            let _ = db.update("task", task, |t| {
                t.insert("status".into(), json!(status));
                t.insert("progress".into(), json!(1.0));
                t.insert("finished".into(), json!(now));
                t.insert("allowed_operations".into(), json!([]));
                t.insert("result".into(), json!(result));
                t.insert("error_info".into(), error_info);
            });
        });
    }
}

/// `pool.master` read from a DB.
pub fn master_of(db: &Db) -> Ref {
    db.all("pool")
        .next()
        .and_then(|(_, p)| p.get("master").and_then(Value::as_str).map(Ref::from))
        .unwrap_or_else(Ref::null)
}

/// A string field ("" if absent).
pub fn str_field(db: &Db, class: &str, r: &Ref, field: &str) -> String {
    db.get(class, r)
        .and_then(|rec| rec.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The current time in XAPI datetime form.
pub fn now_xapi() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    xapi_types::datetime::format_unix(secs)
}

/// The XML-RPC serialisation of a task result (`<value>OpaqueRef:…</value>`; `""` for void), as XAPI stores it
/// in `task.result`.
pub fn task_result_text(v: &Value, ty: &Type) -> String {
    if matches!(ty, Type::Void) || (v.as_str() == Some("") && matches!(ty, Type::Any)) {
        return String::new();
    }
    xapi_types::xmlrpc::encode_value(v, ty)
}
