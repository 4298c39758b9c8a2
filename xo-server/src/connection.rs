//! One WebSocket client: its session (signed-in user, token expiry), its bounded outgoing queue and its
//! close signal.

use axum::extract::ws::Utf8Bytes;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

/// Why and how a connection is being closed (WebSocket close code and reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseReason {
    /// RFC 6455 close code.
    pub code: u16,
    /// Short reason.
    pub reason: String,
}

#[derive(Debug, Default)]
struct Session {
    user_id: Option<String>,
    expiration: Option<i64>,
}

/// Outcome of queueing a frame without waiting.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySend {
    /// Queued.
    Queued,
    /// The queue was full: the connection has been closed (slow subscriber).
    CutOff,
    /// The connection is already gone.
    Closed,
}

/// A client connection to `/api/`.
pub struct Connection {
    id: u64,
    user_ip: String,
    session: Mutex<Session>,
    tx: mpsc::Sender<Utf8Bytes>,
    close_tx: watch::Sender<Option<CloseReason>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("user_ip", &self.user_ip)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection whose frames go to `tx`.
    pub fn new(id: u64, user_ip: String, tx: mpsc::Sender<Utf8Bytes>) -> Self {
        Self {
            id,
            user_ip,
            session: Mutex::new(Session::default()),
            tx,
            close_tx: watch::channel(None).0,
        }
    }

    /// Process-unique id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Peer address.
    pub fn user_ip(&self) -> &str {
        &self.user_ip
    }

    /// Signed-in user id.
    pub fn user_id(&self) -> Option<String> {
        self.session.lock().user_id.clone()
    }

    /// Expiry of the token the connection signed in with (ms epoch).
    pub fn expiration(&self) -> Option<i64> {
        self.session.lock().expiration
    }

    /// Binds the connection to a user (`expiration` from a token, `None` otherwise).
    pub fn sign_in(&self, user_id: String, expiration: Option<i64>) {
        let mut s = self.session.lock();
        s.user_id = Some(user_id);
        s.expiration = expiration;
    }

    /// Unbinds the user.
    pub fn sign_out(&self) {
        let mut s = self.session.lock();
        s.user_id = None;
        s.expiration = None;
    }

    /// `{user_ip, user_id?, expiration?}` as `api.getConnections` shows it.
    pub fn describe(&self) -> Value {
        let s = self.session.lock();
        let mut v = json!({ "user_ip": self.user_ip });
        if let Some(u) = &s.user_id {
            v["user_id"] = u.clone().into();
        }
        if let Some(e) = s.expiration {
            v["expiration"] = e.into();
        }
        v
    }

    /// Asks the connection to close (idempotent: the first reason wins).
    pub fn close(&self, code: u16, reason: &str) {
        self.close_tx.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(CloseReason {
                    code,
                    reason: reason.to_owned(),
                });
                true
            } else {
                false
            }
        });
    }

    /// Whether [`Connection::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.close_tx.borrow().is_some()
    }

    /// Resolves once the connection is asked to close, with the reason.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.close_tx.subscribe();
        let reason = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|r| r.clone());
        reason.unwrap_or(CloseReason {
            code: 1000,
            reason: String::new(),
        })
    }

    /// Queues a frame, waiting for room (used for responses).
    pub async fn send(&self, frame: Utf8Bytes) -> bool {
        !self.is_closing() && self.tx.send(frame).await.is_ok()
    }

    /// Queues a frame without waiting; a full queue cuts the client off (used for notifications).
    pub fn try_send(&self, frame: Utf8Bytes) -> TrySend {
        if self.is_closing() {
            return TrySend::Closed;
        }
        match self.tx.try_send(frame) {
            Ok(()) => TrySend::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    connection = self.id,
                    "client too slow to read notifications, closing"
                );
                self.close(1008, "too slow");
                TrySend::CutOff
            }
            Err(mpsc::error::TrySendError::Closed(_)) => TrySend::Closed,
        }
    }
}
