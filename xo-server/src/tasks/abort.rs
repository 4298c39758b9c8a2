//! The abort signal shared by a task and its sub-tasks: checked (`is_aborted`) or awaited (`aborted`).

use tokio::sync::watch;

/// Set once an abort of the task (or of its root) is requested.
#[derive(Debug)]
pub struct AbortSignal {
    tx: watch::Sender<bool>,
}

impl Default for AbortSignal {
    fn default() -> Self {
        AbortSignal {
            tx: watch::channel(false).0,
        }
    }
}

impl AbortSignal {
    /// Whether an abort was requested.
    pub fn is_aborted(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once an abort is requested (at once if it already was).
    pub async fn aborted(&self) {
        let mut rx = self.tx.subscribe();
        // the sender lives as long as `self`: `wait_for` only ends when the flag is set
        let _ = rx.wait_for(|v| *v).await;
    }

    pub(crate) fn abort(&self) {
        self.tx.send_replace(true);
    }
}
