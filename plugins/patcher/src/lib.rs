//! Patching pools on the fly (XO `packages/xo-server/src/xapi/mixins/patching.mjs`, spec xo-api.md §6.3–6.4).
//!
//! A library used by xo-server's `pool.listMissingPatches` / `pool.installPatches` (xo-server owns the pools' XAPI
//! clients, so the methods live there and call this crate; no `PluginHost` extension is needed):
//! - XenServer (legacy catalogue): [`fetch_catalogue`] + [`parse_catalogue`] the vendor's `updates.xml`,
//!   [`list_missing`] per pool / [`missing_for`] per host, [`install`] downloads each zip, unzips the update in
//!   memory (bounded) and streams it into the master's `PUT /update` (no disk), then `pool_update.precheck` on
//!   every host, `pool_update.pool_apply` and `pool_update.pool_clean`, requirements first.
//! - XCP-ng: [`xcpng::check_update`] / [`xcpng::update`] through `host.call_plugin(…, "updater.py", …)`.
//!
//! Progress is reported through a callback ([`Progress`]: steps, and bytes while downloading / uploading) and the
//! XAPI tasks of the uploads / `pool_apply`.
//!
//! [`PatcherPlugin`] is the `patcher` xo-server plugin: it holds the configuration ([`PatcherConfig`]:
//! `catalogUrl`, `maxDownload`), set through `plugin.configure`.

mod catalogue;
mod error;
mod fetch;
mod install;
mod plugin;
mod upload;
pub mod xcpng;

pub use catalogue::{missing_for, parse_catalogue, Catalogue, Patch};
pub use error::{Error, Result};
pub use fetch::fetch_with_progress;
pub use fetch::{fetch, fetch_catalogue};
pub use install::{host_state, install, install_abortable, list_missing, HostPatchState, Progress};
pub use plugin::{configuration_schema, PatcherPlugin, PLUGIN_NAME};

/// The vendor's catalogue (what XO uses). Tests never use it: pass a loopback URL in [`PatcherConfig`].
pub const DEFAULT_CATALOGUE_URL: &str = "https://updates.ops.xenserver.com/xenserver/updates.xml";

/// Largest catalogue / update zip held in memory (bytes).
pub const DEFAULT_MAX_DOWNLOAD: u64 = 1 << 30;

/// Patcher configuration (the plugin configuration `{catalogUrl, maxDownload}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PatcherConfig {
    /// Where the XenServer updates catalogue (XML) is fetched from.
    #[serde(rename = "catalogUrl")]
    pub catalogue_url: String,
    /// Largest download kept in memory (catalogue or update zip).
    pub max_download: u64,
}

impl Default for PatcherConfig {
    fn default() -> Self {
        PatcherConfig {
            catalogue_url: DEFAULT_CATALOGUE_URL.to_owned(),
            max_download: DEFAULT_MAX_DOWNLOAD,
        }
    }
}
