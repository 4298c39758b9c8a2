//! Micro-benchmark: 10,000 synthetic VMs (with VM_metrics, VM_guest_metrics, 2 VBDs, a VDI, a VIF each)
//! loaded with `Store::apply_reset`, then a no-op reset, then incremental metric changes. Prints times and
//! resident memory (Linux `/proc/self/status`). Run: `cargo run --release -p xo-cache --example bench_transform [N]`.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{json, Value};
use xo_cache::{ChangeOp, ObjectChange, RawRecord, Store};

fn obj(v: Value) -> RawRecord {
    match v {
        Value::Object(m) => RawRecord::from_map(&m),
        _ => unreachable!("json! object"),
    }
}

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn uuid(kind: u32, n: usize) -> String {
    format!("{kind:08x}-0000-4000-8000-{n:012x}")
}

fn build(n_vms: usize) -> HashMap<String, Vec<(String, RawRecord)>> {
    let mut recs: HashMap<String, Vec<(String, RawRecord)>> = HashMap::new();
    let mut add = |class: &str, r: String, v: Value| {
        recs.entry(class.to_owned()).or_default().push((r, obj(v)))
    };
    let hosts: Vec<String> = (0..3).map(|h| format!("OpaqueRef:host-{h}")).collect();
    add(
        "pool",
        "OpaqueRef:pool".into(),
        json!({"uuid": uuid(1, 0), "name_label": "bench", "name_description": "", "master": hosts[0],
               "default_SR": "OpaqueRef:sr", "suspend_image_SR": "OpaqueRef:sr", "crash_dump_SR": "OpaqueRef:NULL",
               "other_config": {}, "ha_enabled": false, "ha_statefiles": [], "tags": [], "current_operations": {},
               "restrictions": {"restrict_zstd_export": "false"}, "cpu_info": {"cpu_count": "48", "socket_count": "6"}}),
    );
    for (h, r) in hosts.iter().enumerate() {
        add(
            "host",
            r.clone(),
            json!({"uuid": uuid(2, h), "name_label": format!("host-{h}"), "name_description": "",
            "enabled": true, "metrics": format!("OpaqueRef:hm-{h}"), "software_version": {"product_brand": "XCP-ng",
            "product_version": "8.3.0", "platform_version": "3.4.0"}, "other_config": {"boot_time": "1731899000."},
            "capabilities": ["hvm-3.0-x86_64"], "cpu_info": {"cpu_count": "16", "socket_count": "2"}, "license_params": {},
            "chipset_info": {}, "PIFs": [], "PBDs": [format!("OpaqueRef:pbd-{h}")], "PCIs": [], "PGPUs": [],
            "resident_VMs": [], "patches": [], "updates": [], "tags": [], "control_domain": "OpaqueRef:NULL"}),
        );
        add(
            "host_metrics",
            format!("OpaqueRef:hm-{h}"),
            json!({"uuid": uuid(3, h), "memory_total": 274877906944_i64,
            "memory_free": 100000000000_i64, "live": true}),
        );
        add(
            "PBD",
            format!("OpaqueRef:pbd-{h}"),
            json!({"uuid": uuid(4, h), "host": r, "SR": "OpaqueRef:sr",
            "device_config": {"server": "10.0.0.2", "serverpath": "/vms"}, "currently_attached": true, "other_config": {}}),
        );
    }
    add(
        "network",
        "OpaqueRef:net".into(),
        json!({"uuid": uuid(5, 0), "name_label": "xenbr0", "name_description": "",
        "bridge": "xenbr0", "MTU": 1500, "other_config": {}, "tags": [], "PIFs": [], "VIFs": [], "current_operations": {},
        "default_locking_mode": "unlocked", "purpose": []}),
    );
    let mut sr_vdis = Vec::with_capacity(n_vms);
    for i in 0..n_vms {
        let vm = format!("OpaqueRef:vm-{i}");
        let host = &hosts[i % 3];
        let running = i % 2 == 0;
        add(
            "VM",
            vm.clone(),
            json!({"uuid": uuid(10, i), "name_label": format!("vm-{i}"), "name_description": "bench VM",
            "power_state": if running { "Running" } else { "Halted" }, "resident_on": if running { host.as_str() } else { "OpaqueRef:NULL" },
            "affinity": "OpaqueRef:NULL", "is_a_template": false, "is_a_snapshot": false, "is_control_domain": false,
            "memory_static_max": 4294967296_i64, "memory_dynamic_max": 4294967296_i64, "memory_dynamic_min": 2147483648_i64,
            "memory_static_min": 1073741824, "VCPUs_max": 4, "VCPUs_at_startup": 2, "VCPUs_params": {"weight": "256"},
            "HVM_boot_policy": "BIOS order", "HVM_boot_params": {"order": "cd", "firmware": "bios"}, "domain_type": "hvm",
            "platform": {"viridian": "true", "cores-per-socket": "2"}, "other_config": {"auto_poweron": "false"},
            "metrics": format!("OpaqueRef:vmm-{i}"), "guest_metrics": if running { format!("OpaqueRef:vmgm-{i}") } else { "OpaqueRef:NULL".to_owned() },
            "VBDs": [format!("OpaqueRef:vbd-{i}-0"), format!("OpaqueRef:vbd-{i}-3")], "VIFs": [format!("OpaqueRef:vif-{i}")],
            "VTPMs": [], "VGPUs": [], "snapshots": [], "parent": "OpaqueRef:NULL", "tags": ["bench", format!("group-{}", i % 10)],
            "current_operations": {}, "blocked_operations": {}, "bios_strings": {}, "xenstore_data": {}, "start_delay": 0,
            "ha_restart_priority": "", "has_vendor_device": false, "recommendations": "", "suspend_SR": "OpaqueRef:NULL"}),
        );
        add(
            "VM_metrics",
            format!("OpaqueRef:vmm-{i}"),
            json!({"uuid": uuid(11, i), "memory_actual": 4294967296_i64,
            "VCPUs_number": 2, "start_time": "20241120T08:30:00Z", "install_time": "20241118T03:00:00Z"}),
        );
        if running {
            add(
                "VM_guest_metrics",
                format!("OpaqueRef:vmgm-{i}"),
                json!({"uuid": uuid(12, i),
                "os_version": {"name": "Debian 12", "distro": "debian"}, "PV_drivers_version": {"major": "8", "minor": "4", "micro": "0", "build": "1"},
                "PV_drivers_detected": true, "PV_drivers_up_to_date": true, "other": {},
                "networks": {"0/ipv4/0": format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)}}),
            );
        }
        add(
            "VBD",
            format!("OpaqueRef:vbd-{i}-0"),
            json!({"uuid": uuid(13, i), "VM": vm, "VDI": format!("OpaqueRef:vdi-{i}"),
            "device": "xvda", "userdevice": "0", "bootable": true, "mode": "RW", "type": "Disk", "currently_attached": running}),
        );
        add(
            "VBD",
            format!("OpaqueRef:vbd-{i}-3"),
            json!({"uuid": uuid(14, i), "VM": vm, "VDI": "OpaqueRef:NULL",
            "device": "", "userdevice": "3", "bootable": false, "mode": "RO", "type": "CD", "currently_attached": false}),
        );
        add(
            "VDI",
            format!("OpaqueRef:vdi-{i}"),
            json!({"uuid": uuid(15, i), "name_label": format!("vm-{i} disk"), "name_description": "",
            "SR": "OpaqueRef:sr", "VBDs": [format!("OpaqueRef:vbd-{i}-0")], "virtual_size": 21474836480_i64, "physical_utilisation": 5368709120_i64,
            "type": "user", "managed": true, "missing": false, "is_a_snapshot": false, "snapshots": [], "tags": [],
            "sm_config": {"vdi_type": "vhd"}, "other_config": {}, "current_operations": {}, "cbt_enabled": false}),
        );
        add(
            "VIF",
            format!("OpaqueRef:vif-{i}"),
            json!({"uuid": uuid(16, i), "VM": vm, "network": "OpaqueRef:net", "device": "0",
            "MAC": format!("02:00:00:{:02x}:{:02x}:{:02x}", i / 65536, (i / 256) % 256, i % 256), "MTU": 1500,
            "currently_attached": running, "locking_mode": "network_default", "ipv4_allowed": [], "ipv6_allowed": [],
            "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}),
        );
        sr_vdis.push(Value::String(format!("OpaqueRef:vdi-{i}")));
    }
    add(
        "SR",
        "OpaqueRef:sr".into(),
        json!({"uuid": uuid(6, 0), "name_label": "NFS", "name_description": "", "type": "nfs",
        "content_type": "", "shared": true, "PBDs": ["OpaqueRef:pbd-0", "OpaqueRef:pbd-1", "OpaqueRef:pbd-2"], "VDIs": sr_vdis,
        "physical_size": 10995116277760_i64, "physical_utilisation": 1099511627776_i64, "virtual_allocation": 2199023255552_i64,
        "other_config": {}, "sm_config": {}, "tags": [], "current_operations": {}}),
    );
    recs
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let rss0 = rss_kib();
    let t = Instant::now();
    let records = build(n);
    let n_records: usize = records.values().map(Vec::len).sum();
    let build_time = t.elapsed();
    let rss1 = rss_kib();

    let store = Store::default();
    store.register_pool("bench");
    let mut sub = store.subscribe();
    let t = Instant::now();
    let batch = store
        .apply_reset("bench", records)
        .expect("reset")
        .expect("batch");
    let reset_time = t.elapsed();
    let rss2 = rss_kib();
    let t = Instant::now();
    let notif = batch.enter_notification().expect("enter");
    let notif_time = t.elapsed();
    let _ = sub.try_recv();

    let t = Instant::now();
    let again = store.apply_reset("bench", build(n)).expect("reset");
    let noop_reset_time = t.elapsed();

    let changes: Vec<ObjectChange> = (0..n)
        .step_by(2)
        .map(|i| ObjectChange {
            class: "VM_metrics".into(),
            r#ref: format!("OpaqueRef:vmm-{i}"),
            op: ChangeOp::Mod,
            snapshot: Some(obj(
                json!({"uuid": uuid(11, i), "memory_actual": 4294967296_i64, "VCPUs_number": 3,
                "start_time": "20241120T08:30:00Z", "install_time": "20241118T03:00:00Z"}),
            )),
        })
        .collect();
    let n_changes = changes.len();
    let t = Instant::now();
    let inc = store.apply_changes("bench", changes).expect("changes");
    let inc_time = t.elapsed();

    // A usage change of the shared SR that every halted VM's `$container` walks through.
    let sr_rec = obj(
        json!({"uuid": uuid(6, 0), "name_label": "NFS", "name_description": "", "type": "nfs",
        "content_type": "", "shared": true, "PBDs": ["OpaqueRef:pbd-0", "OpaqueRef:pbd-1", "OpaqueRef:pbd-2"],
        "VDIs": (0..n).map(|i| format!("OpaqueRef:vdi-{i}")).collect::<Vec<_>>(),
        "physical_size": 10995116277760_i64, "physical_utilisation": 1099511627777_i64, "virtual_allocation": 2199023255552_i64,
        "other_config": {}, "sm_config": {}, "tags": [], "current_operations": {}}),
    );
    let t = Instant::now();
    let sr_batch = store
        .apply_changes(
            "bench",
            vec![ObjectChange {
                class: "SR".into(),
                r#ref: "OpaqueRef:sr".into(),
                op: ChangeOp::Mod,
                snapshot: Some(sr_rec),
            }],
        )
        .expect("changes");
    let sr_time = t.elapsed();

    let kib = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.1} MiB", (b as f64 - a as f64) / 1024.0),
        _ => "n/a".into(),
    };
    println!(
        "VMs: {n}, XAPI records: {n_records}, XO objects: {}",
        store.len()
    );
    println!(
        "build records:               {build_time:?} (RSS +{})",
        kib(rss0, rss1)
    );
    println!(
        "apply_reset (first load):    {reset_time:?} (RSS +{} for store)",
        kib(rss1, rss2)
    );
    println!("  per VM:                    {:?}", reset_time / n as u32);
    println!(
        "enter notification ({:.1} MiB): {notif_time:?}",
        notif.len() as f64 / 1048576.0
    );
    println!(
        "apply_reset (identical):     {noop_reset_time:?} (batch: {})",
        if again.is_some() { "some" } else { "none" }
    );
    println!(
        "apply_changes ({n_changes} VM_metrics mods → {} VMs re-derived and published): {inc_time:?}",
        inc.map_or(0, |b| b.enter.len())
    );
    println!(
        "apply_changes (1 SR usage mod; {} halted VMs walk through it): {sr_time:?}, {} object(s) published",
        n / 2,
        sr_batch.map_or(0, |b| b.enter.len())
    );
    println!(
        "RSS total: {}",
        rss_kib().map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
    );
}
