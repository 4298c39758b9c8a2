//! [`Client`]: login (following `HOST_IS_SLAVE`), session-carrying calls with re-login, bounded concurrency, timeouts.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use xapi_types::{RawRecord, Ref, XapiError};

use crate::http::{Endpoint, Transport};
use crate::rpc::Answer;
use crate::{rpc, ClientOptions, Error, Protocol, Result, Secret};

const SESSION_INVALID: &str = "SESSION_INVALID";
const HOST_IS_SLAVE: &str = "HOST_IS_SLAVE";
const MAX_REDIRECTS: usize = 3;

/// A connection to one XAPI pool. Cheap to clone (shared state); all methods take `&self`.
///
/// Every call made with [`Client::call`] carries the session id as its first parameter, re-logs in once on
/// `SESSION_INVALID` and follows a master change (`HOST_IS_SLAVE`) once, then retries the call.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    opts: ClientOptions,
    forced_protocol: Option<Protocol>,
    tls: Option<Arc<rustls::ClientConfig>>,
    transport: RwLock<Arc<Transport>>,
    session: Mutex<SessionState>,
    login_lock: tokio::sync::Mutex<()>,
    limiter: Semaphore,
    next_id: AtomicU64,
    /// Addresses of pool members, probed at login when the current host is unreachable (master failover).
    pool_hosts: Mutex<Vec<String>>,
    pub(crate) tasks: crate::task_hub::TaskHub,
}

#[derive(Default)]
struct SessionState {
    id: Option<Secret>,
    /// Bumped on every successful login: lets concurrent callers that saw `SESSION_INVALID` re-login only once.
    generation: u64,
}

/// How one call is made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallFlags {
    /// `None`: the client's `call_timeout`.
    pub timeout: Option<Duration>,
    /// Counted against `max_concurrency` (long polls are not).
    pub limited: bool,
    /// Re-login and retry once on `SESSION_INVALID`.
    pub relogin: bool,
}

impl Default for CallFlags {
    fn default() -> Self {
        CallFlags {
            timeout: None,
            limited: true,
            relogin: true,
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url())
            .field("username", &self.inner.opts.username)
            .field("protocol", &self.protocol())
            .field("logged_in", &self.is_logged_in())
            .finish()
    }
}

impl Client {
    /// A client for `opts` (no network traffic yet; the first call logs in).
    pub fn new(opts: ClientOptions) -> Result<Client> {
        Self::with_protocol(opts, None)
    }

    /// Like [`Client::new`], with the RPC protocol forced instead of detected (`None` = detect: JSON-RPC first).
    pub fn with_protocol(opts: ClientOptions, protocol: Option<Protocol>) -> Result<Client> {
        let endpoint = Endpoint::parse(&opts.url)?
            .with_proxy(opts.http_proxy.as_ref().map(crate::Secret::expose))?;
        let tls = if endpoint.tls {
            Some(crate::tls::client_config(
                opts.allow_unauthorized,
                &opts.extra_roots,
            )?)
        } else {
            None
        };
        let max = opts.max_concurrency.max(1);
        let transport = Transport::new(
            endpoint,
            tls.clone(),
            max + 4,
            opts.max_response_bytes,
            protocol,
        )?;
        Ok(Client {
            inner: Arc::new(Inner {
                forced_protocol: protocol,
                tls,
                transport: RwLock::new(Arc::new(transport)),
                session: Mutex::new(SessionState::default()),
                login_lock: tokio::sync::Mutex::new(()),
                limiter: Semaphore::new(max),
                next_id: AtomicU64::new(0),
                pool_hosts: Mutex::new(Vec::new()),
                tasks: Default::default(),
                opts,
            }),
        })
    }

    /// [`Client::new`] then [`Client::login`].
    pub async fn connect(opts: ClientOptions) -> Result<Client> {
        let c = Client::new(opts)?;
        c.login().await?;
        Ok(c)
    }

    /// The URL of the host currently talked to (the master once a `HOST_IS_SLAVE` was followed).
    pub fn url(&self) -> String {
        self.transport().endpoint.url()
    }

    /// The detected (or forced) protocol, `None` before the first exchange.
    pub fn protocol(&self) -> Option<Protocol> {
        self.transport().protocol()
    }

    pub fn is_logged_in(&self) -> bool {
        self.lock_session().id.is_some()
    }

    /// The current session id (for HTTP handlers such as console or export that take `session_id`).
    pub fn session_id(&self) -> Option<Secret> {
        self.lock_session().id.clone()
    }

    /// The TLS configuration in use (same trust policy), for HTTP transfers or consoles on the pool's hosts.
    pub fn tls_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.inner.tls.clone()
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// Log in (again), following `HOST_IS_SLAVE` to the master.
    pub async fn login(&self) -> Result<()> {
        let gen = self.lock_session().generation;
        self.relogin(gen).await.map(|_| ())
    }

    /// `session.logout` (following a master change once, as calls do); the client may log in again later. A session
    /// already invalid is not an error.
    pub async fn logout(&self) -> Result<()> {
        let sid = {
            let mut s = self.lock_session();
            s.generation += 1;
            s.id.take()
        };
        let Some(sid) = sid else { return Ok(()) };
        let params = [Value::String(sid.expose().to_owned())];
        let mut redirected = false;
        loop {
            let transport = self.transport();
            match self
                .send(&transport, "session.logout", &params, CallFlags::default())
                .await
            {
                Ok(_) => return Ok(()),
                Err(Error::Xapi(e)) if e.code == SESSION_INVALID => return Ok(()),
                // the master moved since the login: the session lives on in the pool until told to the new one
                Err(Error::Xapi(e)) if e.code == HOST_IS_SLAVE && !redirected => {
                    redirected = true;
                    self.follow_master(&transport, &e, "session.logout")?;
                }
                Err(e) => return Err(redact_session(e, &params[0])),
            }
        }
    }

    /// After `HOST_IS_SLAVE [master]` from `transport`'s host: talk to the master from now on.
    fn follow_master(&self, transport: &Arc<Transport>, e: &XapiError, method: &str) -> Result<()> {
        let master = e.params.first().map(String::as_str).unwrap_or_default();
        tracing::info!(method, master, "pool master moved");
        self.redirect(transport, master)
    }

    /// Call `method` with the session id inserted as first parameter.
    pub async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value> {
        self.call_with(method, params, CallFlags::default()).await
    }

    /// [`Client::call`] with its own timeout.
    pub async fn call_with_timeout(
        &self,
        method: &str,
        params: Vec<Value>,
        timeout: Duration,
    ) -> Result<Value> {
        self.call_with(
            method,
            params,
            CallFlags {
                timeout: Some(timeout),
                ..CallFlags::default()
            },
        )
        .await
    }

    /// Call a method that takes no session (`system.listMethods`, login variants) on the current host.
    pub async fn call_unauthenticated(&self, method: &str, params: Vec<Value>) -> Result<Value> {
        self.send(&self.transport(), method, &params, CallFlags::default())
            .await?
            .into_value()
    }

    pub(crate) async fn call_with(
        &self,
        method: &str,
        params: Vec<Value>,
        flags: CallFlags,
    ) -> Result<Value> {
        self.call_answer(method, params, flags).await?.into_value()
    }

    /// [`Client::call_with`] with the result left undecoded.
    pub(crate) async fn call_answer(
        &self,
        method: &str,
        params: Vec<Value>,
        flags: CallFlags,
    ) -> Result<Answer> {
        let (sid, mut gen) = self.ensure_session().await?;
        let mut full = Vec::with_capacity(params.len() + 1);
        full.push(Value::String(sid.expose().to_owned()));
        full.extend(params);
        let (mut relogged, mut redirected) = (false, false);
        loop {
            let transport = self.transport();
            match self.send(&transport, method, &full, flags).await {
                Err(Error::Xapi(e)) if e.code == SESSION_INVALID && flags.relogin && !relogged => {
                    tracing::info!(method, "session invalid, logging in again");
                    relogged = true;
                    let (sid, g) = self.relogin(gen).await?;
                    gen = g;
                    full[0] = Value::String(sid.expose().to_owned());
                }
                Err(Error::Xapi(e)) if e.code == HOST_IS_SLAVE && !redirected => {
                    redirected = true;
                    self.follow_master(&transport, &e, method)?;
                }
                r => return r.map_err(|e| redact_session(e, &full[0])),
            }
        }
    }

    /// One exchange on `transport`, within the concurrency limit and the timeout.
    async fn send(
        &self,
        transport: &Transport,
        method: &str,
        params: &[Value],
        flags: CallFlags,
    ) -> Result<Answer> {
        let _permit = if flags.limited {
            Some(
                self.inner
                    .limiter
                    .acquire()
                    .await
                    .map_err(|_| Error::Config("client closed".into()))?,
            )
        } else {
            None
        };
        let timeout = flags.timeout.unwrap_or(self.inner.opts.call_timeout);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(method, id, "XAPI call");
        match tokio::time::timeout(timeout, rpc::call(transport, id, method, params)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    pub(crate) fn transport(&self) -> Arc<Transport> {
        self.inner
            .transport
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn lock_session(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.inner.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn ensure_session(&self) -> Result<(Secret, u64)> {
        {
            let s = self.lock_session();
            if let Some(id) = &s.id {
                return Ok((id.clone(), s.generation));
            }
        }
        let gen = self.lock_session().generation;
        self.relogin(gen).await
    }

    /// Log in unless someone already did since generation `stale` was observed.
    async fn relogin(&self, stale: u64) -> Result<(Secret, u64)> {
        let _guard = self.inner.login_lock.lock().await;
        {
            let s = self.lock_session();
            if let (Some(id), true) = (&s.id, s.generation != stale) {
                return Ok((id.clone(), s.generation));
            }
        }
        let sid = self.do_login().await?;
        let mut s = self.lock_session();
        s.generation += 1;
        s.id = Some(sid.clone());
        Ok((sid, s.generation))
    }

    async fn do_login(&self) -> Result<Secret> {
        let o = &self.inner.opts;
        let params = [
            Value::String(o.username.clone()),
            Value::String(o.password.expose().to_owned()),
            Value::String("1.1".to_owned()),
            Value::String(o.originator.clone()),
        ];
        let mut hops = 0;
        let mut first_failure: Option<Error> = None;
        let mut tried: Vec<String> = Vec::new();
        loop {
            let transport = self.transport();
            match self
                .send(
                    &transport,
                    "session.login_with_password",
                    &params,
                    CallFlags::default(),
                )
                .await
                .and_then(Answer::into_value)
            {
                Ok(Value::String(s)) => {
                    tracing::debug!(url = %transport.endpoint.url(), "logged in");
                    return Ok(Secret::new(s));
                }
                Ok(_) => {
                    return Err(Error::structure(
                        "session.login_with_password did not return a session ref",
                    ))
                }
                Err(Error::Xapi(e)) if e.code == HOST_IS_SLAVE && hops < MAX_REDIRECTS => {
                    hops += 1;
                    let master = e.params.first().cloned().unwrap_or_default();
                    tracing::info!(from = %transport.endpoint.url(), master, "host is a pool member, going to the master");
                    self.redirect(&transport, &master)?;
                }
                Err(e) if e.is_connection_error() => {
                    // The host is unreachable: try the other pool members (one may be the new master, or a
                    // member that answers HOST_IS_SLAVE with it), as XO does on failover.
                    tried.push(transport.endpoint.host.clone());
                    let next = self
                        .pool_hosts()
                        .into_iter()
                        .find(|h| !tried.iter().any(|t| t == h));
                    let first = first_failure.get_or_insert(e);
                    match next {
                        Some(h) => {
                            tracing::info!(unreachable = %transport.endpoint.url(), next = %h, "trying another pool member");
                            hops = 0;
                            self.redirect(&transport, &h)?;
                        }
                        None => return Err(first.clone()),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Addresses of the pool's members (`host.address`), probed at login when the current host is unreachable.
    /// The watcher keeps this up to date from `host` records.
    pub fn set_pool_hosts(&self, addresses: Vec<String>) {
        *self
            .inner
            .pool_hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = addresses;
    }

    pub fn pool_hosts(&self) -> Vec<String> {
        self.inner
            .pool_hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Point the client at `master` (same scheme, port and path), unless another caller already moved it.
    fn redirect(&self, from: &Arc<Transport>, master: &str) -> Result<()> {
        if master.is_empty() {
            return Err(Error::structure("HOST_IS_SLAVE without a master address"));
        }
        let mut cur = self
            .inner
            .transport
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&cur, from) {
            return Ok(());
        }
        let endpoint = from.endpoint.with_host(master);
        let protocol = self.inner.forced_protocol.or(from.protocol());
        let max_idle = self.inner.opts.max_concurrency.max(1) + 4;
        *cur = Arc::new(Transport::new(
            endpoint,
            self.inner.tls.clone(),
            max_idle,
            self.inner.opts.max_response_bytes,
            protocol,
        )?);
        Ok(())
    }

    // ----- typed conveniences -------------------------------------------------------------------------------------

    /// `system.listMethods` (no session).
    pub async fn list_methods(&self) -> Result<Vec<String>> {
        match self
            .call_unauthenticated("system.listMethods", Vec::new())
            .await?
        {
            Value::Array(a) => Ok(a
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()),
            _ => Err(Error::structure(
                "system.listMethods did not return an array",
            )),
        }
    }

    /// Every class that has `get_all_records`, from `system.listMethods`, in datamodel spelling (`VM`, `host`).
    pub async fn record_classes(&self) -> Result<Vec<String>> {
        let mut classes: Vec<String> = self
            .list_methods()
            .await?
            .into_iter()
            .filter_map(|m| {
                m.strip_suffix(".get_all_records")
                    .filter(|c| !c.contains('.'))
                    .map(str::to_owned)
            })
            .collect();
        classes.sort();
        classes.dedup();
        Ok(classes)
    }

    /// `<class>.get_all_records` as `(ref, record)` pairs, moved out of the decoded response without copying.
    pub async fn get_all_records(&self, class: &str) -> Result<Vec<(Ref, Map<String, Value>)>> {
        let v = self
            .call(&format!("{class}.get_all_records"), Vec::new())
            .await?;
        records_of(class, v)
    }

    /// `<class>.get_all_records` as `(ref, raw record)` pairs: each record's JSON text is kept as received (see
    /// [`RawRecord`]), never parsed into a tree; a fraction of the memory of [`Client::get_all_records`].
    pub async fn get_all_records_raw(&self, class: &str) -> Result<Vec<(Ref, RawRecord)>> {
        self.call_answer(
            &format!("{class}.get_all_records"),
            Vec::new(),
            CallFlags::default(),
        )
        .await?
        .into_records(class, |_| true)
    }

    /// [`Client::get_all_records_raw`] keeping only the fields `keep` accepts: the others are never copied.
    pub async fn get_all_records_retained(
        &self,
        class: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<(Ref, RawRecord)>> {
        self.call_answer(
            &format!("{class}.get_all_records"),
            Vec::new(),
            CallFlags::default(),
        )
        .await?
        .into_records(class, keep)
    }

    /// `<class>.get_record(ref)`.
    pub async fn get_record(&self, class: &str, obj: &Ref) -> Result<Map<String, Value>> {
        match self
            .call(
                &format!("{class}.get_record"),
                vec![Value::String(obj.0.clone())],
            )
            .await?
        {
            Value::Object(m) => Ok(m),
            _ => Err(Error::structure(format!(
                "{class}.get_record did not return a struct"
            ))),
        }
    }

    /// The pool's ref (`pool.get_all`, first entry).
    pub async fn pool_ref(&self) -> Result<Ref> {
        match self.call("pool.get_all", Vec::new()).await? {
            Value::Array(a) => match a.into_iter().next() {
                Some(Value::String(s)) => Ok(Ref(s)),
                _ => Err(Error::structure("pool.get_all returned no pool")),
            },
            _ => Err(Error::structure("pool.get_all did not return an array")),
        }
    }

    /// `event.inject(class, ref)` → a token from just before that object's touch.
    pub async fn event_inject(&self, class: &str, obj: &Ref) -> Result<String> {
        match self
            .call(
                "event.inject",
                vec![Value::from(class), Value::String(obj.0.clone())],
            )
            .await?
        {
            Value::String(t) => Ok(t),
            _ => Err(Error::structure("event.inject did not return a token")),
        }
    }
}

/// Replace the session id in error params (`SESSION_INVALID [session]`) so errors can be logged and shown.
fn redact_session(e: Error, sid: &Value) -> Error {
    match (e, sid.as_str()) {
        (Error::Xapi(mut x), Some(sid)) if !sid.is_empty() => {
            for p in x.params.iter_mut().filter(|p| p.as_str() == sid) {
                *p = "***".to_owned();
            }
            Error::Xapi(x)
        }
        (e, _) => e,
    }
}

/// Turn a `(ref → record) map` into pairs, by move.
pub(crate) fn records_of(class: &str, v: Value) -> Result<Vec<(Ref, Map<String, Value>)>> {
    match v {
        Value::Object(m) => {
            let mut out = Vec::with_capacity(m.len());
            for (r, rec) in m {
                match rec {
                    Value::Object(rec) => out.push((Ref(r), rec)),
                    _ => {
                        return Err(Error::structure(format!(
                            "{class}.get_all_records: record {r} is not a struct"
                        )))
                    }
                }
            }
            Ok(out)
        }
        // XML-RPC cannot tell an empty struct from an empty string when the schema is unknown.
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        _ => Err(Error::structure(format!(
            "{class}.get_all_records did not return a struct"
        ))),
    }
}
