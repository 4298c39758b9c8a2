//! xo-server driven by Xen Orchestra's real client: the npm `xo-lib` 0.9.0 scenario
//! (`tests/peers/xo-lib/scenario.mjs`) run by node against this server and an in-process simulated pool.
//! Needs `tests/peers/node_modules` (`scripts/setup-peers.sh`); fails with that instruction otherwise.

use std::path::PathBuf;
use std::time::Duration;

use super::pools::{sim, sim_vm_refs};
use super::start;

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/peers")
}

#[tokio::test]
async fn xo_lib_real_client_scenario() {
    let peers = peers_dir();
    let xo_lib = peers.join("node_modules/xo-lib/package.json");
    assert!(
        xo_lib.exists(),
        "{} is missing: run scripts/setup-peers.sh (installs npm xo-lib 0.9.0 in tests/peers/node_modules)",
        xo_lib.display()
    );
    let pool = sim(3, 10).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let child = tokio::process::Command::new("node")
        .arg("xo-lib/scenario.mjs")
        .current_dir(&peers)
        .env("XO_URL", server.url())
        .env("XO_POOL_HOST", pool.master_url().trim_end_matches('/'))
        .env("XO_EXPECTED_VMS", sim_vm_refs(&pool).len().to_string())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), child)
        .await
        .expect("the xo-lib scenario hung")
        .unwrap_or_else(|e| panic!("cannot run node (install Node.js >= 18): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success() && !stdout.contains("not ok"),
        "xo-lib scenario failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("ok - sign in"), "{stdout}");
    server.shutdown().await;
}
