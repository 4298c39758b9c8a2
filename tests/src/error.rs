//! Errors of the test harness.

use std::path::PathBuf;
use std::time::Duration;

/// Why the harness could not do what a test asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A peer client was not provisioned: the message names the command that fixes it.
    #[error("{what} not found at {}: run scripts/setup-peers.sh (./scripts/test.sh runs it for you)", path.display())]
    PeersNotProvisioned {
        /// What is missing, e.g. "Python venv with XenAPI".
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A program needed by a suite is not on PATH.
    #[error("`{program}` not found on PATH: {hint}")]
    ProgramMissing {
        /// The program name.
        program: &'static str,
        /// How to get it.
        hint: &'static str,
    },
    /// Spawning or waiting for a child process failed.
    #[error("running {command}: {source}")]
    Spawn {
        /// The command line, for the message.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A child process outlived its time limit and was killed.
    #[error("{command} still running after {limit:?}: killed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")]
    TimedOut {
        /// The command line, for the message.
        command: String,
        /// The limit that was exceeded.
        limit: Duration,
        /// What it printed before it was killed.
        stdout: String,
        /// What it printed on stderr before it was killed.
        stderr: String,
    },
    /// The simulator could not be started.
    #[error("starting xapi-sim: {0}")]
    Sim(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_peers_message_names_the_fix() {
        let err = HarnessError::PeersNotProvisioned {
            what: "npm package xen-api",
            path: PathBuf::from("/x/tests/peers/node_modules/xen-api"),
        };
        let msg = err.to_string();
        assert!(msg.contains("scripts/setup-peers.sh"), "{msg}");
        assert!(msg.contains("/x/tests/peers/node_modules/xen-api"), "{msg}");
    }
}
