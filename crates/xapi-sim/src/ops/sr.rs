//! SR messages: scan (recomputes space accounting from the VDIs), set_name_label / set_name_description,
//! set_shared, set_physical_size.

use serde_json::json;
use xapi_types::{Ref, Value, XapiError};

use super::allowed::update_vdi;
use super::helpers::{get, i, refs, void, Params};
use crate::db::Db;
use crate::rpc::{Ctx, Registry};

pub fn register(reg: &mut Registry) {
    reg.register("SR.scan", scan);
    reg.register("SR.set_name_label", set_name_label);
    reg.register("SR.set_name_description", set_name_description);
    reg.register("SR.set_shared", set_shared);
    reg.register("SR.set_physical_size", set_physical_size);
}

/// Recompute `physical_utilisation` / `virtual_allocation` from the SR's VDIs and refresh their operations.
pub fn scan_sr(db: &mut Db, sr: &Ref) -> Result<(), XapiError> {
    let r = get(db, "SR", sr)?;
    let vdis = refs(&r, "VDIs");
    let (mut phys, mut virt) = (0i64, 0i64);
    for vdi in &vdis {
        if let Some(v) = db.get("VDI", vdi) {
            phys = phys.saturating_add(i(v, "physical_utilisation"));
            virt = virt.saturating_add(i(v, "virtual_size"));
        }
    }
    db.update("SR", sr, |r| {
        r.insert("physical_utilisation".into(), json!(phys));
        r.insert("virtual_allocation".into(), json!(virt));
    })?;
    for vdi in vdis {
        if db.exists("VDI", &vdi) {
            update_vdi(db, &vdi)?;
        }
    }
    Ok(())
}

fn scan(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let sr = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.write(|db| scan_sr(db, &sr)).map(|_| void())
}

fn set_field(ctx: &Ctx, p: Vec<Value>, field: &'static str) -> Result<Value, XapiError> {
    let sr = Params::new(&ctx.method, &p).r(0)?;
    let v = p.get(1).cloned().unwrap_or(Value::Null);
    ctx.pool
        .write(|db| {
            get(db, "SR", &sr)?;
            db.set_field("SR", &sr, field, v)
        })
        .map(|_| void())
}

fn set_name_label(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    set_field(ctx, p, "name_label")
}

fn set_name_description(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    set_field(ctx, p, "name_description")
}

fn set_shared(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    set_field(ctx, p, "shared")
}

fn set_physical_size(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let sr = pp.r(0)?;
    let size = pp.i(1)?;
    ctx.pool
        .write(|db| {
            let r = get(db, "SR", &sr)?;
            if size < i(&r, "physical_utilisation") {
                return Err(XapiError::new(
                    "SR_FULL",
                    [i(&r, "physical_utilisation").to_string(), size.to_string()],
                ));
            }
            db.set_field("SR", &sr, "physical_size", json!(size))
        })
        .map(|_| void())
}
