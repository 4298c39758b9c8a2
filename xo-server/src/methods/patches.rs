//! `pool.listMissingPatches` / `pool.installPatches` (spec xo-api.md §6.3–6.4, XO `api/pool.mjs` +
//! `xapi/mixins/patching.mjs`), implemented here on top of the `xo-plugin-patcher` library (xo-server owns the
//! pools' XAPI clients). The backend follows `host.software_version.product_brand`: XCP-ng → the host's
//! `updater.py` plugin; anything else → the legacy XenServer updates catalogue (URL from the `patcher` plugin's
//! configuration, `catalogUrl`).
//!
//! Progress: `pool.installPatches` runs an XO task `Install patches` (objectId: the pool) that stays in the task
//! log (`/rest/v0/tasks`): one sub-task per patch (XenServer: download then upload progress by bytes, then
//! precheck / apply / clean as infos) or per host (XCP-ng), root progress over all of them. Aborting it stops
//! before the next patch / host.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use xapi_client::Ref;
use xo_plugin_patcher::{xcpng, Error as PatchError, PatcherConfig, PatcherPlugin, Progress};

use super::resolve::{
    check_permissions, incorrect_state, plain_error, r, resolve, schema, spec_of, Resolve, Xapi,
};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;
use crate::tasks::Task;
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

/// The patcher plugin's configuration (defaults when the plugin is not registered).
fn config(app: &crate::App) -> PatcherConfig {
    app.extension::<PatcherPlugin>()
        .map(|p| p.config())
        .unwrap_or_default()
}

fn patch_error(x: &Xapi, e: PatchError) -> ApiError {
    match e {
        PatchError::Xapi(xapi_client::Error::Xapi(e)) => x.map(e),
        PatchError::Xapi(other) => x.pools.map_error(other),
        PatchError::Aborted => plain_error("aborted"),
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
    let cfg = config(&ctx.app);
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
    if hosts.is_empty() {
        return Ok(Value::Bool(true));
    }
    let mut properties = Map::new();
    properties.insert("objectId".into(), pool_id);
    properties.insert("type".into(), "xo:pool:installPatches".into());
    if let Some(u) = &ctx.user {
        properties.insert("userId".into(), u.id.clone().into());
    }
    let task = ctx.app.tasks().create("Install patches", properties);
    task.run(install_in_task(&ctx, &task, &x, &hosts, &p))
        .await?;
    Ok(Value::Bool(true))
}

/// The body of the `Install patches` task; its result: the installed patch uuids (XenServer) or host ids (XCP-ng).
async fn install_in_task(
    ctx: &Ctx,
    task: &Task,
    x: &Xapi,
    hosts: &[String],
    p: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let client = x.client.raw().clone();
    let installed = if brand(x, &hosts[0]).await? == "XCP-ng" {
        let mut done = Vec::new();
        for (i, h) in hosts.iter().enumerate() {
            if task.is_aborted() {
                return Err(plain_error("aborted"));
            }
            let uuid = x.field("host", h, "uuid").await?;
            let label = x.field("host", h, "name_label").await?;
            let mut props = Map::new();
            props.insert("objectId".into(), uuid.clone());
            let sub = task.subtask(
                &format!("Updating host {}", label.as_str().unwrap_or_default()),
                props,
            );
            sub.run(async {
                xcpng::update(&client, &Ref(h.clone()))
                    .await
                    .map_err(|e| patch_error(x, e))?;
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
                sub.set_progress(100);
                Ok(Value::Bool(true))
            })
            .await?;
            task.set_progress(percent(i + 1, 0, hosts.len()));
            done.push(uuid);
        }
        Value::Array(done)
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
        let cfg = config(&ctx.app);
        let cat = xo_plugin_patcher::fetch_catalogue(&cfg.catalogue_url, cfg.max_download)
            .await
            .map_err(|e| patch_error(x, e))?;
        let mut reporter = PatchReporter {
            task: task.clone(),
            current: None,
        };
        let aborted = {
            let task = task.clone();
            move || task.is_aborted()
        };
        let outcome = xo_plugin_patcher::install_abortable(
            &client,
            &cat,
            &cfg,
            &patches,
            &mut |s| reporter.on(s),
            &aborted,
        )
        .await
        .map_err(|e| patch_error(x, e));
        match outcome {
            Ok(uuids) => {
                task.set_progress(100);
                json!(uuids)
            }
            Err(e) => {
                if let Some((_, sub, _)) = reporter.current.take() {
                    sub.failure(e.to_json(true));
                }
                return Err(e);
            }
        }
    };
    // XO restarts the toolstack afterwards, master first
    task.info("restarting the toolstack", json!({"hosts": hosts.len()}));
    for h in hosts {
        if let Err(e) = x.try_call("host.restart_agent", vec![json!(h)]).await {
            tracing::debug!("host.restart_agent after patching: {:?}", x.api(e));
            task.warning(
                "cannot restart the toolstack",
                json!({"host": x.field("host", h, "uuid").await.unwrap_or_default()}),
            );
        }
    }
    Ok(installed)
}

/// `(done * 100 + part) / total`, as a percentage.
fn percent(done: usize, part: u64, total: usize) -> u8 {
    let total = total.max(1) as u64;
    ((done as u64 * 100 + part.min(100)) / total).min(100) as u8
}

/// Turns the patcher's progress events into one sub-task per patch with its progress: download 0–40 %,
/// upload 40–80 %, precheck 80 %, apply 85 %, clean 95 %, done 100 %.
struct PatchReporter {
    task: Task,
    /// Index of the patch, its sub-task, and its progress.
    current: Option<(usize, Task, u64)>,
}

impl PatchReporter {
    fn on(&mut self, s: Progress) {
        if self.current.as_ref().is_none_or(|(i, _, _)| *i != s.index) {
            let mut props = Map::new();
            props.insert("patchId".into(), s.uuid.clone().into());
            let sub = self
                .task
                .subtask(&format!("Installing patch {}", s.name), props);
            sub.set_progress(0);
            self.current = Some((s.index, sub, 0));
        }
        let Some((_, sub, pct)) = self.current.as_mut() else {
            return;
        };
        let scaled = |from: u64, to: u64| match s.bytes {
            Some((done, Some(total))) if total > 0 => from + (to - from) * done.min(total) / total,
            _ => from,
        };
        let new = match s.step {
            "download" => scaled(0, 40),
            "upload" => scaled(40, 80),
            "precheck" => 80,
            "apply" => 85,
            "clean" => 95,
            "done" => 100,
            _ => *pct,
        };
        if s.bytes.is_none() {
            sub.info(s.step, Value::Null);
        }
        if new != *pct || s.step == "done" {
            *pct = new;
            sub.set_progress(new as u8);
            self.task.set_progress(percent(s.index, new, s.total));
        }
        if s.step == "done" {
            sub.success(json!(s.uuid));
            self.current = None;
        }
    }
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
