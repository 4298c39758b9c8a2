//! The plugin system: plugins registered at start-up ([`crate::AppBuilder::plugin`]), their metadata
//! (`autoload`, `configuration`) in the store, the `configure`/`load`/`unload`/`test` life cycle behind
//! `plugin.*`, and the access-control seam a plugin (the ACL plugin) installs: method `resolve` checks and
//! per-user filtering of `xo.getAllObjects` and `all` notifications ([`visibility`]).

pub mod config;
pub mod host;
pub mod visibility;

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde_json::{json, Map, Value};
use xo_plugin::{AccessControl, Manifest, Plugin, PluginHost};
use xo_store::User;

use crate::app::{App, WeakApp};
use crate::error::ApiError;
pub use host::{api_error, user_info, Host, HostHandle};
pub use visibility::{publish_batch, visible_filter};

/// Load state of one plugin.
#[derive(Debug, Default, Clone, Copy)]
struct Status {
    /// `None` until the first load.
    loaded: Option<bool>,
    configured: bool,
}

struct Entry {
    plugin: Arc<dyn Plugin>,
    manifest: Manifest,
    host: Arc<Host>,
    status: Mutex<Status>,
    /// Serialises life-cycle operations.
    op: tokio::sync::Mutex<()>,
}

impl Entry {
    fn handle(&self) -> Arc<dyn PluginHost> {
        Arc::new(HostHandle(self.host.clone()))
    }
}

/// Every registered plugin (an app extension).
pub struct Plugins {
    app: WeakApp,
    entries: BTreeMap<String, Arc<Entry>>,
    access: RwLock<Option<(String, Arc<dyn AccessControl>)>>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field("plugins", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Stored metadata: `{id, autoload, configuration?}`.
fn metadata(app: &App, id: &str) -> Result<Map<String, Value>, ApiError> {
    Ok(match app.store().plugin_state(id)? {
        Some(Value::Object(m)) => m,
        _ => {
            let m: Map<String, Value> = json!({"id": id, "autoload": true})
                .as_object()
                .cloned()
                .unwrap_or_default();
            app.store()
                .set_plugin_state(id, &Value::Object(m.clone()))?;
            m
        }
    })
}

fn save_metadata(app: &App, id: &str, m: &Map<String, Value>) -> Result<(), ApiError> {
    Ok(app
        .store()
        .set_plugin_state(id, &Value::Object(m.clone()))?)
}

fn not_found(id: &str) -> ApiError {
    ApiError::no_such_object(id, Some("plugin"))
}

fn invalid(message: &str) -> ApiError {
    ApiError::invalid_parameters_message(message)
}

/// Registers `plugins` with `app` (as the [`Plugins`] extension); duplicates by name: first wins.
pub(crate) fn install(app: &App, plugins: Vec<Arc<dyn Plugin>>) {
    let mut entries = BTreeMap::new();
    for plugin in plugins {
        let manifest = plugin.manifest();
        if entries.contains_key(&manifest.name) {
            tracing::warn!(plugin = %manifest.name, "plugin registered twice, ignored");
            continue;
        }
        let configurable = plugin.configuration_schema().is_some();
        entries.insert(
            manifest.name.clone(),
            Arc::new(Entry {
                host: Arc::new(Host::new(app.downgrade(), &manifest.name)),
                plugin,
                manifest,
                status: Mutex::new(Status {
                    loaded: None,
                    configured: !configurable,
                }),
                op: tokio::sync::Mutex::new(()),
            }),
        );
    }
    app.set_extension(Arc::new(Plugins {
        app: app.downgrade(),
        entries,
        access: RwLock::new(None),
    }));
    visibility::install_permission_checker(app);
}

/// Applies the stored configurations and loads the plugins marked `autoload` (failures are logged; such
/// plugins stay unconfigured or unloaded).
pub(crate) async fn autoload(app: App) -> Result<(), String> {
    let Some(plugins) = app.extension::<Plugins>() else {
        return Ok(());
    };
    for (id, entry) in &plugins.entries {
        let meta = match metadata(&app, id) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(plugin = %id, error = %e, "cannot read plugin metadata");
                continue;
            }
        };
        if entry.plugin.configuration_schema().is_some() {
            let stored = meta.get("configuration").cloned().unwrap_or(json!({}));
            if let Err(e) = plugins.apply_configuration(entry, stored).await {
                tracing::warn!(plugin = %id, error = %e, "plugin not configured");
                continue;
            }
        }
        if meta.get("autoload").and_then(Value::as_bool) != Some(false) {
            match plugins.load(id).await {
                Ok(()) => tracing::info!(plugin = %id, "plugin loaded"),
                Err(e) => tracing::warn!(plugin = %id, error = %e, "cannot load plugin"),
            }
        }
    }
    Ok(())
}

impl Plugins {
    /// The plugins of `app`.
    pub fn of(app: &App) -> Result<Arc<Plugins>, ApiError> {
        app.extension::<Plugins>()
            .ok_or_else(|| ApiError::internal("plugins not installed"))
    }

    fn app(&self) -> Result<App, ApiError> {
        self.app
            .upgrade()
            .ok_or_else(|| ApiError::internal("server stopped"))
    }

    fn entry(&self, id: &str) -> Result<&Arc<Entry>, ApiError> {
        self.entries.get(id).ok_or_else(|| not_found(id))
    }

    /// Registered plugin ids.
    pub fn ids(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Whether `id` is loaded.
    pub fn is_loaded(&self, id: &str) -> bool {
        self.entries
            .get(id)
            .is_some_and(|e| e.status.lock().loaded == Some(true))
    }

    /// The installed access control, if any.
    pub fn access(&self) -> Option<Arc<dyn AccessControl>> {
        self.access.read().as_ref().map(|(_, a)| a.clone())
    }

    pub(crate) fn set_access(&self, plugin: &str, a: Arc<dyn AccessControl>) {
        *self.access.write() = Some((plugin.to_owned(), a));
    }

    pub(crate) fn clear_access_of(&self, plugin: &str) {
        let mut slot = self.access.write();
        if slot.as_ref().is_some_and(|(p, _)| p == plugin) {
            *slot = None;
        }
    }

    /// `plugin.get`: `[{id, name, autoload, description, loaded?, keywords, unloadable, version,
    /// configuration?, configurationPresets?, configurationSchema?, testable, testSchema?}]`, secrets
    /// obfuscated.
    pub fn get_all(&self) -> Result<Value, ApiError> {
        let app = self.app()?;
        let mut out = Vec::new();
        for (id, e) in &self.entries {
            let meta = metadata(&app, id)?;
            let schema = e.plugin.configuration_schema();
            let m = &e.manifest;
            let mut v = json!({
                "id": id,
                "name": m.name,
                "autoload": meta.get("autoload").and_then(Value::as_bool).unwrap_or(true),
                "description": m.description,
                "keywords": m.keywords,
                "unloadable": e.plugin.unloadable(),
                "version": m.version,
                "testable": e.plugin.testable(),
            });
            if let Some(loaded) = e.status.lock().loaded {
                v["loaded"] = loaded.into();
            }
            if let Some(c) = meta.get("configuration") {
                v["configuration"] = config::obfuscate(c, schema.as_ref());
            }
            if let Some(p) = e.plugin.configuration_presets() {
                v["configurationPresets"] = p;
            }
            if let Some(s) = schema {
                v["configurationSchema"] = s;
            }
            if let Some(s) = e.plugin.test_schema() {
                v["testSchema"] = s;
            }
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    async fn apply_configuration(&self, e: &Entry, configuration: Value) -> Result<(), ApiError> {
        let schema = e
            .plugin
            .configuration_schema()
            .ok_or_else(|| invalid("plugin not configurable"))?;
        config::validate(&schema, &configuration).map_err(ApiError::invalid_parameters)?;
        let filled = config::with_defaults(&schema, &configuration);
        let loaded = e.status.lock().loaded == Some(true);
        let result = e.plugin.configure(e.handle(), filled, loaded).await;
        // a refused configuration leaves the previous state (as XO)
        if result.is_ok() {
            e.status.lock().configured = true;
        }
        result.map_err(api_error)
    }

    /// `plugin.configure`: placeholders keep the stored secrets; validated against the schema (code 10
    /// with the errors); the plugin gets it with defaults filled in; the submitted one is stored.
    pub async fn configure(&self, id: &str, mut configuration: Value) -> Result<(), ApiError> {
        let app = self.app()?;
        let e = self.entry(id)?;
        let _op = e.op.lock().await;
        if e.plugin.configuration_schema().is_none() {
            return Err(invalid("plugin not configurable"));
        }
        let mut meta = metadata(&app, id)?;
        if let Some(old) = meta.get("configuration") {
            config::merge_secrets(&mut configuration, old);
        }
        self.apply_configuration(e, configuration.clone()).await?;
        meta.insert("configuration".into(), configuration);
        save_metadata(&app, id, &meta)
    }

    /// `plugin.load`.
    pub async fn load(&self, id: &str) -> Result<(), ApiError> {
        let e = self.entry(id)?;
        let Ok(_op) = e.op.try_lock() else {
            return Err(invalid("plugin is loading"));
        };
        let status = *e.status.lock();
        if status.loaded == Some(true) {
            return Err(invalid("plugin already loaded"));
        }
        if !status.configured {
            return Err(invalid("plugin not configured"));
        }
        match e.plugin.load(e.handle()).await {
            Ok(()) => {
                e.status.lock().loaded = Some(true);
                Ok(())
            }
            Err(err) => {
                // a half-done load leaves nothing behind
                e.host.cleanup();
                Err(api_error(err))
            }
        }
    }

    async fn unload_locked(&self, e: &Entry) -> Result<(), ApiError> {
        if e.status.lock().loaded != Some(true) {
            return Err(invalid("plugin already unloaded"));
        }
        if !e.plugin.unloadable() {
            return Err(invalid("plugin cannot be unloaded"));
        }
        let result = e.plugin.unload(e.handle()).await;
        e.host.cleanup();
        e.status.lock().loaded = Some(false);
        result.map_err(api_error)
    }

    /// `plugin.unload`: what the plugin registered disappears.
    pub async fn unload(&self, id: &str) -> Result<(), ApiError> {
        let e = self.entry(id)?;
        let _op = e.op.lock().await;
        self.unload_locked(e).await
    }

    /// `plugin.enableAutoload` / `plugin.disableAutoload`.
    pub fn set_autoload(&self, id: &str, autoload: bool) -> Result<(), ApiError> {
        let app = self.app()?;
        self.entry(id)?;
        let mut meta = metadata(&app, id)?;
        meta.insert("autoload".into(), autoload.into());
        save_metadata(&app, id, &meta)
    }

    /// `plugin.purgeConfiguration`: unloads (errors ignored) and forgets the configuration.
    pub async fn purge_configuration(&self, id: &str) -> Result<(), ApiError> {
        let app = self.app()?;
        let e = self.entry(id)?;
        let _op = e.op.lock().await;
        if let Err(err) = self.unload_locked(e).await {
            tracing::debug!(plugin = id, error = %err, "unload before purge");
        }
        let mut meta = metadata(&app, id)?;
        meta.remove("configuration");
        save_metadata(&app, id, &meta)?;
        if e.plugin.configuration_schema().is_some() {
            e.status.lock().configured = false;
        }
        Ok(())
    }

    /// `plugin.test`.
    pub async fn test(&self, id: &str, data: Value) -> Result<(), ApiError> {
        let e = self.entry(id)?;
        if !e.plugin.testable() {
            return Err(invalid("plugin not testable"));
        }
        if e.status.lock().loaded != Some(true) {
            return Err(invalid("plugin not loaded"));
        }
        if let Some(schema) = e.plugin.test_schema() {
            if data.is_null() {
                return Err(ApiError::invalid_parameters(vec![
                    json!({"field": "data", "message": "is the wrong type"}),
                ]));
            }
            config::validate(&schema, &data).map_err(ApiError::invalid_parameters)?;
        }
        e.plugin.test(e.handle(), data).await.map_err(api_error)
    }

    /// Every loaded plugin method with `resolve` entries (method name → entries), the plugin
    /// counterpart of [`crate::methods::resolve::resolve_table`].
    pub fn resolve_table(&self) -> Vec<(String, Vec<xo_plugin::ResolveSpec>)> {
        let mut v: Vec<_> = self
            .entries
            .values()
            .flat_map(|e| e.host.registered_methods())
            .filter(|(_, r)| !r.is_empty())
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The host handle of a plugin (to drive it from tests or other server parts).
    pub fn host(&self, id: &str) -> Option<Arc<dyn PluginHost>> {
        self.entries.get(id).map(|e| e.handle())
    }
}

/// A user or group was deleted: the access control forgets its entries (XO deletes a user's ACLs).
pub fn subject_deleted(app: &App, subject: &str) {
    if let Some(a) = app.extension::<Plugins>().and_then(|p| p.access()) {
        a.subject_deleted(subject);
    }
}

/// XO's `checkPermissions(pairs)` for a user: admins pass; otherwise the installed access control decides
/// (none installed: every pair is denied); the first denied pair gives `unauthorized(action, objectId)`.
pub fn check_permissions(
    app: &App,
    user: &User,
    pairs: &[(String, String)],
) -> Result<(), ApiError> {
    if pairs.is_empty() || user.permission == xo_store::Permission::Admin {
        return Ok(());
    }
    let denied = match app.extension::<Plugins>().and_then(|p| p.access()) {
        Some(a) => a.first_denied(&user_info(user), pairs),
        None => Some(0),
    };
    match denied.and_then(|i| pairs.get(i)) {
        None => Ok(()),
        Some((id, action)) => Err(ApiError::unauthorized(Some(action), Some(id), None)),
    }
}
