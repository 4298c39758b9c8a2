//! Fault injection for tests: fail the next call of a method, add latency, drop connections.
//!
//! Host restarts and master changes live on [`crate::PoolState`] (`restart_host`, `designate_master`) and on
//! [`crate::RunningPool`].

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;
use xapi_types::XapiError;

#[derive(Debug, Default)]
struct FaultState {
    fail_next: HashMap<String, VecDeque<XapiError>>,
    latency: Duration,
    drop_next: u32,
}

/// Faults of one pool (shared by all its hosts). All methods are cheap and thread-safe.
#[derive(Debug, Default)]
pub struct Faults {
    inner: Mutex<FaultState>,
}

impl Faults {
    /// The next call of `method` (wire name without `Async.`, e.g. `VM.start`) fails with `err` instead of running.
    /// Several calls queue several failures.
    pub fn fail_next(&self, method: &str, err: XapiError) {
        self.inner
            .lock()
            .fail_next
            .entry(method.to_owned())
            .or_default()
            .push_back(err);
    }

    /// Delay added before answering every RPC (0 = none).
    pub fn set_latency(&self, latency: Duration) {
        self.inner.lock().latency = latency;
    }

    /// The current added latency.
    pub fn latency(&self) -> Duration {
        self.inner.lock().latency
    }

    /// The next `n` HTTP requests (any host of the pool) get their connection closed without an answer.
    pub fn drop_next_connections(&self, n: u32) {
        self.inner.lock().drop_next += n;
    }

    /// Forget every pending fault and the latency.
    pub fn clear(&self) {
        *self.inner.lock() = FaultState::default();
    }

    /// Consume a pending failure for `method`.
    pub(crate) fn take_failure(&self, method: &str) -> Option<XapiError> {
        let mut st = self.inner.lock();
        let q = st.fail_next.get_mut(method)?;
        let e = q.pop_front();
        if q.is_empty() {
            st.fail_next.remove(method);
        }
        e
    }

    /// Consume one pending connection drop.
    pub(crate) fn take_drop(&self) -> bool {
        let mut st = self.inner.lock();
        if st.drop_next > 0 {
            st.drop_next -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_consumed_in_order() {
        let f = Faults::default();
        f.fail_next("VM.start", XapiError::code("A"));
        f.fail_next("VM.start", XapiError::code("B"));
        assert_eq!(f.take_failure("VM.start").unwrap().code, "A");
        assert_eq!(f.take_failure("VM.start").unwrap().code, "B");
        assert!(f.take_failure("VM.start").is_none());
        f.drop_next_connections(1);
        assert!(f.take_drop());
        assert!(!f.take_drop());
    }
}
