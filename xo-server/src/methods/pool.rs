//! `pool.set` (`packages/xo-server/src/api/pool.mjs`): names, `auto_poweron`, migration compression, XO's
//! backup/migration networks (pool `other_config`), suspend and crash-dump SRs.

use serde_json::{Map, Value};

use super::resolve::{r, resolve, schema, spec_of, Resolve, Xapi, NULL_REF};
use super::{opt_bool, opt_str};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;

/// `resolve` entries of `pool.set`.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[(
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
)];

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

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("pool.set", set)
            .params(schema(r#"{"id": {"type": "string"}, "auto_poweron": {"type": "boolean", "optional": true}, "name_label": {"type": "string", "optional": true}, "name_description": {"type": "string", "minLength": 0, "optional": true}, "backupNetwork": {"type": ["string", "null"], "optional": true}, "migrationCompression": {"type": "boolean", "optional": true}, "migrationNetwork": {"type": ["string", "null"], "optional": true}, "suspendSr": {"type": ["string", "null"], "optional": true}, "crashDumpSr": {"type": ["string", "null"], "optional": true}}"#)),
    ]
}
