//! SR and PBD life cycle: SR.create / introduce / forget / destroy / get_supported_types / probe, PBD.plug /
//! unplug (XA `xapi_sr.ml`, `xapi_pbd.ml`): `SR_UNKNOWN_DRIVER`, `SR_HAS_PBD`, `SR_NO_PBDS`, `SR_NOT_EMPTY`.

use serde_json::json;
use xapi_types::{Ref, Value, XapiError};

use super::allowed::{update_vm_trees, vdi_in_use};
use super::helpers::{b, get, jr, refs, rf, s, void, Params};
use crate::db::{rec, Db};
use crate::rpc::{Ctx, Registry};

pub fn register(reg: &mut Registry) {
    reg.register("SR.create", create);
    reg.register("SR.introduce", introduce);
    reg.register("SR.forget", forget);
    reg.register("SR.destroy", destroy);
    reg.register("SR.get_supported_types", get_supported_types);
    reg.register("SR.probe", probe);
    reg.register("SR.probe_ext", probe_ext);
    reg.register("PBD.plug", pbd_plug);
    reg.register("PBD.unplug", pbd_unplug);
}

/// Whether an SM driver of this type exists.
fn driver_known(db: &Db, ty: &str) -> bool {
    db.all("SM").any(|(_, sm)| s(sm, "type") == ty)
}

fn sr_record(p: &Params, first: usize, shared: bool) -> Result<crate::db::Record, XapiError> {
    Ok(rec([
        ("name_label", json!(p.s(first)?)),
        ("name_description", json!(p.s(first + 1)?)),
        ("type", json!(p.s(first + 2)?)),
        ("content_type", json!(p.s(first + 3)?)),
        ("shared", json!(shared)),
        ("other_config", json!({})),
        ("sm_config", json!({})),
    ]))
}

fn create(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    // (host, device_config, physical_size, name_label, name_description, type, content_type, shared, sm_config)
    let pp = Params::new(&ctx.method, &p);
    let host = pp.r(0)?;
    let device_config = pp.map(1)?;
    let size = pp.i(2)?;
    let shared = pp.b(7)?;
    let mut record = sr_record(&pp, 3, shared)?;
    record.insert("sm_config".into(), Value::Object(pp.map_or_empty(8)?));
    record.insert("physical_size".into(), json!(size.max(0)));
    ctx.pool
        .write(|db| {
            get(db, "host", &host)?;
            let ty = s(&record, "type").to_owned();
            if !driver_known(db, &ty) {
                return Err(XapiError::new("SR_UNKNOWN_DRIVER", [ty]));
            }
            let sr = db.insert("SR", record)?;
            let hosts = if shared {
                db.refs("host")
            } else {
                vec![host.clone()]
            };
            for h in hosts {
                db.insert(
                    "PBD",
                    rec([
                        ("host", jr(&h)),
                        ("SR", jr(&sr)),
                        ("device_config", Value::Object(device_config.clone())),
                        ("currently_attached", json!(true)),
                        ("other_config", json!({})),
                    ]),
                )?;
            }
            Ok(sr)
        })
        .map(|r| jr(&r))
}

fn introduce(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    // (uuid, name_label, name_description, type, content_type, shared, sm_config)
    let pp = Params::new(&ctx.method, &p);
    let uuid = pp.s(0)?;
    let mut record = sr_record(&pp, 1, pp.b(5)?)?;
    record.insert("sm_config".into(), Value::Object(pp.map_or_empty(6)?));
    if !uuid.is_empty() {
        record.insert("uuid".into(), json!(uuid));
    }
    ctx.pool
        .write(|db| {
            let ty = s(&record, "type").to_owned();
            if !driver_known(db, &ty) {
                return Err(XapiError::new("SR_UNKNOWN_DRIVER", [ty]));
            }
            db.insert("SR", record)
        })
        .map(|r| jr(&r))
}

fn assert_unplugged(db: &Db, sr: &Ref) -> Result<Vec<Ref>, XapiError> {
    let r = get(db, "SR", sr)?;
    let pbds = refs(&r, "PBDs");
    if pbds
        .iter()
        .any(|p| db.get("PBD", p).is_some_and(|p| b(p, "currently_attached")))
    {
        return Err(XapiError::new("SR_HAS_PBD", [sr.0.clone()]));
    }
    Ok(pbds)
}

/// Removes `sr` with its VDIs (and their data) and `pbds`; the VBDs on those VDIs become empty. The VMs of
/// those VBDs (whose allowed operations may change).
pub(crate) fn drop_sr(db: &mut Db, sr: &Ref, pbds: Vec<Ref>) -> Result<Vec<Ref>, XapiError> {
    let mut emptied = Vec::new();
    for vdi in db
        .get("SR", sr)
        .map(|r| refs(r, "VDIs"))
        .unwrap_or_default()
    {
        for vbd in db
            .get("VDI", &vdi)
            .map(|v| refs(v, "VBDs"))
            .unwrap_or_default()
        {
            if let Some(vm) = db.get("VBD", &vbd).map(|r| rf(r, "VM")) {
                db.set_field("VBD", &vbd, "VDI", json!(Ref::NULL_STR))?;
                emptied.push(vm);
            }
        }
        if db.exists("VDI", &vdi) {
            db.destroy("VDI", &vdi)?;
            db.vdi_data.remove(&vdi);
        }
    }
    for p in pbds {
        if db.exists("PBD", &p) {
            db.destroy("PBD", &p)?;
        }
    }
    db.destroy("SR", sr)?;
    Ok(emptied)
}

fn forget(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let sr = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool
        .write(|db| {
            let pbds = assert_unplugged(db, &sr)?;
            drop_sr_and_refresh(db, &sr, pbds)
        })
        .map(|_| void())
}

/// [`drop_sr`], then the allowed operations of the VMs (and their devices) whose disks went with the SR: a VM
/// loses e.g. what an `on_boot=reset` disk forbade.
fn drop_sr_and_refresh(db: &mut Db, sr: &Ref, pbds: Vec<Ref>) -> Result<(), XapiError> {
    let vms = drop_sr(db, sr, pbds)?;
    update_vm_trees(db, vms)
}

fn destroy(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let sr = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool
        .write(|db| {
            let pbds = assert_unplugged(db, &sr)?;
            if pbds.is_empty() {
                return Err(XapiError::new("SR_NO_PBDS", [sr.0.clone()]));
            }
            let managed = db
                .get("SR", &sr)
                .map(|r| refs(r, "VDIs"))
                .unwrap_or_default()
                .iter()
                .any(|v| db.get("VDI", v).is_some_and(|v| b(v, "managed")));
            if managed {
                return Err(XapiError::code("SR_NOT_EMPTY"));
            }
            drop_sr_and_refresh(db, &sr, pbds)
        })
        .map(|_| void())
}

fn get_supported_types(ctx: &Ctx, _p: Vec<Value>) -> Result<Value, XapiError> {
    Ok(ctx.pool.read(|db| {
        let mut v: Vec<String> = db
            .all("SM")
            .map(|(_, sm)| s(sm, "type").to_owned())
            .collect();
        v.sort();
        v.dedup();
        json!(v)
    }))
}

fn probe(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let host = pp.r(0)?;
    let ty = pp.s(2)?;
    ctx.pool.read(|db| {
        get(db, "host", &host)?;
        if !driver_known(db, &ty) {
            return Err(XapiError::new("SR_UNKNOWN_DRIVER", [ty.clone()]));
        }
        Ok(json!("<?xml version=\"1.0\" ?><SRlist/>"))
    })
}

fn probe_ext(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let host = pp.r(0)?;
    let ty = pp.s(2)?;
    ctx.pool.read(|db| {
        get(db, "host", &host)?;
        if !driver_known(db, &ty) {
            return Err(XapiError::new("SR_UNKNOWN_DRIVER", [ty.clone()]));
        }
        Ok(json!([]))
    })
}

fn pbd_plug(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pbd = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool
        .write(|db| {
            let r = get(db, "PBD", &pbd)?;
            let sr = get(db, "SR", &rf(&r, "SR"))?;
            if !driver_known(db, s(&sr, "type")) {
                return Err(XapiError::new("SR_UNKNOWN_DRIVER", [s(&sr, "type")]));
            }
            if !b(&r, "currently_attached") {
                db.set_field("PBD", &pbd, "currently_attached", json!(true))?;
            }
            Ok(())
        })
        .map(|_| void())
}

fn pbd_unplug(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pbd = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool
        .write(|db| {
            let r = get(db, "PBD", &pbd)?;
            let host = rf(&r, "host");
            let sr = get(db, "SR", &rf(&r, "SR"))?;
            for vdi in refs(&sr, "VDIs") {
                let used_here = vdi_in_use(db, &vdi)
                    && db.get("VDI", &vdi).is_some_and(|v| {
                        refs(v, "VBDs").iter().any(|vbd| {
                            db.get("VBD", vbd)
                                .and_then(|b| db.get("VM", &rf(b, "VM")))
                                .is_some_and(|vm| rf(vm, "resident_on") == host)
                        })
                    });
                if used_here {
                    return Err(XapiError::new(
                        "VDI_IN_USE",
                        [vdi.0.clone(), "unplug".to_owned()],
                    ));
                }
            }
            db.set_field("PBD", &pbd, "currently_attached", json!(false))
        })
        .map(|_| void())
}
