//! Running a peer client (the Python XenAPI SDK, Xen Orchestra's npm `xen-api`) against a pool.
//!
//! A peer is a script under `tests/peers/` that reads its target from environment variables
//! (`XO_PEER_URL`, `XO_PEER_USER`, `XO_PEER_PASSWORD`, optional `XO_PEER_SLAVE_URL`), prints
//! `ok - …` / `not ok - …` per step and exits 0 only if every step passed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::child::{run_with_timeout, ChildOutput};
use crate::error::HarnessError;
use crate::paths::{node_with_xen_api, peers_dir, venv_python};
use crate::sim::SimPool;

/// Hang guard for one peer script (not a timing assertion: a healthy run takes seconds).
pub const PEER_TIME_LIMIT: Duration = Duration::from_secs(300);

/// Which client runs the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// `.venv/bin/python` with PyPI `xenapi`.
    Python,
    /// `node` with npm `xen-api` from `tests/peers/node_modules`.
    Node,
}

/// Where and as whom a peer connects.
#[derive(Clone)]
pub struct PeerTarget {
    /// The pool master's URL, e.g. `https://127.0.0.1:PORT`.
    pub url: String,
    /// Login name.
    pub user: String,
    /// Password (never printed: see the `Debug` impl).
    pub password: String,
    /// A pool member that is not the master, to exercise `HOST_IS_SLAVE`.
    pub slave_url: Option<String>,
}

impl std::fmt::Debug for PeerTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTarget")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("slave_url", &self.slave_url)
            .finish()
    }
}

impl PeerTarget {
    /// The master of `pool`, its credentials, and its first slave if it has one.
    pub fn of(pool: &SimPool) -> Self {
        PeerTarget {
            url: pool.master_url().to_owned(),
            user: pool.user().to_owned(),
            password: pool.password().to_owned(),
            slave_url: pool.slave_urls().first().cloned(),
        }
    }
}

/// The command that runs `script` (a path relative to `tests/peers/`) with `peer`, its
/// environment set for `target`. Fails with a "run scripts/setup-peers.sh" message when the
/// peer is not provisioned.
pub fn peer_command(
    peer: Peer,
    script: &str,
    target: &PeerTarget,
) -> Result<Command, HarnessError> {
    let dir = peers_dir();
    let script: PathBuf = dir.join(script);
    let mut cmd = match peer {
        Peer::Python => {
            let mut cmd = Command::new(venv_python()?);
            // no __pycache__ in the source tree; line-buffered output survives a kill
            cmd.env("PYTHONDONTWRITEBYTECODE", "1")
                .env("PYTHONUNBUFFERED", "1");
            cmd
        }
        Peer::Node => Command::new(node_with_xen_api()?),
    };
    cmd.arg(&script)
        .current_dir(&dir)
        // loopback only: never route the peer through a proxy from the environment
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env("NO_PROXY", "*")
        .env("XO_PEER_URL", &target.url)
        .env("XO_PEER_USER", &target.user)
        .env("XO_PEER_PASSWORD", &target.password);
    match &target.slave_url {
        Some(slave) => cmd.env("XO_PEER_SLAVE_URL", slave),
        None => cmd.env_remove("XO_PEER_SLAVE_URL"),
    };
    Ok(cmd)
}

/// Runs `script` with `peer` against `target`, with `extra_env` added, within
/// [`PEER_TIME_LIMIT`].
pub fn run_peer(
    peer: Peer,
    script: &str,
    target: &PeerTarget,
    extra_env: &[(&str, &str)],
) -> Result<ChildOutput, HarnessError> {
    let mut cmd = peer_command(peer, script, target)?;
    for (key, value) in extra_env {
        cmd.env(key, value);
    }
    run_with_timeout(cmd, PEER_TIME_LIMIT)
}
