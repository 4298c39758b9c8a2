//! Recomputing `allowed_operations` of VMs, VBDs, VIFs, VDIs and hosts from the DB after every change.

use serde_json::json;
use xapi_types::{Ref, XapiError};

use super::helpers::{b, get, refs, rf, s, set_if_changed, smap, valid};
use super::vm_ops_check::{allowed_operations, check_operation_error, PowerState, VmFacts, VmOp};
use crate::db::Db;

fn truthy(v: Option<&String>) -> bool {
    v.is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Read everything the VM checker needs from the DB.
pub fn vm_facts(db: &Db, vm: &Ref) -> Result<VmFacts, XapiError> {
    let r = db.record("VM", vm)?;
    let metrics = db.get("VM_metrics", &rf(r, "metrics"));
    let gm = db.get("VM_guest_metrics", &rf(r, "guest_metrics"));
    let platform = smap(r, "platform");
    let other_config = smap(r, "other_config");
    let pool_oc = db
        .all("pool")
        .next()
        .map(|(_, p)| smap(p, "other_config"))
        .unwrap_or_default();
    let current_domain_type = metrics
        .map(|m| s(m, "current_domain_type"))
        .unwrap_or("unspecified");
    let power_state = PowerState::parse(s(r, "power_state")).unwrap_or_default();
    let live_metrics = power_state.is_live().then_some(metrics).flatten();
    let nomigrate = live_metrics
        .map(|m| b(m, "nomigrate"))
        .unwrap_or_else(|| truthy(platform.get("nomigrate")));
    let nested_virt = live_metrics
        .map(|m| b(m, "nested_virt"))
        .unwrap_or_else(|| truthy(platform.get("nested-virt")));
    let mut on_boot_reset = false;
    let mut reset_and_caching = false;
    for vbd in refs(r, "VBDs") {
        let Some(vbd) = db.get("VBD", &vbd) else {
            continue;
        };
        let Some(vdi) = db.get("VDI", &rf(vbd, "VDI")) else {
            continue;
        };
        let sm = smap(vdi, "sm_config");
        let reset = sm.get("on_boot").is_some_and(|v| v == "reset");
        on_boot_reset |= reset;
        reset_and_caching |= reset && truthy(sm.get("caching"));
    }
    let valid_ref = |class: &str, field: &str| {
        let x = rf(r, field);
        valid(db, class, &x).then(|| x.0.clone())
    };
    Ok(VmFacts {
        vm_ref: vm.0.clone(),
        power_state,
        is_a_template: b(r, "is_a_template"),
        is_default_template: b(r, "is_default_template")
            || truthy(other_config.get("default_template")),
        is_a_snapshot: b(r, "is_a_snapshot"),
        is_control_domain: b(r, "is_control_domain"),
        blocked_operations: smap(r, "blocked_operations"),
        current_operations: smap(r, "current_operations").into_iter().collect(),
        booted_pv: matches!(current_domain_type, "pv" | "pvh" | "pv_in_pvh"),
        guest_other: gm.map(|g| smap(g, "other")),
        immobile: nomigrate || nested_virt,
        nested_virt,
        vdi_on_boot_reset: on_boot_reset,
        vdi_reset_and_caching: reset_and_caching,
        has_attached_pcis: !refs(r, "attached_PCIs").is_empty(),
        has_vgpus: !refs(r, "VGPUs").is_empty(),
        has_vusbs: !refs(r, "VUSBs").is_empty(),
        vtpm_count: refs(r, "VTPMs").len(),
        appliance: valid_ref("VM_appliance", "appliance"),
        protection_policy: valid_ref("VMPP", "protection_policy"),
        snapshot_schedule: valid_ref("VMSS", "snapshot_schedule"),
        is_system_domain: truthy(other_config.get("is_system_domain")),
        clone_suspended_enabled: truthy(pool_oc.get("allow_clone_suspended_vm")),
    })
}

/// Fail with the first error forbidding `op` (permissive mode, as before running an operation).
pub fn assert_vm_op(db: &Db, vm: &Ref, op: VmOp) -> Result<(), XapiError> {
    let facts = vm_facts(db, vm)?;
    match check_operation_error(&facts, op, false) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Recompute `VM.allowed_operations`.
pub fn update_vm(db: &mut Db, vm: &Ref) -> Result<(), XapiError> {
    let facts = vm_facts(db, vm)?;
    let ops: Vec<&str> = allowed_operations(&facts)
        .into_iter()
        .map(VmOp::as_str)
        .collect();
    set_if_changed(db, "VM", vm, "allowed_operations", json!(ops))
}

fn vm_power(db: &Db, vm: &Ref) -> PowerState {
    db.get("VM", vm)
        .and_then(|r| PowerState::parse(s(r, "power_state")))
        .unwrap_or_default()
}

/// Recompute `VBD.allowed_operations`.
pub fn update_vbd(db: &mut Db, vbd: &Ref) -> Result<(), XapiError> {
    let r = get(db, "VBD", vbd)?;
    let mut ops = Vec::new();
    if smap(&r, "current_operations").is_empty() {
        let running = vm_power(db, &rf(&r, "VM")) == PowerState::Running;
        let attached = b(&r, "currently_attached");
        ops.push("attach");
        if s(&r, "type") == "CD" {
            ops.push(if b(&r, "empty") { "insert" } else { "eject" });
        }
        if running && !attached {
            ops.push("plug");
        }
        if running && attached {
            ops.extend(["unplug", "unplug_force"]);
        }
    }
    set_if_changed(db, "VBD", vbd, "allowed_operations", json!(ops))
}

/// Recompute `VIF.allowed_operations`.
pub fn update_vif(db: &mut Db, vif: &Ref) -> Result<(), XapiError> {
    let r = get(db, "VIF", vif)?;
    let mut ops = Vec::new();
    if smap(&r, "current_operations").is_empty() {
        let running = vm_power(db, &rf(&r, "VM")) == PowerState::Running;
        ops.push("attach");
        if running {
            ops.push(if b(&r, "currently_attached") {
                "unplug"
            } else {
                "plug"
            });
        }
    }
    set_if_changed(db, "VIF", vif, "allowed_operations", json!(ops))
}

/// True when some VBD using the VDI is attached to a live VM.
pub fn vdi_in_use(db: &Db, vdi: &Ref) -> bool {
    db.get("VDI", vdi).is_some_and(|r| {
        refs(r, "VBDs").iter().any(|vbd| {
            db.get("VBD", vbd)
                .is_some_and(|v| b(v, "currently_attached"))
        })
    })
}

/// Recompute `VDI.allowed_operations`.
pub fn update_vdi(db: &mut Db, vdi: &Ref) -> Result<(), XapiError> {
    let r = get(db, "VDI", vdi)?;
    let mut ops: Vec<&str> = Vec::new();
    if smap(&r, "current_operations").is_empty() {
        let iso = db
            .get("SR", &rf(&r, "SR"))
            .is_some_and(|sr| s(sr, "content_type") == "iso");
        let in_use = vdi_in_use(db, vdi);
        ops.extend(["clone", "copy"]);
        if !iso {
            ops.push("snapshot");
            ops.push(if in_use { "resize_online" } else { "resize" });
            ops.extend(["update", "generate_config"]);
            ops.push(if b(&r, "cbt_enabled") {
                "disable_cbt"
            } else {
                "enable_cbt"
            });
        }
        if !in_use && !b(&r, "is_tools_iso") {
            ops.extend(["destroy", "forget", "set_on_boot"]);
        }
        if in_use {
            ops.push("mirror");
        }
    }
    set_if_changed(db, "VDI", vdi, "allowed_operations", json!(ops))
}

/// Recompute `host.allowed_operations`.
pub fn update_host(db: &mut Db, host: &Ref) -> Result<(), XapiError> {
    let r = get(db, "host", host)?;
    let live = db
        .get("host_metrics", &rf(&r, "metrics"))
        .is_none_or(|m| b(m, "live"));
    let ops: Vec<&str> = if !live {
        vec!["power_on"]
    } else if b(&r, "enabled") {
        vec![
            "provision",
            "evacuate",
            "shutdown",
            "reboot",
            "vm_start",
            "vm_resume",
            "vm_migrate",
            "apply_updates",
        ]
    } else {
        vec![
            "provision",
            "evacuate",
            "shutdown",
            "reboot",
            "apply_updates",
            "enable",
        ]
    };
    set_if_changed(db, "host", host, "allowed_operations", json!(ops))
}

/// Recompute a VM and everything hanging off it (VBDs, their VDIs, VIFs).
pub fn update_vm_tree(db: &mut Db, vm: &Ref) -> Result<(), XapiError> {
    update_vm(db, vm)?;
    let r = get(db, "VM", vm)?;
    for vbd in refs(&r, "VBDs") {
        if db.exists("VBD", &vbd) {
            update_vbd(db, &vbd)?;
            let vdi = db
                .get("VBD", &vbd)
                .map(|v| rf(v, "VDI"))
                .unwrap_or_else(Ref::null);
            if valid(db, "VDI", &vdi) {
                update_vdi(db, &vdi)?;
            }
        }
    }
    for vif in refs(&r, "VIFs") {
        if db.exists("VIF", &vif) {
            update_vif(db, &vif)?;
        }
    }
    Ok(())
}

/// Recompute each of `vms` that still exists with what hangs off it ([`update_vm_tree`]), once each.
pub fn update_vm_trees(db: &mut Db, mut vms: Vec<Ref>) -> Result<(), XapiError> {
    vms.sort();
    vms.dedup();
    for vm in vms {
        if db.exists("VM", &vm) {
            update_vm_tree(db, &vm)?;
        }
    }
    Ok(())
}

/// Recompute every object's `allowed_operations` and every host's `memory_free` (for pool builders after
/// seeding).
pub fn refresh_all(db: &mut Db) -> Result<(), XapiError> {
    for vm in db.refs("VM") {
        update_vm(db, &vm)?;
    }
    for vbd in db.refs("VBD") {
        update_vbd(db, &vbd)?;
    }
    for vif in db.refs("VIF") {
        update_vif(db, &vif)?;
    }
    for vdi in db.refs("VDI") {
        update_vdi(db, &vdi)?;
    }
    for host in db.refs("host") {
        update_host(db, &host)?;
        super::placement::update_host_memory(db, &host)?;
    }
    Ok(())
}
