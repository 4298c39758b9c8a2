//! The RPC dispatcher: wire method name → handler, with XAPI's generic checks (arity, session, master/slave,
//! parameter coercion), `Async.*` task wrapping and `system.listMethods`.
//!
//! Order of checks for `Class.message` (mirrors XAPI's server stubs):
//! 1. a pending injected fault for the method ([`crate::Faults::fail_next`]) is returned first;
//! 2. unknown class/message → `MESSAGE_METHOD_UNKNOWN [method]`; removed message → `MESSAGE_REMOVED []`;
//!    `Async.` on a message without an async variant → `MESSAGE_METHOD_UNKNOWN`;
//! 3. parameter count outside `[required, declared]` → `MESSAGE_PARAMETER_COUNT_MISMATCH [method, declared, got]`;
//! 4. session check → `SESSION_INVALID [ref]`; call on a non-master host with a non-local session →
//!    `HOST_IS_SLAVE [master address]`;
//! 5. parameters coerced by their declared types (`FIELD_TYPE_ERROR [param]`, `INVALID_VALUE [param, value]` for
//!    a bad enum value);
//! 6. the registered [`Handler`] runs with the params **after** the session (trailing optional params may be
//!    missing). Without a registered handler: implicit messages are answered generically (`generic.rs`), explicit
//!    `set_X` / `add_to_X` / `remove_from_X` / `add_X` / `remove_X` messages on a field X act like the implicit
//!    ones (that is what most of XAPI's explicit setters do), any other explicit message answers
//!    `NOT_IMPLEMENTED [Class.message]` (it exists in XAPI, so `MESSAGE_METHOD_UNKNOWN` would lie).
//!
//! Built-in handlers (sessions, events, tasks) are registered first, then `crate::ops::register`, then the
//! builder's [`crate::SimBuilder::handler`]s, so later registrations override earlier ones.
//!
//! Big results are not materialised: `<Class>.get_all_records(_where)` without a registered handler and the
//! built-in `event.from` return a [`Deferred`] that the server encodes record by record from the DB
//! ([`Outcome::into_result`] materialises it for in-process callers).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use xapi_types::schema::{self, ClassSpec, MessageSpec, Type};
use xapi_types::{Ref, Value, XapiError};

use crate::state::PoolState;

/// What a handler sees of the call.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The pool.
    pub pool: Arc<PoolState>,
    /// The caller's (validated) session; `None` for session-less calls (login, listMethods).
    pub session: Option<Ref>,
    /// The host that received the call (the master, except for local sessions on slaves).
    pub host: Ref,
    /// The wire name without `Async.` (`VM.start`).
    pub method: String,
    /// The task when running as `Async.<method>`: handlers may update its progress and should check
    /// [`PoolState::task_cancelling`] in long operations (then fail with `TASK_CANCELLED [task]`).
    pub task: Option<Ref>,
}

/// A message implementation: gets the params after the session, coerced to their declared types.
pub type Handler = fn(&Ctx, Vec<Value>) -> Result<Value, XapiError>;

/// Method name (`Class.message`, without `Async.`) → handler.
#[derive(Default)]
pub struct Registry {
    handlers: HashMap<String, Handler>,
    /// Built-ins whose result the server streams from the DB (until someone registers a replacement).
    streaming: std::collections::HashSet<String>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("handlers", &self.handlers.len())
            .finish()
    }
}

impl Registry {
    /// Register (or replace) the handler of `Class.message`.
    pub fn register(&mut self, method: &str, handler: Handler) {
        self.handlers.insert(method.to_owned(), handler);
        self.streaming.remove(method);
    }

    /// Mark the built-in just registered for `method` as streamed by the server.
    pub(crate) fn mark_streaming(&mut self, method: &str) {
        self.streaming.insert(method.to_owned());
    }

    pub fn get(&self, method: &str) -> Option<Handler> {
        self.handlers.get(method).copied()
    }

    pub fn contains(&self, method: &str) -> bool {
        self.handlers.contains_key(method)
    }

    /// The full registry: built-ins then `ops::register`.
    pub fn standard() -> Self {
        let mut reg = Registry::default();
        crate::session::register(&mut reg);
        crate::events::register(&mut reg);
        crate::tasks::register(&mut reg);
        crate::ops::register(&mut reg);
        reg
    }
}

/// The result of a dispatch: the outcome and how to encode it.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<Value, XapiError>,
    /// Type directing the XML-RPC encoding.
    pub ty: Type,
    /// True for `system.listMethods` (no `Status` envelope in XML-RPC).
    pub bare: bool,
    /// Set for results too big to materialise: the server streams them from the DB (then `result` is `Ok(Null)`).
    pub deferred: Option<Deferred>,
}

/// A result encoded straight from the DB, record by record, instead of being cloned into one big value.
#[derive(Debug, Clone)]
pub enum Deferred {
    /// `<class>.get_all_records` / `get_all_records_where` (records matching `expr`, all if `None`).
    AllRecords {
        class: &'static str,
        expr: Option<crate::generic::Expr>,
    },
    /// `event.from`: snapshots are read from the DB while encoding.
    Events(crate::events::PendingBatch),
}

impl Deferred {
    /// Build the value (for in-process callers).
    pub fn materialise(&self, pool: &PoolState) -> Value {
        match self {
            Deferred::AllRecords { class, expr } => pool.read(|db| {
                let mut out = serde_json::Map::new();
                for (r, rec) in db.all(class) {
                    if expr.as_ref().is_none_or(|e| e.eval(rec)) {
                        out.insert(r.0.clone(), Value::Object(rec.clone()));
                    }
                }
                Value::Object(out)
            }),
            Deferred::Events(b) => pool.read(|db| b.materialise(db)),
        }
    }
}

impl Outcome {
    /// A failure.
    pub fn err(e: XapiError) -> Self {
        Outcome {
            result: Err(e),
            ty: Type::Any,
            bare: false,
            deferred: None,
        }
    }

    /// The plain result, materialising a deferred one.
    pub fn into_result(self, pool: &PoolState) -> Result<Value, XapiError> {
        match (&self.deferred, self.result) {
            (Some(d), Ok(_)) => Ok(d.materialise(pool)),
            (_, r) => r,
        }
    }
}

/// Every sync wire name (`system.listMethods`).
pub fn list_methods() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut v: Vec<String> = schema::classes()
            .iter()
            .flat_map(|c| {
                c.messages
                    .iter()
                    .filter(|m| !m.removed)
                    .map(move |m| format!("{}.{}", c.name, m.name))
            })
            .collect();
        v.push("system.listMethods".into());
        v
    })
}

/// `MESSAGE_METHOD_UNKNOWN [method]`.
pub fn method_unknown(method: &str) -> XapiError {
    XapiError::new("MESSAGE_METHOD_UNKNOWN", [method])
}

/// Find a class by its exact wire spelling.
pub fn wire_class(name: &str) -> Option<&'static ClassSpec> {
    schema::classes().iter().find(|c| c.name == name)
}

const LOGIN_METHODS: &[&str] = &[
    "session.login_with_password",
    "session.slave_local_login_with_password",
];

/// Dispatch one call received by `host`.
pub fn dispatch(
    pool: &Arc<PoolState>,
    reg: &Registry,
    host: &Ref,
    method: &str,
    params: Vec<Value>,
) -> Outcome {
    let (is_async, name) = match method.strip_prefix("Async.") {
        Some(rest) => (true, rest),
        None => (false, method),
    };
    if let Some(e) = pool.faults.take_failure(name) {
        return Outcome::err(e);
    }
    if method == "system.listMethods" {
        let v = Value::Array(
            list_methods()
                .iter()
                .map(|s| Value::String(s.clone()))
                .collect(),
        );
        return Outcome {
            result: Ok(v),
            ty: Type::Set(&Type::String),
            bare: true,
            deferred: None,
        };
    }
    let Some((cname, mname)) = name.split_once('.') else {
        return Outcome::err(method_unknown(method));
    };
    let Some(class) = wire_class(cname) else {
        return Outcome::err(method_unknown(method));
    };
    let spec: MessageSpec = match class.message(mname) {
        Some(m) => *m,
        None if mname == "get_all_records_where" && class.message("get_all_records").is_some() => {
            crate::generic::get_all_records_where_spec(class)
        }
        None => return Outcome::err(method_unknown(method)),
    };
    if spec.removed {
        return Outcome::err(XapiError::code("MESSAGE_REMOVED"));
    }
    if is_async && !spec.is_async {
        return Outcome::err(method_unknown(method));
    }
    let declared = spec.params.len();
    let required = spec.params.iter().filter(|p| p.required).count();
    if params.len() < required || params.len() > declared {
        return Outcome::err(XapiError::new(
            "MESSAGE_PARAMETER_COUNT_MISMATCH",
            [
                method.to_owned(),
                declared.to_string(),
                params.len().to_string(),
            ],
        ));
    }
    let takes_session = spec
        .params
        .first()
        .is_some_and(|p| p.name == "session_id" || matches!(p.ty, Type::Ref("session")));
    let mut params = params;
    let mut session = None;
    if takes_session && !params.is_empty() {
        let s = Ref::from(params.remove(0).as_str().unwrap_or_default());
        if let Err(e) = pool.check_session(&s) {
            return Outcome::err(e);
        }
        let master = pool.master();
        if *host != master && !pool.is_local_session(&s) {
            return Outcome::err(XapiError::new(
                "HOST_IS_SLAVE",
                [pool.host_address(&master)],
            ));
        }
        session = Some(s);
    } else if LOGIN_METHODS[0] == name && *host != pool.master() {
        let master = pool.master();
        return Outcome::err(XapiError::new(
            "HOST_IS_SLAVE",
            [pool.host_address(&master)],
        ));
    }
    let specs = if takes_session {
        &spec.params[1..]
    } else {
        spec.params
    };
    let mut coerced = Vec::with_capacity(params.len());
    for (p, v) in specs.iter().zip(params) {
        match coerce_param(p.name, &p.ty, v) {
            Ok(v) => coerced.push(v),
            Err(e) => return Outcome::err(e),
        }
    }
    let ctx = Ctx {
        pool: pool.clone(),
        session,
        host: host.clone(),
        method: name.to_owned(),
        task: None,
    };
    if is_async {
        let handler = resolve(reg, class, &spec, name);
        let task = pool.create_task(method, "", host, true);
        let reply = task.0.clone();
        let mut actx = ctx;
        actx.task = Some(task.clone());
        let result_type = spec.result;
        let spawned = std::thread::Builder::new()
            .name("xapi-sim-async".into())
            .spawn(move || {
                let mut out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    handler(&actx, coerced)
                }))
                .unwrap_or_else(|_| {
                    Err(XapiError::internal(format!(
                        "{}: handler panicked",
                        actx.method
                    )))
                });
                if out.is_ok() && actx.pool.task_cancelling(&task) {
                    out = Err(XapiError::new("TASK_CANCELLED", [task.0.clone()]));
                }
                actx.pool.complete_task(&task, &out, &result_type);
            });
        return match spawned {
            Ok(_) => Outcome {
                result: Ok(Value::String(reply)),
                ty: Type::Ref("task"),
                bare: false,
                deferred: None,
            },
            Err(e) => Outcome::err(XapiError::internal(format!("cannot spawn: {e}"))),
        };
    }
    if !reg.contains(name) && (mname == "get_all_records" || mname == "get_all_records_where") {
        let expr = match coerced.first().and_then(Value::as_str) {
            Some(text) if mname == "get_all_records_where" => {
                match crate::generic::parse_expr(text) {
                    Ok(e) => Some(e),
                    Err(e) => return Outcome::err(e),
                }
            }
            _ => None,
        };
        return Outcome {
            result: Ok(Value::Null),
            ty: spec.result,
            bare: false,
            deferred: Some(Deferred::AllRecords {
                class: class.name,
                expr,
            }),
        };
    }
    if name == "event.from" && reg.streaming.contains(name) {
        return match crate::events::from_pending(&ctx, coerced) {
            Ok(b) => Outcome {
                result: Ok(Value::Null),
                ty: spec.result,
                bare: false,
                deferred: Some(Deferred::Events(b)),
            },
            Err(e) => Outcome::err(e),
        };
    }
    let handler = resolve(reg, class, &spec, name);
    Outcome {
        result: handler(&ctx, coerced),
        ty: spec.result,
        bare: false,
        deferred: None,
    }
}

/// Coerce one parameter; maps coercion failures to XAPI's errors.
pub fn coerce_param(name: &str, ty: &Type, v: Value) -> Result<Value, XapiError> {
    let shown = match &v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let is_str = v.is_string();
    schema::coerce(ty, v).map_err(|_| {
        if matches!(ty, Type::Enum(_)) && is_str {
            XapiError::new("INVALID_VALUE", [name.to_owned(), shown])
        } else {
            XapiError::new("FIELD_TYPE_ERROR", [name])
        }
    })
}

/// The handler that will run `name`: registered, else generic, else `NOT_IMPLEMENTED`.
fn resolve(reg: &Registry, class: &'static ClassSpec, spec: &MessageSpec, name: &str) -> Handler {
    if let Some(h) = reg.get(name) {
        return h;
    }
    let _ = (class, spec);
    crate::generic::generic_handler
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_replaces() {
        fn a(_: &Ctx, _: Vec<Value>) -> Result<Value, XapiError> {
            Ok(Value::from(1))
        }
        fn b(_: &Ctx, _: Vec<Value>) -> Result<Value, XapiError> {
            Ok(Value::from(2))
        }
        let mut r = Registry::default();
        r.register("VM.start", a);
        r.register("VM.start", b);
        assert!(r.contains("VM.start"));
        let pool = Arc::new(PoolState::new(
            crate::db::Db::new(),
            crate::state::SimConfig::default(),
        ));
        let ctx = Ctx {
            pool,
            session: None,
            host: Ref::null(),
            method: "VM.start".into(),
            task: None,
        };
        let h = r.get("VM.start").unwrap();
        assert_eq!(h(&ctx, vec![]).unwrap(), Value::from(2));
    }

    fn empty_pool() -> (Arc<PoolState>, Ref) {
        let mut db = crate::db::Db::new();
        crate::seed::seed(&mut db, &crate::seed::SeedSpec::default()).unwrap();
        let pool = Arc::new(PoolState::new(db, crate::state::SimConfig::default()));
        let master = pool.master();
        (pool, master)
    }

    fn call(
        pool: &Arc<PoolState>,
        reg: &Registry,
        host: &Ref,
        m: &str,
        p: Vec<Value>,
    ) -> Result<Value, XapiError> {
        dispatch(pool, reg, host, m, p).into_result(pool)
    }

    #[test]
    fn removed_unimplemented_and_non_async_messages() {
        let (pool, master) = empty_pool();
        let mut reg = Registry::default();
        crate::session::register(&mut reg);
        let s = call(
            &pool,
            &reg,
            &master,
            "session.login_with_password",
            vec!["root".into(), "root".into()],
        )
        .unwrap();
        let e = call(&pool, &reg, &master, "VMPP.get_all", vec![s.clone()]).unwrap_err();
        assert_eq!(e.code, "MESSAGE_REMOVED");
        let vm = pool.read(|db| db.refs("VM"))[0].clone();
        let e = call(
            &pool,
            &reg,
            &master,
            "VM.start",
            vec![s.clone(), vm.0.clone().into(), false.into(), false.into()],
        )
        .unwrap_err();
        assert_eq!(e.to_description(), vec!["NOT_IMPLEMENTED", "VM.start"]);
        let e = call(
            &pool,
            &reg,
            &master,
            "Async.VM.get_record",
            vec![s.clone(), vm.0.into()],
        )
        .unwrap_err();
        assert_eq!(e.code, "MESSAGE_METHOD_UNKNOWN");
        let e = call(&pool, &reg, &master, "nodot", vec![]).unwrap_err();
        assert_eq!(e.to_description(), vec!["MESSAGE_METHOD_UNKNOWN", "nodot"]);
        // A generated constructor without a required field.
        let e = call(
            &pool,
            &reg,
            &master,
            "VBD.create",
            vec![s, serde_json::json!({})],
        )
        .unwrap_err();
        assert_eq!(e.code, "INTERNAL_ERROR");
        assert!(e.params[0].contains("Dispatcher_FieldNotFound"), "{e}");
    }

    fn wait_for_cancel(ctx: &Ctx, _: Vec<Value>) -> Result<Value, XapiError> {
        let task = ctx
            .task
            .clone()
            .ok_or_else(|| XapiError::internal("no task"))?;
        for _ in 0..500 {
            if ctx.pool.task_cancelling(&task) {
                return Err(XapiError::new("TASK_CANCELLED", [task.0.clone()]));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(Value::from(""))
    }

    #[test]
    fn async_tasks_can_be_cancelled() {
        let (pool, master) = empty_pool();
        let mut reg = Registry::default();
        crate::session::register(&mut reg);
        crate::tasks::register(&mut reg);
        reg.register("VM.clean_shutdown", wait_for_cancel);
        let s = call(
            &pool,
            &reg,
            &master,
            "session.login_with_password",
            vec!["root".into(), "root".into()],
        )
        .unwrap();
        let vm = pool.read(|db| db.refs("VM"))[0].clone();
        let task = call(
            &pool,
            &reg,
            &master,
            "Async.VM.clean_shutdown",
            vec![s.clone(), vm.0.into()],
        )
        .unwrap();
        call(
            &pool,
            &reg,
            &master,
            "task.cancel",
            vec![s.clone(), task.clone()],
        )
        .unwrap();
        let t = Ref::from(task.as_str().unwrap());
        let mut status = String::new();
        for _ in 0..500 {
            status = pool.read(|db| crate::state::str_field(db, "task", &t, "status"));
            if status != "pending" && status != "cancelling" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(status, "cancelled");
        let info = pool
            .read(|db| db.field("task", &t, "error_info").cloned())
            .unwrap();
        assert_eq!(info[0], "TASK_CANCELLED");
        // A finished task cannot be cancelled.
        let e = call(&pool, &reg, &master, "task.cancel", vec![s, task]).unwrap_err();
        assert_eq!(e.code, "OPERATION_NOT_ALLOWED");
    }
}
