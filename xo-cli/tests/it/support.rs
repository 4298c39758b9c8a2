//! Test harness: an in-process xo-server on 127.0.0.1:0 (temporary data directory, cheap password
//! hashing, an `xo.getAllObjects` test double over fixture objects until the server has its own), a
//! temporary HOME, and a runner for the built `xo-cli` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use xo_server::{registry::Method, AppBuilder, Config, RunningServer};

pub const BIN: &str = env!("CARGO_BIN_EXE_xo-cli");

/// Exit codes (docs/cli.md).
pub const API: i32 = 1;
pub const USAGE: i32 = 2;
pub const CONNECTION: i32 = 3;
pub const AUTH: i32 = 4;
pub const IO: i32 = 5;

pub struct TestServer {
    pub server: RunningServer,
    pub objects: Arc<Mutex<Map<String, Value>>>,
    pub home: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

fn matches(pattern: &Value, value: &Value) -> bool {
    match (pattern, value) {
        (Value::Object(p), Value::Object(v)) => p
            .iter()
            .all(|(k, q)| v.get(k).is_some_and(|x| matches(q, x))),
        (Value::Array(p), Value::Array(v)) => p.iter().all(|q| v.iter().any(|x| matches(q, x))),
        _ => pattern == value,
    }
}

fn get_all_objects(objects: Arc<Mutex<Map<String, Value>>>) -> Method {
    Method::new("xo.getAllObjects", move |_ctx, p: Map<String, Value>| {
        let objects = objects.clone();
        async move {
            let all = objects.lock().unwrap().clone();
            let out: Map<String, Value> = all
                .into_iter()
                .filter(|(_, o)| {
                    p.get("filter")
                        .is_none_or(|f| !f.is_object() || matches(f, o))
                })
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

pub async fn start_with(mutate: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        sign_in_throttle_ms: 0,
        ..Config::default()
    };
    c.argon2.m_cost = 64;
    c.argon2.t_cost = 1;
    c.argon2.p_cost = 1;
    mutate(&mut c);
    let app = AppBuilder::new(c).build().unwrap();
    let objects = Arc::new(Mutex::new(Map::new()));
    app.registry().unregister("xo.getAllObjects");
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

/// The result of one xo-cli run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub raw_stdout: Vec<u8>,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }

    #[track_caller]
    pub fn fails(self, code: i32) -> Self {
        assert_eq!(self.code, code, "{self:?}");
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            raw_stdout: o.stdout,
        }
    }
}

pub fn command(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XO_CLI_LOG")
        .stdin(Stdio::null());
    c
}

/// Runs xo-cli with HOME = `home` (off the async runtime).
pub async fn run_in(home: &Path, args: &[&str]) -> Run {
    let mut c = command(home, args);
    tokio::task::spawn_blocking(move || c.output().unwrap().into())
        .await
        .unwrap()
}

/// Runs xo-cli with `stdin` fed.
pub async fn run_with_stdin(home: &Path, args: &[&str], stdin: Vec<u8>) -> Run {
    let mut c = command(home, args);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = c.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&stdin);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out.into()
    })
    .await
    .unwrap()
}

impl TestServer {
    pub fn url(&self) -> String {
        self.server.url().to_owned()
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.home().join(".config/xo-cli/config.json")
    }

    pub fn config(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.config_path()).unwrap()).unwrap()
    }

    pub async fn cli(&self, args: &[&str]) -> Run {
        run_in(self.home(), args).await
    }

    /// `--register <url> admin@admin.net admin`.
    pub async fn register_admin(&self) {
        self.cli(&["--register", &self.url(), "admin@admin.net", "admin"])
            .await
            .ok();
    }

    pub fn add_user(&self, email: &str, password: &str, permission: xo_store::Permission) {
        self.server
            .app()
            .store()
            .create_user(email, Some(password), permission)
            .unwrap();
    }

    pub fn put_objects(&self, objs: &[Value]) {
        let mut m = self.objects.lock().unwrap();
        for o in objs {
            m.insert(o["id"].as_str().unwrap().to_owned(), o.clone());
        }
    }
}

/// A server with the real `xo.getAllObjects`, one-shot transfers and one simulated pool (xo-server's demo
/// mode: xapi-sim served in-process on loopback, registered as an XAPI server), `vms` guest VMs.
pub async fn start_demo(vms: usize) -> DemoServer {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        sign_in_throttle_ms: 0,
        ..Config::default()
    };
    c.argon2.m_cost = 64;
    c.argon2.t_cost = 1;
    c.argon2.p_cost = 1;
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
