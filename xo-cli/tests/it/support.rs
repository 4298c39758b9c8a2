//! Test harness: the in-process xo-server shared with xo-lib's tests (`xo-lib/tests/it/test_server.rs`: fixture
//! objects behind an `xo.getAllObjects` test double, or demo mode with a simulated pool), a temporary HOME, and a
//! runner for the built `xo-cli` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

#[path = "../../../xo-lib/tests/it/test_server.rs"]
mod test_server;
pub use test_server::*;
#[path = "../../../xo-lib/tests/it/transfer_server.rs"]
mod transfer_server;
pub use transfer_server::{http_server, Received};

pub const BIN: &str = env!("CARGO_BIN_EXE_xo-cli");

/// Exit codes (docs/cli.md).
pub const API: i32 = 1;
pub const USAGE: i32 = 2;
pub const CONNECTION: i32 = 3;
pub const AUTH: i32 = 4;
pub const IO: i32 = 5;

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

impl DemoServer {
    /// `xo-cli --register` as the default admin, and an xo-lib client with its object cache (to wait for the
    /// simulated pool's objects).
    pub async fn register_and_watch(&self) -> (xo_lib::Xo, xo_lib::ObjectCache) {
        let url = self.server.url().to_owned();
        run_in(
            self.home.path(),
            &["--register", &url, "admin@admin.net", "admin"],
        )
        .await
        .ok();
        let xo = xo_lib::Xo::connect(
            xo_lib::Options::new(&url)
                .credentials(xo_lib::Credentials::password("admin@admin.net", "admin")),
        )
        .await
        .unwrap();
        let cache = xo_lib::ObjectCache::start(&xo).await.unwrap();
        (xo, cache)
    }
}
