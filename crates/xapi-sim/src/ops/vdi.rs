//! VDI messages: create / destroy / resize / copy / clone / snapshot / forget and the explicit setters, with SR
//! space accounting (`physical_utilisation`, `virtual_allocation`, `SR_FULL`).

use serde_json::json;
use xapi_types::{Ref, Value, XapiError};

use super::allowed::{update_vdi, vdi_in_use};
use super::helpers::{b, constructor_record, get, i, jr, now, refs, rf, s, valid, void, Params};
use crate::db::{Db, Record};
use crate::rpc::{Ctx, Registry};

pub fn register(reg: &mut Registry) {
    reg.register("VDI.create", create);
    reg.register("VDI.destroy", destroy);
    reg.register("VDI.forget", forget);
    reg.register("VDI.resize", resize);
    reg.register("VDI.resize_online", resize);
    reg.register("VDI.copy", copy);
    reg.register("VDI.clone", clone);
    reg.register("VDI.snapshot", snapshot);
    reg.register("VDI.set_name_label", set_name_label);
    reg.register("VDI.set_name_description", set_name_description);
    reg.register("VDI.set_read_only", set_read_only);
    reg.register("VDI.set_sharable", set_sharable);
    reg.register("VDI.pool_migrate", pool_migrate);
    reg.register("VDI.enable_cbt", enable_cbt);
    reg.register("VDI.disable_cbt", disable_cbt);
}

/// How a VDI is derived from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskOp {
    /// Full copy (SR may differ).
    Copy,
    /// Fast clone on the same SR.
    Clone,
    /// Snapshot on the same SR.
    Snapshot,
}

/// Thick-provisioned SR types (a VDI occupies its whole virtual size).
fn thick(sr: &Record) -> bool {
    matches!(s(sr, "type"), "lvm" | "lvmoiscsi" | "lvmohba" | "lvmofcoe")
}

/// `SR_FULL [requested, maximum]` when `needed` more bytes do not fit (SRs with a known size only).
pub fn check_space(db: &Db, sr: &Ref, needed: i64) -> Result<(), XapiError> {
    let r = db.record("SR", sr)?;
    let size = i(r, "physical_size");
    if size <= 0 || s(r, "content_type") == "iso" || needed <= 0 {
        return Ok(());
    }
    let free = size.saturating_sub(i(r, "physical_utilisation")).max(0);
    if needed > free {
        return Err(XapiError::new(
            "SR_FULL",
            [needed.to_string(), free.to_string()],
        ));
    }
    Ok(())
}

/// Add deltas to an SR's `physical_utilisation` and `virtual_allocation`.
pub fn account(db: &mut Db, sr: &Ref, physical: i64, virt: i64) -> Result<(), XapiError> {
    if !db.exists("SR", sr) || (physical == 0 && virt == 0) {
        return Ok(());
    }
    db.update("SR", sr, |r| {
        let p = i(r, "physical_utilisation").saturating_add(physical);
        let v = i(r, "virtual_allocation").saturating_add(virt);
        r.insert("physical_utilisation".into(), json!(p.max(0)));
        r.insert("virtual_allocation".into(), json!(v.max(0)));
    })
}

/// Create a VDI row from constructor fields (SR must exist; space checked; accounting, location, allowed ops).
pub fn create_vdi(db: &mut Db, mut rec: Record) -> Result<Ref, XapiError> {
    let sr = rf(&rec, "SR");
    let srr = get(db, "SR", &sr)?;
    let size = i(&rec, "virtual_size");
    if size < 0 {
        return Err(XapiError::new(
            "INVALID_VALUE",
            ["virtual_size".to_owned(), size.to_string()],
        ));
    }
    let physical = if thick(&srr) {
        size
    } else {
        rec.get("physical_utilisation")
            .map(super::helpers::int_of)
            .unwrap_or(0)
    };
    check_space(db, &sr, physical)?;
    let r = Db::new_ref();
    let uuid = Db::new_uuid();
    rec.insert("uuid".into(), json!(uuid));
    rec.insert("physical_utilisation".into(), json!(physical));
    if s(&rec, "location").is_empty() {
        rec.insert("location".into(), json!(uuid));
    }
    rec.entry("managed").or_insert(json!(true));
    db.create("VDI", r.clone(), rec)?;
    db.vdi_data.create_empty(&r);
    account(db, &sr, physical, size)?;
    update_vdi(db, &r)?;
    Ok(r)
}

/// Destroy a VDI: `VDI_IN_USE [vdi, "destroy"]` while attached; detached VBDs using it are destroyed with it.
pub fn destroy_vdi(db: &mut Db, vdi: &Ref) -> Result<(), XapiError> {
    let r = get(db, "VDI", vdi)?;
    if vdi_in_use(db, vdi) {
        return Err(XapiError::new(
            "VDI_IN_USE",
            [vdi.0.clone(), "destroy".to_owned()],
        ));
    }
    for vbd in refs(&r, "VBDs") {
        if db.exists("VBD", &vbd) {
            let vm = db
                .get("VBD", &vbd)
                .map(|v| rf(v, "VM"))
                .unwrap_or_else(Ref::null);
            db.destroy("VBD", &vbd)?;
            if valid(db, "VM", &vm) {
                super::allowed::update_vm(db, &vm)?;
            }
        }
    }
    let sr = rf(&r, "SR");
    db.destroy("VDI", vdi)?;
    db.vdi_data.remove(vdi);
    account(
        db,
        &sr,
        i(&r, "physical_utilisation").saturating_neg(),
        i(&r, "virtual_size").saturating_neg(),
    )?;
    Ok(())
}

/// Derive a new VDI from `vdi` (copy to `target_sr`, clone or snapshot on its own SR).
pub fn derive_vdi(
    db: &mut Db,
    vdi: &Ref,
    target_sr: Option<&Ref>,
    op: DiskOp,
) -> Result<Ref, XapiError> {
    let src = get(db, "VDI", vdi)?;
    let sr = match (op, target_sr) {
        (DiskOp::Copy, Some(t)) if !t.is_null() => t.clone(),
        _ => rf(&src, "SR"),
    };
    let srr = get(db, "SR", &sr)?;
    let size = i(&src, "virtual_size");
    let physical = match op {
        _ if thick(&srr) => size,
        DiskOp::Copy => i(&src, "physical_utilisation"),
        DiskOp::Clone | DiskOp::Snapshot => 0,
    };
    check_space(db, &sr, physical)?;
    let mut rec = Record::new();
    for k in [
        "name_label",
        "name_description",
        "virtual_size",
        "type",
        "sharable",
        "read_only",
        "other_config",
        "xenstore_data",
        "sm_config",
        "tags",
        "on_boot",
        "allow_caching",
    ] {
        if let Some(v) = src.get(k) {
            rec.insert(k.to_owned(), v.clone());
        }
    }
    rec.insert("SR".into(), jr(&sr));
    if op == DiskOp::Snapshot {
        rec.insert("is_a_snapshot".into(), json!(true));
        rec.insert("snapshot_of".into(), jr(vdi));
        rec.insert("snapshot_time".into(), json!(now()));
    }
    if op == DiskOp::Copy {
        rec.insert("read_only".into(), json!(false));
        let mut sm = rec
            .get("sm_config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        sm.remove("vhd-parent");
        rec.insert("sm_config".into(), Value::Object(sm));
    } else if let Some(Value::Object(sm)) = rec.get_mut("sm_config") {
        sm.insert("vhd-parent".into(), json!(s(&src, "uuid")));
    }
    let uuid = Db::new_uuid();
    rec.insert("uuid".into(), json!(uuid));
    rec.insert("location".into(), json!(uuid));
    rec.insert("managed".into(), json!(true));
    rec.insert("physical_utilisation".into(), json!(physical));
    let r = Db::new_ref();
    db.create("VDI", r.clone(), rec)?;
    db.vdi_data.derive(vdi, s(&src, "uuid"), &r);
    account(db, &sr, physical, size)?;
    update_vdi(db, &r)?;
    if db.exists("VDI", vdi) {
        update_vdi(db, vdi)?;
    }
    Ok(r)
}

fn create(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let rec = constructor_record("VDI", p.into_iter().next().unwrap_or(Value::Null))?;
    ctx.pool.write(|db| create_vdi(db, rec)).map(|r| jr(&r))
}

fn destroy(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let vdi = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.write(|db| destroy_vdi(db, &vdi)).map(|_| void())
}

fn forget(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let vdi = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool
        .write(|db| {
            let r = get(db, "VDI", &vdi)?;
            if vdi_in_use(db, &vdi) {
                return Err(XapiError::new(
                    "VDI_IN_USE",
                    [vdi.0.clone(), "forget".to_owned()],
                ));
            }
            for vbd in refs(&r, "VBDs") {
                if db.exists("VBD", &vbd) {
                    db.destroy("VBD", &vbd)?;
                }
            }
            db.destroy("VDI", &vdi)?;
            db.vdi_data.remove(&vdi);
            account(
                db,
                &rf(&r, "SR"),
                i(&r, "physical_utilisation").saturating_neg(),
                i(&r, "virtual_size").saturating_neg(),
            )
        })
        .map(|_| void())
}

fn resize(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let p = Params::new(&ctx.method, &p);
    let vdi = p.r(0)?;
    let size = p.i(1)?;
    let online = ctx.method.ends_with("resize_online");
    ctx.pool
        .write(|db| {
            let r = get(db, "VDI", &vdi)?;
            let old = i(&r, "virtual_size");
            if size < old {
                return Err(XapiError::new(
                    "VDI_TOO_SMALL",
                    [vdi.0.clone(), old.to_string()],
                ));
            }
            if !online && vdi_in_use(db, &vdi) {
                return Err(XapiError::new(
                    "VDI_IN_USE",
                    [vdi.0.clone(), "resize".to_owned()],
                ));
            }
            if b(&r, "read_only") {
                return Err(XapiError::new("VDI_READONLY", [vdi.0.clone()]));
            }
            let sr = rf(&r, "SR");
            let grow_phys = if get(db, "SR", &sr).map(|x| thick(&x)).unwrap_or(false) {
                size.saturating_sub(old)
            } else {
                0
            };
            check_space(db, &sr, grow_phys)?;
            db.vdi_data.pin(&vdi, s(&r, "uuid"), old.max(0) as u64);
            db.update("VDI", &vdi, |v| {
                v.insert("virtual_size".into(), json!(size));
                let p = i(v, "physical_utilisation").saturating_add(grow_phys);
                v.insert("physical_utilisation".into(), json!(p));
            })?;
            account(db, &sr, grow_phys, size.saturating_sub(old))
        })
        .map(|_| void())
}

fn copy(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let p = Params::new(&ctx.method, &p);
    let vdi = p.r(0)?;
    let sr = p.r(1)?;
    let base = Ref::from(p.s_or(2, Ref::NULL_STR));
    let into = Ref::from(p.s_or(3, Ref::NULL_STR));
    ctx.pool
        .write(|db| {
            let src = get(db, "VDI", &vdi)?;
            if !base.is_null() {
                get(db, "VDI", &base)?;
            }
            if !into.is_null() {
                let dst = get(db, "VDI", &into)?;
                if b(&dst, "read_only") {
                    return Err(XapiError::new("VDI_READONLY", [into.0.clone()]));
                }
                if i(&dst, "virtual_size") < i(&src, "virtual_size") {
                    return Err(XapiError::new(
                        "VDI_TOO_SMALL",
                        [into.0.clone(), i(&src, "virtual_size").to_string()],
                    ));
                }
                db.vdi_data.copy_into(
                    (&vdi, s(&src, "uuid"), i(&src, "virtual_size").max(0) as u64),
                    (
                        &into,
                        s(&dst, "uuid"),
                        i(&dst, "virtual_size").max(0) as u64,
                    ),
                )?;
                return Ok(into.clone());
            }
            if !sr.is_null() {
                get(db, "SR", &sr)?;
            }
            derive_vdi(db, &vdi, Some(&sr), DiskOp::Copy)
        })
        .map(|r| jr(&r))
}

fn clone(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let vdi = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool
        .write(|db| derive_vdi(db, &vdi, None, DiskOp::Clone))
        .map(|r| jr(&r))
}

fn snapshot(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let vdi = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool
        .write(|db| derive_vdi(db, &vdi, None, DiskOp::Snapshot))
        .map(|r| jr(&r))
}

fn set_field(ctx: &Ctx, p: Vec<Value>, field: &'static str) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vdi = pp.r(0)?;
    let v = p.get(1).cloned().unwrap_or(Value::Null);
    ctx.pool
        .write(|db| {
            get(db, "VDI", &vdi)?;
            db.set_field("VDI", &vdi, field, v)
        })
        .map(|_| void())
}

fn set_name_label(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    set_field(ctx, p, "name_label")
}

fn set_name_description(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    set_field(ctx, p, "name_description")
}

fn set_read_only(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    set_field(ctx, p, "read_only")
}

fn set_sharable(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    set_field(ctx, p, "sharable")
}

/// `VDI.pool_migrate(vdi, sr, options)`: live storage migration of a disk of a running VM; returns the new VDI.
pub fn pool_migrate_vdi(db: &mut Db, vdi: &Ref, sr: &Ref) -> Result<Ref, XapiError> {
    let r = get(db, "VDI", vdi)?;
    get(db, "SR", sr)?;
    let vbds: Vec<Ref> = refs(&r, "VBDs");
    let vm = vbds
        .iter()
        .find_map(|v| db.get("VBD", v).map(|b| rf(b, "VM")))
        .unwrap_or_else(Ref::null);
    if !valid(db, "VM", &vm) {
        return Err(XapiError::new("VDI_NEEDS_VM_FOR_MIGRATE", [vdi.0.clone()]));
    }
    let running = db
        .get("VM", &vm)
        .is_some_and(|v| s(v, "power_state") == "Running");
    if !running {
        let actual = db
            .get("VM", &vm)
            .map(|v| s(v, "power_state").to_ascii_lowercase())
            .unwrap_or_default();
        return Err(XapiError::new(
            "VM_BAD_POWER_STATE",
            [vm.0.clone(), "running".to_owned(), actual],
        ));
    }
    if rf(&r, "SR") == *sr {
        return Ok(vdi.clone());
    }
    let new = derive_vdi(db, vdi, Some(sr), DiskOp::Copy)?;
    db.update("VDI", &new, |n| {
        for k in ["name_label", "name_description"] {
            if let Some(v) = r.get(k) {
                n.insert(k.to_owned(), v.clone());
            }
        }
    })?;
    for vbd in vbds {
        if db.exists("VBD", &vbd) {
            db.set_field("VBD", &vbd, "VDI", jr(&new))?;
        }
    }
    destroy_vdi(db, vdi)?;
    update_vdi(db, &new)?;
    Ok(new)
}

fn pool_migrate(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vdi = pp.r(0)?;
    let sr = pp.r(1)?;
    ctx.pool
        .write(|db| pool_migrate_vdi(db, &vdi, &sr))
        .map(|r| jr(&r))
}

fn set_cbt(ctx: &Ctx, p: Vec<Value>, on: bool) -> Result<Value, XapiError> {
    let vdi = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool
        .write(|db| {
            let r = get(db, "VDI", &vdi)?;
            if on
                && matches!(
                    s(&r, "type"),
                    "suspend" | "crashdump" | "ha_statefile" | "metadata" | "redo_log"
                )
            {
                return Err(XapiError::new(
                    "VDI_INCOMPATIBLE_TYPE",
                    [vdi.0.clone(), s(&r, "type").to_owned()],
                ));
            }
            db.set_field("VDI", &vdi, "cbt_enabled", json!(on))?;
            update_vdi(db, &vdi)
        })
        .map(|_| void())
}

fn enable_cbt(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    set_cbt(ctx, p, true)
}

fn disable_cbt(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    set_cbt(ctx, p, false)
}
