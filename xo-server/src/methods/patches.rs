//! `pool.listMissingPatches` / `pool.installPatches` (spec xo-api.md §6.3–6.4, XO `api/pool.mjs` +
//! `xapi/mixins/patching.mjs`), implemented here on top of the `xo-plugin-patcher` library (xo-server owns the
//! pools' XAPI clients). The backend follows `host.software_version.product_brand`: XCP-ng → the host's
//! `updater.py` plugin; anything else → the legacy XenServer updates catalogue (URL from [`set_config`]).
//!
//! Progress: no XO task facility exists yet; installation progress is logged (`tracing`) and visible through the
//! XAPI tasks of the uploads and `pool_update.pool_apply`.

use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{json, Map, Value};
use xapi_client::Ref;
use xo_plugin_patcher::{xcpng, Error as PatchError, PatcherConfig};

use super::resolve::{
    check_permissions, incorrect_state, plain_error, r, resolve, schema, spec_of, Resolve, Xapi,
};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;
use crate::xapi::Pools;

/// `resolve` entries.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    (
        "pool.listMissingPatches",
        &[r("host", "host", &["host"], "view")],
    ),
    (
        "pool.installPatches",
        &[r("pool", "pool", &["pool"], "administrate")],
    ),
];

fn config_cell() -> &'static RwLock<PatcherConfig> {
    static CONFIG: std::sync::OnceLock<RwLock<PatcherConfig>> = std::sync::OnceLock::new();
    CONFIG.get_or_init(Default::default)
}

/// Set the patcher configuration (catalogue URL, download bound) of this process.
pub fn set_config(config: PatcherConfig) {
    *config_cell().write() = config;
}

/// The current patcher configuration.
pub fn config() -> PatcherConfig {
    config_cell().read().clone()
}

fn patch_error(x: &Xapi, e: PatchError) -> ApiError {
    match e {
        PatchError::Xapi(xapi_client::Error::Xapi(e)) => x.map(e),
        PatchError::Xapi(other) => x.pools.map_error(other),
        other => plain_error(other.to_string()),
    }
}

/// `software_version.product_brand` of a host.
async fn brand(x: &Xapi, host: &str) -> Result<String, ApiError> {
    let sv = x.field("host", host, "software_version").await?;
    Ok(sv
        .get("product_brand")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned())
}

async fn list_missing(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "pool.listMissingPatches")).await?;
    let host = res.get("host")?;
    let x = Xapi::of(&res.pools, host)?;
    let href = Ref(host.xapi_ref().to_owned());
    let client = x.client.raw().clone();
    if brand(&x, host.xapi_ref()).await? == "XCP-ng" {
        let pkgs = xcpng::check_update(&client, &href)
            .await
            .map_err(|e| patch_error(&x, e))?;
        return Ok(Value::Array(pkgs));
    }
    let cfg = config();
    let cat = xo_plugin_patcher::fetch_catalogue(&cfg.catalogue_url, cfg.max_download)
        .await
        .map_err(|e| patch_error(&x, e))?;
    let uuid = x.field("host", host.xapi_ref(), "uuid").await?;
    let missing = xo_plugin_patcher::list_missing(&client, &cat, uuid.as_str())
        .await
        .map_err(|e| patch_error(&x, e))?;
    serde_json::to_value(missing).map_err(|e| ApiError::internal(e.to_string()))
}

/// The hosts to patch: `hosts` ids (checked `administrate`, one pool) or every host of `pool`; master first.
async fn target_hosts(
    ctx: &Ctx,
    pools: &Arc<Pools>,
    pool: Option<&Arc<crate::xapi::XoObject>>,
    hosts: Option<&Vec<Value>>,
) -> Result<(Xapi, String, Vec<String>), ApiError> {
    let (x, pool_ref) = match (pool, hosts) {
        (Some(pool), _) => (Xapi::of(pools, pool)?, pool.xapi_ref().to_owned()),
        (None, Some(ids)) if !ids.is_empty() => {
            let mut pairs = Vec::new();
            let mut first = None;
            for id in ids {
                let id = id
                    .as_str()
                    .ok_or_else(|| ApiError::invalid_parameters_message("hosts must be ids"))?;
                let h = pools.object_of_type(id, &["host"])?;
                pairs.push((h.id().to_owned(), "administrate".to_owned()));
                first.get_or_insert(h);
            }
            check_permissions(ctx, &pairs)?;
            let h = first.ok_or_else(|| ApiError::invalid_parameters_message("no hosts"))?;
            let x = Xapi::of(pools, &h)?;
            let pool_ref = x
                .client
                .raw()
                .pool_ref()
                .await
                .map_err(|e| x.pools.map_error(e))?
                .0;
            (x, pool_ref)
        }
        _ => {
            return Err(ApiError::invalid_parameters_message(
                "either pool or hosts is required",
            ))
        }
    };
    let master = x.field("pool", &pool_ref, "master").await?;
    let master = master.as_str().unwrap_or_default().to_owned();
    let mut refs: Vec<String> = match hosts {
        Some(ids) if pool.is_none() => ids
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|id| pools.object(id))
            .map(|h| h.xapi_ref().to_owned())
            .collect(),
        _ => x
            .call("host.get_all", vec![])
            .await?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
    };
    refs.sort_by_key(|h| *h != master);
    Ok((x, pool_ref, refs))
}

async fn install_patches(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "pool.installPatches")).await?;
    let hosts_param = p.get("hosts").and_then(Value::as_array);
    let (x, pool_ref, hosts) = target_hosts(&ctx, &res.pools, res.opt("pool"), hosts_param).await?;
    let pool_id = x.field("pool", &pool_ref, "uuid").await?;
    if x.field("pool", &pool_ref, "ha_enabled").await? == json!(true) {
        return Err(incorrect_state(
            json!(true),
            json!(false),
            pool_id.as_str().unwrap_or_default(),
            "ha_enabled",
        ));
    }
    let Some(master) = hosts.first() else {
        return Ok(Value::Bool(true));
    };
    let client = x.client.raw().clone();
    if brand(&x, master).await? == "XCP-ng" {
        for h in &hosts {
            xcpng::update(&client, &Ref(h.clone()))
                .await
                .map_err(|e| patch_error(&x, e))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            x.update_map(
                "host",
                h,
                "other_config",
                "rpm_patch_installation_time",
                Some(&now.to_string()),
            )
            .await?;
        }
    } else {
        let patches: Vec<String> = p
            .get("patches")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let cfg = config();
        let cat = xo_plugin_patcher::fetch_catalogue(&cfg.catalogue_url, cfg.max_download)
            .await
            .map_err(|e| patch_error(&x, e))?;
        let mut progress = |s: xo_plugin_patcher::Progress| {
            tracing::info!(patch = %s.name, step = s.step, "installing patch {}/{}", s.index + 1, s.total);
        };
        xo_plugin_patcher::install(&client, &cat, &cfg, &patches, &mut progress)
            .await
            .map_err(|e| patch_error(&x, e))?;
    }
    // XO restarts the toolstack afterwards, master first
    for h in &hosts {
        if let Err(e) = x.try_call("host.restart_agent", vec![json!(h)]).await {
            tracing::debug!("host.restart_agent after patching: {:?}", x.api(e));
        }
    }
    Ok(Value::Bool(true))
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("pool.listMissingPatches", list_missing)
            .description("return an array of missing new patches in the host")
            .params(schema(r#"{"host": {"type": "string"}}"#)),
        Method::new("pool.installPatches", install_patches)
            .description("Install patches on hosts")
            .params(schema(r#"{"pool": {"type": "string", "optional": true}, "patches": {"type": "array", "optional": true}, "hosts": {"type": "array", "optional": true}, "xsHash": {"type": "string", "optional": true}}"#)),
    ]
}
