//! Table-driven tests of the VM operation checker: every op × power state for a normal VM, a template and a
//! snapshot, plus the individual error paths.

use super::*;

/// Hand-written from the spec's table (§5.1): op → allowed states as letters H(alted) P(aused) R(unning)
/// S(uspended), for a VM that is neither a snapshot nor a control domain.
const TABLE: &[(&str, &str)] = &[
    ("snapshot", "HPRS"),
    ("clone", "H"),
    ("copy", "H"),
    ("create_template", "HS"),
    ("revert", "HPRS"),
    ("checkpoint", "PRS"),
    ("snapshot_with_quiesce", "R"),
    ("provision", "H"),
    ("start", "H"),
    ("start_on", "H"),
    ("pause", "R"),
    ("unpause", "P"),
    ("clean_shutdown", "R"),
    ("clean_reboot", "R"),
    ("hard_shutdown", "PRS"),
    ("power_state_reset", "HPRS"),
    ("hard_reboot", "PR"),
    ("suspend", "R"),
    ("csvm", "S"),
    ("resume", "S"),
    ("resume_on", "S"),
    ("pool_migrate", "R"),
    ("migrate_send", "HRS"),
    ("get_boot_record", "PRS"),
    ("send_sysrq", "R"),
    ("send_trigger", "R"),
    ("query_services", "HPRS"),
    ("shutdown", "PRS"),
    ("call_plugin", "R"),
    ("changing_memory_live", "R"),
    ("awaiting_memory_live", "R"),
    ("changing_dynamic_range", "HR"),
    ("changing_static_range", "H"),
    ("changing_memory_limits", "H"),
    ("changing_shadow_memory", "H"),
    ("changing_shadow_memory_live", "R"),
    ("changing_VCPUs", "H"),
    ("changing_VCPUs_live", "R"),
    ("changing_NVRAM", "H"),
    ("assert_operation_valid", "HPRS"),
    ("data_source_op", "R"),
    ("update_allowed_operations", "HPRS"),
    ("make_into_template", "H"),
    ("import", ""),
    ("export", "HS"),
    ("metadata_export", "HPRS"),
    ("reverting", "HPRS"),
    ("destroy", "HS"),
    ("create_vtpm", "H"),
    ("sysprep", "R"),
];

fn letter(p: PowerState) -> char {
    match p {
        PowerState::Halted => 'H',
        PowerState::Paused => 'P',
        PowerState::Running => 'R',
        PowerState::Suspended => 'S',
    }
}

fn facts(ps: PowerState) -> VmFacts {
    VmFacts {
        vm_ref: "OpaqueRef:vm".into(),
        power_state: ps,
        booted_pv: true,
        ..Default::default()
    }
}

fn code(e: Option<XapiError>) -> Option<String> {
    e.map(|e| e.code)
}

#[test]
fn table_covers_every_op() {
    assert_eq!(TABLE.len(), VmOp::ALL.len());
    for op in VmOp::ALL {
        assert!(
            TABLE.iter().any(|(n, _)| *n == op.as_str()),
            "{op:?} missing"
        );
        assert_eq!(VmOp::parse(op.as_str()), Some(*op));
    }
    assert_eq!(VmOp::parse("nope"), None);
}

#[test]
fn normal_vm_every_op_every_power_state() {
    for (name, states) in TABLE {
        let op = VmOp::parse(name).unwrap();
        for ps in PowerState::ALL {
            let got = check_operation_error(&facts(ps), op, false);
            if !states.contains(letter(ps)) {
                let e = got.unwrap_or_else(|| panic!("{name} in {ps:?} should fail"));
                assert_eq!(e.code, "VM_BAD_POWER_STATE", "{name} {ps:?}");
                assert_eq!(e.params[0], "OpaqueRef:vm");
                assert_eq!(e.params[2], ps.lower());
                let expected: Vec<&str> = states
                    .chars()
                    .map(|c| match c {
                        'H' => "halted",
                        'P' => "paused",
                        'R' => "running",
                        _ => "suspended",
                    })
                    .collect();
                let mut got_states: Vec<&str> =
                    e.params[1].split(", ").filter(|x| !x.is_empty()).collect();
                got_states.sort_unstable();
                let mut expected = expected;
                expected.sort_unstable();
                assert_eq!(got_states, expected, "{name}");
                continue;
            }
            let expect = match *name {
                "provision" => Some("ONLY_PROVISION_TEMPLATE"),
                "revert" => Some("ONLY_REVERT_SNAPSHOT"),
                "snapshot_with_quiesce" => Some("VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED"),
                "query_services" => Some("NOT_SYSTEM_DOMAIN"),
                _ => None,
            };
            assert_eq!(code(got).as_deref(), expect, "{name} in {ps:?}");
        }
    }
}

const TEMPLATE_OK: &[&str] = &[
    "changing_dynamic_range",
    "changing_static_range",
    "changing_memory_limits",
    "changing_shadow_memory",
    "changing_VCPUs",
    "changing_NVRAM",
    "clone",
    "copy",
    "export",
    "metadata_export",
    "provision",
];

#[test]
fn template_every_op_every_power_state() {
    for default in [false, true] {
        for (name, states) in TABLE {
            let op = VmOp::parse(name).unwrap();
            for ps in PowerState::ALL {
                let mut f = facts(ps);
                f.is_a_template = true;
                f.is_default_template = default;
                let got = code(check_operation_error(&f, op, false));
                let expect = if !states.contains(letter(ps)) {
                    Some("VM_BAD_POWER_STATE")
                } else if TEMPLATE_OK.contains(name)
                    || (!default && matches!(*name, "destroy" | "migrate_send"))
                {
                    None
                } else {
                    Some("VM_IS_TEMPLATE")
                };
                assert_eq!(got.as_deref(), expect, "{name} {ps:?} default={default}");
            }
        }
    }
    let mut f = facts(PowerState::Halted);
    f.is_a_template = true;
    let e = check_operation_error(&f, VmOp::start, false).unwrap();
    assert_eq!(e.params, vec!["OpaqueRef:vm", "start"]);
}

#[test]
fn snapshot_every_op_every_power_state() {
    let ok = [
        "revert",
        "clone",
        "copy",
        "export",
        "destroy",
        "hard_shutdown",
        "metadata_export",
    ];
    for (name, states) in TABLE {
        let op = VmOp::parse(name).unwrap();
        for ps in PowerState::ALL {
            let mut f = facts(ps);
            f.is_a_template = true;
            f.is_a_snapshot = true;
            let states: String = if matches!(*name, "clone" | "copy") {
                "HS".into()
            } else {
                states.to_string()
            };
            let got = code(check_operation_error(&f, op, false));
            let expect = if !states.contains(letter(ps)) {
                Some("VM_BAD_POWER_STATE")
            } else if ok.contains(name) {
                None
            } else {
                Some("VM_IS_SNAPSHOT")
            };
            assert_eq!(got.as_deref(), expect, "{name} {ps:?}");
        }
    }
}

#[test]
fn blocked_operation_comes_first() {
    let mut f = facts(PowerState::Running);
    f.blocked_operations.insert("start".into(), "no way".into());
    let e = check_operation_error(&f, VmOp::start, false).unwrap();
    assert_eq!(e.code, "OPERATION_BLOCKED");
    assert_eq!(e.params, vec!["OpaqueRef:vm", "no way"]);
    assert!(!allowed_operations(&f).contains(&VmOp::start));
}

#[test]
fn other_operation_in_progress() {
    let mut f = facts(PowerState::Running);
    f.current_operations
        .push(("OpaqueRef:task".into(), "clean_shutdown".into()));
    let e = check_operation_error(&f, VmOp::pause, false).unwrap();
    assert_eq!(e.code, "OTHER_OPERATION_IN_PROGRESS");
    assert_eq!(
        e.params,
        vec!["VM", "OpaqueRef:vm", "clean_shutdown", "OpaqueRef:task"]
    );
    // hard_shutdown may pre-empt anything but another hard_shutdown
    assert!(check_operation_error(&f, VmOp::hard_shutdown, false).is_none());
    f.current_operations
        .push(("OpaqueRef:t2".into(), "hard_shutdown".into()));
    let e = check_operation_error(&f, VmOp::hard_shutdown, false).unwrap();
    assert_eq!(
        e.params,
        vec![
            "VM",
            "OpaqueRef:vm",
            "{clean_shutdown,hard_shutdown}",
            "OpaqueRef:task,OpaqueRef:t2"
        ]
    );
    assert!(check_operation_error(&f, VmOp::hard_reboot, false).is_some());
}

#[test]
fn long_copies_run_together() {
    let mut f = facts(PowerState::Halted);
    f.current_operations
        .push(("OpaqueRef:t".into(), "clone".into()));
    assert!(check_operation_error(&f, VmOp::copy, false).is_none());
    assert!(check_operation_error(&f, VmOp::export, false).is_none());
    assert!(check_operation_error(&f, VmOp::start, false).is_some());
    let mut f = facts(PowerState::Running);
    f.current_operations
        .push(("OpaqueRef:t".into(), "snapshot".into()));
    assert!(check_operation_error(&f, VmOp::checkpoint, false).is_none());
    let mut f = facts(PowerState::Running);
    f.current_operations
        .push(("OpaqueRef:t".into(), "migrate_send".into()));
    assert!(check_operation_error(&f, VmOp::clean_shutdown, false).is_none());
    assert!(check_operation_error(&f, VmOp::pause, false).is_some());
}

#[test]
fn hvm_guest_features_gate_strict_checks() {
    let mut f = facts(PowerState::Running);
    f.booted_pv = false;
    // permissive (about to run): clean_shutdown allowed without features, VCPU hotplug is not
    assert!(check_operation_error(&f, VmOp::clean_shutdown, false).is_none());
    assert_eq!(
        code(check_operation_error(&f, VmOp::changing_VCPUs_live, false)).as_deref(),
        Some("VM_LACKS_FEATURE")
    );
    // strict (allowed_operations)
    for op in [
        VmOp::clean_shutdown,
        VmOp::clean_reboot,
        VmOp::suspend,
        VmOp::checkpoint,
        VmOp::pool_migrate,
    ] {
        let e = check_operation_error(&f, op, true).unwrap();
        assert_eq!(e.code, "VM_LACKS_FEATURE");
        assert_eq!(e.params, vec!["OpaqueRef:vm"]);
    }
    let other: BTreeMap<String, String> = [
        "feature-shutdown",
        "feature-suspend",
        "feature-vcpu-hotplug",
    ]
    .iter()
    .map(|k| (k.to_string(), "1".to_string()))
    .collect();
    f.guest_other = Some(other);
    for op in [
        VmOp::clean_shutdown,
        VmOp::clean_reboot,
        VmOp::suspend,
        VmOp::checkpoint,
        VmOp::changing_VCPUs_live,
    ] {
        assert!(check_operation_error(&f, op, true).is_none(), "{op:?}");
    }
    f.guest_other
        .as_mut()
        .unwrap()
        .insert("data-cant-suspend-reason".into(), "busy".into());
    let e = check_operation_error(&f, VmOp::suspend, false).unwrap();
    assert_eq!(e.params, vec!["OpaqueRef:vm", "busy"]);
}

#[test]
fn control_domain_restrictions() {
    let mut f = facts(PowerState::Running);
    f.is_control_domain = true;
    assert_eq!(
        check_operation_error(&f, VmOp::clean_shutdown, false)
            .unwrap()
            .params,
        vec!["This operation is not allowed on a control domain"]
    );
    assert!(check_operation_error(&f, VmOp::changing_dynamic_range, false).is_none());
    // dom0 may change its static range while running
    assert!(check_operation_error(&f, VmOp::changing_static_range, false).is_none());
    let e = check_operation_error(&f, VmOp::changing_VCPUs, false).unwrap();
    assert_eq!(e.params, vec!["This operation is not allowed on dom0"]);
    let allowed = allowed_operations(&f);
    assert!(allowed.contains(&VmOp::changing_dynamic_range));
    assert!(!allowed.contains(&VmOp::snapshot));
}

#[test]
fn misc_restrictions() {
    let mut f = facts(PowerState::Running);
    f.immobile = true;
    assert_eq!(
        code(check_operation_error(&f, VmOp::pool_migrate, true)).as_deref(),
        Some("VM_IS_IMMOBILE")
    );
    assert!(check_operation_error(&f, VmOp::pool_migrate, false).is_none());
    let mut f = facts(PowerState::Running);
    f.has_attached_pcis = true;
    assert_eq!(
        code(check_operation_error(&f, VmOp::suspend, false)).as_deref(),
        Some("VM_HAS_PCI_ATTACHED")
    );
    let mut f = facts(PowerState::Running);
    f.has_vgpus = true;
    assert_eq!(
        code(check_operation_error(&f, VmOp::pool_migrate, false)).as_deref(),
        Some("VM_HAS_VGPU")
    );
    let mut f = facts(PowerState::Running);
    f.has_vusbs = true;
    assert_eq!(
        code(check_operation_error(&f, VmOp::snapshot, false)).as_deref(),
        Some("VM_HAS_VUSBS")
    );
    let mut f = facts(PowerState::Running);
    f.vdi_on_boot_reset = true;
    assert_eq!(
        code(check_operation_error(&f, VmOp::snapshot, false)).as_deref(),
        Some("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION")
    );
    let mut f = facts(PowerState::Halted);
    f.appliance = Some("OpaqueRef:app".into());
    assert_eq!(
        check_operation_error(&f, VmOp::make_into_template, false)
            .unwrap()
            .params,
        vec!["OpaqueRef:vm", "OpaqueRef:app"]
    );
    let mut f = facts(PowerState::Halted);
    f.vtpm_count = 1;
    assert_eq!(
        code(check_operation_error(&f, VmOp::create_vtpm, false)).as_deref(),
        Some("VTPM_MAX_AMOUNT_REACHED")
    );
    let mut f = facts(PowerState::Running);
    f.is_system_domain = true;
    assert!(check_operation_error(&f, VmOp::query_services, false).is_none());
}

#[test]
fn allowed_operations_running_and_halted() {
    let running = allowed_operations(&facts(PowerState::Running));
    for op in [
        VmOp::snapshot,
        VmOp::checkpoint,
        VmOp::pause,
        VmOp::clean_shutdown,
        VmOp::clean_reboot,
        VmOp::hard_shutdown,
        VmOp::hard_reboot,
        VmOp::suspend,
        VmOp::pool_migrate,
        VmOp::migrate_send,
        VmOp::changing_VCPUs_live,
        VmOp::changing_dynamic_range,
        VmOp::metadata_export,
    ] {
        assert!(running.contains(&op), "{op:?}");
    }
    for op in [
        VmOp::start,
        VmOp::destroy,
        VmOp::shutdown,
        VmOp::power_state_reset,
        VmOp::call_plugin,
    ] {
        assert!(!running.contains(&op), "{op:?}");
    }
    // reverse datamodel order
    assert_eq!(running.first(), Some(&VmOp::sysprep));
    assert_eq!(running.last(), Some(&VmOp::snapshot));
    let halted = allowed_operations(&facts(PowerState::Halted));
    for op in [
        VmOp::start,
        VmOp::start_on,
        VmOp::clone,
        VmOp::copy,
        VmOp::destroy,
        VmOp::export,
        VmOp::make_into_template,
    ] {
        assert!(halted.contains(&op), "{op:?}");
    }
    assert!(!halted.contains(&VmOp::clean_shutdown));
}

#[test]
fn assert_power_state_uses_semicolons() {
    assert!(assert_power_state_in("r", PowerState::Halted, &[PowerState::Halted]).is_ok());
    let e = assert_power_state_in(
        "r",
        PowerState::Running,
        &[PowerState::Halted, PowerState::Suspended],
    )
    .unwrap_err();
    assert_eq!(e.params, vec!["r", "halted;suspended", "running"]);
}

#[test]
fn power_state_parse() {
    assert_eq!(PowerState::parse("Running"), Some(PowerState::Running));
    assert_eq!(PowerState::parse("running"), Some(PowerState::Running));
    assert_eq!(PowerState::parse("x"), None);
    assert!(PowerState::Paused.is_live());
    assert!(!PowerState::Suspended.is_live());
}
