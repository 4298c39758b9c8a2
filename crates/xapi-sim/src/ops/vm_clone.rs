//! VM clone / copy / snapshot / checkpoint / revert (XA `xapi_vm_clone.ml`, `xapi_vm_snapshot.ml`): new VM rows
//! with new VDIs (same SR, or the target SR for `copy`), VBDs and VIFs, snapshot flags, `parent` links.

use serde_json::json;
use xapi_types::{Ref, Value, XapiError};

use super::allowed::{assert_vm_op, update_vdi, update_vm_tree};
use super::helpers::{b, get, jr, now, random_mac, refs, rf, s, set, valid, Params};
use super::vdi::{derive_vdi, destroy_vdi, DiskOp};
use super::vm::{ensure_metrics, halt, power, vm_message, write_suspend_image};
use super::vm_ops_check::{PowerState, VmOp};
use crate::db::{Db, Record};
use crate::rpc::{Ctx, Registry};

pub fn register(reg: &mut Registry) {
    reg.register("VM.clone", clone);
    reg.register("VM.copy", copy);
    reg.register("VM.snapshot", snapshot);
    reg.register("VM.checkpoint", checkpoint);
    reg.register("VM.revert", revert);
}

/// What kind of new VM to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloneKind {
    Clone,
    /// Full copy; disks go to this SR (NULL ⇒ each disk's own SR).
    Copy(Ref),
    /// Disk-only snapshot, skipping these VDIs.
    Snapshot(Vec<Ref>),
    /// Snapshot with memory (the result is Suspended with a suspend image).
    Checkpoint,
}

/// `Set(Ref)` fields the DB maintains from the other side: never copied.
const DERIVED_SETS: &[&str] = &[
    "VBDs",
    "VIFs",
    "consoles",
    "snapshots",
    "children",
    "crash_dumps",
    "VUSBs",
    "VTPMs",
    "VGPUs",
    "attached_PCIs",
    "groups",
];

/// Clone, copy, snapshot or checkpoint `vm` into a new VM named `name`.
pub fn clone_vm(db: &mut Db, vm: &Ref, name: &str, kind: &CloneKind) -> Result<Ref, XapiError> {
    let op = match kind {
        CloneKind::Clone => VmOp::clone,
        CloneKind::Copy(_) => VmOp::copy,
        CloneKind::Snapshot(_) => VmOp::snapshot,
        CloneKind::Checkpoint => VmOp::checkpoint,
    };
    assert_vm_op(db, vm, op)?;
    if let CloneKind::Copy(sr) = kind {
        if !sr.is_null() {
            get(db, "SR", sr)?;
        }
    }
    let src = get(db, "VM", vm)?;
    let src_state = power(db, vm);
    let is_snap = matches!(kind, CloneKind::Snapshot(_) | CloneKind::Checkpoint);

    let mut r: Record = src.clone();
    r.remove("uuid");
    for f in DERIVED_SETS {
        r.insert((*f).to_owned(), json!([]));
    }
    r.insert("name_label".into(), json!(name));
    r.insert("allowed_operations".into(), json!([]));
    r.insert("current_operations".into(), json!({}));
    r.insert("resident_on".into(), json!(Ref::NULL_STR));
    r.insert("scheduled_to_be_resident_on".into(), json!(Ref::NULL_STR));
    r.insert("domid".into(), json!(-1));
    r.insert("metrics".into(), json!(Ref::NULL_STR));
    r.insert("guest_metrics".into(), json!(Ref::NULL_STR));
    r.insert("suspend_VDI".into(), json!(Ref::NULL_STR));
    r.insert("requires_reboot".into(), json!(false));
    r.insert("is_control_domain".into(), json!(false));
    r.insert("is_default_template".into(), json!(false));
    let mut oc = src
        .get("other_config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    oc.remove("default_template");
    if is_snap {
        r.insert("is_a_snapshot".into(), json!(true));
        r.insert("is_a_template".into(), json!(true));
        r.insert("snapshot_of".into(), jr(vm));
        r.insert("snapshot_time".into(), json!(now()));
        r.insert(
            "snapshot_info".into(),
            json!({"power-state-at-snapshot": src_state.as_str()}),
        );
        r.insert("parent".into(), json!(s(&src, "parent")));
        r.insert(
            "power_state".into(),
            json!(if *kind == CloneKind::Checkpoint {
                "Suspended"
            } else {
                "Halted"
            }),
        );
    } else {
        oc.insert("mac_seed".into(), json!(Db::new_uuid()));
        r.insert("is_a_snapshot".into(), json!(false));
        r.insert("snapshot_of".into(), json!(Ref::NULL_STR));
        r.insert("snapshot_time".into(), json!(xapi_types::datetime::EPOCH));
        r.insert("snapshot_info".into(), json!({}));
        r.insert("parent".into(), jr(vm));
        let suspended = src_state == PowerState::Suspended;
        r.insert(
            "power_state".into(),
            json!(if suspended { "Suspended" } else { "Halted" }),
        );
    }
    r.insert("other_config".into(), Value::Object(oc));

    // Disks first (SR_FULL must fail before the VM row exists).
    let mut disks: Vec<(Record, Ref)> = Vec::new();
    let mut new_vdis: Vec<Ref> = Vec::new();
    let result = (|| -> Result<(), XapiError> {
        for vbd in refs(&src, "VBDs") {
            let Some(v) = db.get("VBD", &vbd).cloned() else {
                continue;
            };
            let vdi = rf(&v, "VDI");
            let is_disk = s(&v, "type") == "Disk" && !b(&v, "empty") && valid(db, "VDI", &vdi);
            if !is_disk {
                disks.push((v, vdi));
                continue;
            }
            if let CloneKind::Snapshot(ignore) = kind {
                if ignore.contains(&vdi) {
                    continue;
                }
            }
            let new = match kind {
                CloneKind::Clone => derive_vdi(db, &vdi, None, DiskOp::Clone)?,
                CloneKind::Copy(sr) => derive_vdi(db, &vdi, Some(sr), DiskOp::Copy)?,
                CloneKind::Snapshot(_) | CloneKind::Checkpoint => {
                    derive_vdi(db, &vdi, None, DiskOp::Snapshot)?
                }
            };
            new_vdis.push(new.clone());
            disks.push((v, new));
        }
        Ok(())
    })();
    if let Err(e) = result {
        for v in new_vdis {
            let _ = destroy_vdi(db, &v);
        }
        return Err(e);
    }

    let new_vm = db.insert("VM", r)?;
    ensure_metrics(db, &new_vm)?;
    for (v, vdi) in disks {
        let mut nv = v.clone();
        nv.remove("uuid");
        nv.insert("VM".into(), jr(&new_vm));
        nv.insert("VDI".into(), jr(&vdi));
        nv.insert("currently_attached".into(), json!(false));
        nv.insert("allowed_operations".into(), json!([]));
        nv.insert("current_operations".into(), json!({}));
        if nv.contains_key("metrics") {
            nv.insert("metrics".into(), json!(Ref::NULL_STR));
        }
        db.insert("VBD", nv)?;
    }
    for vif in refs(&src, "VIFs") {
        let Some(v) = db.get("VIF", &vif).cloned() else {
            continue;
        };
        let mut nv = v;
        nv.remove("uuid");
        nv.insert("VM".into(), jr(&new_vm));
        nv.insert("currently_attached".into(), json!(false));
        nv.insert("allowed_operations".into(), json!([]));
        nv.insert("current_operations".into(), json!({}));
        if nv.contains_key("metrics") {
            nv.insert("metrics".into(), json!(Ref::NULL_STR));
        }
        if !is_snap {
            nv.insert("MAC".into(), json!(random_mac()));
            nv.insert("MAC_autogenerated".into(), json!(true));
        }
        db.insert("VIF", nv)?;
    }
    // Memory image: a checkpoint writes one; a clone of a suspended VM copies the source's.
    if *kind == CloneKind::Checkpoint {
        let img = write_suspend_image(db, vm)?;
        db.set_field("VM", &new_vm, "suspend_VDI", jr(&img))?;
    } else if !is_snap && src_state == PowerState::Suspended {
        let svdi = rf(&src, "suspend_VDI");
        if valid(db, "VDI", &svdi) {
            let target = match kind {
                CloneKind::Copy(sr) => Some(sr),
                _ => None,
            };
            let op = if target.is_some_and(|s| !s.is_null()) {
                DiskOp::Copy
            } else {
                DiskOp::Clone
            };
            let img = derive_vdi(db, &svdi, target, op)?;
            db.set_field("VM", &new_vm, "suspend_VDI", jr(&img))?;
        }
    }
    if is_snap {
        db.set_field("VM", vm, "parent", jr(&new_vm))?;
    }
    update_vm_tree(db, &new_vm)?;
    update_vm_tree(db, vm)?;
    let (msg, what) = match kind {
        CloneKind::Snapshot(_) => ("VM_SNAPSHOTTED", format!("snapshotted as '{name}'")),
        CloneKind::Checkpoint => ("VM_CHECKPOINTED", format!("checkpointed as '{name}'")),
        _ => ("VM_CLONED", format!("cloned as '{name}'")),
    };
    vm_message(db, vm, msg, &what)?;
    Ok(new_vm)
}

/// Configuration fields a revert copies from the snapshot back to the VM.
const REVERTED_FIELDS: &[&str] = &[
    "name_description",
    "user_version",
    "memory_static_max",
    "memory_dynamic_max",
    "memory_dynamic_min",
    "memory_static_min",
    "VCPUs_params",
    "VCPUs_max",
    "VCPUs_at_startup",
    "actions_after_shutdown",
    "actions_after_reboot",
    "actions_after_crash",
    "PV_bootloader",
    "PV_kernel",
    "PV_ramdisk",
    "PV_args",
    "PV_bootloader_args",
    "PV_legacy_args",
    "HVM_boot_policy",
    "HVM_boot_params",
    "HVM_shadow_multiplier",
    "platform",
    "PCI_bus",
    "recommendations",
    "xenstore_data",
    "bios_strings",
    "domain_type",
    "NVRAM",
    "has_vendor_device",
    "hardware_platform_version",
];

/// `VM.revert(snapshot)`: the snapshot's VM gets back the snapshot's configuration, disks (fresh clones of the
/// snapshot's VDIs), VIFs and power state (Halted, or Suspended for a checkpoint).
pub fn revert_vm(db: &mut Db, snap: &Ref) -> Result<(), XapiError> {
    assert_vm_op(db, snap, VmOp::revert)?;
    let sr = get(db, "VM", snap)?;
    let vm = rf(&sr, "snapshot_of");
    if !valid(db, "VM", &vm) {
        return Err(XapiError::new(
            "VM_REVERT_FAILED",
            [vm.0.clone(), snap.0.clone()],
        ));
    }
    if power(db, &vm) != PowerState::Halted {
        halt(db, &vm)?;
    }
    let cur = get(db, "VM", &vm)?;
    // Drop the VM's current devices; its own disks go unless something else uses them.
    for vbd in refs(&cur, "VBDs") {
        let Some(v) = db.get("VBD", &vbd).cloned() else {
            continue;
        };
        let vdi = rf(&v, "VDI");
        super::vbd::destroy_vbd(db, &vbd)?;
        if s(&v, "type") == "Disk" && valid(db, "VDI", &vdi) {
            let unused = db
                .get("VDI", &vdi)
                .is_some_and(|d| refs(d, "VBDs").is_empty());
            if unused {
                destroy_vdi(db, &vdi)?;
            } else {
                update_vdi(db, &vdi)?;
            }
        }
    }
    for vif in refs(&cur, "VIFs") {
        if db.exists("VIF", &vif) {
            super::vif::destroy_vif(db, &vif)?;
        }
    }
    // New disks from the snapshot's.
    for vbd in refs(&sr, "VBDs") {
        let Some(v) = db.get("VBD", &vbd).cloned() else {
            continue;
        };
        let vdi = rf(&v, "VDI");
        let is_disk = s(&v, "type") == "Disk" && !b(&v, "empty") && valid(db, "VDI", &vdi);
        let target = if is_disk {
            derive_vdi(db, &vdi, None, DiskOp::Clone)?
        } else {
            vdi
        };
        let mut nv = v;
        nv.remove("uuid");
        nv.insert("VM".into(), jr(&vm));
        nv.insert("VDI".into(), jr(&target));
        nv.insert("currently_attached".into(), json!(false));
        if nv.contains_key("metrics") {
            nv.insert("metrics".into(), json!(Ref::NULL_STR));
        }
        db.insert("VBD", nv)?;
    }
    for vif in refs(&sr, "VIFs") {
        let Some(mut nv) = db.get("VIF", &vif).cloned() else {
            continue;
        };
        nv.remove("uuid");
        nv.insert("VM".into(), jr(&vm));
        nv.insert("currently_attached".into(), json!(false));
        if nv.contains_key("metrics") {
            nv.insert("metrics".into(), json!(Ref::NULL_STR));
        }
        db.insert("VIF", nv)?;
    }
    let mut fields: Vec<(&str, Value)> = REVERTED_FIELDS
        .iter()
        .filter_map(|f| sr.get(*f).map(|v| (*f, v.clone())))
        .collect();
    fields.push(("parent", jr(snap)));
    let mut oc = sr
        .get("other_config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(seed) = cur.get("other_config").and_then(|o| o.get("mac_seed")) {
        oc.insert("mac_seed".into(), seed.clone());
    }
    fields.push(("other_config", Value::Object(oc)));
    set(db, "VM", &vm, fields)?;
    if s(&sr, "power_state") == "Suspended" {
        let svdi = rf(&sr, "suspend_VDI");
        if valid(db, "VDI", &svdi) {
            let img = derive_vdi(db, &svdi, None, DiskOp::Clone)?;
            set(
                db,
                "VM",
                &vm,
                vec![
                    ("suspend_VDI", jr(&img)),
                    ("power_state", json!("Suspended")),
                ],
            )?;
        }
    }
    update_vm_tree(db, &vm)?;
    update_vm_tree(db, snap)?;
    let name = s(&sr, "name_label").to_owned();
    vm_message(
        db,
        &vm,
        "VM_SNAPSHOT_REVERTED",
        &format!("reverted to snapshot '{name}'"),
    )
}

fn clone(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vm = pp.r(0)?;
    let name = pp.s(1)?;
    ctx.pool
        .write(|db| clone_vm(db, &vm, &name, &CloneKind::Clone))
        .map(|r| jr(&r))
}

fn copy(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vm = pp.r(0)?;
    let name = pp.s(1)?;
    let sr = pp.r(2)?;
    ctx.pool
        .write(|db| clone_vm(db, &vm, &name, &CloneKind::Copy(sr)))
        .map(|r| jr(&r))
}

fn snapshot(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vm = pp.r(0)?;
    let name = pp.s(1)?;
    let ignore: Vec<Ref> = pp
        .set_or_empty(2)?
        .iter()
        .filter_map(Value::as_str)
        .map(Ref::from)
        .collect();
    ctx.pool
        .write(|db| clone_vm(db, &vm, &name, &CloneKind::Snapshot(ignore)))
        .map(|r| jr(&r))
}

fn checkpoint(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vm = pp.r(0)?;
    let name = pp.s(1)?;
    ctx.pool
        .write(|db| clone_vm(db, &vm, &name, &CloneKind::Checkpoint))
        .map(|r| jr(&r))
}

fn revert(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let snap = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool
        .write(|db| revert_vm(db, &snap))
        .map(|_| super::helpers::void())
}
