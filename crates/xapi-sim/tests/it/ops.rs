//! Integration tests of the explicit XAPI operations, driven in-process through the dispatcher
//! (`Sim::call`, the same path as the HTTP server) with a real session.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use xapi_sim::Sim;
use xapi_types::XapiError;

const GIB: i64 = 1024 * 1024 * 1024;
const MIB: i64 = 1024 * 1024;

struct T {
    sim: Sim,
    s: String,
}

impl T {
    fn new(hosts: usize) -> T {
        let sim = Sim::builder().hosts(hosts).build().expect("build");
        sim.state()
            .write(xapi_sim::ops::allowed::refresh_all)
            .expect("refresh");
        let s = sim
            .call(
                "session.login_with_password",
                vec![json!("root"), json!("root"), json!("1.0"), json!("test")],
            )
            .expect("login");
        let s = s.as_str().unwrap().to_owned();
        T { sim, s }
    }

    fn try_call(&self, method: &str, args: Vec<Value>) -> Result<Value, XapiError> {
        let mut p = vec![json!(self.s)];
        p.extend(args);
        self.sim.call(method, p)
    }

    fn call(&self, method: &str, args: Vec<Value>) -> Value {
        self.try_call(method, args)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// Call expecting failure; returns `[code, params…]`.
    fn fail(&self, method: &str, args: Vec<Value>) -> Vec<String> {
        match self.try_call(method, args) {
            Ok(v) => panic!("{method} unexpectedly succeeded: {v}"),
            Err(e) => e.to_description(),
        }
    }

    fn rec(&self, class: &str, r: &str) -> Value {
        self.call(&format!("{class}.get_record"), vec![json!(r)])
    }

    fn field(&self, class: &str, r: &str, f: &str) -> Value {
        self.rec(class, r)[f].clone()
    }

    fn str_field(&self, class: &str, r: &str, f: &str) -> String {
        self.field(class, r, f)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn exists(&self, class: &str, r: &str) -> bool {
        self.try_call(&format!("{class}.get_record"), vec![json!(r)])
            .is_ok()
    }

    fn pool(&self) -> String {
        self.call("pool.get_all", vec![])[0]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn default_sr(&self) -> String {
        self.str_field("pool", &self.pool(), "default_SR")
    }

    fn hosts(&self) -> Vec<String> {
        let mut hs: Vec<(String, String)> = self
            .call("host.get_all_records", vec![])
            .as_object()
            .unwrap()
            .iter()
            .map(|(r, h)| (h["address"].as_str().unwrap().to_owned(), r.clone()))
            .collect();
        hs.sort();
        hs.into_iter().map(|(_, r)| r).collect()
    }

    fn net(&self) -> String {
        let all = self.call("network.get_all_records", vec![]);
        all.as_object()
            .unwrap()
            .iter()
            .find(|(_, n)| !n["PIFs"].as_array().unwrap().is_empty())
            .map(|(r, _)| r.clone())
            .expect("a network with PIFs")
    }

    fn host_free(&self, host: &str) -> i64 {
        let m = self.str_field("host", host, "metrics");
        self.field("host_metrics", &m, "memory_free")
            .as_i64()
            .unwrap()
    }

    fn ops(&self, class: &str, r: &str) -> Vec<String> {
        self.field(class, r, "allowed_operations")
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    fn messages_named(&self, name: &str, uuid: &str) -> usize {
        let all = self.call("message.get_all_records", vec![]);
        all.as_object()
            .unwrap()
            .values()
            .filter(|m| m["name"] == name && m["obj_uuid"] == uuid)
            .count()
    }

    fn new_vdi(&self, sr: &str, size: i64) -> String {
        self.call(
            "VDI.create",
            vec![
                json!({"name_label": "disk", "SR": sr, "virtual_size": size, "type": "user",
                        "sharable": false, "read_only": false, "other_config": {}}),
            ],
        )
        .as_str()
        .unwrap()
        .to_owned()
    }

    fn new_vbd(
        &self,
        vm: &str,
        vdi: &str,
        dev: &str,
        ty: &str,
        mode: &str,
        empty: bool,
    ) -> Result<Value, XapiError> {
        self.try_call(
            "VBD.create",
            vec![json!({"VM": vm, "VDI": vdi, "userdevice": dev, "bootable": dev == "0", "mode": mode, "type": ty,
                        "empty": empty, "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})],
        )
    }

    fn new_vif(&self, vm: &str, dev: &str, mac: &str) -> Result<Value, XapiError> {
        self.try_call(
            "VIF.create",
            vec![
                json!({"device": dev, "network": self.net(), "VM": vm, "MAC": mac, "MTU": 1500,
                        "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}),
            ],
        )
    }

    /// A Halted VM with a 10 GiB disk on the default SR, an empty CD and one VIF.
    fn new_vm(&self, name: &str, mem: i64) -> String {
        let vm = self
            .call(
                "VM.create",
                vec![json!({
                    "name_label": name, "user_version": 1, "is_a_template": false, "affinity": "OpaqueRef:NULL",
                    "memory_static_max": mem, "memory_dynamic_max": mem, "memory_dynamic_min": mem,
                    "memory_static_min": 512 * MIB, "VCPUs_params": {}, "VCPUs_max": 4, "VCPUs_at_startup": 2,
                    "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
                    "actions_after_crash": "restart", "PV_bootloader": "", "PV_kernel": "", "PV_ramdisk": "",
                    "PV_args": "", "PV_bootloader_args": "", "PV_legacy_args": "", "HVM_boot_policy": "BIOS order",
                    "HVM_boot_params": {"order": "cd"}, "platform": {}, "PCI_bus": "", "other_config": {},
                    "recommendations": ""
                })],
            )
            .as_str()
            .unwrap()
            .to_owned();
        let vdi = self.new_vdi(&self.default_sr(), 10 * GIB);
        self.new_vbd(&vm, &vdi, "0", "Disk", "RW", false).unwrap();
        self.new_vbd(&vm, "OpaqueRef:NULL", "3", "CD", "RO", true)
            .unwrap();
        self.new_vif(&vm, "0", "").unwrap();
        vm
    }

    fn disk_vdi(&self, vm: &str) -> String {
        for vbd in self.field("VM", vm, "VBDs").as_array().unwrap() {
            let r = self.rec("VBD", vbd.as_str().unwrap());
            if r["type"] == "Disk" {
                return r["VDI"].as_str().unwrap().to_owned();
            }
        }
        panic!("no disk")
    }

    fn vbd_of_type(&self, vm: &str, ty: &str) -> String {
        self.field("VM", vm, "VBDs")
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .find(|v| self.str_field("VBD", v, "type") == ty)
            .unwrap()
    }

    fn wait_for(&self, what: &str, mut f: impl FnMut(&T) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn contains(v: &[String], s: &str) -> bool {
    v.iter().any(|x| x == s)
}

#[test]
fn vm_start_and_clean_shutdown_effects() {
    let t = T::new(1);
    let host = t.hosts()[0].clone();
    let vm = t.new_vm("web", 2 * GIB);
    assert!(contains(&t.ops("VM", &vm), "start"));
    assert!(!contains(&t.ops("VM", &vm), "clean_shutdown"));
    let free0 = t.host_free(&host);
    t.call("VM.start", vec![json!(vm), json!(false), json!(false)]);
    let r = t.rec("VM", &vm);
    assert_eq!(r["power_state"], "Running");
    assert_eq!(r["resident_on"], host.as_str());
    assert!(r["domid"].as_i64().unwrap() > 0);
    let ops = t.ops("VM", &vm);
    assert!(
        contains(&ops, "clean_shutdown") && contains(&ops, "suspend") && !contains(&ops, "start")
    );
    let m = t.rec("VM_metrics", r["metrics"].as_str().unwrap());
    assert_eq!(m["VCPUs_number"], 2);
    assert_eq!(m["memory_actual"], 2 * GIB);
    assert_ne!(m["start_time"], "19700101T00:00:00Z");
    let disk = t.vbd_of_type(&vm, "Disk");
    assert_eq!(t.field("VBD", &disk, "currently_attached"), true);
    assert_eq!(t.str_field("VBD", &disk, "device"), "xvda");
    let vif = r["VIFs"][0].as_str().unwrap().to_owned();
    assert_eq!(t.field("VIF", &vif, "currently_attached"), true);
    let consoles = r["consoles"].as_array().unwrap().clone();
    assert_eq!(consoles.len(), 2);
    let addr = t.str_field("host", &host, "address");
    let mut protos = Vec::new();
    for c in &consoles {
        let c = c.as_str().unwrap();
        let cr = t.rec("console", c);
        assert_eq!(cr["location"], format!("https://{addr}/console?ref={c}"));
        protos.push(cr["protocol"].as_str().unwrap().to_owned());
    }
    protos.sort();
    assert_eq!(protos, vec!["rfb", "vt100"]);
    let gm = t.rec("VM_guest_metrics", r["guest_metrics"].as_str().unwrap());
    assert!(gm["networks"]["0/ip"].as_str().unwrap().starts_with("10."));
    assert_eq!(gm["other"]["feature-shutdown"], "1");
    assert!(gm["os_version"]["name"].as_str().is_some());
    assert!(t
        .field("host", &host, "resident_VMs")
        .as_array()
        .unwrap()
        .contains(&json!(vm)));
    let overhead = r["memory_overhead"].as_i64().unwrap();
    assert_eq!(t.host_free(&host), free0 - 2 * GIB - overhead);
    let uuid = r["uuid"].as_str().unwrap().to_owned();
    assert_eq!(t.messages_named("VM_STARTED", &uuid), 1);

    let e = t.fail("VM.start", vec![json!(vm), json!(false), json!(false)]);
    assert_eq!(
        e,
        vec!["VM_BAD_POWER_STATE", vm.as_str(), "halted", "running"]
    );

    t.call("VM.clean_shutdown", vec![json!(vm)]);
    let r = t.rec("VM", &vm);
    assert_eq!(r["power_state"], "Halted");
    assert_eq!(r["resident_on"], "OpaqueRef:NULL");
    assert_eq!(r["domid"], -1);
    assert_eq!(r["guest_metrics"], "OpaqueRef:NULL");
    assert!(r["consoles"].as_array().unwrap().is_empty());
    for c in &consoles {
        assert!(!t.exists("console", c.as_str().unwrap()));
    }
    assert_eq!(t.field("VBD", &disk, "currently_attached"), false);
    assert_eq!(t.host_free(&host), free0);
    assert_eq!(t.messages_named("VM_SHUTDOWN", &uuid), 1);
    let e = t.fail("VM.clean_shutdown", vec![json!(vm)]);
    assert_eq!(e[0], "VM_BAD_POWER_STATE");
    assert_eq!(e[2], "running");
}

#[test]
fn vm_suspend_resume_pause_reboot() {
    let t = T::new(1);
    let vm = t.new_vm("app", GIB);
    let e = t.fail("VM.pause", vec![json!(vm)]);
    assert_eq!(
        e,
        vec!["VM_BAD_POWER_STATE", vm.as_str(), "running", "halted"]
    );
    t.call("VM.start", vec![json!(vm), json!(true), json!(false)]);
    assert_eq!(t.str_field("VM", &vm, "power_state"), "Paused");
    t.call("VM.unpause", vec![json!(vm)]);
    assert_eq!(t.str_field("VM", &vm, "power_state"), "Running");
    t.call("VM.pause", vec![json!(vm)]);
    assert!(contains(&t.ops("VM", &vm), "unpause"));
    t.call("VM.hard_reboot", vec![json!(vm)]);
    assert_eq!(t.str_field("VM", &vm, "power_state"), "Running");
    let d1 = t.field("VM", &vm, "domid").as_i64().unwrap();
    t.call("VM.clean_reboot", vec![json!(vm)]);
    assert!(t.field("VM", &vm, "domid").as_i64().unwrap() > d1);

    t.call("VM.suspend", vec![json!(vm)]);
    let r = t.rec("VM", &vm);
    assert_eq!(r["power_state"], "Suspended");
    assert_eq!(r["resident_on"], "OpaqueRef:NULL");
    let svdi = r["suspend_VDI"].as_str().unwrap().to_owned();
    assert_eq!(t.str_field("VDI", &svdi, "type"), "suspend");
    assert!(contains(&t.ops("VM", &vm), "resume"));
    let e = t.fail("VM.start", vec![json!(vm), json!(false), json!(false)]);
    assert_eq!(e[0], "VM_BAD_POWER_STATE");
    t.call("VM.resume", vec![json!(vm), json!(false), json!(false)]);
    let r = t.rec("VM", &vm);
    assert_eq!(r["power_state"], "Running");
    assert_eq!(r["suspend_VDI"], "OpaqueRef:NULL");
    assert!(!t.exists("VDI", &svdi));

    // suspend then hard_shutdown drops the image
    t.call("VM.suspend", vec![json!(vm)]);
    let svdi = t.str_field("VM", &vm, "suspend_VDI");
    t.call("VM.hard_shutdown", vec![json!(vm)]);
    assert_eq!(t.str_field("VM", &vm, "power_state"), "Halted");
    assert!(!t.exists("VDI", &svdi));

    // shutdown (clean with fallback) and power_state_reset
    t.call("VM.start", vec![json!(vm), json!(false), json!(false)]);
    t.call("VM.shutdown", vec![json!(vm)]);
    assert_eq!(t.str_field("VM", &vm, "power_state"), "Halted");
    t.call("VM.start", vec![json!(vm), json!(false), json!(false)]);
    t.call("VM.power_state_reset", vec![json!(vm)]);
    assert_eq!(t.str_field("VM", &vm, "power_state"), "Halted");
    t.call("VM.start", vec![json!(vm), json!(false), json!(false)]);
    t.call("VM.suspend", vec![json!(vm)]);
    let host = t.hosts()[0].clone();
    t.call(
        "VM.resume_on",
        vec![json!(vm), json!(host), json!(false), json!(false)],
    );
    assert_eq!(t.str_field("VM", &vm, "resident_on"), host);
}

#[test]
fn resume_on_requires_suspended() {
    let t = T::new(1);
    let vm = t.new_vm("x", GIB);
    let host = t.hosts()[0].clone();
    let e = t.fail(
        "VM.resume_on",
        vec![json!(vm), json!(host), json!(false), json!(false)],
    );
    assert_eq!(
        e,
        vec!["VM_BAD_POWER_STATE", vm.as_str(), "suspended", "halted"]
    );
}

#[test]
fn blocked_operations_and_templates() {
    let t = T::new(1);
    let vm = t.new_vm("blocked", GIB);
    t.call(
        "VM.add_to_blocked_operations",
        vec![json!(vm), json!("start"), json!("maintenance")],
    );
    assert!(!contains(&t.ops("VM", &vm), "start"));
    let e = t.fail("VM.start", vec![json!(vm), json!(false), json!(false)]);
    assert_eq!(e, vec!["OPERATION_BLOCKED", vm.as_str(), "maintenance"]);
    let e = t.fail(
        "VM.add_to_blocked_operations",
        vec![json!(vm), json!("start"), json!("again")],
    );
    assert_eq!(e[0], "MAP_DUPLICATE_KEY");
    t.call(
        "VM.remove_from_blocked_operations",
        vec![json!(vm), json!("start")],
    );
    assert!(contains(&t.ops("VM", &vm), "start"));

    t.call("VM.set_is_a_template", vec![json!(vm), json!(true)]);
    let e = t.fail("VM.start", vec![json!(vm), json!(false), json!(false)]);
    assert_eq!(e, vec!["VM_IS_TEMPLATE", vm.as_str(), "start"]);
    let ops = t.ops("VM", &vm);
    assert!(contains(&ops, "clone") && !contains(&ops, "start"));
    let e = t.fail("VM.revert", vec![json!(vm)]);
    assert_eq!(e[0], "VM_IS_TEMPLATE");
    let clone = t.call("VM.clone", vec![json!(vm), json!("from template")]);
    let clone = clone.as_str().unwrap();
    assert_eq!(t.field("VM", clone, "is_a_template"), true);
    t.call("VM.set_is_a_template", vec![json!(clone), json!(false)]);
    t.call("VM.start", vec![json!(clone), json!(false), json!(false)]);
    let e = t.fail("VM.set_is_a_template", vec![json!(clone), json!(true)]);
    assert_eq!(e[0], "VM_BAD_POWER_STATE");
    let e = t.fail("VM.revert", vec![json!(clone)]);
    assert_eq!(e, vec!["ONLY_REVERT_SNAPSHOT"]);
}

#[test]
fn snapshot_revert_and_checkpoint() {
    let t = T::new(1);
    let vm = t.new_vm("db", GIB);
    let disk = t.disk_vdi(&vm);
    let snap = t
        .call("VM.snapshot", vec![json!(vm), json!("snap1")])
        .as_str()
        .unwrap()
        .to_owned();
    let s = t.rec("VM", &snap);
    assert_eq!(s["is_a_snapshot"], true);
    assert_eq!(s["is_a_template"], true);
    assert_eq!(s["snapshot_of"], vm.as_str());
    assert_eq!(s["snapshot_info"]["power-state-at-snapshot"], "Halted");
    assert_ne!(s["snapshot_time"], "19700101T00:00:00Z");
    assert_eq!(t.str_field("VM", &vm, "parent"), snap);
    assert!(t
        .field("VM", &vm, "snapshots")
        .as_array()
        .unwrap()
        .contains(&json!(snap)));
    let sdisk = t.disk_vdi(&snap);
    assert_ne!(sdisk, disk);
    assert_eq!(t.field("VDI", &sdisk, "is_a_snapshot"), true);
    assert_eq!(t.str_field("VDI", &sdisk, "snapshot_of"), disk);
    // snapshots keep MACs
    let mac = |v: &str| t.str_field("VIF", t.field("VM", v, "VIFs")[0].as_str().unwrap(), "MAC");
    assert_eq!(mac(&snap), mac(&vm));
    let e = t.fail("VM.start", vec![json!(snap), json!(false), json!(false)]);
    assert_eq!(e, vec!["VM_IS_SNAPSHOT", snap.as_str(), "start"]);
    let sops = t.ops("VM", &snap);
    assert!(contains(&sops, "revert") && contains(&sops, "destroy") && !contains(&sops, "start"));

    // ignore_vdis leaves the disk out
    let snap2 = t
        .call(
            "VM.snapshot",
            vec![json!(vm), json!("nodisk"), json!([disk])],
        )
        .as_str()
        .unwrap()
        .to_owned();
    let types: Vec<String> = t
        .field("VM", &snap2, "VBDs")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| t.str_field("VBD", v.as_str().unwrap(), "type"))
        .collect();
    assert_eq!(types, vec!["CD"]);

    // revert: the VM gets a fresh clone of the snapshot's disk; its old disk is gone
    t.call(
        "VM.set_memory_limits",
        vec![
            json!(vm),
            json!(512 * MIB),
            json!(2 * GIB),
            json!(2 * GIB),
            json!(2 * GIB),
        ],
    );
    t.call("VM.start", vec![json!(vm), json!(false), json!(false)]);
    t.call("VM.revert", vec![json!(snap)]);
    let r = t.rec("VM", &vm);
    assert_eq!(r["power_state"], "Halted");
    assert_eq!(r["memory_static_max"], GIB);
    assert_eq!(r["parent"], snap.as_str());
    let newdisk = t.disk_vdi(&vm);
    assert_ne!(newdisk, disk);
    assert!(!t.exists("VDI", &disk));
    assert!(t.exists("VDI", &sdisk));

    // checkpoint: running VM, result Suspended with a memory image
    t.call("VM.start", vec![json!(vm), json!(false), json!(false)]);
    let cp = t
        .call("VM.checkpoint", vec![json!(vm), json!("cp")])
        .as_str()
        .unwrap()
        .to_owned();
    let c = t.rec("VM", &cp);
    assert_eq!(c["power_state"], "Suspended");
    assert_eq!(c["snapshot_info"]["power-state-at-snapshot"], "Running");
    assert_eq!(
        t.str_field("VDI", c["suspend_VDI"].as_str().unwrap(), "type"),
        "suspend"
    );
    assert_eq!(t.str_field("VM", &vm, "power_state"), "Running");
    t.call("VM.revert", vec![json!(cp)]);
    assert_eq!(t.str_field("VM", &vm, "power_state"), "Suspended");
    t.call("VM.resume", vec![json!(vm), json!(false), json!(false)]);
    let e = t.fail("VM.checkpoint", vec![json!(snap), json!("x")]);
    assert_eq!(e[0], "VM_BAD_POWER_STATE");
}

#[test]
fn clone_copy_and_sr_accounting() {
    let t = T::new(1);
    let sr = t.default_sr();
    let vm = t.new_vm("src", GIB);
    let disk = t.disk_vdi(&vm);
    let va0 = t.field("SR", &sr, "virtual_allocation").as_i64().unwrap();
    let clone = t
        .call("VM.clone", vec![json!(vm), json!("c1")])
        .as_str()
        .unwrap()
        .to_owned();
    let c = t.rec("VM", &clone);
    assert_eq!(c["power_state"], "Halted");
    assert_eq!(c["is_a_template"], false);
    assert_eq!(c["name_label"], "c1");
    assert_eq!(c["parent"], vm.as_str());
    assert_ne!(
        c["other_config"]["mac_seed"],
        t.field("VM", &vm, "other_config")["mac_seed"]
    );
    assert_eq!(c["VBDs"].as_array().unwrap().len(), 2);
    let cdisk = t.disk_vdi(&clone);
    assert_ne!(cdisk, disk);
    assert_eq!(t.str_field("VDI", &cdisk, "SR"), sr);
    assert_eq!(
        t.field("SR", &sr, "virtual_allocation").as_i64().unwrap(),
        va0 + 10 * GIB
    );
    let mac = |v: &str| t.str_field("VIF", t.field("VM", v, "VIFs")[0].as_str().unwrap(), "MAC");
    assert_ne!(mac(&clone), mac(&vm));
    assert!(contains(&t.ops("VM", &clone), "start"));

    // copy to another SR with room
    let srs = t.call("SR.get_all_records", vec![]);
    let other = srs
        .as_object()
        .unwrap()
        .iter()
        .find(|(r, s)| {
            **r != sr
                && s["content_type"] == "user"
                && s["physical_size"].as_i64().unwrap_or(0) > 20 * GIB
        })
        .map(|(r, _)| r.clone());
    if let Some(other) = other {
        let cp = t
            .call("VM.copy", vec![json!(vm), json!("cp"), json!(other)])
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(t.str_field("VDI", &t.disk_vdi(&cp), "SR"), other);
    }
    let cp2 = t
        .call(
            "VM.copy",
            vec![json!(vm), json!("cp2"), json!("OpaqueRef:NULL")],
        )
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(t.str_field("VDI", &t.disk_vdi(&cp2), "SR"), sr);

    // SR_FULL: give the disk real data, shrink the SR to what it uses
    t.sim.state().write(|db| {
        db.set_field(
            "VDI",
            &xapi_types::Ref::from(disk.as_str()),
            "physical_utilisation",
            json!(5 * GIB),
        )
        .unwrap();
        xapi_sim::ops::sr::scan_sr(db, &xapi_types::Ref::from(sr.as_str())).unwrap();
    });
    let used = t.field("SR", &sr, "physical_utilisation").as_i64().unwrap();
    t.call("SR.set_physical_size", vec![json!(sr), json!(used)]);
    let before = t.call("VM.get_all", vec![]).as_array().unwrap().len();
    let e = t.fail("VM.copy", vec![json!(vm), json!("nospace"), json!(sr)]);
    assert_eq!(e[0], "SR_FULL");
    assert_eq!(
        t.call("VM.get_all", vec![]).as_array().unwrap().len(),
        before
    );
    // thick (LVM) SRs allocate the whole virtual size at create
    t.sim.state().write(|db| {
        db.set_field(
            "SR",
            &xapi_types::Ref::from(sr.as_str()),
            "type",
            json!("lvm"),
        )
        .unwrap()
    });
    let e = t.fail(
        "VDI.create",
        vec![
            json!({"SR": sr, "virtual_size": GIB, "type": "user", "sharable": false,
        "read_only": false, "other_config": {}}),
        ],
    );
    assert_eq!(
        e,
        vec!["SR_FULL".to_owned(), GIB.to_string(), "0".to_owned()]
    );
    let e = t.fail("SR.set_physical_size", vec![json!(sr), json!(used - 1)]);
    assert_eq!(e[0], "SR_FULL");

    // running VMs cannot be cloned
    t.call("VM.start", vec![json!(vm), json!(false), json!(false)]);
    let e = t.fail("VM.clone", vec![json!(vm), json!("x")]);
    assert_eq!(
        e,
        vec!["VM_BAD_POWER_STATE", vm.as_str(), "halted", "running"]
    );
}

#[test]
fn placement_and_memory_errors() {
    let t = T::new(1);
    let host = t.hosts()[0].clone();
    let vm = t.new_vm("big", GIB);
    // absurd sizes fail cleanly (no overflow)
    t.call("VM.set_memory", vec![json!(vm), json!(i64::MAX)]);
    let e = t.fail("VM.start", vec![json!(vm), json!(false), json!(false)]);
    assert_eq!(e, vec!["NO_HOSTS_AVAILABLE"]);
    t.call("VM.set_memory", vec![json!(vm), json!(GIB)]);
    let e = t.fail(
        "VM.set_memory_limits",
        vec![
            json!(vm),
            json!(GIB),
            json!(GIB),
            json!(2 * GIB),
            json!(GIB),
        ],
    );
    assert_eq!(e[0], "MEMORY_CONSTRAINT_VIOLATION");
    t.call("VM.set_memory", vec![json!(vm), json!(4096 * GIB)]);
    assert_eq!(t.field("VM", &vm, "memory_dynamic_max"), 4096 * GIB);
    let e = t.fail(
        "VM.start_on",
        vec![json!(vm), json!(host), json!(false), json!(false)],
    );
    assert_eq!(e[0], "HOST_NOT_ENOUGH_FREE_MEMORY");
    assert_eq!(e[2], t.host_free(&host).to_string());
    let e = t.fail("VM.assert_can_boot_here", vec![json!(vm), json!(host)]);
    assert_eq!(e[0], "HOST_NOT_ENOUGH_FREE_MEMORY");
    let e = t.fail("VM.start", vec![json!(vm), json!(false), json!(false)]);
    assert_eq!(e, vec!["NO_HOSTS_AVAILABLE"]);
    assert!(t
        .call("VM.get_possible_hosts", vec![json!(vm)])
        .as_array()
        .unwrap()
        .is_empty());
    t.call("VM.set_memory", vec![json!(vm), json!(GIB)]);
    assert_eq!(
        t.call("VM.get_possible_hosts", vec![json!(vm)]),
        json!([host])
    );
    t.call("VM.assert_can_boot_here", vec![json!(vm), json!(host)]);

    t.call("host.disable", vec![json!(host)]);
    assert!(contains(&t.ops("host", &host), "enable"));
    let e = t.fail(
        "VM.start_on",
        vec![json!(vm), json!(host), json!(false), json!(false)],
    );
    assert_eq!(e, vec!["HOST_DISABLED", host.as_str()]);
    let e = t.fail("VM.start", vec![json!(vm), json!(false), json!(false)]);
    assert_eq!(e, vec!["NO_HOSTS_AVAILABLE"]);
    t.call("host.enable", vec![json!(host)]);
    t.call("VM.set_affinity", vec![json!(vm), json!(host)]);
    t.call("VM.start", vec![json!(vm), json!(false), json!(false)]);
    assert_eq!(t.str_field("VM", &vm, "resident_on"), host);
    let e = t.fail("VM.set_affinity", vec![json!(vm), json!("OpaqueRef:nope")]);
    assert_eq!(e, vec!["HANDLE_INVALID", "host", "OpaqueRef:nope"]);
}

#[test]
fn vm_setters_and_queries() {
    let t = T::new(1);
    let vm = t.new_vm("cfg", GIB);
    let e = t.fail("VM.set_VCPUs_at_startup", vec![json!(vm), json!(8)]);
    assert_eq!(e[0], "INVALID_VALUE");
    let e = t.fail("VM.set_VCPUs_max", vec![json!(vm), json!(1)]);
    assert_eq!(e[0], "INVALID_VALUE");
    let e = t.fail("VM.set_VCPUs_max", vec![json!(vm), json!(i64::MAX)]);
    assert_eq!(
        e,
        vec![
            "INVALID_VALUE".to_owned(),
            "VCPUs_max".to_owned(),
            i64::MAX.to_string()
        ]
    );
    t.call("VM.set_VCPUs_max", vec![json!(vm), json!(8)]);
    t.call("VM.set_VCPUs_at_startup", vec![json!(vm), json!(4)]);
    t.call("VM.set_memory_static_max", vec![json!(vm), json!(2 * GIB)]);
    t.call(
        "VM.set_memory_dynamic_range",
        vec![json!(vm), json!(GIB), json!(2 * GIB)],
    );
    let e = t.fail("VM.set_memory_static_max", vec![json!(vm), json!(GIB)]);
    assert_eq!(e[0], "MEMORY_CONSTRAINT_VIOLATION");
    let e = t.fail("VM.set_VCPUs_number_live", vec![json!(vm), json!(2)]);
    assert_eq!(e[0], "VM_BAD_POWER_STATE");
    let devs = t.call("VM.get_allowed_VBD_devices", vec![json!(vm)]);
    assert!(
        !devs.as_array().unwrap().contains(&json!("0"))
            && devs.as_array().unwrap().contains(&json!("1"))
    );
    let vifs = t.call("VM.get_allowed_VIF_devices", vec![json!(vm)]);
    assert_eq!(vifs[0], "1");
    t.call("VM.assert_operation_valid", vec![json!(vm), json!("start")]);
    let e = t.fail("VM.assert_operation_valid", vec![json!(vm), json!("pause")]);
    assert_eq!(e[0], "VM_BAD_POWER_STATE");
    t.call("VM.update_allowed_operations", vec![json!(vm)]);

    t.call("VM.start", vec![json!(vm), json!(false), json!(false)]);
    let host = t.str_field("VM", &vm, "resident_on");
    let free = t.host_free(&host);
    t.call("VM.set_VCPUs_number_live", vec![json!(vm), json!(6)]);
    let m = t.str_field("VM", &vm, "metrics");
    assert_eq!(t.field("VM_metrics", &m, "VCPUs_number"), 6);
    let e = t.fail("VM.set_VCPUs_number_live", vec![json!(vm), json!(9)]);
    assert_eq!(e[0], "INVALID_VALUE");
    t.call(
        "VM.set_memory_dynamic_range",
        vec![json!(vm), json!(GIB), json!(GIB + 512 * MIB)],
    );
    assert_eq!(t.field("VM_metrics", &m, "memory_actual"), GIB + 512 * MIB);
    assert_eq!(t.host_free(&host), free + 512 * MIB);
    let e = t.fail("VM.set_memory_static_max", vec![json!(vm), json!(4 * GIB)]);
    assert_eq!(e[0], "VM_BAD_POWER_STATE");
    let e = t.fail("VM.set_VCPUs_max", vec![json!(vm), json!(16)]);
    assert_eq!(e[0], "VM_BAD_POWER_STATE");
    assert_eq!(
        t.call("VM.get_possible_hosts", vec![json!(vm)]),
        json!([host])
    );
    t.call(
        "VM.add_to_other_config",
        vec![json!(vm), json!("k"), json!("v")],
    );
    assert_eq!(t.field("VM", &vm, "other_config")["k"], "v");
}

#[test]
fn vm_destroy_rules() {
    let t = T::new(1);
    let vm = t.new_vm("gone", GIB);
    let disk = t.disk_vdi(&vm);
    let vbds = t.field("VM", &vm, "VBDs");
    t.call("VM.start", vec![json!(vm), json!(false), json!(false)]);
    let e = t.fail("VM.destroy", vec![json!(vm)]);
    assert_eq!(
        e,
        vec![
            "VM_BAD_POWER_STATE",
            vm.as_str(),
            "halted, suspended",
            "running"
        ]
    );
    t.call("VM.hard_shutdown", vec![json!(vm)]);
    let metrics = t.str_field("VM", &vm, "metrics");
    t.call("VM.destroy", vec![json!(vm)]);
    assert!(!t.exists("VM", &vm));
    assert!(!t.exists("VM_metrics", &metrics));
    for v in vbds.as_array().unwrap() {
        assert!(!t.exists("VBD", v.as_str().unwrap()));
    }
    assert!(t.exists("VDI", &disk));
    assert!(t.field("VDI", &disk, "VBDs").as_array().unwrap().is_empty());
    let e = t.fail("VM.destroy", vec![json!(vm)]);
    assert_eq!(e, vec!["HANDLE_INVALID", "VM", vm.as_str()]);
}

#[test]
fn vdi_operations() {
    let t = T::new(1);
    let sr = t.default_sr();
    let va0 = t.field("SR", &sr, "virtual_allocation").as_i64().unwrap();
    let vdi = t.new_vdi(&sr, GIB);
    assert_eq!(
        t.field("SR", &sr, "virtual_allocation").as_i64().unwrap(),
        va0 + GIB
    );
    assert!(t
        .field("SR", &sr, "VDIs")
        .as_array()
        .unwrap()
        .contains(&json!(vdi)));
    assert!(contains(&t.ops("VDI", &vdi), "destroy"));
    t.call("VDI.set_name_label", vec![json!(vdi), json!("renamed")]);
    t.call("VDI.set_name_description", vec![json!(vdi), json!("desc")]);
    assert_eq!(t.str_field("VDI", &vdi, "name_label"), "renamed");
    t.call("VDI.resize", vec![json!(vdi), json!(2 * GIB)]);
    assert_eq!(t.field("VDI", &vdi, "virtual_size"), 2 * GIB);
    assert_eq!(
        t.field("SR", &sr, "virtual_allocation").as_i64().unwrap(),
        va0 + 2 * GIB
    );
    let e = t.fail("VDI.resize", vec![json!(vdi), json!(GIB)]);
    assert_eq!(
        e,
        vec![
            "VDI_TOO_SMALL".to_owned(),
            vdi.clone(),
            (2 * GIB).to_string()
        ]
    );
    let snap = t
        .call("VDI.snapshot", vec![json!(vdi), json!({})])
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(t.field("VDI", &snap, "is_a_snapshot"), true);
    assert!(t
        .field("VDI", &vdi, "snapshots")
        .as_array()
        .unwrap()
        .contains(&json!(snap)));
    let clone = t
        .call("VDI.clone", vec![json!(vdi), json!({})])
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(t.field("VDI", &clone, "is_a_snapshot"), false);
    let copy = t
        .call("VDI.copy", vec![json!(vdi), json!(sr)])
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(t.field("VDI", &copy, "virtual_size"), 2 * GIB);
    t.call("VDI.set_read_only", vec![json!(copy), json!(true)]);
    let e = t.fail("VDI.resize", vec![json!(copy), json!(3 * GIB)]);
    assert_eq!(e, vec!["VDI_READONLY", copy.as_str()]);

    // in use by a running VM
    let vm = t.new_vm("user", GIB);
    t.new_vbd(&vm, &vdi, "1", "Disk", "RW", false).unwrap();
    t.call("VM.start", vec![json!(vm), json!(false), json!(false)]);
    assert!(!contains(&t.ops("VDI", &vdi), "destroy"));
    let e = t.fail("VDI.destroy", vec![json!(vdi)]);
    assert_eq!(e, vec!["VDI_IN_USE", vdi.as_str(), "destroy"]);
    let e = t.fail("VDI.resize", vec![json!(vdi), json!(3 * GIB)]);
    assert_eq!(e[0], "VDI_IN_USE");
    t.call("VDI.resize_online", vec![json!(vdi), json!(3 * GIB)]);
    t.call("VM.hard_shutdown", vec![json!(vm)]);
    let vbds = t.field("VDI", &vdi, "VBDs");
    t.call("VDI.destroy", vec![json!(vdi)]);
    assert!(!t.exists("VDI", &vdi));
    for v in vbds.as_array().unwrap() {
        assert!(!t.exists("VBD", v.as_str().unwrap()));
    }
    let e = t.fail(
        "VDI.create",
        vec![
            json!({"SR": "OpaqueRef:nope", "virtual_size": 1, "type": "user",
        "sharable": false, "read_only": false, "other_config": {}}),
        ],
    );
    assert_eq!(e, vec!["HANDLE_INVALID", "SR", "OpaqueRef:nope"]);
    let e = t.fail("VDI.create", vec![json!({"SR": sr, "virtual_size": 1})]);
    assert_eq!(e[0], "INTERNAL_ERROR");
}

#[test]
fn vbd_operations() {
    let t = T::new(1);
    let vm = t.new_vm("disks", GIB);
    let vdi = t.new_vdi(&t.default_sr(), GIB);
    let e = t.new_vbd(&vm, &vdi, "0", "Disk", "RW", false).unwrap_err();
    assert_eq!(e.to_description(), vec!["DEVICE_ALREADY_EXISTS", "0"]);
    let e = t.new_vbd(&vm, &vdi, "4", "CD", "RW", false).unwrap_err();
    assert_eq!(e.to_description(), vec!["VBD_CDS_MUST_BE_READONLY"]);
    let vbd = t
        .new_vbd(&vm, &vdi, "autodetect", "Disk", "RW", false)
        .unwrap();
    let vbd = vbd.as_str().unwrap();
    assert_eq!(t.str_field("VBD", vbd, "userdevice"), "1");
    assert!(t
        .field("VM", &vm, "VBDs")
        .as_array()
        .unwrap()
        .contains(&json!(vbd)));
    assert!(t
        .field("VDI", &vdi, "VBDs")
        .as_array()
        .unwrap()
        .contains(&json!(vbd)));
    let e = t.fail("VBD.plug", vec![json!(vbd)]);
    assert_eq!(e[0], "VM_BAD_POWER_STATE");
    t.call("VM.start", vec![json!(vm), json!(false), json!(false)]);
    let e = t.fail("VBD.plug", vec![json!(vbd)]);
    assert_eq!(e, vec!["DEVICE_ALREADY_ATTACHED", vbd]);
    let e = t.fail("VBD.destroy", vec![json!(vbd)]);
    assert_eq!(e[0], "DEVICE_ALREADY_ATTACHED");
    assert!(contains(&t.ops("VBD", vbd), "unplug"));
    t.call("VBD.unplug", vec![json!(vbd)]);
    assert_eq!(t.field("VBD", vbd, "currently_attached"), false);
    let e = t.fail("VBD.unplug", vec![json!(vbd)]);
    assert_eq!(e, vec!["DEVICE_ALREADY_DETACHED", vbd]);
    t.call("VBD.plug", vec![json!(vbd)]);
    assert_eq!(t.str_field("VBD", vbd, "device"), "xvdb");
    t.call("VBD.unplug", vec![json!(vbd)]);
    t.call("VBD.destroy", vec![json!(vbd)]);
    assert!(!t
        .field("VM", &vm, "VBDs")
        .as_array()
        .unwrap()
        .contains(&json!(vbd)));

    // CD insert / eject
    let cd = t.vbd_of_type(&vm, "CD");
    let disk = t.vbd_of_type(&vm, "Disk");
    let e = t.fail("VBD.eject", vec![json!(cd)]);
    assert_eq!(e, vec!["VBD_IS_EMPTY", cd.as_str()]);
    let e = t.fail("VBD.insert", vec![json!(disk), json!(vdi)]);
    assert_eq!(e, vec!["VBD_NOT_REMOVABLE_MEDIA", disk.as_str()]);
    let e = t.fail("VBD.eject", vec![json!(disk)]);
    assert_eq!(e[0], "VBD_NOT_REMOVABLE_MEDIA");
    t.call("VBD.insert", vec![json!(cd), json!(vdi)]);
    assert_eq!(t.field("VBD", &cd, "empty"), false);
    assert_eq!(t.str_field("VBD", &cd, "VDI"), vdi);
    assert!(contains(&t.ops("VBD", &cd), "eject"));
    let e = t.fail("VBD.insert", vec![json!(cd), json!(vdi)]);
    assert_eq!(e, vec!["VBD_NOT_EMPTY", cd.as_str()]);
    t.call("VBD.eject", vec![json!(cd)]);
    assert_eq!(t.field("VBD", &cd, "empty"), true);
    assert_eq!(t.str_field("VBD", &cd, "VDI"), "OpaqueRef:NULL");
}

#[test]
fn vif_and_network_operations() {
    let t = T::new(1);
    let vm = t.new_vm("nics", GIB);
    let e = t.new_vif(&vm, "1", "not-a-mac").unwrap_err();
    assert_eq!(e.to_description(), vec!["MAC_INVALID", "not-a-mac"]);
    let e = t.new_vif(&vm, "0", "").unwrap_err();
    assert_eq!(e.to_description(), vec!["DEVICE_ALREADY_EXISTS", "0"]);
    let vif = t.new_vif(&vm, "1", "AA:BB:CC:DD:EE:01").unwrap();
    let vif = vif.as_str().unwrap();
    assert_eq!(t.str_field("VIF", vif, "MAC"), "aa:bb:cc:dd:ee:01");
    assert_eq!(t.field("VIF", vif, "MAC_autogenerated"), false);
    let auto = t
        .field("VM", &vm, "VIFs")
        .as_array()
        .unwrap()
        .iter()
        .find(|v| *v != vif)
        .cloned()
        .unwrap();
    let auto = auto.as_str().unwrap();
    assert_eq!(t.field("VIF", auto, "MAC_autogenerated"), true);
    assert_eq!(t.str_field("VIF", auto, "MAC").len(), 17);
    let e = t.fail("VIF.plug", vec![json!(vif)]);
    assert_eq!(e[0], "VM_BAD_POWER_STATE");
    t.call("VM.start", vec![json!(vm), json!(false), json!(false)]);
    let e = t.fail("VIF.plug", vec![json!(vif)]);
    assert_eq!(e, vec!["DEVICE_ALREADY_ATTACHED", vif]);
    t.call("VIF.unplug", vec![json!(vif)]);
    let e = t.fail("VIF.unplug", vec![json!(vif)]);
    assert_eq!(e, vec!["DEVICE_ALREADY_DETACHED", vif]);
    assert!(contains(&t.ops("VIF", vif), "plug"));
    t.call("VIF.plug", vec![json!(vif)]);
    let e = t.fail("VIF.destroy", vec![json!(vif)]);
    assert_eq!(e[0], "DEVICE_ALREADY_ATTACHED");

    let net = t.call(
        "network.create",
        vec![json!({"name_label": "private", "other_config": {}})],
    );
    let net = net.as_str().unwrap();
    let n = t.rec("network", net);
    assert!(n["bridge"].as_str().unwrap().starts_with("xapi"));
    assert_eq!(n["MTU"], 1500);
    t.call("VIF.move", vec![json!(auto), json!(net)]);
    let e = t.fail("network.destroy", vec![json!(net)]);
    assert_eq!(e, vec!["NETWORK_CONTAINS_VIF", auto]);
    let lonely = t
        .call("network.create", vec![json!({"other_config": {}})])
        .as_str()
        .unwrap()
        .to_owned();
    let host = t.hosts()[0].clone();
    let pif = t.sim.state().write(|db| {
        db.insert(
            "PIF",
            xapi_sim::db::rec([
                ("network", json!(lonely)),
                ("host", json!(host)),
                ("device", json!("eth9")),
            ]),
        )
        .unwrap()
    });
    let e = t.fail("network.destroy", vec![json!(lonely)]);
    assert_eq!(e, vec!["NETWORK_CONTAINS_PIF", pif.as_str()]);
    t.call("VM.hard_shutdown", vec![json!(vm)]);
    t.call("VIF.destroy", vec![json!(auto)]);
    t.call("network.destroy", vec![json!(net)]);
    assert!(!t.exists("network", net));
}

#[test]
fn two_hosts_migrate_and_evacuate() {
    let t = T::new(2);
    let hs = t.hosts();
    let vm = t.new_vm("mover", GIB);
    t.call(
        "VM.start_on",
        vec![json!(vm), json!(hs[0]), json!(false), json!(false)],
    );
    let free1 = t.host_free(&hs[1]);
    t.call(
        "VM.pool_migrate",
        vec![json!(vm), json!(hs[1]), json!({"live": "true"})],
    );
    assert_eq!(t.str_field("VM", &vm, "resident_on"), hs[1]);
    assert!(t.host_free(&hs[1]) < free1);
    let addr1 = t.str_field("host", &hs[1], "address");
    let c = t.field("VM", &vm, "consoles")[0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(t
        .str_field("console", &c, "location")
        .starts_with(&format!("https://{addr1}/")));

    t.call("host.evacuate", vec![json!(hs[1])]);
    assert_eq!(t.str_field("VM", &vm, "resident_on"), hs[0]);
    t.call("host.assert_can_evacuate", vec![json!(hs[0])]);
    t.call("host.disable", vec![json!(hs[1])]);
    let e = t.fail("host.evacuate", vec![json!(hs[0])]);
    assert_eq!(e[0], "CANNOT_EVACUATE_HOST");
    assert!(e[1].contains("HOST_DISABLED"));
    let e = t.fail("host.assert_can_evacuate", vec![json!(hs[0])]);
    assert_eq!(e[0], "CANNOT_EVACUATE_HOST");
    let prevent = t.call("host.get_vms_which_prevent_evacuation", vec![json!(hs[0])]);
    assert_eq!(prevent[vm.as_str()][0], "HOST_DISABLED");
    assert_eq!(t.str_field("VM", &vm, "resident_on"), hs[0]);
    let e = t.fail("VM.pool_migrate", vec![json!(vm), json!(hs[1]), json!({})]);
    assert_eq!(e, vec!["HOST_DISABLED", hs[1].as_str()]);
}

#[test]
fn host_reboot_and_shutdown() {
    let t = T::new(2);
    let hs = t.hosts();
    let vm = t.new_vm("victim", GIB);
    t.call(
        "VM.start_on",
        vec![json!(vm), json!(hs[1]), json!(false), json!(false)],
    );
    let e = t.fail("host.reboot", vec![json!(hs[1])]);
    assert_eq!(e, vec!["HOST_NOT_DISABLED"]);
    let e = t.fail("host.shutdown", vec![json!(hs[1])]);
    assert_eq!(e, vec!["HOST_NOT_DISABLED"]);
    t.call("host.disable", vec![json!(hs[1])]);
    t.call("host.reboot", vec![json!(hs[1])]);
    let metrics = t.str_field("host", &hs[1], "metrics");
    t.wait_for("VM halted by host reboot", |t| {
        t.str_field("VM", &vm, "power_state") == "Halted"
    });
    t.wait_for("host back up", |t| {
        t.field("host_metrics", &metrics, "live") == true
            && t.field("host", &hs[1], "enabled") == true
    });
    t.call("host.disable", vec![json!(hs[1])]);
    t.call("host.shutdown", vec![json!(hs[1])]);
    t.wait_for("host down", |t| {
        t.field("host_metrics", &metrics, "live") == false
    });
    let e = t.fail("host.enable", vec![json!(hs[1])]);
    assert_eq!(e, vec!["HOST_OFFLINE", hs[1].as_str()]);
    let e = t.fail(
        "VM.start_on",
        vec![json!(vm), json!(hs[1]), json!(false), json!(false)],
    );
    assert_eq!(e[0], "HOST_OFFLINE");
    // powering it on needs a power-on mode
    assert_eq!(t.ops("host", &hs[1]), vec!["power_on"]);
    let e = t.fail("host.power_on", vec![json!(hs[1])]);
    assert_eq!(e, vec!["HOST_POWER_ON_MODE_DISABLED"]);
    t.call(
        "host.set_power_on_mode",
        vec![json!(hs[1]), json!("wake-on-lan"), json!({})],
    );
    assert_eq!(t.str_field("host", &hs[1], "power_on_mode"), "wake-on-lan");
    t.call("host.power_on", vec![json!(hs[1])]);
    t.wait_for("host powered on", |t| {
        t.field("host_metrics", &metrics, "live") == true
            && t.field("host", &hs[1], "enabled") == true
    });
    // a live host ignores it
    t.call("host.power_on", vec![json!(hs[1])]);
    assert_eq!(t.field("host", &hs[1], "enabled"), true);
    let e = t.fail(
        "host.set_power_on_mode",
        vec![json!(hs[1]), json!("IPMI"), json!("not a map")],
    );
    assert_eq!(e[0], "FIELD_TYPE_ERROR");
}

#[test]
fn host_misc_messages() {
    let t = T::new(1);
    let h = t.hosts()[0].clone();
    let st = t.call("host.get_servertime", vec![json!(h)]);
    assert!(xapi_types::datetime::parse_unix(st.as_str().unwrap()).is_some());
    t.call("host.get_server_localtime", vec![json!(h)]);
    assert_eq!(
        t.call(
            "host.call_plugin",
            vec![
                json!(h),
                json!("updater.py"),
                json!("check_update"),
                json!({})
            ]
        ),
        "[]"
    );
    let e = t.fail(
        "host.call_plugin",
        vec![json!(h), json!("nope.py"), json!("x"), json!({})],
    );
    assert_eq!(e, vec!["XENAPI_MISSING_PLUGIN", "nope.py"]);
    let e = t.fail(
        "host.call_plugin",
        vec![json!(h), json!("updater.py"), json!("x"), json!({})],
    );
    assert_eq!(e[0], "XENAPI_PLUGIN_FAILURE");
    let free = t.call("host.compute_free_memory", vec![json!(h)]);
    assert_eq!(free.as_i64().unwrap(), t.host_free(&h));
    let pif = t.call("host.get_management_interface", vec![json!(h)]);
    assert_eq!(t.field("PIF", pif.as_str().unwrap(), "management"), true);
    t.call("host.restart_agent", vec![json!(h)]);
    t.wait_for(
        "sessions dropped by restart_agent",
        |t| matches!(t.try_call("pool.get_all", vec![]), Err(e) if e.code == "SESSION_INVALID"),
    );
}

#[test]
fn sr_messages() {
    let t = T::new(1);
    let sr = t.default_sr();
    t.call("SR.set_name_label", vec![json!(sr), json!("fast")]);
    t.call("SR.set_name_description", vec![json!(sr), json!("ssd")]);
    t.call("SR.set_shared", vec![json!(sr), json!(true)]);
    let r = t.rec("SR", &sr);
    assert_eq!(r["name_label"], "fast");
    assert_eq!(r["name_description"], "ssd");
    assert_eq!(r["shared"], true);
    let vdi = t.new_vdi(&sr, GIB);
    t.call("SR.scan", vec![json!(sr)]);
    let total: i64 = t
        .field("SR", &sr, "VDIs")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            t.field("VDI", v.as_str().unwrap(), "virtual_size")
                .as_i64()
                .unwrap()
        })
        .sum();
    assert_eq!(
        t.field("SR", &sr, "virtual_allocation").as_i64().unwrap(),
        total
    );
    assert!(t.exists("VDI", &vdi));
    let e = t.fail("SR.scan", vec![json!("OpaqueRef:nope")]);
    assert_eq!(e, vec!["HANDLE_INVALID", "SR", "OpaqueRef:nope"]);
}

#[test]
fn message_messages() {
    let t = T::new(1);
    let vm = t.new_vm("noisy", GIB);
    let uuid = t.str_field("VM", &vm, "uuid");
    let e = t.fail(
        "message.create",
        vec![
            json!("X"),
            json!(3),
            json!("VM"),
            json!("no-such-uuid"),
            json!(""),
        ],
    );
    assert_eq!(e, vec!["UUID_INVALID", "VM", "no-such-uuid"]);
    let m = t.call(
        "message.create",
        vec![
            json!("CUSTOM"),
            json!(3),
            json!("VM"),
            json!(uuid),
            json!("hello"),
        ],
    );
    let m = m.as_str().unwrap().to_owned();
    let r = t.rec("message", &m);
    assert_eq!(r["name"], "CUSTOM");
    assert_eq!(r["priority"], 3);
    let since = t.call("message.get_since", vec![json!("19700101T00:00:00Z")]);
    assert!(since.as_object().unwrap().contains_key(&m));
    let future = t.call("message.get_since", vec![json!("20990101T00:00:00Z")]);
    assert!(future.as_object().unwrap().is_empty());
    let mine = t.call(
        "message.get",
        vec![json!("VM"), json!(uuid), json!("19700101T00:00:00Z")],
    );
    assert!(mine.as_object().unwrap().contains_key(&m));
    let e = t.fail("message.get_since", vec![json!("garbage")]);
    assert_eq!(e[0], "FIELD_TYPE_ERROR");
    t.call("message.destroy", vec![json!(m)]);
    assert!(!t.exists("message", &m));
    let e = t.fail("message.destroy", vec![json!(m)]);
    assert_eq!(e[0], "HANDLE_INVALID");
    t.call(
        "message.create",
        vec![json!("A"), json!(1), json!("VM"), json!(uuid), json!("")],
    );
    t.call("message.destroy_all", vec![json!({"obj_uuid": uuid})]);
    let left = t.call(
        "message.get",
        vec![json!("VM"), json!(uuid), json!("19700101T00:00:00Z")],
    );
    assert!(left.as_object().unwrap().is_empty());
}

#[test]
fn async_operations_complete_tasks() {
    let t = T::new(1);
    let vm = t.new_vm("async", GIB);
    let task = t.call("Async.VM.clone", vec![json!(vm), json!("async clone")]);
    let task = task.as_str().unwrap().to_owned();
    t.wait_for("task done", |t| {
        t.str_field("task", &task, "status") != "pending"
    });
    assert_eq!(t.str_field("task", &task, "status"), "success");
    let result = t.str_field("task", &task, "result");
    let start = result.find("OpaqueRef:").expect("ref in result");
    let new_vm = result[start..].trim_end_matches("</value>").to_owned();
    assert_eq!(t.str_field("VM", &new_vm, "name_label"), "async clone");

    let task = t
        .call("Async.VM.pause", vec![json!(vm)])
        .as_str()
        .unwrap()
        .to_owned();
    t.wait_for("task done", |t| {
        t.str_field("task", &task, "status") != "pending"
    });
    assert_eq!(t.str_field("task", &task, "status"), "failure");
    let info = t.field("task", &task, "error_info");
    assert_eq!(info[0], "VM_BAD_POWER_STATE");
}

#[test]
fn relation_changes_touch_both_ends() {
    let t = T::new(1);
    let vm = t.new_vm("rel", GIB);
    let vdi = t.new_vdi(&t.default_sr(), GIB);
    let vbd = t.new_vbd(&vm, &vdi, "2", "Disk", "RW", false).unwrap();
    let vbd = xapi_types::Ref::from(vbd.as_str().unwrap());
    t.sim.state().read(|db| {
        let g = db.row("VBD", &vbd).unwrap().created;
        assert!(
            db.row("VM", &xapi_types::Ref::from(vm.as_str()))
                .unwrap()
                .modified
                >= g
        );
        assert!(
            db.row("VDI", &xapi_types::Ref::from(vdi.as_str()))
                .unwrap()
                .modified
                >= g
        );
    });
}

#[test]
fn provision_creates_template_disks() {
    let t = T::new(1);
    let tpl = t.new_vm("tpl", GIB);
    let disks = r#"<provision><disk device="1" size="2147483648" sr="" bootable="false" type="system"/></provision>"#;
    t.call(
        "VM.add_to_other_config",
        vec![json!(tpl), json!("disks"), json!(disks)],
    );
    let e = t.fail("VM.provision", vec![json!(tpl)]);
    assert_eq!(e, vec!["ONLY_PROVISION_TEMPLATE"]);
    t.call("VM.set_is_a_template", vec![json!(tpl), json!(true)]);
    let vm = t
        .call("VM.clone", vec![json!(tpl), json!("from tpl")])
        .as_str()
        .unwrap()
        .to_owned();
    t.call("VM.provision", vec![json!(vm)]);
    let vbds = t.field("VM", &vm, "VBDs");
    let new = vbds
        .as_array()
        .unwrap()
        .iter()
        .map(|v| t.rec("VBD", v.as_str().unwrap()))
        .find(|v| v["userdevice"] == "1")
        .expect("provisioned VBD");
    assert_eq!(
        t.field("VDI", new["VDI"].as_str().unwrap(), "virtual_size"),
        2 * GIB
    );
    assert!(t.field("VM", &vm, "other_config").get("disks").is_none());
    t.call(
        "VM.add_to_other_config",
        vec![json!(vm), json!("disks"), json!("<oops")],
    );
    let e = t.fail("VM.provision", vec![json!(vm)]);
    assert_eq!(e[0], "INVALID_VALUE");
    t.call(
        "VM.remove_from_other_config",
        vec![json!(vm), json!("disks")],
    );
    let bad = r#"<provision><disk device="2" size="1" sr="no-such-sr" bootable="false" type="system"/></provision>"#;
    t.call(
        "VM.add_to_other_config",
        vec![json!(vm), json!("disks"), json!(bad)],
    );
    let e = t.fail("VM.provision", vec![json!(vm)]);
    assert_eq!(e, vec!["DEFAULT_SR_NOT_FOUND", "no-such-sr"]);
}

#[test]
fn migrate_send_within_pool() {
    let t = T::new(2);
    let hs = t.hosts();
    let vm = t.new_vm("storage-mover", GIB);
    let disk = t.disk_vdi(&vm);
    t.call(
        "VM.start_on",
        vec![json!(vm), json!(hs[0]), json!(false), json!(false)],
    );
    let dest = t.call(
        "host.migrate_receive",
        vec![json!(hs[1]), json!(t.net()), json!({})],
    );
    assert_eq!(dest["host"], hs[1].as_str());
    assert!(dest["xenops"]
        .as_str()
        .unwrap()
        .contains("/services/xenops?session_id="));
    let sr = t.default_sr();
    let vif = t.field("VM", &vm, "VIFs")[0].as_str().unwrap().to_owned();
    let args = |vdi_map: Value| {
        vec![
            json!(vm),
            dest.clone(),
            json!(true),
            vdi_map,
            json!({ vif.clone(): t.net() }),
            json!({}),
        ]
    };
    t.call("VM.assert_can_migrate", args(json!({ disk.clone(): sr })));
    let r = t.call("VM.migrate_send", args(json!({ disk.clone(): sr })));
    assert_eq!(r, json!(vm));
    assert_eq!(t.str_field("VM", &vm, "resident_on"), hs[1]);
    assert_eq!(t.disk_vdi(&vm), disk);
    let e = t.fail("VM.migrate_send", args(json!({ "OpaqueRef:nope": sr })));
    assert_eq!(e, vec!["HANDLE_INVALID", "VDI", "OpaqueRef:nope"]);
    let mut foreign = dest.clone();
    foreign["host"] = json!("OpaqueRef:other-pool-host");
    let e = t.fail(
        "VM.migrate_send",
        vec![
            json!(vm),
            foreign,
            json!(true),
            json!({}),
            json!({}),
            json!({}),
        ],
    );
    assert_eq!(e[0], "VM_MIGRATE_FAILED");
    // a halted VM's disk moves to another SR
    t.call("VM.hard_shutdown", vec![json!(vm)]);
    let other = t
        .call("SR.get_all_records", vec![])
        .as_object()
        .unwrap()
        .iter()
        .find(|(r, s)| **r != sr && s["content_type"] == "user")
        .map(|(r, _)| r.clone());
    if let Some(other) = other {
        t.call("VM.migrate_send", args(json!({ disk.clone(): other })));
        let moved = t.disk_vdi(&vm);
        assert_ne!(moved, disk);
        assert_eq!(t.str_field("VDI", &moved, "SR"), other);
        assert!(!t.exists("VDI", &disk));
    }
}

#[test]
fn pool_messages() {
    let t = T::new(2);
    let pool = t.pool();
    assert_eq!(
        t.call("pool.has_extension", vec![json!(pool), json!("x")]),
        false
    );
    assert_eq!(
        t.call("pool.get_license_state", vec![json!(pool)])["edition"],
        "xcp-ng"
    );
    t.call("pool.sync_database", vec![]);
    let sr = t.default_sr();
    t.call("pool.enable_ha", vec![json!([sr]), json!({})]);
    assert_eq!(t.field("pool", &pool, "ha_enabled"), true);
    let e = t.fail("pool.enable_ha", vec![json!([sr]), json!({})]);
    assert_eq!(e, vec!["HA_IS_ENABLED"]);
    t.call("pool.disable_ha", vec![]);
    let e = t.fail("pool.disable_ha", vec![]);
    assert_eq!(e, vec!["HA_NOT_ENABLED"]);
    let hs = t.hosts();
    t.call("pool.designate_new_master", vec![json!(hs[1])]);
    t.wait_for("new master", |t| t.sim.state().master().as_str() == hs[1]);
}

#[test]
fn remaining_error_paths() {
    let t = T::new(2);
    let hs = t.hosts();
    let sr = t.default_sr();
    let vm = t.new_vm("errs", GIB);
    let vdi = t.new_vdi(&sr, GIB);

    // VBD.create: empty non-removable, bad device; set_mode; unpluggable=false; assert_attachable
    let e = t
        .new_vbd(&vm, "OpaqueRef:NULL", "5", "Disk", "RW", true)
        .unwrap_err();
    assert_eq!(e.code, "VBD_NOT_REMOVABLE_MEDIA");
    let e = t
        .new_vbd(&vm, &vdi, "bogus", "Disk", "RW", false)
        .unwrap_err();
    assert_eq!(e.to_description(), vec!["INVALID_DEVICE", "bogus"]);
    let cd = t.vbd_of_type(&vm, "CD");
    let e = t.fail("VBD.set_mode", vec![json!(cd), json!("RW")]);
    assert_eq!(e, vec!["VBD_CDS_MUST_BE_READONLY"]);
    let disk = t.vbd_of_type(&vm, "Disk");
    t.call("VBD.set_mode", vec![json!(disk), json!("RO")]);
    t.call("VBD.assert_attachable", vec![json!(disk)]);
    t.call("VBD.set_unpluggable", vec![json!(disk), json!(false)]);
    t.call(
        "VM.start_on",
        vec![json!(vm), json!(hs[0]), json!(false), json!(false)],
    );
    let e = t.fail("VBD.set_mode", vec![json!(disk), json!("RW")]);
    assert_eq!(e[0], "VM_BAD_POWER_STATE");
    let e = t.fail("VBD.unplug", vec![json!(disk)]);
    assert_eq!(
        e,
        vec![
            "DEVICE_DETACH_REJECTED",
            "VBD",
            disk.as_str(),
            "VBD.unpluggable is false"
        ]
    );
    t.call("VBD.unplug_force", vec![json!(disk)]);
    t.call("VM.hard_shutdown", vec![json!(vm)]);

    // VIF: bad device, move to a missing network
    let e = t.new_vif(&vm, "eth0", "").unwrap_err();
    assert_eq!(e.to_description(), vec!["INVALID_DEVICE", "eth0"]);
    let vif = t.field("VM", &vm, "VIFs")[0].as_str().unwrap().to_owned();
    let e = t.fail("VIF.move", vec![json!(vif), json!("OpaqueRef:nope")]);
    assert_eq!(e, vec!["HANDLE_INVALID", "network", "OpaqueRef:nope"]);

    // VDI: forget in use, copy into a read-only / too small VDI
    let other = t.new_vm("holder", GIB);
    t.new_vbd(&other, &vdi, "1", "Disk", "RW", false).unwrap();
    t.call(
        "VM.start_on",
        vec![json!(other), json!(hs[0]), json!(false), json!(false)],
    );
    let e = t.fail("VDI.forget", vec![json!(vdi)]);
    assert_eq!(e, vec!["VDI_IN_USE", vdi.as_str(), "forget"]);
    let small = t.new_vdi(&sr, MIB);
    let e = t.fail(
        "VDI.copy",
        vec![json!(vdi), json!(sr), json!("OpaqueRef:NULL"), json!(small)],
    );
    assert_eq!(
        e,
        vec!["VDI_TOO_SMALL".to_owned(), small.clone(), GIB.to_string()]
    );
    t.call("VDI.set_read_only", vec![json!(small), json!(true)]);
    let e = t.fail(
        "VDI.copy",
        vec![json!(vdi), json!(sr), json!("OpaqueRef:NULL"), json!(small)],
    );
    assert_eq!(e, vec!["VDI_READONLY", small.as_str()]);
    let big = t.new_vdi(&sr, 2 * GIB);
    assert_eq!(
        t.call(
            "VDI.copy",
            vec![json!(vdi), json!(sr), json!("OpaqueRef:NULL"), json!(big)]
        ),
        json!(big)
    );
    t.call("VM.hard_shutdown", vec![json!(other)]);
    t.call("VDI.forget", vec![json!(big)]);
    assert!(!t.exists("VDI", &big));

    // placement: SR not visible from a host, network not reachable
    let local = t.new_vm("local-disk", GIB);
    let host1_pbds: Vec<String> = t
        .field("SR", &sr, "PBDs")
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .filter(|p| t.str_field("PBD", p, "host") == hs[1])
        .collect();
    t.sim.state().write(|db| {
        for p in &host1_pbds {
            db.set_field(
                "PBD",
                &xapi_types::Ref::from(p.as_str()),
                "currently_attached",
                json!(false),
            )
            .unwrap();
        }
    });
    let e = t.fail("VM.assert_can_boot_here", vec![json!(local), json!(hs[1])]);
    assert_eq!(e, vec!["VM_REQUIRES_SR", local.as_str(), sr.as_str()]);
    t.sim.state().write(|db| {
        for p in &host1_pbds {
            db.set_field(
                "PBD",
                &xapi_types::Ref::from(p.as_str()),
                "currently_attached",
                json!(true),
            )
            .unwrap();
        }
    });
    let net = t
        .call("network.create", vec![json!({"other_config": {}})])
        .as_str()
        .unwrap()
        .to_owned();
    let h0 = hs[0].clone();
    t.sim.state().write(|db| {
        db.insert(
            "PIF",
            xapi_sim::db::rec([
                ("network", json!(net)),
                ("host", json!(h0)),
                ("device", json!("eth1")),
            ]),
        )
        .unwrap()
    });
    let lvif = t.field("VM", &local, "VIFs")[0]
        .as_str()
        .unwrap()
        .to_owned();
    t.call("VIF.move", vec![json!(lvif), json!(net)]);
    let e = t.fail("VM.assert_can_boot_here", vec![json!(local), json!(hs[1])]);
    assert_eq!(e, vec!["VM_REQUIRES_NETWORK", local.as_str(), net.as_str()]);

    // start refuses broken memory limits (set behind the API's back)
    t.sim.state().write(|db| {
        db.set_field(
            "VM",
            &xapi_types::Ref::from(local.as_str()),
            "memory_dynamic_min",
            json!(64 * GIB),
        )
        .unwrap()
    });
    let e = t.fail(
        "VM.start_on",
        vec![json!(local), json!(hs[0]), json!(false), json!(false)],
    );
    assert_eq!(e[0], "MEMORY_CONSTRAINT_VIOLATION");

    // suspend without any suspend SR
    let pool = t.pool();
    let susp = t.new_vm("nosr", GIB);
    t.call(
        "VM.start_on",
        vec![json!(susp), json!(hs[0]), json!(false), json!(false)],
    );
    t.sim.state().write(|db| {
        let null = json!("OpaqueRef:NULL");
        let p = xapi_types::Ref::from(pool.as_str());
        db.set_field("pool", &p, "suspend_image_SR", null.clone())
            .unwrap();
        db.set_field("pool", &p, "default_SR", null.clone())
            .unwrap();
        for h in &hs {
            db.set_field(
                "host",
                &xapi_types::Ref::from(h.as_str()),
                "suspend_image_sr",
                null.clone(),
            )
            .unwrap();
        }
    });
    let e = t.fail("VM.suspend", vec![json!(susp)]);
    assert_eq!(e, vec!["VM_NO_SUSPEND_SR", susp.as_str()]);
    t.call("VM.set_suspend_SR", vec![json!(susp), json!(sr)]);
    t.call("VM.suspend", vec![json!(susp)]);
    t.call("pool.set_default_SR", vec![json!(pool), json!(sr)]);

    // blocked operations with a bad key, set_blocked_operations, un-templating a snapshot
    let e = t.fail(
        "VM.set_blocked_operations",
        vec![json!(vm), json!({"start": "x", "bogus": "y"})],
    );
    assert!(
        e[0] == "INVALID_VALUE" || e[0] == "FIELD_TYPE_ERROR",
        "{e:?}"
    );
    t.call(
        "VM.set_blocked_operations",
        vec![json!(vm), json!({"destroy": "keep"})],
    );
    let e = t.fail("VM.destroy", vec![json!(vm)]);
    assert_eq!(e, vec!["OPERATION_BLOCKED", vm.as_str(), "keep"]);
    let snap = t
        .call("VM.snapshot", vec![json!(vm), json!("s")])
        .as_str()
        .unwrap()
        .to_owned();
    let e = t.fail("VM.set_is_a_template", vec![json!(snap), json!(false)]);
    assert_eq!(e[0], "VM_IS_SNAPSHOT");

    // revert of a snapshot whose VM is gone
    let victim = t.new_vm("victim", GIB);
    let vsnap = t
        .call("VM.snapshot", vec![json!(victim), json!("orphan")])
        .as_str()
        .unwrap()
        .to_owned();
    t.call("VM.destroy", vec![json!(victim)]);
    let e = t.fail("VM.revert", vec![json!(vsnap)]);
    assert_eq!(e, vec!["VM_REVERT_FAILED", victim.as_str(), vsnap.as_str()]);

    // migrate_send with a VDI the VM does not use
    let dest = t.call(
        "host.migrate_receive",
        vec![json!(hs[1]), json!(t.net()), json!({})],
    );
    let e = t.fail(
        "VM.migrate_send",
        vec![
            json!(vm),
            dest,
            json!(false),
            json!({ vdi.clone(): sr }),
            json!({}),
            json!({}),
        ],
    );
    assert_eq!(e, vec!["VDI_NOT_IN_MAP", vdi.as_str()]);

    // message.destroy_many with a bad ref destroys nothing
    let uuid = t.str_field("VM", &vm, "uuid");
    let m = t.call(
        "message.create",
        vec![json!("M"), json!(5), json!("VM"), json!(uuid), json!("")],
    );
    let e = t.fail("message.destroy_many", vec![json!([m, "OpaqueRef:nope"])]);
    assert_eq!(e[0], "HANDLE_INVALID");
    assert!(t.exists("message", m.as_str().unwrap()));
    t.call("message.destroy_many", vec![json!([m])]);
    assert!(!t.exists("message", m.as_str().unwrap()));

    // host without a management PIF
    let h1 = hs[1].clone();
    t.sim.state().write(|db| {
        for pif in db.find("PIF", |p| p.get("host") == Some(&json!(h1))) {
            db.set_field("PIF", &pif, "management", json!(false))
                .unwrap();
        }
    });
    let e = t.fail("host.get_management_interface", vec![json!(hs[1])]);
    assert_eq!(e, vec!["HOST_HAS_NO_MANAGEMENT_IP"]);
}

#[test]
fn operations_in_progress_and_suspended_clones() {
    let t = T::new(1);
    let vm = t.new_vm("busy", GIB);
    let task = t
        .call("task.create", vec![json!("export"), json!("")])
        .as_str()
        .unwrap()
        .to_owned();
    let vmr = xapi_types::Ref::from(vm.as_str());
    t.sim.state().write(|db| {
        db.set_field(
            "VM",
            &vmr,
            "current_operations",
            json!({ task.clone(): "export" }),
        )
        .unwrap();
        xapi_sim::ops::allowed::update_vm(db, &vmr).unwrap();
    });
    let ops = t.ops("VM", &vm);
    assert!(contains(&ops, "clone") && contains(&ops, "copy") && !contains(&ops, "start"));
    let e = t.fail("VM.start", vec![json!(vm), json!(false), json!(false)]);
    assert_eq!(
        e,
        vec![
            "OTHER_OPERATION_IN_PROGRESS",
            "VM",
            vm.as_str(),
            "export",
            task.as_str()
        ]
    );
    t.call("VM.clone", vec![json!(vm), json!("during export")]);
    t.sim.state().write(|db| {
        db.set_field("VM", &vmr, "current_operations", json!({}))
            .unwrap();
        xapi_sim::ops::allowed::update_vm(db, &vmr).unwrap();
    });

    // cloning a suspended VM needs the pool switch; the clone gets its own memory image
    t.call("VM.start", vec![json!(vm), json!(false), json!(false)]);
    t.call("VM.suspend", vec![json!(vm)]);
    let e = t.fail("VM.clone", vec![json!(vm), json!("nope")]);
    assert_eq!(
        e,
        vec!["VM_BAD_POWER_STATE", vm.as_str(), "halted", "suspended"]
    );
    t.call(
        "pool.add_to_other_config",
        vec![
            json!(t.pool()),
            json!("allow_clone_suspended_vm"),
            json!("true"),
        ],
    );
    let c = t
        .call("VM.clone", vec![json!(vm), json!("suspended clone")])
        .as_str()
        .unwrap()
        .to_owned();
    let r = t.rec("VM", &c);
    assert_eq!(r["power_state"], "Suspended");
    let img = r["suspend_VDI"].as_str().unwrap();
    assert_ne!(img, t.str_field("VM", &vm, "suspend_VDI"));
    assert_eq!(t.str_field("VDI", img, "type"), "suspend");
    t.call("VM.resume", vec![json!(c), json!(false), json!(false)]);
    assert_eq!(t.str_field("VM", &c, "power_state"), "Running");
}

#[test]
fn extra_device_and_host_messages() {
    let t = T::new(2);
    let hs = t.hosts();
    let vm = t.new_vm("extras", GIB);
    let vif = t.field("VM", &vm, "VIFs")[0].as_str().unwrap().to_owned();
    t.call(
        "VIF.configure_ipv4",
        vec![
            json!(vif),
            json!("Static"),
            json!("10.0.0.5/24"),
            json!("10.0.0.1"),
        ],
    );
    let r = t.rec("VIF", &vif);
    assert_eq!(r["ipv4_configuration_mode"], "Static");
    assert_eq!(r["ipv4_addresses"], json!(["10.0.0.5/24"]));
    assert_eq!(r["ipv4_gateway"], "10.0.0.1");
    let e = t.fail(
        "VIF.configure_ipv6",
        vec![json!(vif), json!("Static"), json!(""), json!("")],
    );
    assert_eq!(e[0], "INVALID_IP_ADDRESS_SPECIFIED");
    t.call(
        "VIF.configure_ipv4",
        vec![json!(vif), json!("None"), json!(""), json!("")],
    );
    assert_eq!(t.field("VIF", &vif, "ipv4_addresses"), json!([]));
    t.call("VIF.set_locking_mode", vec![json!(vif), json!("locked")]);
    assert_eq!(t.str_field("VIF", &vif, "locking_mode"), "locked");

    let disk = t.disk_vdi(&vm);
    t.call("VDI.enable_cbt", vec![json!(disk)]);
    assert_eq!(t.field("VDI", &disk, "cbt_enabled"), true);
    assert!(contains(&t.ops("VDI", &disk), "disable_cbt"));
    t.call("VDI.disable_cbt", vec![json!(disk)]);
    let e = t.fail(
        "VDI.pool_migrate",
        vec![json!(disk), json!(t.default_sr()), json!({})],
    );
    assert_eq!(e[0], "VM_BAD_POWER_STATE");
    let lone = t.new_vdi(&t.default_sr(), GIB);
    let e = t.fail(
        "VDI.pool_migrate",
        vec![json!(lone), json!(t.default_sr()), json!({})],
    );
    assert_eq!(e, vec!["VDI_NEEDS_VM_FOR_MIGRATE", lone.as_str()]);
    t.call(
        "VM.start_on",
        vec![json!(vm), json!(hs[0]), json!(false), json!(false)],
    );
    let other = t
        .call("SR.get_all_records", vec![])
        .as_object()
        .unwrap()
        .iter()
        .find(|(r, s)| **r != t.default_sr() && s["content_type"] == "user" && s["shared"] == true)
        .map(|(r, _)| r.clone());
    if let Some(other) = other {
        let moved = t
            .call(
                "VDI.pool_migrate",
                vec![json!(disk), json!(other), json!({})],
            )
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(t.disk_vdi(&vm), moved);
        assert_eq!(t.str_field("VDI", &moved, "SR"), other);
        assert!(!t.exists("VDI", &disk));
    }
    t.call("VM.send_sysrq", vec![json!(vm), json!("b")]);
    t.call("VM.send_trigger", vec![json!(vm), json!("nmi")]);
    let e = t.fail(
        "VM.call_plugin",
        vec![json!(vm), json!("p"), json!("f"), json!({})],
    );
    assert_eq!(e, vec!["XENAPI_MISSING_PLUGIN", "p"]);
    t.call("VM.hard_shutdown", vec![json!(vm)]);
    let e = t.fail("VM.send_sysrq", vec![json!(vm), json!("b")]);
    assert_eq!(e[0], "VM_BAD_POWER_STATE");

    t.call(
        "host.set_hostname_live",
        vec![json!(hs[0]), json!("node-a")],
    );
    assert_eq!(t.str_field("host", &hs[0], "hostname"), "node-a");
    let e = t.fail(
        "host.set_hostname_live",
        vec![json!(hs[0]), json!("bad name!")],
    );
    assert_eq!(e[0], "HOST_NAME_INVALID");
    t.call("host.enable_ssh", vec![json!(hs[0])]);
    assert_eq!(t.field("host", &hs[0], "ssh_enabled"), true);
    t.call("host.disable_ssh", vec![json!(hs[0])]);
    assert_eq!(t.field("host", &hs[0], "ssh_enabled"), false);
    assert!(t
        .call("host.dmesg", vec![json!(hs[0])])
        .as_str()
        .unwrap()
        .contains("node-a"));
}

#[test]
fn sr_and_pbd_life_cycle() {
    let t = T::new(2);
    let hs = t.hosts();
    let types = t.call("SR.get_supported_types", vec![]);
    assert!(types.as_array().unwrap().contains(&json!("nfs")));
    let e = t.fail(
        "SR.create",
        vec![
            json!(hs[0]),
            json!({}),
            json!(0),
            json!("x"),
            json!(""),
            json!("zfs-magic"),
            json!("user"),
            json!(false),
            json!({}),
        ],
    );
    assert_eq!(e, vec!["SR_UNKNOWN_DRIVER", "zfs-magic"]);
    let sr = t
        .call(
            "SR.create",
            vec![
                json!(hs[0]),
                json!({"server": "10.0.0.9", "serverpath": "/x"}),
                json!(100 * GIB),
                json!("nfs2"),
                json!("second"),
                json!("nfs"),
                json!("user"),
                json!(true),
                json!({}),
            ],
        )
        .as_str()
        .unwrap()
        .to_owned();
    let pbds = t.field("SR", &sr, "PBDs").as_array().unwrap().clone();
    assert_eq!(pbds.len(), 2);
    assert_eq!(t.field("SR", &sr, "physical_size"), 100 * GIB);
    let vdi = t.new_vdi(&sr, GIB);
    let e = t.fail("SR.destroy", vec![json!(sr)]);
    assert_eq!(e, vec!["SR_HAS_PBD", sr.as_str()]);
    // a running VM on host 0 uses the disk: its PBD cannot go
    let vm = t.new_vm("on-nfs2", GIB);
    t.new_vbd(&vm, &vdi, "1", "Disk", "RW", false).unwrap();
    t.call(
        "VM.start_on",
        vec![json!(vm), json!(hs[0]), json!(false), json!(false)],
    );
    let pbd0 = pbds
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .find(|p| t.str_field("PBD", p, "host") == hs[0])
        .unwrap();
    let e = t.fail("PBD.unplug", vec![json!(pbd0)]);
    assert_eq!(e, vec!["VDI_IN_USE", vdi.as_str(), "unplug"]);
    t.call("VM.hard_shutdown", vec![json!(vm)]);
    // a disk reset at boot forbids snapshots of its VM until it goes with its SR
    t.call(
        "VDI.add_to_sm_config",
        vec![json!(vdi), json!("on_boot"), json!("reset")],
    );
    t.call("VM.update_allowed_operations", vec![json!(vm)]);
    assert!(!t.ops("VM", &vm).contains(&"snapshot".to_owned()));
    for p in &pbds {
        t.call("PBD.unplug", vec![p.clone()]);
    }
    let e = t.fail("SR.destroy", vec![json!(sr)]);
    assert_eq!(e, vec!["SR_NOT_EMPTY"]);
    t.call("PBD.plug", vec![pbds[0].clone()]);
    assert_eq!(
        t.field("PBD", pbds[0].as_str().unwrap(), "currently_attached"),
        true
    );
    t.call("PBD.unplug", vec![pbds[0].clone()]);
    t.call("SR.forget", vec![json!(sr)]);
    assert!(!t.exists("SR", &sr) && !t.exists("VDI", &vdi));
    assert!(t.ops("VM", &vm).contains(&"snapshot".to_owned()));
    assert_eq!(
        t.str_field(
            "VBD",
            &t.field("VM", &vm, "VBDs")
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .find(|v| t.str_field("VBD", v, "userdevice") == "1")
                .unwrap(),
            "VDI"
        ),
        "OpaqueRef:NULL"
    );

    // introduce (no PBDs), then destroy needs PBDs
    let isr = t
        .call(
            "SR.introduce",
            vec![
                json!(""),
                json!("intro"),
                json!(""),
                json!("nfs"),
                json!("user"),
                json!(true),
                json!({}),
            ],
        )
        .as_str()
        .unwrap()
        .to_owned();
    let e = t.fail("SR.destroy", vec![json!(isr)]);
    assert_eq!(e, vec!["SR_NO_PBDS", isr.as_str()]);
    assert_eq!(
        t.call(
            "SR.probe_ext",
            vec![json!(hs[0]), json!({}), json!("nfs"), json!({})]
        ),
        json!([])
    );
    let e = t.fail(
        "SR.probe",
        vec![json!(hs[0]), json!({}), json!("nope"), json!({})],
    );
    assert_eq!(e[0], "SR_UNKNOWN_DRIVER");
    t.call("SR.forget", vec![json!(isr)]);

    // destroy of an empty SR with unplugged PBDs
    let esr = t
        .call(
            "SR.create",
            vec![
                json!(hs[1]),
                json!({}),
                json!(GIB),
                json!("e"),
                json!(""),
                json!("ext"),
                json!("user"),
                json!(false),
                json!({}),
            ],
        )
        .as_str()
        .unwrap()
        .to_owned();
    let epbd = t.field("SR", &esr, "PBDs")[0].clone();
    t.call("PBD.unplug", vec![epbd.clone()]);
    t.call("SR.destroy", vec![json!(esr)]);
    assert!(!t.exists("SR", &esr) && !t.exists("PBD", epbd.as_str().unwrap()));
}

#[test]
fn memory_setters_write_the_limits_their_parameters_name() {
    let t = T::new(1);
    let vm = t.new_vm("limits", GIB);
    let limits = |t: &T| {
        let r = t.rec("VM", &vm);
        [
            "memory_static_min",
            "memory_dynamic_min",
            "memory_dynamic_max",
            "memory_static_max",
        ]
        .map(|f| r[f].as_i64().unwrap())
    };
    let set = |method: &str, values: &[i64]| {
        let mut args = vec![json!(vm)];
        args.extend(values.iter().map(|v| json!(v)));
        t.call(method, args);
    };
    set("VM.set_memory_limits", &[256 * MIB, 4 * GIB, GIB, 2 * GIB]);
    assert_eq!(limits(&t), [256 * MIB, GIB, 2 * GIB, 4 * GIB]);
    set("VM.set_memory_static_range", &[128 * MIB, 3 * GIB]);
    assert_eq!(limits(&t), [128 * MIB, GIB, 2 * GIB, 3 * GIB]);
    set("VM.set_memory_static_min", &[64 * MIB]);
    set("VM.set_memory_static_max", &[5 * GIB]);
    assert_eq!(limits(&t), [64 * MIB, GIB, 2 * GIB, 5 * GIB]);
    set("VM.set_memory_dynamic_range", &[512 * MIB, 3 * GIB]);
    assert_eq!(limits(&t), [64 * MIB, 512 * MIB, 3 * GIB, 5 * GIB]);
    set("VM.set_memory_dynamic_min", &[768 * MIB]);
    set("VM.set_memory_dynamic_max", &[4 * GIB]);
    assert_eq!(limits(&t), [64 * MIB, 768 * MIB, 4 * GIB, 5 * GIB]);
    assert_eq!(t.field("VM", &vm, "memory_target"), json!(4 * GIB));
    set("VM.set_memory", &[2 * GIB]);
    assert_eq!(limits(&t), [64 * MIB, 2 * GIB, 2 * GIB, 2 * GIB]);
    // Each value is checked in parameter order; nothing changes on failure.
    let e = t.fail(
        "VM.set_memory_limits",
        vec![json!(vm), json!(MIB), json!("x"), json!(MIB), json!(MIB)],
    );
    assert_eq!(e[0], "FIELD_TYPE_ERROR");
    let e = t.fail("VM.set_memory_dynamic_min", vec![json!(vm), json!(3 * GIB)]);
    assert_eq!(e[0], "MEMORY_CONSTRAINT_VIOLATION");
    assert_eq!(limits(&t), [64 * MIB, 2 * GIB, 2 * GIB, 2 * GIB]);
}

#[test]
fn vbds_and_vifs_keep_a_metrics_row_and_free_their_slots() {
    let t = T::new(1);
    let vm = t.new_vm("devices", GIB);
    let vif = t.new_vif(&vm, "3", "").unwrap();
    let vif = vif.as_str().unwrap();
    let vdi = t.new_vdi(&t.default_sr(), GIB);
    let vbd = t.new_vbd(&vm, &vdi, "5", "Disk", "RW", false).unwrap();
    let vbd = vbd.as_str().unwrap();
    let metrics = |class: &str, r: &str| t.str_field(class, r, "metrics");
    let (vif_m, vbd_m) = (metrics("VIF", vif), metrics("VBD", vbd));
    // The metrics classes are removed from the API (MESSAGE_REMOVED): look in the database.
    let row = |class: &str, r: &str| {
        t.sim
            .state()
            .read(|db| db.get(class, &xapi_types::Ref(r.to_owned())).is_some())
    };
    assert!(row("VIF_metrics", &vif_m) && row("VBD_metrics", &vbd_m));
    let allowed = |what: &str| t.call(&format!("VM.get_allowed_{what}_devices"), vec![json!(vm)]);
    assert!(!allowed("VIF").as_array().unwrap().contains(&json!("3")));
    assert!(!allowed("VBD").as_array().unwrap().contains(&json!("5")));
    assert_eq!(allowed("VIF").as_array().unwrap().last(), Some(&json!("6")));
    assert_eq!(
        allowed("VBD").as_array().unwrap().last(),
        Some(&json!("15"))
    );
    t.call("VIF.destroy", vec![json!(vif)]);
    t.call("VBD.destroy", vec![json!(vbd)]);
    assert!(!row("VIF_metrics", &vif_m) && !row("VBD_metrics", &vbd_m));
    assert!(allowed("VIF").as_array().unwrap().contains(&json!("3")));
    assert!(allowed("VBD").as_array().unwrap().contains(&json!("5")));
    let e = t.fail("VIF.destroy", vec![json!(vif)]);
    assert_eq!(e[0], "HANDLE_INVALID");
    let e = t.fail("VM.get_allowed_VIF_devices", vec![json!("OpaqueRef:nope")]);
    assert_eq!(e[0], "HANDLE_INVALID");
}

#[test]
fn pif_plug_reconfigure_forget_and_management() {
    let t = T::new(1);
    let host = t.hosts()[0].clone();
    let eth0 = t.field("host", &host, "PIFs")[0]
        .as_str()
        .unwrap()
        .to_owned();
    // a second NIC, unconfigured
    let net = t.str_field("PIF", &eth0, "network");
    let eth1 = t.sim.state().write(|db| {
        db.insert(
            "PIF",
            xapi_sim::db::rec([
                ("device", json!("eth1")),
                ("host", json!(host)),
                ("network", json!(net)),
                ("physical", json!(true)),
                ("currently_attached", json!(false)),
                ("ip_configuration_mode", json!("None")),
                ("ipv6_configuration_mode", json!("None")),
            ]),
        )
        .unwrap()
        .0
    });
    t.call("PIF.plug", vec![json!(eth1)]);
    assert_eq!(t.field("PIF", &eth1, "currently_attached"), true);
    t.call("PIF.unplug", vec![json!(eth1)]);
    assert_eq!(t.field("PIF", &eth1, "currently_attached"), false);
    let e = t.fail("PIF.unplug", vec![json!(eth0)]);
    assert_eq!(e, vec!["PIF_IS_MANAGEMENT_INTERFACE", eth0.as_str()]);
    // no network configuration: cannot carry the management traffic
    let e = t.fail("host.management_reconfigure", vec![json!(eth1)]);
    assert_eq!(e[0], "PIF_HAS_NO_NETWORK_CONFIGURATION");
    let static_ip = |ip: &str| {
        vec![
            json!(eth1),
            json!("Static"),
            json!(ip),
            json!("255.255.255.0"),
            json!("10.1.0.1"),
            json!("10.1.0.53"),
        ]
    };
    let e = t.fail("PIF.reconfigure_ip", static_ip("10.1.0.300"));
    assert_eq!(e, vec!["INVALID_IP_ADDRESS_SPECIFIED", "10.1.0.300"]);
    t.call("PIF.reconfigure_ip", static_ip("10.1.0.7"));
    assert_eq!(t.str_field("PIF", &eth1, "IP"), "10.1.0.7");
    assert_eq!(t.str_field("PIF", &eth1, "ip_configuration_mode"), "Static");
    t.call(
        "PIF.reconfigure_ipv6",
        vec![
            json!(eth1),
            json!("Static"),
            json!("fd00::7/64"),
            json!(""),
            json!(""),
        ],
    );
    assert_eq!(t.field("PIF", &eth1, "IPv6"), json!(["fd00::7/64"]));
    // the management traffic moves to eth1; eth0 may then go
    t.call("host.management_reconfigure", vec![json!(eth1)]);
    assert_eq!(
        (
            t.field("PIF", &eth1, "management"),
            t.field("PIF", &eth0, "management")
        ),
        (json!(true), json!(false))
    );
    t.call("PIF.forget", vec![json!(eth0)]);
    assert!(!t.exists("PIF", &eth0));
    let e = t.fail("PIF.forget", vec![json!(eth1)]);
    assert_eq!(e[0], "PIF_IS_MANAGEMENT_INTERFACE");
}

#[test]
fn bond_create_and_destroy() {
    let t = T::new(2);
    let hs = t.hosts();
    let eth0 = t.field("host", &hs[0], "PIFs")[0]
        .as_str()
        .unwrap()
        .to_owned();
    let ip = t.str_field("PIF", &eth0, "IP");
    let nic = |host: &str, dev: &str| {
        t.sim.state().write(|db| {
            db.insert(
                "PIF",
                xapi_sim::db::rec([
                    ("device", json!(dev)),
                    ("host", json!(host)),
                    ("VLAN", json!(-1)),
                    ("physical", json!(true)),
                    ("currently_attached", json!(true)),
                ]),
            )
            .unwrap()
            .0
        })
    };
    let eth1 = nic(&hs[0], "eth1");
    let other_host = nic(&hs[1], "eth1");
    let net = t
        .call(
            "network.create",
            vec![json!({"name_label": "bonded", "other_config": {}})],
        )
        .as_str()
        .unwrap()
        .to_owned();
    let create = |members: Vec<&str>, mode: &str| {
        vec![
            json!(net),
            json!(members),
            json!(""),
            json!(mode),
            json!({}),
        ]
    };
    assert_eq!(
        t.fail("Bond.create", create(vec![&eth0], "active-backup")),
        vec!["PIF_BOND_NEEDS_MORE_MEMBERS"]
    );
    assert_eq!(
        t.fail("Bond.create", create(vec![&eth0, &other_host], "lacp")),
        vec!["PIF_CANNOT_BOND_CROSS_HOST"]
    );
    assert_eq!(
        t.fail("Bond.create", create(vec![&eth0, &eth1], "round-robin"))[0],
        "INVALID_VALUE"
    );
    let bond = t
        .call("Bond.create", create(vec![&eth0, &eth1], "active-backup"))
        .as_str()
        .unwrap()
        .to_owned();
    let master = t.str_field("Bond", &bond, "master");
    let mut slaves: Vec<String> = t
        .field("Bond", &bond, "slaves")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    slaves.sort();
    let mut want = vec![eth0.clone(), eth1.clone()];
    want.sort();
    assert_eq!(slaves, want);
    assert_eq!(t.str_field("PIF", &master, "device"), "bond0");
    assert_eq!(t.str_field("PIF", &master, "network"), net);
    // the management interface and its address moved to the bond
    assert_eq!(t.field("PIF", &master, "management"), true);
    assert_eq!(t.str_field("PIF", &master, "IP"), ip);
    assert_eq!(t.field("PIF", &eth0, "management"), false);
    assert_eq!(
        t.fail("Bond.create", create(vec![&eth0, &eth1], "lacp")),
        vec!["PIF_ALREADY_BONDED", eth0.as_str()]
    );
    t.call("Bond.destroy", vec![json!(bond)]);
    assert!(!t.exists("Bond", &bond) && !t.exists("PIF", &master));
    assert_eq!(t.field("PIF", &eth0, "management"), true);
    assert_eq!(t.str_field("PIF", &eth1, "bond_slave_of"), "OpaqueRef:NULL");
}
