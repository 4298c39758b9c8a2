//! XAPI pools inside xo-server: one always-on sync per connected server (xapi-client watcher → xo-cache
//! [`xo_cache::Store`]), the `all` notifications of every cache change, and the seam object methods use.
//!
//! # For method handlers (the seam)
//!
//! Every [`App`] built by [`crate::AppBuilder`] carries one [`Pools`] (also its default
//! [`crate::PoolConnector`]). From a handler:
//!
//! ```ignore
//! use xo_server::xapi::Pools;
//! async fn start(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
//!     let pools = Pools::of(&ctx.app)?;
//!     let id = req_str(&p, "id")?;
//!     // the object from the cache (XO id or OpaqueRef), its type checked: noSuchObject otherwise
//!     let vm = pools.object_of_type(id, &["VM"])?;
//!     // the pool's client: serverUnreachable when the pool is not connected; mutating calls are
//!     // refused for read-only servers; XAPI errors come back as XO errors (refs → XO ids)
//!     let xapi = pools.client_for_object(vm.id())?;
//!     xapi.call_async("VM.start", vec![vm.xapi_ref().into(), false.into(), false.into()]).await?;
//!     Ok(Value::Bool(true))
//! }
//! ```
//!
//! - [`Pools::object`] / [`Pools::object_of_type`]: XO objects ([`XoObject`]: `id()`, `kind()`,
//!   `xapi_ref()`, `pool()`, `value()`, `get(field)`).
//! - [`Pools::client_for_object`], [`Pools::client_for_pool`]: a [`PoolClient`] (`call`, `call_async`,
//!   `raw()` for the underlying [`xapi_client::Client`]).
//! - [`Pools::cache`]: the whole [`xo_cache::Store`] (queries: `find`, `select`, `get_by_ref`…).
//! - [`Pools::wait_connecting`]: wait (bounded) until pools being connected have loaded their objects.
//! - [`xapi_error_to_api`] / [`Pools::map_error`]: XAPI error → XO error.

mod connector;
mod errors;
mod forward;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use xapi_client::Client;
use xo_cache::{PoolStatus, Store, StoreConfig};

use crate::app::{App, WeakApp};
use crate::error::ApiError;

pub use connector::ServerConn;
pub use errors::{
    authentication_failed, no_hosts_available, server_unreachable, vm_bad_power_state,
    xapi_error_to_api,
};
pub use xo_cache::XoObject;

/// Settings of the pool connections.
#[derive(Clone, Debug)]
pub struct PoolsConfig {
    /// Longest a reader ([`Pools::wait_connecting`], `xo.getAllObjects`) waits for connecting pools.
    pub ready_timeout: Duration,
    /// Longest `server.add`/`server.enable` wait for the login and the first full load.
    pub connect_timeout: Duration,
    /// Per-call timeout of XAPI calls.
    pub call_timeout: Duration,
    /// Batches the cache may queue for the notification forwarder before it must resubscribe.
    pub batch_queue: usize,
    /// Delays before each attempt to connect a host ejected by `host.detach` (it reboots first); XO's
    /// `fibonacci().take(5).toMs().map(d => d * 60)`: 1, 1, 2, 3 and 5 minutes.
    pub ejected_host_connect_delays: Vec<Duration>,
}

impl Default for PoolsConfig {
    fn default() -> Self {
        Self {
            ready_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(60),
            call_timeout: Duration::from_secs(120),
            batch_queue: 4096,
            ejected_host_connect_delays: [60, 60, 120, 180, 300]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        }
    }
}

/// Every XAPI pool xo-server is connected to, and their objects.
pub struct Pools {
    config: PoolsConfig,
    cache: Store,
    /// Connections by XAPI server id (the cache's pool key).
    conns: Mutex<HashMap<String, Arc<ServerConn>>>,
    /// The server each pool is connected through, by pool uuid (XO's `_serverIdsByPool`): a second server of
    /// the same pool is refused.
    owners: Mutex<HashMap<String, String>>,
    app: OnceLock<WeakApp>,
    forwarder: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pools")
            .field("servers", &self.conns.lock().len())
            .field("objects", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Pools {
    fn drop(&mut self) {
        // Ends every watcher (their streams end, the sync drivers stop) and the forwarder.
        self.conns.lock().clear();
        if let Some(f) = self.forwarder.lock().take() {
            f.abort();
        }
    }
}

impl Pools {
    /// No pool yet.
    pub fn new(config: PoolsConfig) -> Self {
        let cache = Store::new(StoreConfig {
            subscriber_capacity: config.batch_queue,
        });
        Self {
            config,
            cache,
            conns: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            app: OnceLock::new(),
            forwarder: Mutex::new(None),
        }
    }

    /// The app's pools (`internal` error if the app was built without them, which [`crate::AppBuilder`]
    /// never does).
    pub fn of(app: &App) -> Result<Arc<Pools>, ApiError> {
        app.extension::<Pools>()
            .ok_or_else(|| ApiError::internal("XAPI pools are not available"))
    }

    /// Binds to the app (done by [`crate::AppBuilder::build`]).
    pub(crate) fn attach(&self, app: WeakApp) {
        let _ = self.app.set(app);
    }

    /// Settings.
    pub fn config(&self) -> &PoolsConfig {
        &self.config
    }

    /// The object cache of every pool.
    pub fn cache(&self) -> &Store {
        &self.cache
    }

    /// An object by XO id, or by XAPI ref (`OpaqueRef:…`) in any pool.
    pub fn object(&self, id: &str) -> Option<Arc<XoObject>> {
        self.cache.get(id).or_else(|| self.cache.get_by_any_ref(id))
    }

    /// An object whose XO type is one of `types` (e.g. `&["VM", "VM-snapshot"]`); otherwise XO's
    /// `noSuchObject(id, type)`.
    pub fn object_of_type(&self, id: &str, types: &[&str]) -> Result<Arc<XoObject>, ApiError> {
        match self.object(id) {
            Some(o) if types.is_empty() || types.contains(&o.kind()) => Ok(o),
            _ => Err(ApiError::no_such_object(
                id,
                (!types.is_empty()).then(|| types.join(",")).as_deref(),
            )),
        }
    }

    /// The XAPI server id (cache pool key) behind a pool uuid (`$pool`).
    pub fn server_id_of_pool(&self, pool_id: &str) -> Option<String> {
        self.cache.pool_key_of(pool_id)
    }

    /// The client of the pool an object belongs to: `noSuchObject` for an unknown object,
    /// `serverUnreachable` when its pool is not connected.
    pub fn client_for_object(&self, id: &str) -> Result<PoolClient, ApiError> {
        let obj = self
            .object(id)
            .ok_or_else(|| ApiError::no_such_object(id, None))?;
        let pool = obj
            .pool()
            .ok_or_else(|| ApiError::no_such_object(id, None))?;
        self.client_for_pool(pool)
    }

    /// The client of a pool by pool uuid (or by XAPI server id): `serverUnreachable` when it is not
    /// connected, `noSuchObject(id, "pool")` when unknown.
    pub fn client_for_pool(&self, pool_id: &str) -> Result<PoolClient, ApiError> {
        let server_id = if self.conns.lock().contains_key(pool_id) || self.is_server(pool_id) {
            pool_id.to_owned()
        } else {
            self.server_id_of_pool(pool_id)
                .ok_or_else(|| ApiError::no_such_object(pool_id, Some("pool")))?
        };
        let conn = self
            .conns
            .lock()
            .get(&server_id)
            .cloned()
            .ok_or_else(|| server_unreachable(&server_id))?;
        let client = conn
            .client()
            .ok_or_else(|| server_unreachable(&server_id))?;
        Ok(PoolClient {
            client,
            read_only: self.is_read_only(&server_id),
            server_id,
            cache: self.cache.clone(),
        })
    }

    fn is_server(&self, id: &str) -> bool {
        self.app
            .get()
            .and_then(WeakApp::upgrade)
            .is_some_and(|app| matches!(app.store().server(id), Ok(Some(_))))
    }

    /// Whether the XAPI server is registered read-only (`server.set readOnly`).
    pub fn is_read_only(&self, server_id: &str) -> bool {
        self.app
            .get()
            .and_then(WeakApp::upgrade)
            .and_then(|app| app.store().server(server_id).ok().flatten())
            .is_some_and(|s| s.read_only)
    }

    /// Waits until no pool is `Connecting`, at most [`PoolsConfig::ready_timeout`] (readers call this so
    /// that a just-added pool's objects are there).
    pub async fn wait_connecting(&self) {
        let connecting: Vec<String> = self
            .cache
            .pools()
            .into_iter()
            .filter(|k| matches!(self.cache.status(k), Some(PoolStatus::Connecting)))
            .collect();
        if connecting.is_empty() {
            return;
        }
        let all = futures::future::join_all(connecting.iter().map(|k| self.cache.wait_ready(k)));
        if tokio::time::timeout(self.config.ready_timeout, all)
            .await
            .is_err()
        {
            tracing::debug!(pools = ?connecting, "pools still connecting: answering without them");
        }
    }

    /// Maps an XAPI error to XO's, converting refs to XO ids through the cache.
    pub fn map_error(&self, e: xapi_client::Error) -> ApiError {
        map_error_with(&self.cache, e)
    }

    /// Connected (or connecting) XAPI server ids.
    pub fn server_ids(&self) -> Vec<String> {
        self.conns.lock().keys().cloned().collect()
    }
}

fn map_error_with(cache: &Store, e: xapi_client::Error) -> ApiError {
    errors::map_with(e, &|r: &str| {
        cache
            .get_by_any_ref(r)
            .map_or_else(|| r.to_owned(), |o| o.id().to_owned())
    })
}

/// Whether a call only reads (allowed on read-only servers), as `@xen-orchestra/xapi` decides.
pub fn is_read_only_call(method: &str) -> bool {
    let (class, name) = method.split_once('.').unwrap_or(("", method));
    let name = name.strip_prefix("Async.").unwrap_or(name);
    matches!(class, "session" | "event" | "system")
        || name.starts_with("get_")
        || name.starts_with("assert_")
        || name == "retrieve_wlb_recommendations"
}

/// A pool's XAPI client for method handlers: answers XO errors, refuses mutating calls on read-only
/// servers. [`PoolClient::raw`] gives the [`xapi_client::Client`] itself (no guard) for HTTP transfers.
#[derive(Clone, Debug)]
pub struct PoolClient {
    client: Arc<Client>,
    server_id: String,
    read_only: bool,
    cache: Store,
}

impl PoolClient {
    /// The underlying client.
    pub fn raw(&self) -> &Arc<Client> {
        &self.client
    }

    /// The XAPI server id.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Whether the server is read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn guard(&self, method: &str) -> Result<(), ApiError> {
        if self.read_only && !is_read_only_call(method) {
            return Err(ApiError::internal(format!(
                "cannot call {method}() in read only mode"
            )));
        }
        Ok(())
    }

    /// A synchronous call (`VM.set_name_label`…), XAPI errors mapped to XO's.
    pub async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, ApiError> {
        self.guard(method)?;
        self.client
            .call(method, params)
            .await
            .map_err(|e| map_error_with(&self.cache, e))
    }

    /// An `Async.` call awaited through its task (`VM.start`, `VM.clone`…): the task's result.
    pub async fn call_async(&self, method: &str, params: Vec<Value>) -> Result<Value, ApiError> {
        self.guard(method)?;
        self.client
            .call_async(method, params)
            .await
            .map_err(|e| map_error_with(&self.cache, e))
    }
}
