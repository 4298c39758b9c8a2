//! pool messages: designate_new_master, sync_database, has_extension, get_license_state, recover_slaves,
//! enable_ha / disable_ha (flags only), get_guest_secureboot_readiness.

use std::time::Duration;

use serde_json::json;
use xapi_types::{Value, XapiError};

use super::helpers::{get, pool_ref, set, void, Params};
use crate::rpc::{Ctx, Registry};

pub fn register(reg: &mut Registry) {
    reg.register("pool.designate_new_master", designate_new_master);
    reg.register("pool.sync_database", sync_database);
    reg.register("pool.has_extension", has_extension);
    reg.register("pool.get_license_state", get_license_state);
    reg.register("pool.recover_slaves", recover_slaves);
    reg.register("pool.enable_ha", enable_ha);
    reg.register("pool.disable_ha", disable_ha);
}

fn designate_new_master(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let host = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.read(|db| get(db, "host", &host))?;
    if host == ctx.pool.master() {
        return Ok(void());
    }
    let pool = ctx.pool.clone();
    // Answer first, then hand over (the old master starts answering HOST_IS_SLAVE).
    std::thread::Builder::new()
        .name("xapi-sim-designate".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            if let Err(e) = pool.designate_master(&host) {
                tracing::warn!(error = %e, "designate_new_master failed");
            }
        })
        .map_err(|e| XapiError::internal(format!("cannot spawn: {e}")))?;
    Ok(void())
}

fn sync_database(_ctx: &Ctx, _p: Vec<Value>) -> Result<Value, XapiError> {
    Ok(void())
}

fn has_extension(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pool = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.read(|db| get(db, "pool", &pool))?;
    Ok(json!(false))
}

fn get_license_state(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pool = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.read(|db| get(db, "pool", &pool))?;
    Ok(json!({"edition": "xcp-ng", "expiry": "never"}))
}

fn recover_slaves(_ctx: &Ctx, _p: Vec<Value>) -> Result<Value, XapiError> {
    Ok(json!([]))
}

fn enable_ha(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let srs = pp.set_or_empty(0)?;
    let config = pp.map_or_empty(1)?;
    ctx.pool
        .write(|db| {
            let pool = pool_ref(db);
            let r = get(db, "pool", &pool)?;
            if r.get("ha_enabled") == Some(&json!(true)) {
                return Err(XapiError::code("HA_IS_ENABLED"));
            }
            for sr in srs.iter().filter_map(Value::as_str) {
                get(db, "SR", &xapi_types::Ref::from(sr))?;
            }
            set(
                db,
                "pool",
                &pool,
                vec![
                    ("ha_enabled", json!(true)),
                    ("ha_configuration", Value::Object(config)),
                    (
                        "ha_statefiles",
                        json!(srs.iter().filter_map(Value::as_str).collect::<Vec<_>>()),
                    ),
                    ("ha_cluster_stack", json!("xhad")),
                ],
            )
        })
        .map(|_| void())
}

fn disable_ha(ctx: &Ctx, _p: Vec<Value>) -> Result<Value, XapiError> {
    ctx.pool
        .write(|db| {
            let pool = pool_ref(db);
            let r = get(db, "pool", &pool)?;
            if r.get("ha_enabled") != Some(&json!(true)) {
                return Err(XapiError::code("HA_NOT_ENABLED"));
            }
            set(
                db,
                "pool",
                &pool,
                vec![
                    ("ha_enabled", json!(false)),
                    ("ha_configuration", json!({})),
                    ("ha_statefiles", json!([])),
                ],
            )
        })
        .map(|_| void())
}
