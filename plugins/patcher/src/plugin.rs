//! The `patcher` xo-server plugin: its configuration (`catalogUrl`: the XenServer updates catalogue,
//! `maxDownload`: largest download held in memory), applied through `plugin.configure`. xo-server's
//! `pool.listMissingPatches` / `pool.installPatches` read it with [`PatcherPlugin::config`].

use std::sync::{Arc, RwLock};

use serde_json::{json, Value};
use xo_plugin::{BoxFuture, Manifest, Plugin, PluginError, PluginHost};

use crate::{PatcherConfig, DEFAULT_CATALOGUE_URL, DEFAULT_MAX_DOWNLOAD};

/// Plugin id.
pub const PLUGIN_NAME: &str = "patcher";

/// The configuration schema (standard JSON schema, defaults filled in by the server).
pub fn configuration_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "catalogUrl": {
                "type": "string",
                "title": "Catalogue URL",
                "description": "Where the XenServer updates catalogue (updates.xml) is fetched from",
                "pattern": "^https?://[^/?#\\s]+",
                "default": DEFAULT_CATALOGUE_URL,
            },
            "maxDownload": {
                "type": "integer",
                "title": "Largest download",
                "description": "Largest catalogue or update archive held in memory (bytes)",
                "minimum": 1,
                "default": DEFAULT_MAX_DOWNLOAD,
            },
        },
        "additionalProperties": false,
    })
}

/// The plugin; the configuration in effect is [`PatcherPlugin::config`] (defaults until configured).
#[derive(Debug, Default)]
pub struct PatcherPlugin {
    config: RwLock<PatcherConfig>,
}

impl PatcherPlugin {
    /// A new instance, to register with the server.
    pub fn new() -> Arc<PatcherPlugin> {
        Arc::new(PatcherPlugin::default())
    }

    /// The configuration in effect.
    pub fn config(&self) -> PatcherConfig {
        self.config.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// Applies a configuration (what `configure` does once the server validated it).
    pub fn set_config(&self, config: PatcherConfig) {
        if let Ok(mut c) = self.config.write() {
            *c = config;
        }
    }
}

impl Plugin for PatcherPlugin {
    fn manifest(&self) -> Manifest {
        Manifest {
            name: PLUGIN_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Patching pools: XenServer updates catalogue and XCP-ng updater".into(),
            keywords: vec!["patches".into(), "updates".into()],
        }
    }

    fn configuration_schema(&self) -> Option<Value> {
        Some(configuration_schema())
    }

    fn configure<'a>(
        &'a self,
        _host: Arc<dyn PluginHost>,
        configuration: Value,
        _loaded: bool,
    ) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            let config: PatcherConfig = serde_json::from_value(configuration).map_err(|e| {
                PluginError::invalid_parameters(format!("invalid configuration: {e}"))
            })?;
            tracing::info!(catalog = %config.catalogue_url, "patcher configured");
            self.set_config(config);
            Ok(())
        })
    }

    fn load<'a>(&'a self, _host: Arc<dyn PluginHost>) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_wire_names() {
        let c: PatcherConfig =
            serde_json::from_value(json!({"catalogUrl": "http://x/u.xml"})).unwrap();
        assert_eq!(c.catalogue_url, "http://x/u.xml");
        assert_eq!(c.max_download, DEFAULT_MAX_DOWNLOAD);
        assert_eq!(
            serde_json::to_value(PatcherConfig::default()).unwrap(),
            json!({"catalogUrl": DEFAULT_CATALOGUE_URL, "maxDownload": DEFAULT_MAX_DOWNLOAD})
        );
        assert_eq!(
            configuration_schema()["properties"]["catalogUrl"]["default"],
            DEFAULT_CATALOGUE_URL
        );
    }
}
