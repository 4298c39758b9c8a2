//! `watch`: notifications printed as they come, counts on Ctrl-C (SIGINT).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Map, Value};

fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(rx: &mpsc::Receiver<String>, what: &str) -> String {
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if l.contains(what) => return l,
            Ok(_) => {}
            Err(e) => panic!("waiting for {what:?}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_notifications_and_counts() {
    let s = crate::support::start().await;
    s.register_admin().await;
    let mut child = crate::support::command(s.home(), &["--watch", "--ndjson"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(child.stdout.take().unwrap());
    let err = lines(child.stderr.take().unwrap());
    let err = tokio::task::spawn_blocking(move || {
        wait_for(&err, "watching as admin@admin.net");
        err
    })
    .await
    .unwrap();
    let mut items = Map::new();
    items.insert("vm1".into(), json!({"id": "vm1", "type": "VM"}));
    s.server.app().publish(items, vec!["gone".into()]);
    let (first, second) = tokio::task::spawn_blocking(move || {
        (wait_for(&out, "\"method\""), wait_for(&out, "\"method\""))
    })
    .await
    .unwrap();
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["method"], "all");
    assert_eq!(first["params"]["type"], "enter");
    assert_eq!(first["params"]["items"]["vm1"]["type"], "VM");
    let second: Value = serde_json::from_str(&second).unwrap();
    assert_eq!(
        second["params"],
        json!({"type": "exit", "items": {"gone": 0}})
    );
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let summary = tokio::task::spawn_blocking(move || wait_for(&err, "all:"))
        .await
        .unwrap();
    assert_eq!(summary, "all: 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_typos_are_caught_without_a_server() {
    let home = tempfile::tempdir().unwrap();
    let r = crate::support::run_in(home.path(), &["lst-objects"])
        .await
        .fails(crate::support::USAGE);
    assert!(
        r.stderr.contains("Did you mean") && r.stderr.contains("list-objects"),
        "{r:?}"
    );
}
