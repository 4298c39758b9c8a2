//! The examples run against an in-process xo-server (they are built by `cargo test` next to this test
//! binary, in `target/<profile>/examples/`).

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

fn example(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let p = profile_dir.join("examples").join(name);
    p.exists().then_some(p)
}

async fn run(bin: PathBuf, args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || Command::new(bin).args(args).output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_list_and_start_vms() {
    let (Some(list), Some(start)) = (example("list_vms"), example("start_vm")) else {
        eprintln!("skipped: example binaries not built (run through `cargo test`)");
        return;
    };
    let s = crate::support::start().await;
    s.objects.lock().unwrap().insert(
        "vm1".into(),
        json!({"id": "vm1", "type": "VM", "power_state": "Halted", "name_label": "web"}),
    );
    let out = run(list.clone(), vec![s.url()]).await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("1 VM(s)") && text.contains("Halted") && text.contains("web"),
        "{text}"
    );
    let out = run(start, vec![s.url(), "vm1".into()]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("web is running"));
    let out = run(list, vec![s.url()]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("Running"));
}
