//! `pool.set` (`packages/xo-server/src/api/pool.mjs`): names, `auto_poweron`, migration compression, XO's
//! backup/migration networks (pool `other_config`), suspend and crash-dump SRs; `pool.setDefaultSr` and
//! `pool.setPoolMaster`.

use serde_json::{Map, Value};

use super::resolve::{check_permissions, r, resolve, schema, spec_of, Resolve, Xapi, NULL_REF};
use super::{opt_bool, opt_str};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;

/// `resolve` entries of the `pool.*` methods of this file.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    (
        "pool.setDefaultSr",
        &[r("sr", "sr", &["SR"], "administrate")],
    ),
    (
        "pool.setPoolMaster",
        &[r("host", "host", &["host"], "administrate")],
    ),
    (
        "pool.set",
        &[
            r("pool", "id", &["pool"], "administrate"),
            r(
                "backupNetwork",
                "backupNetwork",
                &["network"],
                "administrate",
            ),
            r(
                "migrationNetwork",
                "migrationNetwork",
                &["network"],
                "administrate",
            ),
            r("suspendSr", "suspendSr", &["SR"], "administrate"),
            r("crashDumpSr", "crashDumpSr", &["SR"], "administrate"),
        ],
    ),
];

async fn set(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "pool.set")).await?;
    let pool = res.get("pool")?;
    let x = Xapi::of(&res.pools, pool)?;
    let pr = pool.xapi_ref();
    for field in ["name_description", "name_label"] {
        if let Some(v) = opt_str(&p, field) {
            x.call(&format!("pool.set_{field}"), vec![pr.into(), v.into()])
                .await?;
        }
    }
    if let Some(on) = opt_bool(&p, "auto_poweron") {
        x.update_map(
            "pool",
            pr,
            "other_config",
            "auto_poweron",
            Some(&on.to_string()),
        )
        .await?;
    }
    if let Some(on) = opt_bool(&p, "migrationCompression") {
        x.call("pool.set_migration_compression", vec![pr.into(), on.into()])
            .await?;
    }
    for (param, key) in [
        ("backupNetwork", "xo:backupNetwork"),
        ("migrationNetwork", "xo:migrationNetwork"),
    ] {
        if p.contains_key(param) {
            let id = res.opt(param).map(|n| n.id());
            x.update_map("pool", pr, "other_config", key, id).await?;
        }
    }
    for (param, method) in [
        ("suspendSr", "pool.set_suspend_image_SR"),
        ("crashDumpSr", "pool.set_crash_dump_SR"),
    ] {
        if p.contains_key(param) {
            let sr = res.opt(param).map_or(NULL_REF, |s| s.xapi_ref());
            x.call(method, vec![pr.into(), sr.into()]).await?;
        }
    }
    Ok(Value::Bool(true))
}

/// Resolves `key` of `method`, checks `administrate` on its pool too (as XO does), and gives the XAPI of that
/// pool with the object's ref and the pool's.
async fn on_pool_of(
    ctx: &Ctx,
    p: &Map<String, Value>,
    method: &str,
    key: &str,
) -> Result<(Xapi, String, String), ApiError> {
    let res = resolve(ctx, p, spec_of(RESOLVES, method)).await?;
    let obj = res.get(key)?;
    let pool_id = obj.pool().unwrap_or_default().to_owned();
    check_permissions(ctx, &[(pool_id.clone(), "administrate".to_owned())])?;
    let x = Xapi::of(&res.pools, obj)?;
    let pool = res
        .pools
        .object(&pool_id)
        .ok_or_else(|| ApiError::no_such_object(&pool_id, Some("pool")))?;
    Ok((x, obj.xapi_ref().to_owned(), pool.xapi_ref().to_owned()))
}

/// XO's `setDefaultSr`: the pool's `default_SR`.
async fn set_default_sr(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, sr, pool) = on_pool_of(&ctx, &p, "pool.setDefaultSr", "sr").await?;
    x.call("pool.set_default_SR", vec![pool.into(), sr.into()])
        .await?;
    Ok(Value::Bool(true))
}

/// XO's `setPoolMaster`: `pool.designate_new_master` (the connection follows the master).
async fn set_pool_master(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, host, _) = on_pool_of(&ctx, &p, "pool.setPoolMaster", "host").await?;
    x.call_async("pool.designate_new_master", vec![host.into()])
        .await?;
    Ok(Value::Bool(true))
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("pool.set", set)
            .params(schema(r#"{"id": {"type": "string"}, "auto_poweron": {"type": "boolean", "optional": true}, "name_label": {"type": "string", "optional": true}, "name_description": {"type": "string", "minLength": 0, "optional": true}, "backupNetwork": {"type": ["string", "null"], "optional": true}, "migrationCompression": {"type": "boolean", "optional": true}, "migrationNetwork": {"type": ["string", "null"], "optional": true}, "suspendSr": {"type": ["string", "null"], "optional": true}, "crashDumpSr": {"type": ["string", "null"], "optional": true}}"#)),
        Method::new("pool.setDefaultSr", set_default_sr)
            .params(schema(r#"{"sr": {"type": "string"}}"#)),
        Method::new("pool.setPoolMaster", set_pool_master)
            .params(schema(r#"{"host": {"type": "string"}}"#)),
    ]
}
