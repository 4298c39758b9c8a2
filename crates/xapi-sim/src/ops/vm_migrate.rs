//! Storage/cross-host migration inside the pool: `host.migrate_receive`, `VM.migrate_send`,
//! `VM.assert_can_migrate`. Destinations outside this pool fail `VM_MIGRATE_FAILED` (not simulated).

use serde_json::{json, Map};
use xapi_types::{Ref, Value, XapiError};

use super::allowed::{assert_vm_op, update_host, update_vdi, update_vm_tree};
use super::helpers::{get, jr, refs, rf, s, valid, void, Params};
use super::placement::assert_can_boot_here;
use super::vdi::{derive_vdi, destroy_vdi, DiskOp};
use super::vm::{move_domain, power};
use super::vm_ops_check::VmOp;
use crate::db::Db;
use crate::rpc::{Ctx, Registry};
use crate::state::master_of;

pub fn register(reg: &mut Registry) {
    reg.register("host.migrate_receive", migrate_receive);
    reg.register("VM.migrate_send", migrate_send);
    reg.register("VM.assert_can_migrate", assert_can_migrate);
}

fn migrate_receive(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let host = pp.r(0)?;
    let net = pp.r(1)?;
    let session = ctx.session.clone().unwrap_or_else(Ref::null);
    ctx.pool.read(|db| {
        let h = get(db, "host", &host)?;
        get(db, "network", &net)?;
        let addr = s(&h, "address");
        let master = db
            .get("host", &master_of(db))
            .map(|m| s(m, "address").to_owned())
            .unwrap_or_default();
        Ok(json!({
            "host": host.0,
            "xenops": format!("http://{addr}/services/xenops?session_id={}", session.0),
            "SM": format!("http://{addr}/services/SM?session_id={}", session.0),
            "session_id": session.0,
            "master": master,
        }))
    })
}

/// A parsed migration request.
struct Plan {
    vm: Ref,
    host: Ref,
    vdi_map: Vec<(Ref, Ref)>,
    vif_map: Vec<(Ref, Ref)>,
}

fn ref_map(m: &Map<String, Value>) -> Vec<(Ref, Ref)> {
    m.iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (Ref::from(k.as_str()), Ref::from(v))))
        .collect()
}

/// Check everything `migrate_send` would need, without changing anything.
fn check(db: &Db, plan: &Plan) -> Result<(), XapiError> {
    let r = get(db, "VM", &plan.vm)?;
    assert_vm_op(db, &plan.vm, VmOp::migrate_send)?;
    if !valid(db, "host", &plan.host) {
        let src = rf(&r, "resident_on");
        return Err(XapiError::new(
            "VM_MIGRATE_FAILED",
            [
                plan.vm.0.clone(),
                src.0,
                plan.host.0.clone(),
                "migration to another pool is not supported by the simulator".to_owned(),
            ],
        ));
    }
    let vm_vdis: Vec<Ref> = refs(&r, "VBDs")
        .iter()
        .filter_map(|v| db.get("VBD", v).map(|v| rf(v, "VDI")))
        .collect();
    for (vdi, sr) in &plan.vdi_map {
        get(db, "VDI", vdi)?;
        get(db, "SR", sr)?;
        if !vm_vdis.contains(vdi) {
            return Err(XapiError::new("VDI_NOT_IN_MAP", [vdi.0.clone()]));
        }
    }
    for (vif, net) in &plan.vif_map {
        get(db, "VIF", vif)?;
        get(db, "network", net)?;
    }
    let here = rf(&r, "resident_on");
    if power(db, &plan.vm).is_live() && here != plan.host {
        assert_can_boot_here(db, &plan.vm, &plan.host)?;
    }
    Ok(())
}

fn do_migrate(db: &mut Db, plan: &Plan) -> Result<(), XapiError> {
    check(db, plan)?;
    for (vdi, sr) in &plan.vdi_map {
        let cur_sr = db
            .get("VDI", vdi)
            .map(|v| rf(v, "SR"))
            .unwrap_or_else(Ref::null);
        if cur_sr == *sr {
            continue;
        }
        let new = derive_vdi(db, vdi, Some(sr), DiskOp::Copy)?;
        let vbds = db
            .get("VDI", vdi)
            .map(|v| refs(v, "VBDs"))
            .unwrap_or_default();
        for vbd in vbds {
            if db.get("VBD", &vbd).is_some_and(|b| rf(b, "VM") == plan.vm) {
                db.set_field("VBD", &vbd, "VDI", jr(&new))?;
            }
        }
        let name = db
            .get("VDI", vdi)
            .map(|v| v.get("name_label").cloned().unwrap_or(json!("")))
            .unwrap_or(json!(""));
        db.set_field("VDI", &new, "name_label", name)?;
        if db
            .get("VDI", vdi)
            .is_some_and(|v| refs(v, "VBDs").is_empty())
        {
            destroy_vdi(db, vdi)?;
        } else {
            update_vdi(db, vdi)?;
        }
        update_vdi(db, &new)?;
    }
    for (vif, net) in &plan.vif_map {
        db.set_field("VIF", vif, "network", jr(net))?;
    }
    if power(db, &plan.vm).is_live() {
        move_domain(db, &plan.vm, &plan.host)?;
        update_host(db, &plan.host)?;
    }
    update_vm_tree(db, &plan.vm)
}

fn parse(ctx: &Ctx, p: &[Value]) -> Result<Plan, XapiError> {
    let pp = Params::new(&ctx.method, p);
    let vm = pp.r(0)?;
    let dest = pp.map(1)?;
    let host = Ref::from(dest.get("host").and_then(Value::as_str).unwrap_or_default());
    let vdi_map = ref_map(&pp.map_or_empty(3)?);
    let vif_map = ref_map(&pp.map_or_empty(4)?);
    Ok(Plan {
        vm,
        host,
        vdi_map,
        vif_map,
    })
}

fn migrate_send(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let plan = parse(ctx, &p)?;
    ctx.pool
        .write(|db| do_migrate(db, &plan))
        .map(|_| jr(&plan.vm))
}

fn assert_can_migrate(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let plan = parse(ctx, &p)?;
    ctx.pool.read(|db| check(db, &plan)).map(|_| void())
}
