//! VM power lifecycle (XA `xapi_vm.ml` / `xapi_vm_lifecycle.ml`): create, start / start_on, shutdowns, reboots,
//! suspend / resume, pause / unpause, power_state_reset, pool_migrate, destroy — with their effects on metrics,
//! devices, consoles, guest metrics, host memory and messages.

use serde_json::{json, Map};
use xapi_types::{Ref, Value, XapiError};

use super::allowed::{assert_vm_op, update_host, update_vm_tree};
use super::helpers::{
    b, check_memory_constraints, constructor_record, get, i, jr, now, pool_ref, post_message, refs,
    rf, s, set, valid, void, Params,
};
use super::placement::{assert_can_boot_here, choose_host, update_host_memory};
use super::vdi::{create_vdi, destroy_vdi};
use super::vm_ops_check::{PowerState, VmOp};
use crate::db::{rec, Db, Record};
use crate::rpc::{Ctx, Registry};

pub fn register(reg: &mut Registry) {
    reg.register("VM.create", create);
    reg.register("VM.destroy", destroy);
    reg.register("VM.start", start);
    reg.register("VM.start_on", start_on);
    reg.register("VM.clean_shutdown", clean_shutdown);
    reg.register("VM.hard_shutdown", hard_shutdown);
    reg.register("VM.shutdown", shutdown);
    reg.register("VM.clean_reboot", clean_reboot);
    reg.register("VM.hard_reboot", hard_reboot);
    reg.register("VM.suspend", suspend);
    reg.register("VM.resume", resume);
    reg.register("VM.resume_on", resume_on);
    reg.register("VM.pause", pause);
    reg.register("VM.unpause", unpause);
    reg.register("VM.power_state_reset", power_state_reset);
    reg.register("VM.pool_migrate", pool_migrate);
}

/// The VM's power state.
pub fn power(db: &Db, vm: &Ref) -> PowerState {
    db.get("VM", vm)
        .and_then(|r| PowerState::parse(s(r, "power_state")))
        .unwrap_or_default()
}

/// Post a `VM_*` lifecycle message (priority 5, as XAPI's `Api_messages`).
pub fn vm_message(db: &mut Db, vm: &Ref, name: &str, what: &str) -> Result<(), XapiError> {
    let r = get(db, "VM", vm)?;
    let body = format!("VM '{}' {}", s(&r, "name_label"), what);
    post_message(db, name, 5, "VM", s(&r, "uuid"), &body).map(|_| ())
}

fn next_domid(db: &Db) -> i64 {
    db.all("VM")
        .map(|(_, r)| i(r, "domid"))
        .max()
        .unwrap_or(0)
        .clamp(0, i64::MAX - 1)
        + 1
}

/// Whether the VM boots HVM (`domain_type`, else `HVM_boot_policy` non-empty).
pub fn is_hvm(r: &Record) -> bool {
    match s(r, "domain_type") {
        "hvm" => true,
        "pv" | "pvh" | "pv_in_pvh" => false,
        _ => !s(r, "HVM_boot_policy").is_empty(),
    }
}

/// The VM's metrics row, created if missing.
pub fn ensure_metrics(db: &mut Db, vm: &Ref) -> Result<Ref, XapiError> {
    let m = rf(db.record("VM", vm)?, "metrics");
    if valid(db, "VM_metrics", &m) {
        return Ok(m);
    }
    let m = db.insert(
        "VM_metrics",
        rec([
            ("install_time", json!(now())),
            ("last_updated", json!(now())),
        ]),
    )?;
    db.set_field("VM", vm, "metrics", jr(&m))?;
    Ok(m)
}

fn os_version(name: &str) -> Value {
    let lower = name.to_ascii_lowercase();
    if lower.contains("windows") {
        json!({"name": "Microsoft Windows Server 2022 Standard|C:\\Windows|\\Device\\Harddisk0\\Partition2",
               "distro": "windows", "major": "10", "minor": "0", "spmajor": "0", "spminor": "0"})
    } else if lower.contains("centos") || lower.contains("rocky") || lower.contains("alma") {
        json!({"name": "Rocky Linux 9.3 (Blue Onyx)", "distro": "rocky", "major": "9", "minor": "3",
               "uname": "5.14.0-362.8.1.el9_3.x86_64"})
    } else if lower.contains("ubuntu") {
        json!({"name": "Ubuntu 24.04 LTS", "distro": "ubuntu", "major": "24", "minor": "04",
               "uname": "6.8.0-31-generic"})
    } else {
        json!({"name": "Debian GNU/Linux 12 (bookworm)", "distro": "debian", "major": "12", "minor": "5",
               "uname": "6.1.0-18-amd64"})
    }
}

/// A stable fake IPv4 address for a VIF, from its MAC.
fn ip_for_mac(mac: &str) -> String {
    let bytes: Vec<u8> = mac
        .split(':')
        .filter_map(|p| u8::from_str_radix(p, 16).ok())
        .collect();
    let (x, y) = match bytes.as_slice() {
        [.., x, y] => (*x, *y),
        _ => (0, 2),
    };
    format!(
        "10.{}.{}.{}",
        200u8.wrapping_add(x % 50),
        y,
        2 + (x ^ y) % 250
    )
}

/// The EUI-64 IPv6 link-local address of a MAC (`fe80::…`).
fn link_local(mac: &str) -> String {
    let b: Vec<u8> = mac
        .split(':')
        .filter_map(|p| u8::from_str_radix(p, 16).ok())
        .collect();
    if b.len() != 6 {
        return "fe80::1".to_owned();
    }
    let w = |hi: u8, lo: u8| u16::from(hi) << 8 | u16::from(lo);
    format!(
        "fe80::{:x}:{:x}:{:x}:{:x}",
        w(b[0] ^ 0x02, b[1]),
        w(b[2], 0xff),
        w(0xfe, b[3]),
        w(b[4], b[5])
    )
}

/// Create (or replace) the guest metrics of a running VM, as its guest agent would report them.
fn create_guest_metrics(db: &mut Db, vm: &Ref) -> Result<(), XapiError> {
    let r = get(db, "VM", vm)?;
    let old = rf(&r, "guest_metrics");
    if valid(db, "VM_guest_metrics", &old) {
        db.destroy("VM_guest_metrics", &old)?;
    }
    let mut networks = Map::new();
    for vif in refs(&r, "VIFs") {
        let Some(v) = db.get("VIF", &vif) else {
            continue;
        };
        let dev = s(v, "device");
        let ip = ip_for_mac(s(v, "MAC"));
        networks.insert(format!("{dev}/ip"), json!(ip));
        networks.insert(format!("{dev}/ipv4/0"), json!(ip));
        networks.insert(format!("{dev}/ipv6/0"), json!(link_local(s(v, "MAC"))));
    }
    let other = json!({
        "feature-shutdown": "1", "feature-poweroff": "1", "feature-reboot": "1", "feature-suspend": "1",
        "feature-vcpu-hotplug": "1", "feature-balloon": "1", "has-vendor-device": "0",
        "platform-feature-multiprocessor-suspend": "1", "platform-feature-xs_reset_watches": "1",
    });
    let gm = db.insert(
        "VM_guest_metrics",
        rec([
            ("os_version", os_version(s(&r, "name_label"))),
            (
                "PV_drivers_version",
                json!({"major": "9", "minor": "4", "micro": "0", "build": "22"}),
            ),
            ("PV_drivers_up_to_date", json!(true)),
            ("PV_drivers_detected", json!(true)),
            ("networks", Value::Object(networks)),
            ("other", other),
            ("memory", json!({})),
            ("disks", json!({})),
            ("last_updated", json!(now())),
            ("live", json!(true)),
            ("can_use_hotplug_vbd", json!("yes")),
            ("can_use_hotplug_vif", json!("yes")),
        ]),
    )?;
    db.set_field("VM", vm, "guest_metrics", jr(&gm))
}

fn destroy_guest_metrics(db: &mut Db, vm: &Ref) -> Result<(), XapiError> {
    let gm = rf(db.record("VM", vm)?, "guest_metrics");
    if !gm.is_null() {
        db.set_field("VM", vm, "guest_metrics", json!(Ref::NULL_STR))?;
        if valid(db, "VM_guest_metrics", &gm) {
            db.destroy("VM_guest_metrics", &gm)?;
        }
    }
    Ok(())
}

/// Create the rfb + vt100 consoles of a VM now resident on `host`.
fn create_consoles(db: &mut Db, vm: &Ref, host: &Ref) -> Result<(), XapiError> {
    destroy_consoles(db, vm)?;
    let addr = db
        .get("host", host)
        .map(|h| s(h, "address").to_owned())
        .unwrap_or_default();
    for proto in ["rfb", "vt100"] {
        let c = Db::new_ref();
        let location = format!("https://{addr}/console?ref={c}");
        db.create(
            "console",
            c,
            rec([
                ("protocol", json!(proto)),
                ("location", json!(location)),
                ("VM", jr(vm)),
                ("other_config", json!({})),
            ]),
        )?;
    }
    Ok(())
}

fn destroy_consoles(db: &mut Db, vm: &Ref) -> Result<(), XapiError> {
    for c in refs(db.record("VM", vm)?, "consoles") {
        if db.exists("console", &c) {
            db.destroy("console", &c)?;
        }
    }
    Ok(())
}

fn set_devices_attached(db: &mut Db, vm: &Ref, attached: bool) -> Result<(), XapiError> {
    let r = get(db, "VM", vm)?;
    for vbd in refs(&r, "VBDs") {
        let Some(v) = db.get("VBD", &vbd) else {
            continue;
        };
        let mut fields = vec![("currently_attached", json!(attached))];
        if attached {
            fields.push(("device", json!(super::vbd::device_name(s(v, "userdevice")))));
        }
        set(db, "VBD", &vbd, fields)?;
    }
    for vif in refs(&r, "VIFs") {
        if db.exists("VIF", &vif) {
            set(
                db,
                "VIF",
                &vif,
                vec![("currently_attached", json!(attached))],
            )?;
        }
    }
    Ok(())
}

/// Give the VM a domain on `host`: Running (or Paused), metrics, devices, consoles, guest metrics, memory.
pub fn boot(db: &mut Db, vm: &Ref, host: &Ref, paused: bool) -> Result<(), XapiError> {
    let r = get(db, "VM", vm)?;
    let metrics = ensure_metrics(db, vm)?;
    let hvm = is_hvm(&r);
    let domain_type = match s(&r, "domain_type") {
        "" | "unspecified" => {
            if hvm {
                "hvm"
            } else {
                "pv"
            }
        }
        d => d,
    }
    .to_owned();
    let platform = super::helpers::smap(&r, "platform");
    let truthy = |k: &str| platform.get(k).is_some_and(|v| v == "true" || v == "1");
    let vcpus = i(&r, "VCPUs_at_startup").clamp(1, super::vm_config::MAX_VCPUS);
    let cpus: Map<String, Value> = (0..vcpus).map(|n| (n.to_string(), json!(n % 4))).collect();
    set(
        db,
        "VM_metrics",
        &metrics,
        vec![
            ("start_time", json!(now())),
            ("last_updated", json!(now())),
            ("VCPUs_number", json!(vcpus)),
            ("VCPUs_CPU", Value::Object(cpus)),
            ("memory_actual", json!(i(&r, "memory_dynamic_max"))),
            ("current_domain_type", json!(domain_type)),
            ("hvm", json!(hvm)),
            ("nomigrate", json!(truthy("nomigrate"))),
            ("nested_virt", json!(truthy("nested-virt"))),
            ("state", json!([])),
        ],
    )?;
    let old_host = rf(&r, "resident_on");
    set(
        db,
        "VM",
        vm,
        vec![
            (
                "power_state",
                json!(if paused { "Paused" } else { "Running" }),
            ),
            ("resident_on", jr(host)),
            ("scheduled_to_be_resident_on", json!(Ref::NULL_STR)),
            ("domid", json!(next_domid(db))),
        ],
    )?;
    set_devices_attached(db, vm, true)?;
    create_consoles(db, vm, host)?;
    create_guest_metrics(db, vm)?;
    update_host_memory(db, host)?;
    if valid(db, "host", &old_host) && old_host != *host {
        update_host_memory(db, &old_host)?;
    }
    update_vm_tree(db, vm)
}

/// Take the domain away: devices detached, consoles and guest metrics gone, no host, domid −1, `state`.
fn unboot(db: &mut Db, vm: &Ref, state: PowerState) -> Result<(), XapiError> {
    let host = rf(db.record("VM", vm)?, "resident_on");
    set_devices_attached(db, vm, false)?;
    destroy_consoles(db, vm)?;
    destroy_guest_metrics(db, vm)?;
    let mut fields = vec![
        ("power_state", json!(state.as_str())),
        ("resident_on", json!(Ref::NULL_STR)),
        ("scheduled_to_be_resident_on", json!(Ref::NULL_STR)),
        ("domid", json!(-1)),
    ];
    if state == PowerState::Halted {
        fields.push(("requires_reboot", json!(false)));
    }
    set(db, "VM", vm, fields)?;
    if valid(db, "host", &host) {
        update_host_memory(db, &host)?;
    }
    update_vm_tree(db, vm)
}

/// Force a VM to Halted (also used by host shutdown/evacuation paths): drops its suspend image reference.
pub fn halt(db: &mut Db, vm: &Ref) -> Result<(), XapiError> {
    let r = get(db, "VM", vm)?;
    if power(db, vm) == PowerState::Suspended {
        let svdi = rf(&r, "suspend_VDI");
        db.set_field("VM", vm, "suspend_VDI", json!(Ref::NULL_STR))?;
        if valid(db, "VDI", &svdi) {
            destroy_vdi(db, &svdi)?;
        }
    }
    unboot(db, vm, PowerState::Halted)
}

/// `VM.start` / `VM.start_on` (host given).
pub fn start_vm(db: &mut Db, vm: &Ref, host: Option<&Ref>, paused: bool) -> Result<(), XapiError> {
    let op = if host.is_some() {
        VmOp::start_on
    } else {
        VmOp::start
    };
    assert_vm_op(db, vm, op)?;
    let r = get(db, "VM", vm)?;
    check_memory_constraints(
        i(&r, "memory_static_min"),
        i(&r, "memory_dynamic_min"),
        i(&r, "memory_dynamic_max"),
        i(&r, "memory_static_max"),
    )?;
    let host = match host {
        Some(h) => {
            get(db, "host", h)?;
            assert_can_boot_here(db, vm, h)?;
            h.clone()
        }
        None => choose_host(db, vm)?,
    };
    boot(db, vm, &host, paused)?;
    let hname = db
        .get("host", &host)
        .map(|h| s(h, "name_label").to_owned())
        .unwrap_or_default();
    vm_message(db, vm, "VM_STARTED", &format!("started on host: {hname}"))
}

/// `clean_shutdown` / `hard_shutdown` / `shutdown`.
pub fn shutdown_vm(db: &mut Db, vm: &Ref, op: VmOp) -> Result<(), XapiError> {
    assert_vm_op(db, vm, op)?;
    halt(db, vm)?;
    vm_message(db, vm, "VM_SHUTDOWN", "shut down")
}

fn reboot_vm(db: &mut Db, vm: &Ref, op: VmOp) -> Result<(), XapiError> {
    assert_vm_op(db, vm, op)?;
    let r = get(db, "VM", vm)?;
    let host = rf(&r, "resident_on");
    let metrics = ensure_metrics(db, vm)?;
    set(
        db,
        "VM_metrics",
        &metrics,
        vec![("start_time", json!(now())), ("last_updated", json!(now()))],
    )?;
    set(
        db,
        "VM",
        vm,
        vec![
            ("power_state", json!("Running")),
            ("domid", json!(next_domid(db))),
        ],
    )?;
    if valid(db, "host", &host) {
        create_consoles(db, vm, &host)?;
    }
    create_guest_metrics(db, vm)?;
    update_vm_tree(db, vm)?;
    vm_message(db, vm, "VM_REBOOTED", "rebooted")
}

/// The SR for a suspend image: VM.suspend_SR, pool.suspend_image_SR, host.suspend_image_sr, pool.default_SR.
fn suspend_sr(db: &Db, vm: &Ref) -> Result<Ref, XapiError> {
    let r = db.record("VM", vm)?;
    let pool = db.get("pool", &pool_ref(db));
    let host = db.get("host", &rf(r, "resident_on"));
    let candidates = [
        Some(rf(r, "suspend_SR")),
        pool.map(|p| rf(p, "suspend_image_SR")),
        host.map(|h| rf(h, "suspend_image_sr")),
        pool.map(|p| rf(p, "default_SR")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|sr| valid(db, "SR", sr))
        .ok_or_else(|| XapiError::new("VM_NO_SUSPEND_SR", [vm.0.clone()]))
}

/// Write a suspend image for the VM and return it.
pub fn write_suspend_image(db: &mut Db, vm: &Ref) -> Result<Ref, XapiError> {
    let sr = suspend_sr(db, vm)?;
    let r = get(db, "VM", vm)?;
    let size = i(&r, "memory_static_max").saturating_add(2 * 1024 * 1024);
    create_vdi(
        db,
        rec([
            ("SR", jr(&sr)),
            ("name_label", json!("Suspend image")),
            (
                "name_description",
                json!(format!("Suspend image of VM '{}'", s(&r, "name_label"))),
            ),
            ("virtual_size", json!(size)),
            ("physical_utilisation", json!(size)),
            ("type", json!("suspend")),
            ("sharable", json!(false)),
            ("read_only", json!(false)),
            ("other_config", json!({})),
        ]),
    )
}

fn suspend_vm(db: &mut Db, vm: &Ref) -> Result<(), XapiError> {
    assert_vm_op(db, vm, VmOp::suspend)?;
    let vdi = write_suspend_image(db, vm)?;
    db.set_field("VM", vm, "suspend_VDI", jr(&vdi))?;
    unboot(db, vm, PowerState::Suspended)?;
    vm_message(db, vm, "VM_SUSPENDED", "suspended")
}

fn resume_vm(db: &mut Db, vm: &Ref, host: Option<&Ref>, paused: bool) -> Result<(), XapiError> {
    let op = if host.is_some() {
        VmOp::resume_on
    } else {
        VmOp::resume
    };
    assert_vm_op(db, vm, op)?;
    let host = match host {
        Some(h) => {
            get(db, "host", h)?;
            assert_can_boot_here(db, vm, h)?;
            h.clone()
        }
        None => choose_host(db, vm)?,
    };
    let svdi = rf(db.record("VM", vm)?, "suspend_VDI");
    boot(db, vm, &host, paused)?;
    db.set_field("VM", vm, "suspend_VDI", json!(Ref::NULL_STR))?;
    if valid(db, "VDI", &svdi) {
        destroy_vdi(db, &svdi)?;
    }
    vm_message(db, vm, "VM_RESUMED", "resumed")
}

fn set_paused(db: &mut Db, vm: &Ref, op: VmOp) -> Result<(), XapiError> {
    assert_vm_op(db, vm, op)?;
    let (state, msg, what) = if op == VmOp::pause {
        ("Paused", "VM_PAUSED", "paused")
    } else {
        ("Running", "VM_UNPAUSED", "unpaused")
    };
    db.set_field("VM", vm, "power_state", json!(state))?;
    update_vm_tree(db, vm)?;
    vm_message(db, vm, msg, what)
}

/// `pool_migrate`: move a running VM's domain to `host`.
pub fn migrate_vm(db: &mut Db, vm: &Ref, host: &Ref) -> Result<(), XapiError> {
    assert_vm_op(db, vm, VmOp::pool_migrate)?;
    move_domain(db, vm, host)
}

/// Move a live VM's domain to `host` (no operation check; `assert_can_boot_here` when the host changes).
pub fn move_domain(db: &mut Db, vm: &Ref, host: &Ref) -> Result<(), XapiError> {
    get(db, "host", host)?;
    let from = rf(db.record("VM", vm)?, "resident_on");
    if from != *host {
        assert_can_boot_here(db, vm, host)?;
    }
    set(
        db,
        "VM",
        vm,
        vec![("resident_on", jr(host)), ("domid", json!(next_domid(db)))],
    )?;
    create_consoles(db, vm, host)?;
    update_host_memory(db, host)?;
    if valid(db, "host", &from) && from != *host {
        update_host_memory(db, &from)?;
    }
    update_vm_tree(db, vm)
}

/// `VM.destroy`: VBDs, VIFs, consoles, metrics and guest metrics go; VDIs stay (except a suspend image).
pub fn destroy_vm(db: &mut Db, vm: &Ref) -> Result<(), XapiError> {
    assert_vm_op(db, vm, VmOp::destroy)?;
    let r = get(db, "VM", vm)?;
    for vbd in refs(&r, "VBDs") {
        if db.exists("VBD", &vbd) {
            let vdi = db
                .get("VBD", &vbd)
                .map(|v| rf(v, "VDI"))
                .unwrap_or_else(Ref::null);
            super::vbd::destroy_vbd(db, &vbd)?;
            if valid(db, "VDI", &vdi) {
                super::allowed::update_vdi(db, &vdi)?;
            }
        }
    }
    for vif in refs(&r, "VIFs") {
        if db.exists("VIF", &vif) {
            super::vif::destroy_vif(db, &vif)?;
        }
    }
    destroy_consoles(db, vm)?;
    destroy_guest_metrics(db, vm)?;
    let svdi = rf(&r, "suspend_VDI");
    let metrics = rf(&r, "metrics");
    db.destroy("VM", vm)?;
    if valid(db, "VM_metrics", &metrics) {
        db.destroy("VM_metrics", &metrics)?;
    }
    if valid(db, "VDI", &svdi) {
        destroy_vdi(db, &svdi)?;
    }
    Ok(())
}

/// `VM.create`: the generated constructor plus what XAPI adds (Halted, domid −1, metrics, mac_seed,
/// allowed_operations).
pub fn create_vm(db: &mut Db, mut r: Record) -> Result<Ref, XapiError> {
    let mut oc = r
        .get("other_config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    oc.entry("mac_seed")
        .or_insert_with(|| json!(Db::new_uuid()));
    r.insert("other_config".into(), Value::Object(oc));
    r.insert("power_state".into(), json!("Halted"));
    r.insert("domid".into(), json!(-1));
    let vm = db.insert("VM", r)?;
    ensure_metrics(db, &vm)?;
    update_vm_tree(db, &vm)?;
    Ok(vm)
}

fn create(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let r = constructor_record("VM", p.into_iter().next().unwrap_or(Value::Null))?;
    ctx.pool.write(|db| create_vm(db, r)).map(|r| jr(&r))
}

fn vm_param(ctx: &Ctx, p: &[Value]) -> Result<Ref, XapiError> {
    Params::new(&ctx.method, p).r(0)
}

/// Runs `f` on the VM named by the first param inside one DB write; the message answers void.
fn on_vm<T>(
    ctx: &Ctx,
    p: &[Value],
    f: impl FnOnce(&mut Db, &Ref) -> Result<T, XapiError>,
) -> Result<Value, XapiError> {
    let vm = vm_param(ctx, p)?;
    ctx.pool.write(|db| f(db, &vm)).map(|_| void())
}

fn destroy(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    on_vm(ctx, &p, destroy_vm)
}

fn start(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vm = pp.r(0)?;
    let paused = pp.b_or(1, false)?;
    ctx.pool
        .write(|db| start_vm(db, &vm, None, paused))
        .map(|_| void())
}

fn start_on(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vm = pp.r(0)?;
    let host = pp.r(1)?;
    let paused = pp.b_or(2, false)?;
    ctx.pool
        .write(|db| start_vm(db, &vm, Some(&host), paused))
        .map(|_| void())
}

fn clean_shutdown(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    on_vm(ctx, &p, |db, vm| shutdown_vm(db, vm, VmOp::clean_shutdown))
}

fn hard_shutdown(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    on_vm(ctx, &p, |db, vm| shutdown_vm(db, vm, VmOp::hard_shutdown))
}

fn shutdown(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    on_vm(ctx, &p, |db, vm| shutdown_vm(db, vm, VmOp::shutdown))
}

fn clean_reboot(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    on_vm(ctx, &p, |db, vm| reboot_vm(db, vm, VmOp::clean_reboot))
}

fn hard_reboot(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    on_vm(ctx, &p, |db, vm| reboot_vm(db, vm, VmOp::hard_reboot))
}

fn suspend(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    on_vm(ctx, &p, suspend_vm)
}

fn resume(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vm = pp.r(0)?;
    let paused = pp.b_or(1, false)?;
    ctx.pool
        .write(|db| resume_vm(db, &vm, None, paused))
        .map(|_| void())
}

fn resume_on(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vm = pp.r(0)?;
    let host = pp.r(1)?;
    let paused = pp.b_or(2, false)?;
    ctx.pool
        .write(|db| resume_vm(db, &vm, Some(&host), paused))
        .map(|_| void())
}

fn pause(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    on_vm(ctx, &p, |db, vm| set_paused(db, vm, VmOp::pause))
}

fn unpause(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    on_vm(ctx, &p, |db, vm| set_paused(db, vm, VmOp::unpause))
}

fn power_state_reset(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let vm = vm_param(ctx, &p)?;
    ctx.pool
        .write(|db| {
            assert_vm_op(db, &vm, VmOp::power_state_reset)?;
            if power(db, &vm) == PowerState::Suspended {
                // XAPI forgets the suspend image reference but leaves the VDI.
                db.set_field("VM", &vm, "suspend_VDI", json!(Ref::NULL_STR))?;
            }
            unboot(db, &vm, PowerState::Halted)
        })
        .map(|_| void())
}

fn pool_migrate(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vm = pp.r(0)?;
    let host = pp.r(1)?;
    ctx.pool
        .write(|db| {
            migrate_vm(db, &vm, &host)?;
            update_host(db, &host)
        })
        .map(|_| void())
}

/// Is the VM a running (or paused) guest, not a control domain?
pub fn is_live_guest(db: &Db, vm: &Ref) -> bool {
    db.get("VM", vm).is_some_and(|r| !b(r, "is_control_domain")) && power(db, vm).is_live()
}

#[cfg(test)]
mod tests {
    use super::{ip_for_mac, link_local};

    #[test]
    fn guest_addresses() {
        assert_eq!(link_local("02:16:3e:00:00:01"), "fe80::16:3eff:fe00:1");
        assert_eq!(link_local("bad"), "fe80::1");
        let ip = ip_for_mac("aa:bb:cc:dd:ee:ff");
        assert!(ip.starts_with("10."));
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok());
    }
}
