//! VBD messages: create (`DEVICE_ALREADY_EXISTS`, `VBD_CDS_MUST_BE_READONLY`), destroy, plug / unplug
//! (`DEVICE_ALREADY_ATTACHED` / `DEVICE_ALREADY_DETACHED`), insert / eject for CDs, set_mode.

use serde_json::json;
use xapi_types::{Ref, Value, XapiError};

use super::allowed::{update_vbd, update_vdi, update_vm};
use super::device::{vm_power, DeviceClass};
use super::helpers::{b, get, jr, rf, s, valid, void, Params};
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

/// VBDs as devices of a VM: userdevice numbers 0..15, as XAPI offers for HVM/PV guests.
pub const VBD: DeviceClass = DeviceClass {
    class: "VBD",
    vm_field: "VBDs",
    slot_field: "userdevice",
    slots: 16,
};

/// Userdevice numbers used by the VM's VBDs.
pub fn used_vbd_devices(db: &Db, vm: &Ref) -> Vec<String> {
    VBD.used(db, vm)
}

/// Free userdevice numbers (0..15, as XAPI offers for HVM/PV guests).
pub fn allowed_vbd_devices(db: &Db, vm: &Ref) -> Vec<String> {
    VBD.allowed(db, vm)
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
    // With a VBD metrics row, as XAPI keeps one per VBD.
    let r = VBD.insert(db, rec)?;
    update_vbd(db, &r)?;
    update_vm(db, &vm)?;
    if valid(db, "VDI", &vdi) {
        update_vdi(db, &vdi)?;
    }
    Ok(r)
}

/// Destroy a VBD (`DEVICE_ALREADY_ATTACHED [vbd]` while attached to a running VM).
pub fn destroy_vbd(db: &mut Db, vbd: &Ref) -> Result<(), XapiError> {
    let r = VBD.destroy(db, vbd)?;
    let vdi = rf(&r, "VDI");
    if valid(db, "VDI", &vdi) {
        update_vdi(db, &vdi)?;
    }
    Ok(())
}

fn create(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    VBD.create_rpc(ctx, p, create_vbd)
}

fn destroy(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    VBD.destroy_rpc(ctx, p, destroy_vbd)
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
            let r = VBD.check_plug(db, &vbd, true)?;
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
            let r = VBD.check_plug(db, &vbd, false)?;
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

/// The checks of `VBD.insert` (`inserting`) and `VBD.eject`: removable media, empty (insert) or not (eject), a
/// halted or running VM. Returns the VBD's record.
fn check_media_change(db: &Db, vbd: &Ref, inserting: bool) -> Result<Record, XapiError> {
    let r = get(db, "VBD", vbd)?;
    if s(&r, "type") != "CD" && s(&r, "type") != "Floppy" {
        return Err(XapiError::new("VBD_NOT_REMOVABLE_MEDIA", [vbd.0.clone()]));
    }
    match (inserting, b(&r, "empty")) {
        (true, false) => return Err(XapiError::new("VBD_NOT_EMPTY", [vbd.0.clone()])),
        (false, true) => return Err(XapiError::new("VBD_IS_EMPTY", [vbd.0.clone()])),
        _ => {}
    }
    let vm = rf(&r, "VM");
    assert_power_state_in(
        &vm.0,
        vm_power(db, &vm),
        &[PowerState::Halted, PowerState::Running],
    )?;
    Ok(r)
}

fn insert(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vbd = pp.r(0)?;
    let vdi = pp.r(1)?;
    ctx.pool
        .write(|db| {
            get(db, "VBD", &vbd)?;
            get(db, "VDI", &vdi)?;
            check_media_change(db, &vbd, true)?;
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
            let r = check_media_change(db, &vbd, false)?;
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
