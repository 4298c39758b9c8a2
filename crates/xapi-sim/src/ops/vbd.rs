//! VBD messages: create (`DEVICE_ALREADY_EXISTS`, `VBD_CDS_MUST_BE_READONLY`), destroy, plug / unplug
//! (`DEVICE_ALREADY_ATTACHED` / `DEVICE_ALREADY_DETACHED`), insert / eject for CDs, set_mode.

use serde_json::json;
use xapi_types::{Ref, Value, XapiError};

use super::allowed::{update_vbd, update_vdi, update_vm};
use super::helpers::{b, constructor_record, get, jr, refs, rf, s, valid, void, Params};
use super::vm_ops_check::{assert_power_state_in, PowerState};
use crate::db::{Db, Record};
use crate::rpc::{Ctx, Registry};

pub fn register(reg: &mut Registry) {
    reg.register("VBD.create", create);
    reg.register("VBD.destroy", destroy);
    reg.register("VBD.plug", plug);
    reg.register("VBD.unplug", unplug);
    reg.register("VBD.unplug_force", unplug);
    reg.register("VBD.insert", insert);
    reg.register("VBD.eject", eject);
    reg.register("VBD.set_mode", set_mode);
    reg.register("VBD.assert_attachable", assert_attachable);
}

/// Guest device name of a userdevice number (`0` → `xvda`, `3` → `xvdd`).
pub fn device_name(userdevice: &str) -> String {
    let letter = |k: u32| char::from_u32(u32::from(b'a') + k).unwrap_or('a');
    match userdevice.parse::<u32>() {
        Ok(n) if n < 26 => format!("xvd{}", letter(n)),
        Ok(n) if n < 26 * 27 => format!("xvd{}{}", letter(n / 26 - 1), letter(n % 26)),
        _ => userdevice.to_owned(),
    }
}

/// Userdevice numbers used by the VM's VBDs.
pub fn used_vbd_devices(db: &Db, vm: &Ref) -> Vec<String> {
    db.get("VM", vm)
        .map(|r| {
            refs(r, "VBDs")
                .iter()
                .filter_map(|v| db.get("VBD", v).map(|v| s(v, "userdevice").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Free userdevice numbers (0..15, as XAPI offers for HVM/PV guests).
pub fn allowed_vbd_devices(db: &Db, vm: &Ref) -> Vec<String> {
    let used = used_vbd_devices(db, vm);
    (0..16)
        .map(|n| n.to_string())
        .filter(|d| !used.contains(d))
        .collect()
}

fn vm_power(db: &Db, vm: &Ref) -> PowerState {
    db.get("VM", vm)
        .and_then(|r| PowerState::parse(s(r, "power_state")))
        .unwrap_or_default()
}

/// Create a VBD row with the checks of `VBD.create`.
pub fn create_vbd(db: &mut Db, mut rec: Record) -> Result<Ref, XapiError> {
    let vm = rf(&rec, "VM");
    get(db, "VM", &vm)?;
    let vdi = rf(&rec, "VDI");
    let empty = b(&rec, "empty");
    if !empty || !vdi.is_null() {
        get(db, "VDI", &vdi)?;
    }
    let ty = s(&rec, "type").to_owned();
    if empty && ty != "CD" && ty != "Floppy" {
        return Err(XapiError::new("VBD_NOT_REMOVABLE_MEDIA", [Ref::null().0]));
    }
    if ty == "CD" && s(&rec, "mode") == "RW" {
        return Err(XapiError::code("VBD_CDS_MUST_BE_READONLY"));
    }
    let mut userdevice = s(&rec, "userdevice").to_owned();
    if userdevice == "autodetect" || userdevice.is_empty() {
        userdevice = allowed_vbd_devices(db, &vm)
            .into_iter()
            .next()
            .ok_or_else(|| XapiError::new("INVALID_DEVICE", ["autodetect"]))?;
    } else if userdevice.parse::<u32>().is_err()
        && !userdevice.starts_with("xvd")
        && !userdevice.starts_with("hd")
    {
        return Err(XapiError::new("INVALID_DEVICE", [userdevice.as_str()]));
    }
    if used_vbd_devices(db, &vm).contains(&userdevice) {
        return Err(XapiError::new(
            "DEVICE_ALREADY_EXISTS",
            [userdevice.as_str()],
        ));
    }
    rec.insert("userdevice".into(), json!(userdevice));
    if empty {
        rec.insert("VDI".into(), json!(Ref::NULL_STR));
    }
    let r = db.insert("VBD", rec)?;
    // A VBD metrics row, as XAPI keeps one per VBD.
    let has_metrics =
        xapi_types::schema::class("VBD").is_some_and(|c| c.field("metrics").is_some());
    if has_metrics && xapi_types::schema::class("VBD_metrics").is_some() {
        let m = db.insert("VBD_metrics", Record::new())?;
        db.set_field("VBD", &r, "metrics", jr(&m))?;
    }
    update_vbd(db, &r)?;
    update_vm(db, &vm)?;
    if valid(db, "VDI", &vdi) {
        update_vdi(db, &vdi)?;
    }
    Ok(r)
}

/// Destroy a VBD (`DEVICE_ALREADY_ATTACHED [vbd]` while attached to a running VM).
pub fn destroy_vbd(db: &mut Db, vbd: &Ref) -> Result<(), XapiError> {
    let r = get(db, "VBD", vbd)?;
    let vm = rf(&r, "VM");
    if b(&r, "currently_attached") && vm_power(db, &vm).is_live() {
        return Err(XapiError::new("DEVICE_ALREADY_ATTACHED", [vbd.0.clone()]));
    }
    let metrics = rf(&r, "metrics");
    db.destroy("VBD", vbd)?;
    if valid(db, "VBD_metrics", &metrics) {
        db.destroy("VBD_metrics", &metrics)?;
    }
    if valid(db, "VM", &vm) {
        update_vm(db, &vm)?;
    }
    let vdi = rf(&r, "VDI");
    if valid(db, "VDI", &vdi) {
        update_vdi(db, &vdi)?;
    }
    Ok(())
}

fn create(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let rec = constructor_record("VBD", p.into_iter().next().unwrap_or(Value::Null))?;
    ctx.pool.write(|db| create_vbd(db, rec)).map(|r| jr(&r))
}

fn destroy(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let vbd = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.write(|db| destroy_vbd(db, &vbd)).map(|_| void())
}

fn after_change(db: &mut Db, vbd: &Ref) -> Result<(), XapiError> {
    update_vbd(db, vbd)?;
    let r = get(db, "VBD", vbd)?;
    let vdi = rf(&r, "VDI");
    if valid(db, "VDI", &vdi) {
        update_vdi(db, &vdi)?;
    }
    Ok(())
}

fn plug(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let vbd = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool
        .write(|db| {
            let r = get(db, "VBD", &vbd)?;
            let vm = rf(&r, "VM");
            assert_power_state_in(&vm.0, vm_power(db, &vm), &[PowerState::Running])?;
            if b(&r, "currently_attached") {
                return Err(XapiError::new("DEVICE_ALREADY_ATTACHED", [vbd.0.clone()]));
            }
            let dev = device_name(s(&r, "userdevice"));
            db.update("VBD", &vbd, |v| {
                v.insert("currently_attached".into(), json!(true));
                v.insert("device".into(), json!(dev));
            })?;
            after_change(db, &vbd)
        })
        .map(|_| void())
}

fn unplug(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let vbd = Params::new(&ctx.method, &p).r(0)?;
    let force = ctx.method.ends_with("unplug_force");
    ctx.pool
        .write(|db| {
            let r = get(db, "VBD", &vbd)?;
            let vm = rf(&r, "VM");
            assert_power_state_in(&vm.0, vm_power(db, &vm), &[PowerState::Running])?;
            if !b(&r, "currently_attached") {
                return Err(XapiError::new("DEVICE_ALREADY_DETACHED", [vbd.0.clone()]));
            }
            if !force && !b(&r, "unpluggable") {
                return Err(XapiError::new(
                    "DEVICE_DETACH_REJECTED",
                    [
                        "VBD".to_owned(),
                        vbd.0.clone(),
                        "VBD.unpluggable is false".to_owned(),
                    ],
                ));
            }
            db.set_field("VBD", &vbd, "currently_attached", json!(false))?;
            after_change(db, &vbd)
        })
        .map(|_| void())
}

fn insert(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vbd = pp.r(0)?;
    let vdi = pp.r(1)?;
    ctx.pool
        .write(|db| {
            let r = get(db, "VBD", &vbd)?;
            get(db, "VDI", &vdi)?;
            if s(&r, "type") != "CD" && s(&r, "type") != "Floppy" {
                return Err(XapiError::new("VBD_NOT_REMOVABLE_MEDIA", [vbd.0.clone()]));
            }
            if !b(&r, "empty") {
                return Err(XapiError::new("VBD_NOT_EMPTY", [vbd.0.clone()]));
            }
            let vm = rf(&r, "VM");
            assert_power_state_in(
                &vm.0,
                vm_power(db, &vm),
                &[PowerState::Halted, PowerState::Running],
            )?;
            db.update("VBD", &vbd, |v| {
                v.insert("VDI".into(), jr(&vdi));
                v.insert("empty".into(), json!(false));
            })?;
            after_change(db, &vbd)
        })
        .map(|_| void())
}

fn eject(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let vbd = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool
        .write(|db| {
            let r = get(db, "VBD", &vbd)?;
            if s(&r, "type") != "CD" && s(&r, "type") != "Floppy" {
                return Err(XapiError::new("VBD_NOT_REMOVABLE_MEDIA", [vbd.0.clone()]));
            }
            if b(&r, "empty") {
                return Err(XapiError::new("VBD_IS_EMPTY", [vbd.0.clone()]));
            }
            let vm = rf(&r, "VM");
            assert_power_state_in(
                &vm.0,
                vm_power(db, &vm),
                &[PowerState::Halted, PowerState::Running],
            )?;
            let old = rf(&r, "VDI");
            db.update("VBD", &vbd, |v| {
                v.insert("VDI".into(), json!(Ref::NULL_STR));
                v.insert("empty".into(), json!(true));
            })?;
            if valid(db, "VDI", &old) {
                update_vdi(db, &old)?;
            }
            after_change(db, &vbd)
        })
        .map(|_| void())
}

fn set_mode(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vbd = pp.r(0)?;
    let mode = pp.s(1)?;
    ctx.pool
        .write(|db| {
            let r = get(db, "VBD", &vbd)?;
            if s(&r, "type") == "CD" && mode == "RW" {
                return Err(XapiError::code("VBD_CDS_MUST_BE_READONLY"));
            }
            let vm = rf(&r, "VM");
            assert_power_state_in(&vm.0, vm_power(db, &vm), &[PowerState::Halted])?;
            db.set_field("VBD", &vbd, "mode", json!(mode))
        })
        .map(|_| void())
}

fn assert_attachable(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let vbd = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.read(|db| {
        let r = get(db, "VBD", &vbd)?;
        let vdi = rf(&r, "VDI");
        if !b(&r, "empty") && !valid(db, "VDI", &vdi) {
            return Err(XapiError::new(
                "VDI_MISSING",
                [Ref::null().0, vdi.0.clone()],
            ));
        }
        Ok(void())
    })
}

#[cfg(test)]
mod tests {
    use super::device_name;

    #[test]
    fn device_names() {
        assert_eq!(device_name("0"), "xvda");
        assert_eq!(device_name("3"), "xvdd");
        assert_eq!(device_name("26"), "xvdaa");
        assert_eq!(device_name("xvdb"), "xvdb");
        assert_eq!(device_name("701"), "xvdzz");
        assert_eq!(device_name("4294967295"), "4294967295");
    }
}
