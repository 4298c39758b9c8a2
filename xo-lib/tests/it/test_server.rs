//! The in-process xo-server the xo-lib and xo-cli tests run against (xo-cli includes this file by path): on
//! 127.0.0.1:0 with a temporary data directory and cheap password hashing, with `xo.getAllObjects` and
//! `vm.start` / `vm.stop` test doubles over a fixture map ([`start`]), or in demo mode with a simulated pool
//! ([`start_demo`]).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use xo_server::{registry::Method, AppBuilder, Config, RunningServer};

/// A running server and its fixture objects.
pub struct TestServer {
    pub server: RunningServer,
    pub objects: Arc<Mutex<Map<String, Value>>>,
    /// A temporary HOME for clients that keep files there (xo-cli).
    pub home: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

/// Lodash `matches`: every key of `pattern` is in `value` (recursively; arrays: every item matched by one).
fn matches(pattern: &Value, value: &Value) -> bool {
    match (pattern, value) {
        (Value::Object(p), Value::Object(v)) => p
            .iter()
            .all(|(k, q)| v.get(k).is_some_and(|x| matches(q, x))),
        (Value::Array(p), Value::Array(v)) => p.iter().all(|q| v.iter().any(|x| matches(q, x))),
        _ => pattern == value,
    }
}

/// `xo.getAllObjects({filter?, limit?})` over the fixture map (object filters as lodash `matches`).
pub fn get_all_objects(objects: Arc<Mutex<Map<String, Value>>>) -> Method {
    Method::new("xo.getAllObjects", move |_ctx, p: Map<String, Value>| {
        let objects = objects.clone();
        async move {
            let all = objects.lock().unwrap().clone();
            let limit = p.get("limit").and_then(Value::as_u64).unwrap_or(u64::MAX) as usize;
            let out: Map<String, Value> = all
                .into_iter()
                .filter(|(_, o)| {
                    p.get("filter")
                        .is_none_or(|f| !f.is_object() || matches(f, o))
                })
                .take(limit)
                .collect();
            Ok(Value::Object(out))
        }
    })
    .description("Returns all XO objects (test double)")
    .params(serde_json::json!({
        "filter": {"type": ["object", "string"], "optional": true},
        "limit": {"type": "number", "optional": true},
        "ndjson": {"type": "boolean", "optional": true},
    }))
}

/// `vm.start({id})` / `vm.stop({id, force?})` test doubles: change `power_state` in the fixture and
/// publish the updated object, as the real methods will through the XAPI event loop.
pub fn power_methods(objects: Arc<Mutex<Map<String, Value>>>) -> Vec<Method> {
    let make = |name: &str, state: &'static str, expected: &'static str| {
        let objects = objects.clone();
        Method::new(name, move |ctx: xo_server::Ctx, p: Map<String, Value>| {
            let objects = objects.clone();
            async move {
                let id = p["id"].as_str().unwrap_or_default().to_owned();
                let updated = {
                    let mut all = objects.lock().unwrap();
                    let Some(vm) = all.get_mut(&id) else {
                        return Err(xo_server::ApiError::no_such_object(&id, Some("VM")));
                    };
                    let actual = vm["power_state"].as_str().unwrap_or("").to_owned();
                    if actual != expected {
                        return Err(xo_server::ApiError::Rpc {
                            code: 13,
                            message: format!("VM state is {actual} but should be {expected}"),
                            data: Some(serde_json::json!({"objectId": id, "expected": expected, "actual": actual})),
                        });
                    }
                    vm["power_state"] = state.into();
                    vm.clone()
                };
                let mut m = Map::new();
                m.insert(id, updated);
                // like XAPI events, the change arrives after the call returns
                let app = ctx.app.clone();
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    app.publish(m, vec![]);
                });
                Ok(Value::Bool(true))
            }
        })
        .params(serde_json::json!({"id": {"type": "string"}, "force": {"type": "boolean", "optional": true}}))
    };
    vec![
        make("vm.start", "Running", "Halted"),
        make("vm.stop", "Halted", "Running"),
    ]
}

/// A test configuration: loopback, port 0, data in `dir`/data, no sign-in throttle, cheap password hashing.
pub fn config(dir: &std::path::Path) -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("data"),
        sign_in_throttle_ms: 0,
        ..Config::default()
    };
    c.argon2.m_cost = 64;
    c.argon2.t_cost = 1;
    c.argon2.p_cost = 1;
    c
}

/// A server with the `xo.getAllObjects` and `vm.start` / `vm.stop` test doubles over one fixture map, `mutate`
/// applied to its configuration.
pub async fn start_with(mutate: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    mutate(&mut c);
    let app = AppBuilder::new(c).build().unwrap();
    let objects = Arc::new(Mutex::new(Map::new()));
    if app.registry().get("xo.getAllObjects").is_some() {
        app.registry().unregister("xo.getAllObjects");
    }
    app.registry()
        .register(get_all_objects(objects.clone()))
        .unwrap();
    for m in power_methods(objects.clone()) {
        app.registry().unregister(m.name());
        app.registry().register(m).unwrap();
    }
    let server = xo_server::serve(app).await.unwrap();
    TestServer {
        server,
        objects,
        home: tempfile::tempdir().unwrap(),
        _dir: dir,
    }
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

impl TestServer {
    pub fn url(&self) -> String {
        self.server.url().to_owned()
    }
}

/// A server with the real `xo.getAllObjects`, one-shot transfers and one simulated pool (xo-server's demo
/// mode: xapi-sim served in-process on loopback, registered as an XAPI server), `vms` guest VMs.
pub async fn start_demo(vms: usize) -> DemoServer {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let opts = xo_server::demo::DemoOptions {
        pools: 1,
        hosts: 1,
        vms,
    };
    let app = xo_server::demo::install(AppBuilder::new(c), opts)
        .build()
        .unwrap();
    let server = xo_server::serve(app).await.unwrap();
    DemoServer {
        server,
        home: tempfile::tempdir().unwrap(),
        _dir: dir,
    }
}

/// See [`start_demo`].
pub struct DemoServer {
    pub server: RunningServer,
    pub home: tempfile::TempDir,
    _dir: tempfile::TempDir,
}
