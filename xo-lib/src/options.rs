//! Connection options: server URL, TLS leniency, credentials (re-used on reconnect), reconnection
//! backoff, timeouts.

use std::time::Duration;

use crate::types::Credentials;

/// Fibonacci backoff between reconnection attempts (like xo-web), capped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// A backoff starting at `initial`, capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The endless sequence of delays: initial × 1, 1, 2, 3, 5, 8… capped at `max`.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        let (initial, max) = (self.initial, self.max);
        let mut fib = (1u32, 1u32);
        std::iter::from_fn(move || {
            let d = initial.saturating_mul(fib.0).min(max);
            fib = (fib.1, fib.0.saturating_add(fib.1));
            Some(d)
        })
    }
}

/// How to connect to xo-server.
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) url: String,
    pub(crate) allow_unauthorized: bool,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) reconnect: Option<Backoff>,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    pub(crate) event_capacity: usize,
}

impl Options {
    /// Options for `url` (`http(s)://host[:port]`, `ws(s)://…`, or a bare host ⇒ secure): no credentials,
    /// certificates verified, no reconnection, no call timeout, 30 s connect timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            allow_unauthorized: false,
            credentials: None,
            reconnect: None,
            call_timeout: None,
            connect_timeout: Duration::from_secs(30),
            event_capacity: 4096,
        }
    }

    /// Accept any TLS certificate (self-signed appliances).
    pub fn allow_unauthorized(mut self, yes: bool) -> Self {
        self.allow_unauthorized = yes;
        self
    }

    /// Sign in with these credentials on connect (and again after every reconnection).
    pub fn credentials(mut self, c: Credentials) -> Self {
        self.credentials = Some(c);
        self
    }

    /// Reconnect after a lost connection, waiting as `backoff` says; signs in again and emits
    /// [`crate::Event::Reconnected`] / [`crate::Event::SignedIn`].
    pub fn reconnect(mut self, backoff: Backoff) -> Self {
        self.reconnect = Some(backoff);
        self
    }

    /// Fail calls that get no answer within `d` with [`crate::Error::Timeout`].
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = Some(d);
        self
    }

    /// Limit for TCP + TLS + WebSocket handshakes.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Events buffered per subscriber before it lags (a lagging object cache resyncs).
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n.max(1);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fibonacci_backoff_is_capped() {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_millis(45));
        let d: Vec<u128> = b.delays().take(7).map(|d| d.as_millis()).collect();
        assert_eq!(d, vec![10, 10, 20, 30, 45, 45, 45]);
    }
}
