//! [`Pools`] as the app's [`PoolConnector`]: log into a server, start its watcher, adapt the watcher's
//! events into xo-cache's [`SyncInput`], run the sync driver, and tear it all down on disconnect (the
//! pool's objects leave with one `exit` batch).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;
use xapi_client::{Client, ClientOptions, FieldFilter, Op, WatchEvent, WatchOptions};
use xo_cache::{spawn_pool_sync, ChangeOp, ObjectChange, PoolStatus, PoolSyncHandle, SyncInput};
use xo_store::Server;

use super::Pools;
use crate::app::App;
use crate::pool::{ConnectError, ConnectionState, PoolConnector, ServerStatus};

/// One XAPI server connection (connecting or connected). Dropping it ends its watcher and sync driver.
pub struct ServerConn {
    host: String,
    client: Mutex<Option<Arc<Client>>>,
    /// Dropping the sender ends the watcher stream fed to the sync driver.
    cancel: Mutex<Option<oneshot::Sender<()>>>,
    sync: Mutex<Option<PoolSyncHandle>>,
}

impl std::fmt::Debug for ServerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConn")
            .field("host", &self.host)
            .field("logged_in", &self.client.lock().is_some())
            .finish_non_exhaustive()
    }
}

impl ServerConn {
    /// The logged-in client, once the login succeeded.
    pub fn client(&self) -> Option<Arc<Client>> {
        self.client.lock().clone()
    }

    /// The host as registered.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// `https://host` unless the registered host already has a scheme (XO accepts `host[:port]` and URLs).
pub(crate) fn server_url(host: &str) -> String {
    if host.contains("://") {
        host.to_owned()
    } else {
        format!("https://{host}")
    }
}

/// A connection failure as stored in the server's `error` (no secrets: XAPI never echoes passwords).
fn connect_error(e: &xapi_client::Error) -> ConnectError {
    use xapi_client::Error as E;
    let code = match e {
        E::Xapi(x) => Some(x.code.clone()),
        E::Transport(m) if m.contains("refused") => Some("ECONNREFUSED".to_owned()),
        E::Transport(m) if m.contains("unreachable") => Some("EHOSTUNREACH".to_owned()),
        E::Timeout(_) => Some("ETIMEDOUT".to_owned()),
        E::Tls(_) => Some("ERR_TLS".to_owned()),
        _ => None,
    };
    let message = match e {
        E::Xapi(x) => format!("{}({})", x.code, x.params.join(", ")),
        e => e.to_string(),
    };
    ConnectError::new(message, code.as_deref())
}

/// Watcher events as the sync driver wants them.
fn to_sync_input(ev: WatchEvent) -> SyncInput {
    match ev {
        WatchEvent::Reset { records } => SyncInput::Reset {
            records: records
                .into_iter()
                .map(|(class, recs)| (class, recs.into_iter().map(|(r, rec)| (r.0, rec)).collect()))
                .collect(),
        },
        WatchEvent::Changes(changes) => SyncInput::Changes(
            changes
                .into_iter()
                .map(|c| ObjectChange {
                    class: c.class,
                    r#ref: c.obj_ref.0,
                    op: match c.op {
                        Op::Add => ChangeOp::Add,
                        Op::Mod => ChangeOp::Mod,
                        Op::Del => ChangeOp::Del,
                    },
                    snapshot: c.snapshot,
                })
                .collect(),
        ),
        WatchEvent::Disconnected { error, retry_in } => SyncInput::Disconnected {
            error,
            retry_in: Some(retry_in),
        },
    }
}

/// The watcher as a `SyncInput` stream that ends when `cancel` fires or is dropped.
fn sync_stream(
    client: &Client,
    cancel: oneshot::Receiver<()>,
    server_id: String,
) -> impl Stream<Item = SyncInput> + Send + 'static {
    let started = std::time::Instant::now();
    client
        .watch(WatchOptions {
            // Records are trimmed to the fields XO objects are derived from as they come off the wire.
            fields: Some(FieldFilter::new(|_class, field| {
                xo_cache::fields::is_read(field)
            })),
            ..WatchOptions::default()
        })
        .map(move |ev| {
            if let WatchEvent::Reset { records } = &ev {
                tracing::debug!(
                    server = %server_id,
                    records = records.values().map(Vec::len).sum::<usize>(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "full load received"
                );
            }
            to_sync_input(ev)
        })
        .take_until(cancel)
}

impl Pools {
    fn conn(&self, server_id: &str) -> Option<Arc<ServerConn>> {
        self.conns.lock().get(server_id).cloned()
    }

    fn is_current(&self, server_id: &str, conn: &Arc<ServerConn>) -> bool {
        self.conn(server_id).is_some_and(|c| Arc::ptr_eq(&c, conn))
    }

    /// Removes `conn` if it is still the registered one, and tears it down.
    async fn drop_conn(&self, server_id: &str, conn: &Arc<ServerConn>) {
        {
            let mut conns = self.conns.lock();
            if conns.get(server_id).is_some_and(|c| Arc::ptr_eq(c, conn)) {
                conns.remove(server_id);
                self.release_pool(server_id);
            }
        }
        teardown(&self.cache, server_id, conn).await;
    }

    /// Records that `server_id` connects the pool `client` is logged into, unless another server still
    /// connects it: XO's `PoolAlreadyConnected` (`this pool is already connected`), with the pool's and both
    /// servers' ids.
    async fn claim_pool(&self, client: &Client, server_id: &str) -> Result<(), ConnectError> {
        let pools = client
            .call("pool.get_all_records", vec![])
            .await
            .map_err(|e| connect_error(&e))?;
        let Some(pool_uuid) = pools
            .as_object()
            .and_then(|m| m.values().next())
            .and_then(|p| p.get("uuid"))
            .and_then(Value::as_str)
        else {
            return Err(ConnectError::new("the XAPI server has no pool", None));
        };
        let conns = self.conns.lock();
        let mut owners = self.owners.lock();
        match owners.get(pool_uuid) {
            Some(holder) if holder != server_id && conns.contains_key(holder) => Err(
                ConnectError::pool_already_connected(pool_uuid, holder, server_id),
            ),
            _ => {
                owners.retain(|_, s| s != server_id);
                owners.insert(pool_uuid.to_owned(), server_id.to_owned());
                Ok(())
            }
        }
    }

    /// Forgets the pool `server_id` connected (its connection is gone).
    fn release_pool(&self, server_id: &str) {
        self.owners.lock().retain(|_, s| s != server_id);
    }

    /// Waits for a connection started by another call. `Ok(false)`: that attempt failed (retry).
    async fn wait_existing(&self, server_id: &str) -> Result<bool, ConnectError> {
        match tokio::time::timeout(
            self.config.connect_timeout,
            self.cache.wait_ready(server_id),
        )
        .await
        {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(xo_cache::WaitError::UnknownPool(_) | xo_cache::WaitError::Removed(_))) => {
                Ok(false)
            }
            Ok(Err(e)) => Err(ConnectError::new(e.to_string(), None)),
            Err(_) => Err(ConnectError::new(
                "timed out waiting for the pool objects",
                Some("ETIMEDOUT"),
            )),
        }
    }

    async fn do_connect(self: Arc<Self>, app: App, server: Server) -> Result<(), ConnectError> {
        self.ensure_forwarder(&app);
        let id = server.id.clone();
        // another call may be connecting this server: wait for it, or try again if it failed
        let mut attempts = 0;
        let conn = loop {
            let conn = {
                let mut conns = self.conns.lock();
                if conns.contains_key(&id) {
                    None
                } else {
                    let c = Arc::new(ServerConn {
                        host: server.host.clone(),
                        client: Mutex::new(None),
                        cancel: Mutex::new(None),
                        sync: Mutex::new(None),
                    });
                    conns.insert(id.clone(), c.clone());
                    // readers wait for `Connecting` pools from now on
                    self.cache.register_pool(&id);
                    Some(c)
                }
            };
            match conn {
                Some(c) => break c,
                None if attempts < 2 => {
                    attempts += 1;
                    if self.wait_existing(&id).await? {
                        return Ok(());
                    }
                }
                None => {
                    return Err(ConnectError::new(
                        "another connection attempt is in progress",
                        None,
                    ))
                }
            }
        };
        tracing::info!(server = %id, host = %server.host, "connecting to XAPI server");
        let started = std::time::Instant::now();
        let mut opts = ClientOptions::new(
            server_url(&server.host),
            server.username.clone(),
            server.password.clone(),
        )
        .allow_unauthorized(server.allow_unauthorized)
        .call_timeout(self.config.call_timeout);
        // XO's `httpProxy`: every XAPI connection (RPCs, transfers) is tunnelled through it
        if let Some(proxy) = &server.http_proxy {
            opts = opts.http_proxy(proxy.clone());
        }
        let login = tokio::time::timeout(self.config.connect_timeout, Client::connect(opts)).await;
        let client = match login {
            Ok(Ok(c)) => Arc::new(c),
            Ok(Err(e)) => {
                self.drop_conn(&id, &conn).await;
                return Err(connect_error(&e));
            }
            Err(_) => {
                self.drop_conn(&id, &conn).await;
                return Err(ConnectError::new(
                    format!("timed out connecting to {}", server.host),
                    Some("ETIMEDOUT"),
                ));
            }
        };
        if !self.is_current(&id, &conn) {
            // disconnected meanwhile
            logout(client);
            return Ok(());
        }
        if let Err(e) = self.claim_pool(&client, &id).await {
            logout(client);
            self.drop_conn(&id, &conn).await;
            return Err(e);
        }
        let (cancel_tx, cancel_rx) = oneshot::channel();
        let handle = spawn_pool_sync(
            self.cache.clone(),
            id.clone(),
            sync_stream(&client, cancel_rx, id.clone()),
        );
        *conn.client.lock() = Some(client);
        *conn.cancel.lock() = Some(cancel_tx);
        *conn.sync.lock() = Some(handle);
        let ready =
            tokio::time::timeout(self.config.connect_timeout, self.cache.wait_ready(&id)).await;
        match ready {
            Ok(Ok(pool_uuid)) => {
                tracing::info!(
                    server = %id,
                    pool = %pool_uuid,
                    objects = self.cache.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "XAPI server connected"
                );
                Ok(())
            }
            Ok(Err(xo_cache::WaitError::Disconnected { error, .. })) => {
                self.drop_conn(&id, &conn).await;
                Err(ConnectError::new(
                    error.unwrap_or_else(|| "disconnected".into()),
                    None,
                ))
            }
            // removed: disconnected meanwhile
            Ok(Err(_)) => Ok(()),
            Err(_) => {
                self.drop_conn(&id, &conn).await;
                Err(ConnectError::new(
                    "timed out loading the pool objects",
                    Some("ETIMEDOUT"),
                ))
            }
        }
    }

    async fn do_disconnect(self: Arc<Self>, server_id: String) {
        let conn = self.conns.lock().remove(&server_id);
        self.release_pool(&server_id);
        if let Some(conn) = conn {
            tracing::info!(server = %server_id, "disconnecting from XAPI server");
            teardown(&self.cache, &server_id, &conn).await;
        }
    }

    fn pool_extra(&self, pool_uuid: &str) -> Map<String, Value> {
        let mut extra = Map::new();
        extra.insert("poolId".into(), json!(pool_uuid));
        if let Some(pool) = self.cache.get(pool_uuid) {
            for (from, to) in [
                ("master", "master"),
                ("name_label", "poolNameLabel"),
                ("name_description", "poolNameDescription"),
            ] {
                if let Some(v) = pool.get(from) {
                    extra.insert(to.into(), v.clone());
                }
            }
        }
        let addresses: Vec<Value> = self
            .cache
            .find(|o| o.kind() == "host" && o.pool() == Some(pool_uuid), None)
            .iter()
            .filter_map(|h| h.get("address").cloned())
            .collect();
        extra.insert("poolMembersAddresses".into(), Value::Array(addresses));
        extra
    }
}

/// Ends the watcher (the sync driver clears the pool's objects: one `exit` batch), unregisters the pool
/// from the cache and logs out.
async fn teardown(cache: &xo_cache::Store, server_id: &str, conn: &ServerConn) {
    drop(conn.cancel.lock().take());
    let sync = conn.sync.lock().take();
    if let Some(sync) = sync {
        sync.join().await;
    }
    let _ = cache.remove_pool(server_id);
    if let Some(client) = conn.client.lock().take() {
        logout(client);
    }
}

fn logout(client: Arc<Client>) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), client.logout()).await;
    });
}

impl PoolConnector for Pools {
    fn connect(&self, app: App, server: Server) -> BoxFuture<'static, Result<(), ConnectError>> {
        Box::pin(async move {
            let pools = Pools::of(&app).map_err(|e| ConnectError::new(e.to_string(), None))?;
            pools.do_connect(app, server).await
        })
    }

    fn disconnect(&self, app: App, server_id: String) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Ok(pools) = Pools::of(&app) {
                pools.do_disconnect(server_id).await;
            }
        })
    }

    fn status(&self, server_id: &str) -> ServerStatus {
        let Some(conn) = self.conn(server_id) else {
            return ServerStatus::default();
        };
        match self.cache.status(server_id) {
            Some(PoolStatus::Ready { pool_uuid }) if conn.client().is_some() => ServerStatus {
                state: ConnectionState::Connected,
                extra: self.pool_extra(&pool_uuid),
            },
            // the watcher lost the pool and retries: XO shows `disconnected` with the error meanwhile
            Some(PoolStatus::Disconnected { error, retry_in }) => {
                let mut extra = Map::new();
                let mut e = json!({ "message": error.unwrap_or_else(|| "disconnected".into()) });
                if let Some(r) = retry_in {
                    e["retryIn"] = json!(r.as_millis() as u64);
                }
                extra.insert("error".into(), e);
                ServerStatus {
                    state: ConnectionState::Disconnected,
                    extra,
                }
            }
            _ => ServerStatus {
                state: ConnectionState::Connecting,
                extra: Map::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_errors() {
        assert_eq!(server_url("10.0.0.1"), "https://10.0.0.1");
        assert_eq!(server_url("http://h:80/"), "http://h:80/");
        let e = connect_error(&xapi_client::Error::Xapi(xapi_client::XapiError::new(
            "SESSION_AUTHENTICATION_FAILED",
            ["root", "Authentication failure"],
        )));
        assert_eq!(e.code.as_deref(), Some("SESSION_AUTHENTICATION_FAILED"));
        assert_eq!(
            e.message,
            "SESSION_AUTHENTICATION_FAILED(root, Authentication failure)"
        );
        let e = connect_error(&xapi_client::Error::Transport("connection refused".into()));
        assert_eq!(e.code.as_deref(), Some("ECONNREFUSED"));
    }
}
