//! The plugin contract: self-description and the `configure`/`load`/`unload`/`test` life cycle.

use std::sync::Arc;

use serde_json::Value;

use crate::{BoxFuture, PluginError, PluginHost};

/// What a plugin says about itself (`plugin.get` shows it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Plugin id and name (e.g. `acl`, `auth-ldap`).
    pub name: String,
    /// Version.
    pub version: String,
    /// One-line description.
    pub description: String,
    /// Keywords.
    pub keywords: Vec<String>,
}

/// A plugin. `configure` is called (with defaults filled in) whenever a configuration valid against
/// [`Plugin::configuration_schema`] is applied: at start-up from the store, and on `plugin.configure`.
/// Fields are secret when their key is `token`, `passphrase`, `encryptionKey` or contains `password`
/// (case-insensitive), or when their schema has `"writeOnly": true`: the server never returns them.
pub trait Plugin: Send + Sync + 'static {
    /// Name, version, description.
    fn manifest(&self) -> Manifest;

    /// Standard JSON schema of the configuration; `None`: not configurable.
    fn configuration_schema(&self) -> Option<Value> {
        None
    }

    /// Named partial configurations (`{presetName: config}`).
    fn configuration_presets(&self) -> Option<Value> {
        None
    }

    /// JSON schema of `plugin.test`'s `data`.
    fn test_schema(&self) -> Option<Value> {
        None
    }

    /// Whether [`Plugin::unload`] is supported.
    fn unloadable(&self) -> bool {
        true
    }

    /// Whether [`Plugin::test`] is supported.
    fn testable(&self) -> bool {
        false
    }

    /// Applies a validated configuration (`loaded`: whether the plugin is loaded right now).
    fn configure<'a>(
        &'a self,
        _host: Arc<dyn PluginHost>,
        _configuration: Value,
        _loaded: bool,
    ) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async { Ok(()) })
    }

    /// Starts the plugin (register methods, providers, access control…).
    fn load<'a>(&'a self, host: Arc<dyn PluginHost>) -> BoxFuture<'a, Result<(), PluginError>>;

    /// Stops it (what it registered is removed by the server anyway).
    fn unload<'a>(&'a self, _host: Arc<dyn PluginHost>) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async { Ok(()) })
    }

    /// Tests the current configuration with `data`.
    fn test<'a>(
        &'a self,
        _host: Arc<dyn PluginHost>,
        _data: Value,
    ) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async { Err(PluginError::invalid_parameters("plugin not testable")) })
    }
}
