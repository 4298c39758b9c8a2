//! Running a child process with a time limit and captured output.
//!
//! Synchronous on purpose (std::process + reader threads): peer suites call it from plain
//! `#[test]` functions while the simulator runs on its own runtime thread. From async code, call
//! it inside `tokio::task::spawn_blocking`.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::HarnessError;

/// How often the child is polled for exit.
const POLL: Duration = Duration::from_millis(20);

/// What a finished child did.
#[derive(Debug)]
pub struct ChildOutput {
    /// The command line, for messages.
    pub command: String,
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote on stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything it wrote on stderr (lossy UTF-8).
    pub stderr: String,
}

impl ChildOutput {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Stdout and stderr, labelled, for a failure message.
    pub fn transcript(&self) -> String {
        format!(
            "$ {}\n--- exit: {} ---\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.status,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }

    /// Panics with the whole transcript unless the child exited 0.
    #[track_caller]
    pub fn assert_success(&self, what: &str) {
        assert!(self.success(), "{what} failed\n{}", self.transcript());
    }
}

/// Renders a command line for messages (program and arguments; no environment, which may hold
/// credentials).
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Spawns `cmd` with stdin closed and stdout/stderr captured, waits at most `limit`, and kills it
/// (returning [`HarnessError::TimedOut`] with what it printed so far) if it is still running then.
pub fn run_with_timeout(mut cmd: Command, limit: Duration) -> Result<ChildOutput, HarnessError> {
    let command = describe(&cmd);
    let spawn_error = |source| HarnessError::Spawn {
        command: command.clone(),
        source,
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());

    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().map_err(spawn_error)? {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => break None,
            None => thread::sleep(POLL),
        }
    };
    let status = match status {
        Some(status) => status,
        None => {
            // Already-exited races are fine: kill then reap.
            let _ = child.kill();
            let _ = child.wait();
            return Err(HarnessError::TimedOut {
                command,
                limit,
                stdout: join(stdout),
                stderr: join(stderr),
            });
        }
    };
    Ok(ChildOutput {
        command,
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    })
}

/// Reads a pipe to its end on a thread of its own (so a chatty child never blocks on a full pipe).
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<thread::JoinHandle<Vec<u8>>> {
    pipe.map(|mut pipe| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    })
}

/// Collects what a [`drain`] thread read. A grandchild that inherited the pipe can keep it open
/// after the child died; that only delays this until the grandchild exits.
fn join(handle: Option<thread::JoinHandle<Vec<u8>>>) -> String {
    handle
        .and_then(|h| h.join().ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        cmd
    }

    #[test]
    fn captures_stdout_stderr_and_status() {
        let out = run_with_timeout(
            sh("echo out; echo err >&2; exit 3"),
            Duration::from_secs(30),
        )
        .expect("sh runs");
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
        assert!(!out.success());
        assert!(out.transcript().contains("--- stderr ---\nerr"));
    }

    #[test]
    fn kills_a_child_past_its_limit() {
        let err = run_with_timeout(
            sh("echo started; exec sleep 30"),
            Duration::from_millis(500),
        )
        .expect_err("must time out");
        match err {
            // whether `echo` ran before the kill depends on scheduling; both are fine
            HarnessError::TimedOut { stdout, .. } => {
                assert!(stdout.is_empty() || stdout == "started\n")
            }
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn reports_a_missing_program() {
        let err = run_with_timeout(
            Command::new("/nonexistent/xo-tests-no-such-program"),
            Duration::from_secs(5),
        )
        .expect_err("must fail to spawn");
        assert!(matches!(err, HarnessError::Spawn { .. }), "{err}");
    }

    #[test]
    fn large_output_does_not_deadlock() {
        let out = run_with_timeout(
            sh("i=0; while [ $i -lt 20000 ]; do echo 0123456789abcdef; i=$((i+1)); done"),
            Duration::from_secs(60),
        )
        .expect("sh runs");
        assert!(out.success());
        assert_eq!(out.stdout.len(), 17 * 20000);
    }
}
