//! Pure VM operation checker (XA `xapi_vm_lifecycle.ml`): allowed power states, `check_operation_error` and the
//! `allowed_operations` computation, over a plain snapshot of the facts they depend on.

use std::collections::BTreeMap;

use xapi_types::XapiError;

/// `vm_power_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum PowerState {
    #[default]
    Halted,
    Paused,
    Running,
    Suspended,
}

impl PowerState {
    pub const ALL: [PowerState; 4] = [
        PowerState::Halted,
        PowerState::Paused,
        PowerState::Running,
        PowerState::Suspended,
    ];

    /// The enum value as on the wire (`Halted`).
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::Halted => "Halted",
            PowerState::Paused => "Paused",
            PowerState::Running => "Running",
            PowerState::Suspended => "Suspended",
        }
    }

    /// Lower-case form used in `VM_BAD_POWER_STATE` params.
    pub fn lower(self) -> &'static str {
        match self {
            PowerState::Halted => "halted",
            PowerState::Paused => "paused",
            PowerState::Running => "running",
            PowerState::Suspended => "suspended",
        }
    }

    /// Parse the wire value (case-insensitively, as the CLI does).
    pub fn parse(s: &str) -> Option<PowerState> {
        PowerState::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }

    /// Running or Paused: a domain exists.
    pub fn is_live(self) -> bool {
        matches!(self, PowerState::Running | PowerState::Paused)
    }
}

macro_rules! vm_ops {
    ($($v:ident => $s:literal),* $(,)?) => {
        /// `vm_operations`, in datamodel order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(non_camel_case_types)]
        pub enum VmOp { $($v),* }

        impl VmOp {
            /// Every operation, in datamodel order.
            pub const ALL: &'static [VmOp] = &[$(VmOp::$v),*];

            /// The enum value as on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(VmOp::$v => $s),* }
            }

            /// Parse a wire value (exact).
            pub fn parse(s: &str) -> Option<VmOp> {
                match s { $($s => Some(VmOp::$v),)* _ => None }
            }
        }
    };
}

vm_ops! {
    snapshot => "snapshot", clone => "clone", copy => "copy", create_template => "create_template",
    revert => "revert", checkpoint => "checkpoint", snapshot_with_quiesce => "snapshot_with_quiesce",
    provision => "provision", start => "start", start_on => "start_on", pause => "pause", unpause => "unpause",
    clean_shutdown => "clean_shutdown", clean_reboot => "clean_reboot", hard_shutdown => "hard_shutdown",
    power_state_reset => "power_state_reset", hard_reboot => "hard_reboot", suspend => "suspend", csvm => "csvm",
    resume => "resume", resume_on => "resume_on", pool_migrate => "pool_migrate", migrate_send => "migrate_send",
    get_boot_record => "get_boot_record", send_sysrq => "send_sysrq", send_trigger => "send_trigger",
    query_services => "query_services", shutdown => "shutdown", call_plugin => "call_plugin",
    changing_memory_live => "changing_memory_live", awaiting_memory_live => "awaiting_memory_live",
    changing_dynamic_range => "changing_dynamic_range", changing_static_range => "changing_static_range",
    changing_memory_limits => "changing_memory_limits", changing_shadow_memory => "changing_shadow_memory",
    changing_shadow_memory_live => "changing_shadow_memory_live", changing_VCPUs => "changing_VCPUs",
    changing_VCPUs_live => "changing_VCPUs_live", changing_NVRAM => "changing_NVRAM",
    assert_operation_valid => "assert_operation_valid", data_source_op => "data_source_op",
    update_allowed_operations => "update_allowed_operations", make_into_template => "make_into_template",
    import => "import", export => "export", metadata_export => "metadata_export", reverting => "reverting",
    destroy => "destroy", create_vtpm => "create_vtpm", sysprep => "sysprep",
}

/// Operations never listed in `allowed_operations` (XA `ignored_ops`).
pub const IGNORED_OPS: &[VmOp] = &[
    VmOp::create_template,
    VmOp::power_state_reset,
    VmOp::csvm,
    VmOp::get_boot_record,
    VmOp::send_sysrq,
    VmOp::send_trigger,
    VmOp::query_services,
    VmOp::shutdown,
    VmOp::call_plugin,
    VmOp::changing_memory_live,
    VmOp::awaiting_memory_live,
    VmOp::changing_memory_limits,
    VmOp::changing_shadow_memory_live,
    VmOp::changing_VCPUs,
    VmOp::assert_operation_valid,
    VmOp::data_source_op,
    VmOp::update_allowed_operations,
    VmOp::import,
    VmOp::reverting,
];

/// Everything the checker looks at, read from the VM row and its neighbours.
#[derive(Debug, Clone, Default)]
pub struct VmFacts {
    pub vm_ref: String,
    pub power_state: PowerState,
    pub is_a_template: bool,
    /// `is_default_template` or `other_config.default_template` true.
    pub is_default_template: bool,
    pub is_a_snapshot: bool,
    pub is_control_domain: bool,
    /// `blocked_operations`: op name → reason.
    pub blocked_operations: BTreeMap<String, String>,
    /// `current_operations` as (task ref, op name) pairs.
    pub current_operations: Vec<(String, String)>,
    /// VM_metrics.current_domain_type is pv / pvh / pv_in_pvh (guest supports clean ops implicitly).
    pub booted_pv: bool,
    /// `VM_guest_metrics.other`, if guest metrics exist.
    pub guest_other: Option<BTreeMap<String, String>>,
    /// `nomigrate` or `nested-virt` (platform / metrics): not mobile.
    pub immobile: bool,
    /// `nested-virt` set.
    pub nested_virt: bool,
    /// Some VDI has `sm_config.on_boot = reset`.
    pub vdi_on_boot_reset: bool,
    /// Some VDI has on_boot=reset and caching enabled.
    pub vdi_reset_and_caching: bool,
    pub has_attached_pcis: bool,
    pub has_vgpus: bool,
    pub has_vusbs: bool,
    pub vtpm_count: usize,
    /// Valid appliance / protection policy / snapshot schedule refs, if any.
    pub appliance: Option<String>,
    pub protection_policy: Option<String>,
    pub snapshot_schedule: Option<String>,
    /// `other_config.is_system_domain` true.
    pub is_system_domain: bool,
    /// Pool allows cloning suspended VMs.
    pub clone_suspended_enabled: bool,
}

/// Power states in which `op` may run (XA `allowed_power_states`).
pub fn allowed_power_states(facts: &VmFacts, op: VmOp) -> Vec<PowerState> {
    use PowerState::*;
    use VmOp::*;
    match op {
        import => vec![],
        changing_VCPUs | changing_static_range | changing_memory_limits => {
            if facts.is_control_domain {
                vec![Halted, Running]
            } else {
                vec![Halted]
            }
        }
        changing_shadow_memory
        | changing_NVRAM
        | make_into_template
        | provision
        | start
        | start_on
        | create_vtpm => {
            vec![Halted]
        }
        unpause => vec![Paused],
        csvm | resume | resume_on => vec![Suspended],
        awaiting_memory_live
        | call_plugin
        | clean_reboot
        | clean_shutdown
        | changing_memory_live
        | changing_shadow_memory_live
        | changing_VCPUs_live
        | data_source_op
        | pause
        | pool_migrate
        | send_sysrq
        | send_trigger
        | snapshot_with_quiesce
        | suspend
        | sysprep => vec![Running],
        changing_dynamic_range => vec![Halted, Running],
        clone | copy => {
            if facts.is_a_snapshot || facts.clone_suspended_enabled {
                vec![Halted, Suspended]
            } else {
                vec![Halted]
            }
        }
        create_template | destroy | export => vec![Halted, Suspended],
        hard_reboot => vec![Paused, Running],
        checkpoint | get_boot_record | shutdown | hard_shutdown => vec![Paused, Suspended, Running],
        migrate_send => vec![Halted, Suspended, Running],
        assert_operation_valid
        | metadata_export
        | power_state_reset
        | revert
        | reverting
        | snapshot
        | update_allowed_operations
        | query_services => PowerState::ALL.to_vec(),
    }
}

/// Whether `op` may run while `current` ops are in progress (XA `is_allowed_concurrently`).
pub fn is_allowed_concurrently(op: VmOp, current: &[Option<VmOp>]) -> bool {
    use VmOp::*;
    let aux = |group: &[VmOp]| {
        group.contains(&op)
            && current
                .iter()
                .all(|c| c.is_some_and(|c| group.contains(&c)))
    };
    if aux(&[clone, copy, export]) || aux(&[snapshot, checkpoint]) || aux(&[get_boot_record]) {
        return true;
    }
    match op {
        hard_shutdown => !current.contains(&Some(hard_shutdown)),
        hard_reboot => !current
            .iter()
            .any(|c| matches!(c, Some(hard_shutdown) | Some(hard_reboot))),
        _ => {
            let transitions: &[(&[VmOp], VmOp)] = &[
                (&[snapshot_with_quiesce], snapshot),
                (&[migrate_send], metadata_export),
                (&[migrate_send], clean_shutdown),
                (&[migrate_send], clean_reboot),
            ];
            transitions.iter().any(|(state, t)| {
                *t == op
                    && state.len() == current.len()
                    && state.iter().zip(current).all(|(s, c)| Some(*s) == *c)
            })
        }
    }
}

fn err(code: &str, params: &[&str]) -> Option<XapiError> {
    Some(XapiError::new(code, params.iter().copied()))
}

fn feature_error(facts: &VmFacts, op: VmOp, strict: bool) -> Option<XapiError> {
    use VmOp::*;
    if facts.power_state != PowerState::Running || facts.booted_pv {
        return None;
    }
    let has = |f: &str| {
        facts
            .guest_other
            .as_ref()
            .and_then(|o| o.get(f))
            .is_some_and(|v| v == "1")
    };
    let lacks = |f: &str| !has(f);
    let vm = facts.vm_ref.as_str();
    match op {
        clean_shutdown if strict && lacks("feature-shutdown") && lacks("feature-poweroff") => {
            err("VM_LACKS_FEATURE", &[vm])
        }
        clean_reboot if strict && lacks("feature-shutdown") && lacks("feature-reboot") => {
            err("VM_LACKS_FEATURE", &[vm])
        }
        changing_VCPUs_live if lacks("feature-vcpu-hotplug") => err("VM_LACKS_FEATURE", &[vm]),
        suspend | checkpoint | pool_migrate | migrate_send => {
            let reason = facts
                .guest_other
                .as_ref()
                .and_then(|o| o.get("data-cant-suspend-reason"));
            match reason {
                Some(r) => err("VM_LACKS_FEATURE", &[vm, r.as_str()]),
                None if strict && lacks("feature-suspend") => err("VM_LACKS_FEATURE", &[vm]),
                None => None,
            }
        }
        _ => None,
    }
}

/// The first error that forbids `op` on the VM, or `None` (XA `check_operation_error`).
///
/// `strict` = true when computing `allowed_operations` (advisory: also requires guest features), false when
/// about to run the operation.
pub fn check_operation_error(facts: &VmFacts, op: VmOp, strict: bool) -> Option<XapiError> {
    use VmOp::*;
    let vm = facts.vm_ref.as_str();
    let op_s = op.as_str();
    // 1. blocked by the user
    if let Some(reason) = facts.blocked_operations.get(op_s) {
        return err("OPERATION_BLOCKED", &[vm, reason]);
    }
    // 2. power state
    let allowed = allowed_power_states(facts, op);
    if !allowed.contains(&facts.power_state) {
        let expected = allowed
            .iter()
            .map(|p| p.lower())
            .collect::<Vec<_>>()
            .join(", ");
        return err(
            "VM_BAD_POWER_STATE",
            &[vm, &expected, facts.power_state.lower()],
        );
    }
    // 3. concurrency
    if !facts.current_operations.is_empty() {
        let current: Vec<Option<VmOp>> = facts
            .current_operations
            .iter()
            .map(|(_, o)| VmOp::parse(o))
            .collect();
        if !is_allowed_concurrently(op, &current) {
            let (task, name) = match facts.current_operations.as_slice() {
                [(t, o)] => (t.clone(), o.clone()),
                l => (
                    l.iter()
                        .map(|(t, _)| t.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    format!(
                        "{{{}}}",
                        l.iter()
                            .map(|(_, o)| o.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                ),
            };
            return err("OTHER_OPERATION_IN_PROGRESS", &["VM", vm, &name, &task]);
        }
    }
    // 4. templates
    if facts.is_a_template && !facts.is_a_snapshot {
        let ok = matches!(
            op,
            changing_dynamic_range
                | changing_static_range
                | changing_memory_limits
                | changing_shadow_memory
                | changing_VCPUs
                | changing_NVRAM
                | clone
                | copy
                | export
                | metadata_export
                | provision
        ) || (matches!(op, destroy | migrate_send) && !facts.is_default_template);
        if !ok {
            return err("VM_IS_TEMPLATE", &[vm, op_s]);
        }
    }
    // 5. snapshots
    if facts.is_a_snapshot
        && !matches!(
            op,
            revert | clone | copy | export | destroy | hard_shutdown | metadata_export
        )
    {
        return err("VM_IS_SNAPSHOT", &[vm, op_s]);
    }
    // 6. provision / revert on the wrong kind of VM
    if op == provision && !facts.is_a_template {
        return err("ONLY_PROVISION_TEMPLATE", &[]);
    }
    if op == revert && !facts.is_a_snapshot {
        return err("ONLY_REVERT_SNAPSHOT", &[]);
    }
    // immobile VMs
    if matches!(op, suspend | checkpoint | pool_migrate | migrate_send) && facts.immobile && strict
    {
        return err("VM_IS_IMMOBILE", &[vm]);
    }
    if op == changing_dynamic_range && facts.nested_virt && strict {
        return err("VM_IS_USING_NESTED_VIRT", &[vm]);
    }
    // control domains
    if facts.is_control_domain {
        if matches!(op, changing_VCPUs | destroy) {
            return err(
                "OPERATION_NOT_ALLOWED",
                &["This operation is not allowed on dom0"],
            );
        }
        if !matches!(
            op,
            data_source_op
                | changing_memory_live
                | awaiting_memory_live
                | metadata_export
                | changing_dynamic_range
                | changing_memory_limits
                | changing_static_range
                | start
                | start_on
        ) {
            return err(
                "OPERATION_NOT_ALLOWED",
                &["This operation is not allowed on a control domain"],
            );
        }
    }
    // 7. guest features
    if let Some(e) = feature_error(facts, op, strict) {
        return Some(e);
    }
    if op == snapshot_with_quiesce {
        return err("VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", &[vm]);
    }
    // 8. misc
    if matches!(op, checkpoint | snapshot | suspend) && facts.vdi_on_boot_reset {
        return err("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", &[]);
    }
    if op == pool_migrate && facts.vdi_reset_and_caching {
        return err("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", &[]);
    }
    if matches!(op, suspend | checkpoint | pool_migrate | migrate_send) && facts.has_attached_pcis {
        return err("VM_HAS_PCI_ATTACHED", &[vm]);
    }
    if facts.has_vgpus {
        let exempt = (op == migrate_send && facts.power_state == PowerState::Halted)
            || (op == checkpoint && facts.power_state == PowerState::Suspended);
        if !exempt && matches!(op, pool_migrate | migrate_send | suspend | checkpoint) {
            return err("VM_HAS_VGPU", &[vm]);
        }
    }
    if matches!(
        op,
        suspend | snapshot | checkpoint | migrate_send | pool_migrate
    ) && facts.has_vusbs
    {
        return err("VM_HAS_VUSBS", &[vm]);
    }
    if op == make_into_template {
        if let Some(a) = &facts.appliance {
            return err("VM_IS_PART_OF_AN_APPLIANCE", &[vm, a]);
        }
        if let Some(p) = &facts.protection_policy {
            return err("VM_ASSIGNED_TO_PROTECTION_POLICY", &[vm, p]);
        }
        if let Some(s) = &facts.snapshot_schedule {
            return err("VM_ASSIGNED_TO_SNAPSHOT_SCHEDULE", &[vm, s]);
        }
    }
    if op == query_services && !facts.is_system_domain {
        return err("NOT_SYSTEM_DOMAIN", &[vm]);
    }
    if op == create_vtpm && facts.vtpm_count > 0 {
        return err("VTPM_MAX_AMOUNT_REACHED", &[&facts.vtpm_count.to_string()]);
    }
    None
}

/// `allowed_operations`: every op outside [`IGNORED_OPS`] passing the strict check, in the order XAPI lists
/// them (reverse datamodel order, as its fold produces).
pub fn allowed_operations(facts: &VmFacts) -> Vec<VmOp> {
    VmOp::ALL
        .iter()
        .rev()
        .copied()
        .filter(|op| !IGNORED_OPS.contains(op))
        .filter(|op| check_operation_error(facts, *op, true).is_none())
        .collect()
}

/// The power-state assertion used inside operations (expected states joined by `";"`).
pub fn assert_power_state_in(
    vm: &str,
    actual: PowerState,
    allowed: &[PowerState],
) -> Result<(), XapiError> {
    if allowed.contains(&actual) {
        Ok(())
    } else {
        let expected = allowed
            .iter()
            .map(|p| p.lower())
            .collect::<Vec<_>>()
            .join(";");
        Err(XapiError::new(
            "VM_BAD_POWER_STATE",
            [vm.to_owned(), expected, actual.lower().to_owned()],
        ))
    }
}

#[cfg(test)]
#[path = "vm_ops_check_tests.rs"]
mod tests;
