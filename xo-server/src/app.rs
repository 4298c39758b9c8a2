//! Application state shared by every connection: configuration, store, method registry, connections,
//! pool connector, authentication providers, and the `all` notification broadcaster.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value};
use xo_store::{Permission, Store, StoreOptions};

use crate::auth::AuthProvider;
use crate::config::Config;
use crate::connection::{Connection, TrySend};
use crate::pool::{NoopConnector, PoolConnector};
use crate::registry::{Method, Registry};

/// Errors while building or starting the application.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("cannot open the database in {dir}: {source}")]
    Store {
        /// Data directory.
        dir: std::path::PathBuf,
        /// Cause.
        source: xo_store::StoreError,
    },
    /// A store operation failed during start-up.
    #[error("store: {0}")]
    StoreOp(#[from] xo_store::StoreError),
    /// A method could not be registered.
    #[error("registry: {0}")]
    Registry(#[from] crate::registry::RegistryError),
    /// Binding or TLS set-up failed.
    #[error("listener: {0}")]
    Listen(String),
    /// A start hook failed.
    #[error("start hook: {0}")]
    Hook(String),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A hook run once the listener is bound, before the URL is announced (e.g. start demo pools).
pub type StartHook = Box<dyn FnOnce(App) -> BoxFuture<'static, Result<(), String>> + Send>;

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) registry: Registry,
    pub(crate) connections: Mutex<HashMap<u64, Arc<Connection>>>,
    pub(crate) next_connection: AtomicU64,
    pub(crate) throttle: Mutex<HashMap<String, Instant>>,
    pub(crate) connector: Arc<dyn PoolConnector>,
    pub(crate) auth_providers: RwLock<Vec<Arc<dyn AuthProvider>>>,
    pub(crate) start_hooks: Mutex<Vec<StartHook>>,
    pub(crate) url: Mutex<Option<String>>,
    pub(crate) extensions: RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    pub(crate) tasks: Arc<crate::tasks::TaskLog>,
}

/// Handle on the application (cheap to clone).
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("listen", &self.inner.config.listen)
            .finish_non_exhaustive()
    }
}

/// A non-owning handle (for components the app owns, such as the pool connector).
#[derive(Clone, Debug)]
pub struct WeakApp(Weak<Inner>);

impl WeakApp {
    /// The app if it still runs.
    pub fn upgrade(&self) -> Option<App> {
        self.0.upgrade().map(|inner| App { inner })
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inner")
    }
}

/// What one [`App::publish`] call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PublishStats {
    /// Frames serialised (0, 1 or 2).
    pub frames: usize,
    /// Connections that received them.
    pub delivered: usize,
    /// Connections cut off because their queue was full.
    pub cut_off: usize,
}

impl App {
    /// Configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The method registry (add/remove methods at run time here).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The pool connector.
    pub fn connector(&self) -> Arc<dyn PoolConnector> {
        self.inner.connector.clone()
    }

    /// The XO task log (API calls, patch installations…).
    pub fn tasks(&self) -> &Arc<crate::tasks::TaskLog> {
        &self.inner.tasks
    }

    /// A weak handle.
    pub fn downgrade(&self) -> WeakApp {
        WeakApp(Arc::downgrade(&self.inner))
    }

    /// The URL the server answers on, once listening.
    pub fn url(&self) -> Option<String> {
        self.inner.url.lock().clone()
    }

    /// Stores a shared component by type (e.g. the object cache), replacing any previous one.
    pub fn set_extension<T: Any + Send + Sync>(&self, value: Arc<T>) {
        self.inner
            .extensions
            .write()
            .insert(TypeId::of::<T>(), value);
    }

    /// The component of type `T`, if set.
    pub fn extension<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let e = self
            .inner
            .extensions
            .read()
            .get(&TypeId::of::<T>())?
            .clone();
        e.downcast::<T>().ok()
    }

    /// Adds an authentication provider (tried after password and token).
    pub fn add_auth_provider(&self, p: Arc<dyn AuthProvider>) {
        self.inner.auth_providers.write().push(p);
    }

    /// Removes the providers with this name.
    pub fn remove_auth_provider(&self, name: &str) {
        self.inner
            .auth_providers
            .write()
            .retain(|p| p.name() != name);
    }

    /// Open connections.
    pub fn connections(&self) -> Vec<Arc<Connection>> {
        self.inner.connections.lock().values().cloned().collect()
    }

    pub(crate) fn add_connection(
        &self,
        user_ip: String,
        tx: tokio::sync::mpsc::Sender<axum::extract::ws::Utf8Bytes>,
    ) -> Arc<Connection> {
        let id = self.inner.next_connection.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(Connection::new(id, user_ip, tx));
        self.inner.connections.lock().insert(id, c.clone());
        c
    }

    pub(crate) fn remove_connection(&self, id: u64) {
        self.inner.connections.lock().remove(&id);
    }

    /// Closes every connection of a user (after it is deleted).
    pub fn close_user_connections(&self, user_id: &str) {
        for c in self.connections() {
            if c.user_id().as_deref() == Some(user_id) {
                c.close(1000, "user deleted");
            }
        }
    }

    /// Broadcasts one batch of object changes as XO's `all` notification to every signed-in connection:
    /// one `enter` frame for added/updated objects (full objects) and one `exit` frame for removed ids
    /// (values `0`). Each frame is serialised once. A client whose queue is full is cut off (closed).
    pub fn publish(&self, enter: Map<String, Value>, exit: Vec<String>) -> PublishStats {
        let frames = build_frames(enter.iter(), exit.iter());
        let mut stats = PublishStats {
            frames: frames.len(),
            ..Default::default()
        };
        if frames.is_empty() {
            return stats;
        }
        for c in self.connections() {
            if c.user_id().is_some() {
                deliver(&c, &frames, &mut stats);
            }
        }
        stats
    }

    /// Broadcasts already serialised notification frames (e.g. xo-cache's `all` enter/exit texts, which
    /// are serialised once per batch) to every signed-in connection.
    pub fn publish_serialized(&self, frames: &[std::sync::Arc<str>]) -> PublishStats {
        let frames: Vec<Utf8Bytes> = frames.iter().map(|f| Utf8Bytes::from(&**f)).collect();
        let mut stats = PublishStats {
            frames: frames.len(),
            ..Default::default()
        };
        if frames.is_empty() {
            return stats;
        }
        for c in self.connections() {
            if c.user_id().is_some() {
                deliver(&c, &frames, &mut stats);
            }
        }
        stats
    }

    /// Like [`App::publish`], but each signed-in user only gets the ids for which
    /// `visible(user_id, object_id)` holds (the seam for ACL filtering). Users who see the whole batch
    /// share one serialisation; the others get theirs serialised once per user.
    pub fn publish_filtered(
        &self,
        enter: Map<String, Value>,
        exit: Vec<String>,
        visible: &dyn Fn(&str, &str) -> bool,
    ) -> PublishStats {
        let mut stats = PublishStats::default();
        let mut shared: Option<Vec<Utf8Bytes>> = None;
        let mut per_user: HashMap<String, Vec<Utf8Bytes>> = HashMap::new();
        for c in self.connections() {
            let Some(user) = c.user_id() else { continue };
            if !per_user.contains_key(&user) {
                let sees_all = enter.keys().chain(exit.iter()).all(|id| visible(&user, id));
                let frames = if sees_all {
                    shared
                        .get_or_insert_with(|| {
                            let f = build_frames(enter.iter(), exit.iter());
                            stats.frames += f.len();
                            f
                        })
                        .clone()
                } else {
                    let f = build_frames(
                        enter.iter().filter(|(id, _)| visible(&user, id)),
                        exit.iter().filter(|id| visible(&user, id)),
                    );
                    stats.frames += f.len();
                    f
                };
                per_user.insert(user.clone(), frames);
            }
            if let Some(frames) = per_user.get(&user) {
                if !frames.is_empty() {
                    deliver(&c, frames, &mut stats);
                }
            }
        }
        stats
    }

    /// Connects every enabled server through the connector (in the background).
    pub fn connect_enabled_servers(&self) {
        match self.store().servers() {
            Ok(servers) => {
                for s in servers.into_iter().filter(|s| s.enabled) {
                    self.spawn_connect(s);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list servers"),
        }
    }

    pub(crate) fn spawn_connect(&self, server: xo_store::Server) {
        let app = self.clone();
        tokio::spawn(async move {
            let id = server.id.clone();
            let result = app.connector().connect(app.clone(), server).await;
            app.record_connect_result(&id, result.as_ref().err());
        });
    }

    pub(crate) fn record_connect_result(
        &self,
        id: &str,
        error: Option<&crate::pool::ConnectError>,
    ) {
        let Ok(Some(mut s)) = self.store().server(id) else {
            return;
        };
        let new_error = error.map(|e| {
            tracing::warn!(server = id, error = %e, "cannot connect to XAPI server");
            let mut v = serde_json::Value::Object(e.data.clone().unwrap_or_default());
            v["message"] = e.message.clone().into();
            if let Some(c) = &e.code {
                v["code"] = c.clone().into();
            }
            v
        });
        if s.error != new_error {
            s.error = new_error;
            if let Err(e) = self.store().update_server(&s) {
                tracing::warn!(error = %e, "cannot record server error");
            }
        }
    }

    pub(crate) async fn run_start_hooks(&self) -> Result<(), StartError> {
        let hooks: Vec<StartHook> = std::mem::take(&mut *self.inner.start_hooks.lock());
        for h in hooks {
            h(self.clone()).await.map_err(StartError::Hook)?;
        }
        Ok(())
    }
}

/// Serialises the `enter` and `exit` frames straight from borrowed items (no intermediate copies).
fn build_frames<'a>(
    enter: impl Iterator<Item = (&'a String, &'a Value)>,
    exit: impl Iterator<Item = &'a String>,
) -> Vec<Utf8Bytes> {
    fn frame(kind: &str, items: impl Iterator<Item = (String, String)>) -> Option<Utf8Bytes> {
        let mut text =
            format!(r#"{{"jsonrpc":"2.0","method":"all","params":{{"type":"{kind}","items":{{"#);
        let mut any = false;
        for (k, v) in items {
            if any {
                text.push(',');
            }
            any = true;
            text.push_str(&k);
            text.push(':');
            text.push_str(&v);
        }
        text.push_str("}}}");
        any.then(|| Utf8Bytes::from(text))
    }
    let key = |k: &String| Value::String(k.clone()).to_string();
    let mut frames = Vec::with_capacity(2);
    frames.extend(frame("enter", enter.map(|(k, v)| (key(k), v.to_string()))));
    frames.extend(frame("exit", exit.map(|k| (key(k), "0".to_owned()))));
    frames
}

fn deliver(c: &Connection, frames: &[Utf8Bytes], stats: &mut PublishStats) {
    for f in frames {
        match c.try_send(f.clone()) {
            TrySend::Queued => {}
            TrySend::CutOff => {
                stats.cut_off += 1;
                return;
            }
            TrySend::Closed => return,
        }
    }
    stats.delivered += 1;
}

/// Builds an [`App`]: configuration, optional pool connector, extra methods, start hooks. Every app
/// carries a [`crate::xapi::Pools`] extension, which is also the pool connector unless another one is set.
pub struct AppBuilder {
    config: Config,
    connector: Option<Arc<dyn PoolConnector>>,
    pools_config: crate::xapi::PoolsConfig,
    methods: Vec<Method>,
    hooks: Vec<StartHook>,
    extensions: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    plugins: Vec<Arc<dyn xo_plugin::Plugin>>,
}

impl std::fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AppBuilder {
    /// Starts from a configuration, with the XAPI pools connector and the core methods.
    pub fn new(config: Config) -> Self {
        let patcher = Arc::new(xo_plugin_patcher::PatcherPlugin::default());
        let mut extensions: HashMap<TypeId, Arc<dyn Any + Send + Sync>> = HashMap::new();
        extensions.insert(
            TypeId::of::<xo_plugin_patcher::PatcherPlugin>(),
            patcher.clone(),
        );
        Self {
            config,
            connector: None,
            pools_config: crate::xapi::PoolsConfig::default(),
            methods: Vec::new(),
            hooks: Vec::new(),
            extensions,
            plugins: vec![
                xo_plugin_acl::plugin(),
                Arc::new(xo_plugin_auth_ldap::AuthLdapPlugin::from_host()),
                patcher,
            ],
        }
    }

    /// Registers a plugin (the built-in `acl`, `auth-ldap` and `patcher` plugins are registered by default); it is configured from
    /// the store and loaded if `autoload` when the server starts (see [`crate::plugins`]).
    pub fn plugin(mut self, p: Arc<dyn xo_plugin::Plugin>) -> Self {
        self.plugins.push(p);
        self
    }

    /// Drops the default plugins (registered so far).
    pub fn no_default_plugins(mut self) -> Self {
        self.plugins.clear();
        self
    }

    /// Uses this pool connector.
    pub fn pool_connector(mut self, c: Arc<dyn PoolConnector>) -> Self {
        self.connector = Some(c);
        self
    }

    /// Connects nothing (servers stay `disconnected`).
    pub fn no_pools(self) -> Self {
        self.pool_connector(Arc::new(NoopConnector))
    }

    /// Settings of the XAPI pool connections.
    pub fn pools_config(mut self, c: crate::xapi::PoolsConfig) -> Self {
        self.pools_config = c;
        self
    }

    /// Registers extra methods (e.g. `vm.*` backed by the object cache).
    pub fn methods(mut self, m: impl IntoIterator<Item = Method>) -> Self {
        self.methods.extend(m);
        self
    }

    /// Stores a shared component reachable from handlers through [`App::extension`].
    pub fn extension<T: Any + Send + Sync>(mut self, value: Arc<T>) -> Self {
        self.extensions.insert(TypeId::of::<T>(), value);
        self
    }

    /// Runs `hook` once the listener is bound, before the URL is announced (e.g. start demo pools and
    /// register them with [`xo_store::Store::add_server`]).
    pub fn on_start<F>(mut self, hook: F) -> Self
    where
        F: FnOnce(App) -> BoxFuture<'static, Result<(), String>> + Send + 'static,
    {
        self.hooks.push(Box::new(hook));
        self
    }

    /// Opens the store (creating `admin@admin.net` / `admin` when there is no user) and registers methods.
    pub fn build(self) -> Result<App, StartError> {
        let dir = self.config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| StartError::Store {
            dir: dir.clone(),
            source: xo_store::StoreError::Db(e.into()),
        })?;
        let store = Store::open_with(
            &dir,
            StoreOptions {
                hash_params: self.config.argon2.into(),
            },
        )
        .map_err(|source| StartError::Store { dir, source })?;
        if store.user_count() == 0 {
            store.create_user("admin@admin.net", Some("admin"), Permission::Admin)?;
            tracing::info!("created default user admin@admin.net");
        }
        let pools = Arc::new(crate::xapi::Pools::new(self.pools_config));
        let connector = self.connector.unwrap_or_else(|| pools.clone());
        let mut extensions = self.extensions;
        extensions.insert(TypeId::of::<crate::xapi::Pools>(), pools.clone());
        let mut hooks: Vec<StartHook> =
            vec![Box::new(|app| Box::pin(crate::plugins::autoload(app)))];
        hooks.extend(self.hooks);
        let registry = Registry::new();
        registry.register_all(crate::methods::core_methods())?;
        registry.register_all(self.methods)?;
        let app = App {
            inner: Arc::new(Inner {
                config: self.config,
                store,
                registry,
                connections: Mutex::new(HashMap::new()),
                next_connection: AtomicU64::new(1),
                throttle: Mutex::new(HashMap::new()),
                connector,
                auth_providers: RwLock::new(Vec::new()),
                start_hooks: Mutex::new(hooks),
                url: Mutex::new(None),
                extensions: RwLock::new(extensions),
                tasks: crate::tasks::TaskLog::new(crate::tasks::DEFAULT_KEEP),
            }),
        };
        pools.attach(app.downgrade());
        crate::plugins::install(&app, self.plugins);
        Ok(app)
    }
}
