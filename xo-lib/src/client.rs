//! The client: one WebSocket to `/api/`, JSON-RPC framing with xo-lib's ids (from
//! −9007199254740991 upward), concurrent calls matched by id, notifications and connection events on
//! a broadcast channel, automatic reconnection and re-sign-in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};
use tokio_tungstenite::tungstenite::Message;

use crate::endpoint::Endpoint;
use crate::error::{ApiError, Error, Result};
use crate::options::{Backoff, Options};
use crate::transport::{open_socket, Socket};
use crate::types::{Credentials, Notification, User};

/// The first request id, like xo-lib (`Number.MIN_SAFE_INTEGER`).
pub const FIRST_REQUEST_ID: i64 = -9_007_199_254_740_991;

/// What happens on the connection, in order.
#[derive(Clone, Debug)]
pub enum Event {
    /// A server notification (`all` for object changes).
    Notification(Notification),
    /// The connection was lost (pending calls failed with [`Error::ConnectionClosed`]).
    Disconnected {
        /// Why.
        reason: String,
    },
    /// A new connection is open after a loss (not yet signed in).
    Reconnected,
    /// Signed in (explicitly, or automatically after a reconnection).
    SignedIn(User),
    /// The automatic re-sign-in after a reconnection failed (e.g. the token expired).
    SignInFailed(String),
}

type Reply = oneshot::Sender<Result<Value>>;

#[derive(Default)]
struct Link {
    writer: Option<mpsc::UnboundedSender<Message>>,
    pending: HashMap<i64, Reply>,
}

pub(crate) struct Shared {
    pub(crate) endpoint: Endpoint,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) options: Options,
    next_id: AtomicI64,
    link: Mutex<Link>,
    events: broadcast::Sender<Event>,
    credentials: Mutex<Option<Credentials>>,
    user: Mutex<Option<User>>,
    closing: AtomicBool,
    close: Notify,
    connected: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn install(&self) -> mpsc::UnboundedReceiver<Message> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.link).writer = Some(tx);
        self.connected.send_replace(true);
        rx
    }

    fn disconnect(&self) {
        let pending = {
            let mut link = lock(&self.link);
            link.writer = None;
            std::mem::take(&mut link.pending)
        };
        self.connected.send_replace(false);
        for (_, tx) in pending {
            let _ = tx.send(Err(Error::ConnectionClosed));
        }
    }

    pub(crate) async fn request(&self, method: &str, params: Option<Value>) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = Map::new();
        frame.insert("id".into(), id.into());
        frame.insert("jsonrpc".into(), "2.0".into());
        frame.insert("method".into(), method.into());
        if let Some(p) = params {
            frame.insert("params".into(), p);
        }
        let text = Value::Object(frame).to_string();
        let (tx, rx) = oneshot::channel();
        {
            let mut link = lock(&self.link);
            let Some(w) = link.writer.as_ref() else {
                return Err(Error::NotConnected);
            };
            if w.send(Message::text(text)).is_err() {
                return Err(Error::NotConnected);
            }
            link.pending.insert(id, tx);
        }
        tracing::trace!(id, method, "call");
        let wait = async { rx.await.unwrap_or(Err(Error::ConnectionClosed)) };
        match self.options.call_timeout {
            None => wait.await,
            Some(t) => match tokio::time::timeout(t, wait).await {
                Ok(r) => r,
                Err(_) => {
                    lock(&self.link).pending.remove(&id);
                    Err(Error::Timeout)
                }
            },
        }
    }

    fn dispatch(&self, text: &str) {
        let mut v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a frame that is not JSON");
                return;
            }
        };
        let Some(obj) = v.as_object_mut() else {
            tracing::warn!("ignoring a frame that is not a JSON object");
            return;
        };
        if let Some(method) = obj.get("method").and_then(Value::as_str) {
            if obj.get("id").is_none_or(Value::is_null) {
                let n = Notification {
                    method: method.to_owned(),
                    params: obj.remove("params").unwrap_or(Value::Null),
                };
                let _ = self.events.send(Event::Notification(n));
            } else {
                tracing::debug!(method, "ignoring a request from the server");
            }
            return;
        }
        let Some(id) = obj.get("id").and_then(Value::as_i64) else {
            tracing::warn!("ignoring a response without a usable id");
            return;
        };
        let Some(tx) = lock(&self.link).pending.remove(&id) else {
            tracing::debug!(id, "response to no pending call");
            return;
        };
        let result = match obj.remove("error") {
            Some(err) => Err(Error::Api(ApiError::from_json(&err))),
            None => Ok(obj.remove("result").unwrap_or(Value::Null)),
        };
        let _ = tx.send(result);
    }

    async fn sign_in(&self, credentials: &Credentials) -> Result<User> {
        let v = self
            .request("session.signIn", Some(credentials.to_params()))
            .await?;
        let user: User =
            serde_json::from_value(v).map_err(|e| Error::Decode(format!("session.signIn: {e}")))?;
        *lock(&self.user) = Some(user.clone());
        let _ = self.events.send(Event::SignedIn(user.clone()));
        Ok(user)
    }

    async fn pump(&self, socket: Socket, mut rx: mpsc::UnboundedReceiver<Message>) -> String {
        let (mut sink, mut stream) = socket.split();
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(m) => {
                        if let Err(e) = sink.send(m).await {
                            return format!("send failed: {e}");
                        }
                    }
                    None => return "writer dropped".into(),
                },
                msg = stream.next() => match msg {
                    None => return "connection closed by the server".into(),
                    Some(Err(e)) => return e.to_string(),
                    Some(Ok(Message::Text(t))) => self.dispatch(t.as_str()),
                    Some(Ok(Message::Binary(b))) => self.dispatch(&String::from_utf8_lossy(&b)),
                    Some(Ok(Message::Close(frame))) => {
                        return match frame {
                            Some(f) => format!("closed by the server: {} {}", u16::from(f.code), f.reason),
                            None => "closed by the server".into(),
                        }
                    }
                    Some(Ok(_)) => {
                        let _ = sink.flush().await; // answer pings
                    }
                },
                _ = self.close.notified() => {
                    let _ = sink.send(Message::Close(None)).await;
                    let _ = sink.close().await;
                    return "closed by the client".into();
                }
            }
        }
    }
}

async fn drive(shared: Arc<Shared>, socket: Socket, rx: mpsc::UnboundedReceiver<Message>) {
    let mut next = Some((socket, rx));
    while let Some((socket, rx)) = next.take() {
        let reason = shared.pump(socket, rx).await;
        tracing::debug!(%reason, "API connection lost");
        shared.disconnect();
        *lock(&shared.user) = None;
        let _ = shared.events.send(Event::Disconnected { reason });
        if shared.closing.load(Ordering::SeqCst) {
            return;
        }
        let Some(backoff) = shared.options.reconnect else {
            return;
        };
        let Some(socket) = reconnect(&shared, backoff).await else {
            return;
        };
        let rx = shared.install();
        let _ = shared.events.send(Event::Reconnected);
        let credentials = lock(&shared.credentials).clone();
        if let Some(c) = credentials {
            let s = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = s.sign_in(&c).await {
                    tracing::warn!(error = %e, "cannot sign in again after reconnecting");
                    let _ = s.events.send(Event::SignInFailed(e.to_string()));
                }
            });
        }
        next = Some((socket, rx));
    }
}

async fn reconnect(shared: &Shared, backoff: Backoff) -> Option<Socket> {
    for delay in backoff.delays() {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.close.notified() => return None,
        }
        if shared.closing.load(Ordering::SeqCst) {
            return None;
        }
        match open_socket(
            &shared.endpoint,
            &shared.tls,
            shared.options.connect_timeout,
        )
        .await
        {
            Ok(s) => return Some(s),
            Err(e) => tracing::debug!(error = %e, "reconnection attempt failed"),
        }
    }
    None
}

/// Closes the connection when the last [`Xo`] handle is dropped.
struct Guard(Arc<Shared>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.closing.store(true, Ordering::SeqCst);
        self.0.close.notify_one();
    }
}

/// A connection to xo-server (cheap to clone; the connection closes when the last clone is dropped or
/// on [`Xo::close`]).
#[derive(Clone)]
pub struct Xo {
    pub(crate) shared: Arc<Shared>,
    _guard: Arc<Guard>,
}

impl std::fmt::Debug for Xo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xo")
            .field("url", &self.shared.endpoint.ws_url())
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Xo {
    /// Connects (and signs in when the options carry credentials, or when the URL carries a token as
    /// user-info: `https://<token>@host/`).
    pub async fn connect(options: Options) -> Result<Xo> {
        let endpoint = Endpoint::parse(&options.url)?;
        let tls = crate::tls::client_config(options.allow_unauthorized).map_err(|reason| {
            Error::Connect {
                url: endpoint.http_base(),
                reason,
            }
        })?;
        let socket = open_socket(&endpoint, &tls, options.connect_timeout).await?;
        let credentials = options
            .credentials
            .clone()
            .or_else(|| endpoint.token().map(Credentials::token));
        let (events, _) = broadcast::channel(options.event_capacity);
        let shared = Arc::new(Shared {
            endpoint,
            tls,
            options,
            next_id: AtomicI64::new(FIRST_REQUEST_ID),
            link: Mutex::new(Link::default()),
            events,
            credentials: Mutex::new(None),
            user: Mutex::new(None),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            connected: watch::channel(false).0,
        });
        let rx = shared.install();
        tokio::spawn(drive(shared.clone(), socket, rx));
        let xo = Xo {
            _guard: Arc::new(Guard(shared.clone())),
            shared,
        };
        if let Some(c) = credentials {
            xo.sign_in(c).await?;
        }
        Ok(xo)
    }

    /// Calls a method with named params (`Value::Null` ⇒ the `params` member is omitted). `session.*`
    /// methods are refused (use [`Xo::sign_in`], [`Xo::sign_out`], [`Xo::refresh_user`]).
    pub async fn call(&self, method: &str, params: Value) -> Result<Value> {
        if method.starts_with("session.") {
            return Err(Error::SessionMethod(method.to_owned()));
        }
        let params = (!params.is_null()).then_some(params);
        self.shared.request(method, params).await
    }

    /// `session.signIn`: on success the credentials are kept to sign in again after a reconnection.
    pub async fn sign_in(&self, credentials: Credentials) -> Result<User> {
        let user = self.shared.sign_in(&credentials).await?;
        *lock(&self.shared.credentials) = Some(credentials);
        Ok(user)
    }

    /// `session.signOut` (and forget the credentials).
    pub async fn sign_out(&self) -> Result<()> {
        self.shared
            .request("session.signOut", Some(Value::Object(Map::new())))
            .await?;
        *lock(&self.shared.credentials) = None;
        *lock(&self.shared.user) = None;
        Ok(())
    }

    /// `session.getUser`, stored as the current user.
    pub async fn refresh_user(&self) -> Result<User> {
        let v = self.shared.request("session.getUser", None).await?;
        let user: User = serde_json::from_value(v)
            .map_err(|e| Error::Decode(format!("session.getUser: {e}")))?;
        *lock(&self.shared.user) = Some(user.clone());
        Ok(user)
    }

    /// The signed-in user, if any.
    pub fn user(&self) -> Option<User> {
        lock(&self.shared.user).clone()
    }

    /// Connection events and notifications from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Whether a connection is currently open.
    pub fn is_connected(&self) -> bool {
        *self.shared.connected.borrow()
    }

    /// Waits until a connection is open (returns at once if it is).
    pub async fn wait_connected(&self) {
        let mut rx = self.shared.connected.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// The server URL.
    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    /// Closes the connection (no reconnection); pending calls fail with [`Error::ConnectionClosed`].
    pub fn close(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.close.notify_one();
    }
}
