//! Object methods acting on XAPI (vm, host, pool, sr, vdi/disk, vbd, vif, network, tag, message, task)
//! against in-process simulated pools connected through `server.add`: effects observed through
//! `xo.getAllObjects`, XAPI errors mapped to XO's codes, resolve errors, permissions, read-only servers.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use xapi_sim::RunningPool;
use xapi_types::XapiError;
use xo_server::methods::resolve::{resolve_table, PermissionChecker, Permissions};
use xo_store::User;

use super::pools::{add_params, sim, sim_session};
use super::{config, start_with, Client, TIMEOUT};

pub(crate) struct Env {
    _dir: tempfile::TempDir,
    pub(crate) server: xo_server::RunningServer,
    pub(crate) pool: RunningPool,
    pub(crate) c: Client,
    pub(crate) server_id: String,
}

pub(crate) async fn env(hosts: usize, vms: usize) -> Env {
    env_with(hosts, vms, |b| b).await
}

async fn env_with(
    hosts: usize,
    vms: usize,
    builder: impl FnOnce(xo_server::AppBuilder) -> xo_server::AppBuilder,
) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let pool = sim(hosts, vms).await;
    let server = start_with(config(dir.path()), builder).await;
    let mut c = Client::admin(&server).await;
    let server_id = c.ok("server.add", add_params(&pool)).await;
    let server_id = server_id.as_str().unwrap().to_owned();
    Env {
        _dir: dir,
        server,
        pool,
        c,
        server_id,
    }
}

impl Client {
    pub(crate) async fn objects(&mut self, filter: Value) -> Map<String, Value> {
        match self
            .ok("xo.getAllObjects", json!({ "filter": filter }))
            .await
        {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    /// The only object matching `filter`.
    pub(crate) async fn one(&mut self, filter: Value) -> Value {
        let all = self.objects(filter.clone()).await;
        assert_eq!(all.len(), 1, "{filter}: {all:?}");
        all.into_iter().next().unwrap().1
    }

    pub(crate) async fn object(&mut self, id: &str) -> Option<Value> {
        self.objects(json!({ "id": id })).await.remove(id)
    }

    /// Polls the object `id` until `pred` holds (`None`: the object is gone), bounded by TIMEOUT.
    pub(crate) async fn wait_object(
        &mut self,
        id: &str,
        pred: impl Fn(Option<&Value>) -> bool,
    ) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let o = self.object(id).await;
            if pred(o.as_ref()) {
                return o;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never reached the expected state: {o:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn wait_field(&mut self, id: &str, field: &str, value: Value) -> Value {
        self.wait_object(id, |o| o.is_some_and(|o| o[field] == value))
            .await
            .unwrap()
    }

    /// Polls until exactly one object matches `filter`; that object.
    pub(crate) async fn wait_object_by(&mut self, filter: Value) -> Value {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let all = self.objects(filter.clone()).await;
            if all.len() == 1 {
                return all.into_iter().next().unwrap().1;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no single object matches {filter}: {all:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn wait_gone(&mut self, id: &str) {
        self.wait_object(id, |o| o.is_none()).await;
    }
}

pub(crate) fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

// --------------------------------------------------------------- power

#[tokio::test]
async fn objects_vm_power_cycle_and_error_mapping() {
    let mut e = env(1, 20).await;
    let c = &mut e.c;
    let halted = c.one(json!({"type": "VM", "name_label": "vm-00012"})).await;
    let vm = id(&halted);
    assert_eq!(halted["power_state"], "Halted");

    // start (namespace param normalised to id), then the running VM cannot be started again: XO falls
    // back to resume, which XAPI refuses with VM_BAD_POWER_STATE → 13
    assert_eq!(c.ok("vm.start", json!({ "vm": vm })).await, true);
    c.wait_field(&vm, "power_state", json!("Running")).await;
    let err = c.err("vm.start", json!({ "id": vm })).await;
    assert_eq!(err["code"], 13, "{err}");
    assert_eq!(err["data"]["objectId"], vm.as_str());
    assert_eq!(err["data"]["actual"], "running");

    // pause, then start on a paused VM unpauses it
    c.ok("vm.pause", json!({ "id": vm })).await;
    c.wait_field(&vm, "power_state", json!("Paused")).await;
    c.ok("vm.start", json!({ "id": vm })).await;
    c.wait_field(&vm, "power_state", json!("Running")).await;

    // suspend / resume
    c.ok("vm.suspend", json!({ "id": vm })).await;
    c.wait_field(&vm, "power_state", json!("Suspended")).await;
    let err = c.err("vm.pause", json!({ "id": vm })).await;
    assert_eq!(err["code"], 13);
    c.ok("vm.resume", json!({ "id": vm })).await;
    c.wait_field(&vm, "power_state", json!("Running")).await;

    // restart (clean, then hard), stop (clean), stop of a halted VM → 13, hard stop
    c.ok("vm.restart", json!({ "id": vm })).await;
    c.ok("vm.restart", json!({ "id": vm, "force": true })).await;
    c.wait_field(&vm, "power_state", json!("Running")).await;
    let stopped = c.call("vm.stop", json!({ "id": vm })).await;
    match stopped.get("error") {
        // a guest without PV drivers cannot shut down cleanly: XO answers invalidParameters
        Some(err) => {
            assert_eq!(err["code"], 10, "{err}");
            assert_eq!(err["message"], "clean shutdown requires PV drivers");
            c.ok("vm.stop", json!({ "id": vm, "force": true })).await;
        }
        None => assert_eq!(stopped["result"], true),
    }
    c.wait_field(&vm, "power_state", json!("Halted")).await;
    assert_eq!(c.err("vm.stop", json!({ "id": vm })).await["code"], 13);
    assert_eq!(c.err("vm.resume", json!({ "id": vm })).await["code"], 13);

    // a seeded running VM (PV drivers present) stops cleanly; another one is stopped hard
    let running = c.one(json!({"type": "VM", "name_label": "vm-00001"})).await;
    c.ok("vm.stop", json!({ "id": id(&running) })).await;
    c.wait_field(&id(&running), "power_state", json!("Halted"))
        .await;
    let running2 = c.one(json!({"type": "VM", "name_label": "vm-00002"})).await;
    c.ok("vm.stop", json!({ "id": id(&running2), "force": true }))
        .await;
    c.wait_field(&id(&running2), "power_state", json!("Halted"))
        .await;

    // blocked start → forbiddenOperation (5); force lifts the block
    c.ok(
        "vm.set",
        json!({ "id": vm, "blockedOperations": {"start": "maintenance", "start_on": true} }),
    )
    .await;
    c.wait_object(&vm, |o| {
        o.is_some_and(|o| o["blockedOperations"]["start"] == "maintenance")
    })
    .await;
    let err = c.err("vm.start", json!({ "id": vm })).await;
    assert_eq!(
        err,
        json!({"code": 5, "message": "forbidden operation: Start",
            "data": {"operation": "Start", "reason": "maintenance"}})
    );
    c.ok("vm.start", json!({ "id": vm, "force": true })).await;
    let o = c.wait_field(&vm, "power_state", json!("Running")).await;
    assert!(o["blockedOperations"].get("start").is_none(), "{o}");

    // blocked shutdown: refused (19) unless bypassed; the block is restored afterwards
    c.ok(
        "vm.set",
        json!({ "id": vm, "blockedOperations": {"hard_shutdown": "keep it up"} }),
    )
    .await;
    c.wait_object(&vm, |o| {
        o.is_some_and(|o| o["blockedOperations"]["hard_shutdown"] == "keep it up")
    })
    .await;
    let err = c
        .err(
            "vm.stop",
            json!({ "id": vm, "force": true, "bypassBlockedOperation": false }),
        )
        .await;
    assert_eq!(err["code"], 19, "{err}");
    c.ok("vm.stop", json!({ "id": vm, "force": true })).await;
    let o = c
        .wait_object(&vm, |o| {
            o.is_some_and(|o| {
                o["power_state"] == "Halted"
                    && o["blockedOperations"]["hard_shutdown"] == "keep it up"
            })
        })
        .await
        .unwrap();

    // resolve errors: unknown id, wrong type, bad params
    let err = c.err("vm.start", json!({ "id": "no-such-vm" })).await;
    assert_eq!(
        err,
        json!({"code": 1, "message": "no such VM no-such-vm", "data": {"id": "no-such-vm", "type": "VM"}})
    );
    let host = c.one(json!({"type": "host"})).await;
    let err = c.err("vm.stop", json!({ "id": id(&host) })).await;
    assert_eq!(err["code"], 1);
    assert_eq!(err["data"]["type"], "VM");
    // lookup by XAPI ref works
    let by_ref = c.err("vm.stop", json!({ "id": o["_xapiRef"] })).await;
    assert_eq!(by_ref["code"], 13);
    assert_eq!(c.err("vm.start", json!({ "id": 42 })).await["code"], 10);
    assert_eq!(c.err("vm.start", json!({})).await["code"], 10);
    assert_eq!(
        c.err("vm.start", json!({ "id": vm, "bogus": 1 })).await["code"],
        10
    );
    assert_eq!(
        c.err("vm.clone", json!({ "id": vm, "name": "x" })).await["code"],
        10
    );
    e.server.shutdown().await;
    drop(e.pool);
}

// ------------------------------------------------------- clone & co

#[tokio::test]
async fn objects_vm_clone_copy_snapshot_revert_delete() {
    let mut e = env(1, 14).await;
    let c = &mut e.c;
    let src = c.one(json!({"type": "VM", "name_label": "vm-00012"})).await;
    let src_id = id(&src);

    // fast clone: the new VM's uuid, already in the cache
    let clone = c
        .ok(
            "vm.clone",
            json!({ "id": src_id, "name": "the clone", "full_copy": false }),
        )
        .await;
    let clone = clone.as_str().unwrap().to_owned();
    let o = c.object(&clone).await.expect("clone in the cache at once");
    assert_eq!(
        (o["type"].clone(), o["name_label"].clone()),
        (json!("VM"), json!("the clone"))
    );
    assert_eq!(o["power_state"], "Halted");

    // full copy of a running VM (snapshotted first, snapshot removed after)
    let running = c.one(json!({"type": "VM", "name_label": "vm-00003"})).await;
    let full = c
        .ok(
            "vm.clone",
            json!({ "id": id(&running), "name": "full copy", "full_copy": true }),
        )
        .await;
    let full = full.as_str().unwrap().to_owned();
    let o = c.object(&full).await.unwrap();
    assert_eq!(o["name_label"], "full copy");
    assert_eq!(o["$VBDs"].as_array().map(Vec::len), Some(2));
    let snaps = c
        .objects(json!({"type": "VM-snapshot", "$snapshot_of": id(&running)}))
        .await;
    assert!(snaps.is_empty(), "temporary snapshot left: {snaps:?}");

    // copy to an SR of the same pool
    let sr = c.one(json!({"type": "SR", "content_type": "user"})).await;
    let copy = c
        .ok(
            "vm.copy",
            json!({ "vm": src_id, "sr": id(&sr), "name": "copied" }),
        )
        .await;
    let copy = copy.as_str().unwrap().to_owned();
    assert_eq!(c.object(&copy).await.unwrap()["name_label"], "copied");
    assert_eq!(
        c.err("vm.copy", json!({ "vm": src_id, "sr": src_id }))
            .await["code"],
        1
    );

    // snapshot with description, default name
    let snap = c
        .ok(
            "vm.snapshot",
            json!({ "id": src_id, "description": "before upgrade" }),
        )
        .await;
    let snap = snap.as_str().unwrap().to_owned();
    let s = c
        .wait_object(&snap, |o| {
            o.is_some_and(|o| o["name_description"] == "before upgrade")
        })
        .await
        .unwrap();
    assert_eq!(s["type"], "VM-snapshot");
    assert_eq!(s["$snapshot_of"], src_id.as_str());
    let label = s["name_label"].as_str().unwrap();
    assert!(
        label.starts_with("vm-00012_") && label.ends_with('Z'),
        "{label}"
    );
    // snapshots of templates-only methods: revert needs a snapshot
    assert_eq!(
        c.err("vm.revert", json!({ "snapshot": src_id })).await["code"],
        1
    );

    // revert: the VM's settings come back from the snapshot
    c.ok("vm.set", json!({ "id": src_id, "CPUs": 2, "cpusMax": 2 }))
        .await;
    c.wait_object(&src_id, |o| o.is_some_and(|o| o["CPUs"]["number"] == 2))
        .await;
    c.ok("vm.revert", json!({ "snapshot": snap })).await;
    c.wait_object(&src_id, |o| {
        o.is_some_and(|o| o["CPUs"]["number"] == 1 && o["CPUs"]["max"] == 1)
    })
    .await;

    // delete: the snapshot, then the clone with its disks, then a running VM (hard shutdown first)
    c.ok("vm.delete", json!({ "id": snap })).await;
    c.wait_gone(&snap).await;
    let clone_obj = c.object(&clone).await.unwrap();
    let mut vdis = Vec::new();
    for vbd in clone_obj["$VBDs"].as_array().unwrap() {
        let vbd = c.object(vbd.as_str().unwrap()).await.unwrap();
        if let Some(vdi) = vbd["VDI"].as_str() {
            vdis.push(vdi.to_owned());
        }
    }
    assert!(!vdis.is_empty());
    c.ok("vm.delete", json!({ "id": clone, "deleteDisks": true }))
        .await;
    c.wait_gone(&clone).await;
    for vdi in vdis {
        c.wait_gone(&vdi).await;
    }
    c.ok("vm.delete", json!({ "id": id(&running) })).await;
    c.wait_gone(&id(&running)).await;
    // templates cannot be deleted by vm.delete without the flag when they are default ones
    let tpl = c
        .objects(json!({"type": "VM-template", "isDefaultTemplate": true}))
        .await;
    let (tpl_id, _) = tpl.into_iter().next().unwrap();
    let err = c.err("vm.delete", json!({ "id": tpl_id })).await;
    assert_eq!(err["code"], 5, "{err}");
    e.server.shutdown().await;
}

// ------------------------------------------------------- set & create

#[tokio::test]
async fn objects_vm_set_and_create() {
    let mut e = env(1, 14).await;
    let c = &mut e.c;
    let vm = id(&c.one(json!({"type": "VM", "name_label": "vm-00013"})).await);
    c.ok(
        "vm.set",
        json!({
            "id": vm,
            "name_label": "db server",
            "name_description": "",
            "notes": "remember the backups",
            "CPUs": 4,
            "cpusMax": 4,
            "memory": "2GiB",
            "high_availability": "restart",
            "auto_poweron": true,
            "startDelay": 5,
            "coresPerSocket": 2,
            "viridian": true,
            "xenStoreData": {"role": "db"},
            "creation": {"user": "someone"},
        }),
    )
    .await;
    let o = c
        .wait_object(&vm, |o| {
            o.is_some_and(|o| o["name_label"] == "db server" && o["CPUs"]["number"] == 4)
        })
        .await
        .unwrap();
    assert_eq!(o["name_description"], "");
    assert_eq!(o["notes"], "remember the backups");
    assert_eq!(o["CPUs"]["max"], 4);
    assert_eq!(o["memory"]["dynamic"][1], 2_i64 << 30);
    assert_eq!(o["memory"]["static"][1], 2_i64 << 30);
    assert_eq!(o["high_availability"], "restart");
    assert_eq!(o["auto_poweron"], true);
    assert_eq!(o["startDelay"], 5);
    assert_eq!(o["coresPerSocket"], 2);
    assert_eq!(o["viridian"], true);
    assert_eq!(o["xenStoreData"]["vm-data/role"], "db");
    assert_eq!(o["creation"]["user"], "someone");
    let pool = c.one(json!({"type": "pool"})).await;
    assert_eq!(pool["auto_poweron"], true);

    // platform, scheduling and boot settings
    let host = id(&c.one(json!({"type": "host"})).await);
    let sr = id(&c.one(json!({"type": "SR", "content_type": "user"})).await);
    c.ok(
        "vm.set",
        json!({
            "id": vm,
            "cpuCap": 50, "cpuWeight": 512, "cpuMask": [0, 1],
            "affinityHost": host, "vga": "std", "videoram": 8,
            "hasVendorDevice": true, "expNestedHvm": true, "nestedVirt": true,
            "secureBoot": true, "nicType": "e1000", "hvmBootFirmware": "uefi",
            "suspendSr": sr, "share": false, "memoryStaticMax": "4GiB",
        }),
    )
    .await;
    let o = c
        .wait_object(&vm, |o| {
            o.is_some_and(|o| o["vga"] == "std" && o["suspendSr"] == sr.as_str())
        })
        .await
        .unwrap();
    assert_eq!(o["cpuCap"], 50);
    assert_eq!(o["cpuWeight"], 512);
    assert_eq!(o["cpuMask"], json!([0, 1]));
    assert_eq!(o["affinityHost"], host.as_str());
    assert_eq!(o["videoram"], "8");
    assert_eq!(o["hasVendorDevice"], true);
    assert_eq!(o["expNestedHvm"], true);
    assert_eq!(o["isNestedVirtEnabled"], true);
    assert_eq!(o["secureBoot"], true);
    assert_eq!(o["nicType"], "e1000");
    assert_eq!(o["boot"]["firmware"], "uefi");
    assert_eq!(o["memory"]["static"][1], 4_i64 << 30);
    c.ok(
        "vm.set",
        json!({ "id": vm, "cpuCap": null, "affinityHost": null, "suspendSr": null, "nicType": null,
            "virtualizationMode": "hvm" }),
    )
    .await;
    let o = c
        .wait_object(&vm, |o| {
            o.is_some_and(|o| o["affinityHost"].is_null() && o.get("cpuCap").is_none())
        })
        .await
        .unwrap();
    assert_eq!(o["suspendSr"], Value::Null);
    assert_eq!(o["virtualizationMode"], "hvm");
    let err = c
        .err("vm.set", json!({ "id": vm, "virtualizationMode": "pvh" }))
        .await;
    assert_eq!(
        err["message"],
        "The virtualization mode must be 'pv' or 'hvm'"
    );
    let err = c.err("vm.set", json!({ "id": vm, "videoram": 3 })).await;
    assert_eq!(err["code"], -32000);

    // lowering cpusMax below CPUs in one call sets CPUs first
    c.ok("vm.set", json!({ "id": vm, "CPUs": 1, "cpusMax": 2 }))
        .await;
    let o = c
        .wait_object(&vm, |o| o.is_some_and(|o| o["CPUs"]["max"] == 2))
        .await
        .unwrap();
    assert_eq!(o["CPUs"]["number"], 1);
    // memoryMax / memoryMin on a halted VM
    c.ok(
        "vm.set",
        json!({ "id": vm, "memoryMax": "3GiB", "memoryMin": 1_073_741_824 }),
    )
    .await;
    let o = c
        .wait_object(&vm, |o| {
            o.is_some_and(|o| o["memory"]["dynamic"][1] == 3_i64 << 30)
        })
        .await
        .unwrap();
    assert_eq!(o["memory"]["dynamic"][0], 1_i64 << 30);
    // notes removed with null
    c.ok("vm.set", json!({ "id": vm, "notes": null })).await;
    c.wait_object(&vm, |o| o.is_some_and(|o| o.get("notes").is_none()))
        .await;

    // errors: bad VGA value (plain error, admins see the message), bad size, unknown SR, resource sets
    let err = c.err("vm.set", json!({ "id": vm, "vga": "fancy" })).await;
    assert_eq!(err["code"], -32000);
    assert!(err["message"].as_str().unwrap().contains("VGA"), "{err}");
    assert_eq!(
        c.err("vm.set", json!({ "id": vm, "memory": "lots" })).await["code"],
        10
    );
    assert_eq!(
        c.err("vm.set", json!({ "id": vm, "suspendSr": "nope" }))
            .await["code"],
        1
    );
    assert_eq!(
        c.err("vm.set", json!({ "id": vm, "resourceSet": "rs" }))
            .await["code"],
        0
    );

    // create from a template: disks and VIFs as requested
    let tpl = c
        .objects(json!({"type": "VM-template", "isDefaultTemplate": true}))
        .await;
    let (tpl_id, _) = tpl.into_iter().next().unwrap();
    let sr = c.one(json!({"type": "SR", "content_type": "user"})).await;
    let net = c
        .objects(json!({"type": "network"}))
        .await
        .into_iter()
        .find(|(_, n)| !n["PIFs"].as_array().unwrap().is_empty())
        .unwrap()
        .1;
    let new_vm = c
        .ok(
            "vm.create",
            json!({
                "name_label": "fresh",
                "name_description": "from a template",
                "template": tpl_id,
                "VDIs": [{"size": "1GiB", "SR": id(&sr), "type": "user", "name_label": "fresh disk"}],
                "VIFs": [{"network": id(&net)}, {"network": id(&net), "mac": "02:00:00:00:00:42"}],
                "CPUs": 2,
                "memory": 1_073_741_824,
                "tags": ["created"],
            }),
        )
        .await;
    let new_vm = new_vm.as_str().unwrap().to_owned();
    let o = c
        .wait_object(&new_vm, |o| {
            o.is_some_and(|o| o["VIFs"].as_array().map(Vec::len) == Some(2))
        })
        .await
        .unwrap();
    assert_eq!(o["type"], "VM");
    assert_eq!(o["name_label"], "fresh");
    assert_eq!(o["name_description"], "from a template");
    assert_eq!(o["CPUs"]["number"], 2);
    assert_eq!(o["tags"], json!(["created"]));
    assert_eq!(
        o["creation"]["template"],
        c.object(&tpl_id).await.unwrap()["uuid"]
    );
    let disks = c
        .objects(json!({"type": "VDI", "name_label": "fresh disk"}))
        .await;
    assert_eq!(disks.len(), 1);
    let macs = c.objects(json!({"type": "VIF", "$VM": new_vm})).await;
    assert!(
        macs.values().any(|v| v["MAC"] == "02:00:00:00:00:42"),
        "{macs:?}"
    );

    // not supported / unknown properties / unknown template
    assert_eq!(
        c.err(
            "vm.create",
            json!({"name_label": "x", "template": tpl_id, "cloudConfig": "#cloud-config"})
        )
        .await["code"],
        0
    );
    assert_eq!(
        c.err(
            "vm.create",
            json!({"name_label": "x", "template": tpl_id, "frobnicate": true})
        )
        .await["code"],
        0
    );
    let err = c
        .err("vm.create", json!({"name_label": "x", "template": vm}))
        .await;
    assert_eq!(err["data"]["type"], "VM-template");
    // a failure after the clone removes the half-built VM
    let before = c.objects(json!({"type": "VM"})).await.len();
    let err = c
        .err(
            "vm.create",
            json!({"name_label": "broken", "template": tpl_id, "vga": "fancy"}),
        )
        .await;
    assert_eq!(err["code"], -32000);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while c.objects(json!({"type": "VM"})).await.len() != before {
        assert!(tokio::time::Instant::now() < deadline, "half-built VM left");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    e.server.shutdown().await;
}

// ----------------------------------------------------- migrate & host

#[tokio::test]
async fn objects_vm_migrate_and_host_methods() {
    let mut e = env(2, 4).await;
    let c = &mut e.c;
    let hosts = c.objects(json!({"type": "host"})).await;
    let pool = c.one(json!({"type": "pool"})).await;
    let master = pool["master"].as_str().unwrap().to_owned();
    let slave = hosts.keys().find(|h| **h != master).unwrap().clone();
    // vm-00000 runs on host 0 (the master)
    let vm = c.one(json!({"type": "VM", "name_label": "vm-00000"})).await;
    assert_eq!(vm["$container"], master.as_str());
    c.ok("vm.migrate", json!({ "vm": id(&vm), "targetHost": slave }))
        .await;
    c.wait_field(&id(&vm), "$container", json!(slave)).await;
    assert_eq!(
        c.err(
            "vm.migrate",
            json!({ "vm": id(&vm), "targetHost": id(&vm) })
        )
        .await["code"],
        1
    );

    // host.set / disable / enable / restartAgent (and its alias)
    c.ok(
        "host.set",
        json!({ "id": slave, "name_label": "second", "name_description": "spare" }),
    )
    .await;
    let h = c.wait_field(&slave, "name_label", json!("second")).await;
    assert_eq!(h["name_description"], "spare");
    c.ok("host.disable", json!({ "id": slave })).await;
    c.wait_field(&slave, "enabled", json!(false)).await;
    c.ok("host.enable", json!({ "host": slave })).await;
    c.wait_field(&slave, "enabled", json!(true)).await;
    c.ok("host.restartAgent", json!({ "id": slave })).await;
    c.ok("host.restart_agent", json!({ "id": slave })).await;
    c.ok(
        "host.set",
        json!({ "id": slave, "iscsiIqn": "iqn.2026-01.test:slave" }),
    )
    .await;
    c.wait_field(&slave, "iscsiIqn", json!("iqn.2026-01.test:slave"))
        .await;
    c.ok("host.set", json!({ "id": slave, "multipathing": true }))
        .await;
    let h = c.wait_field(&slave, "multipathing", json!(true)).await;
    assert_eq!(h["enabled"], true);

    // host.restart of the slave: VMs evacuated, host disabled then rebooted
    let err = c
        .err(
            "host.restart",
            json!({ "id": slave, "suspendResidentVms": true }),
        )
        .await;
    assert_eq!(err["code"], 0);
    // VMs on the slave's local SR cannot be evacuated: the host is re-enabled and XAPI's error returned
    let err = c.err("host.restart", json!({ "id": slave })).await;
    assert_eq!(err["code"], -32000);
    assert_eq!(err["data"]["code"], "CANNOT_EVACUATE_HOST", "{err}");
    c.wait_field(&slave, "enabled", json!(true)).await;
    // force: the evacuation failure is ignored and the host reboots
    c.ok("host.restart", json!({ "id": slave, "force": true }))
        .await;
    // detach: pool.eject is not simulated: the XAPI failure reaches the admin as a generic error
    let err = c.err("host.detach", json!({ "id": slave })).await;
    assert_eq!(err["code"], -32000);
    assert_eq!(
        c.err("host.enable", json!({ "id": vm["id"] })).await["code"],
        1
    );
    e.server.shutdown().await;
}

// ------------------------------------------- pool, storage, network

#[tokio::test]
async fn objects_pool_storage_network_and_small_namespaces() {
    let mut e = env(2, 2).await;
    let c = &mut e.c;
    let pool = id(&c.one(json!({"type": "pool"})).await);
    let shared = c
        .one(json!({"type": "SR", "shared": true, "content_type": "user"}))
        .await;
    let shared_id = id(&shared);
    c.ok(
        "pool.set",
        json!({
            "id": pool, "name_label": "renamed pool", "name_description": "lab",
            "auto_poweron": true, "migrationCompression": true, "suspendSr": shared_id,
        }),
    )
    .await;
    let p = c
        .wait_field(&pool, "name_label", json!("renamed pool"))
        .await;
    assert_eq!(p["name_description"], "lab");
    assert_eq!(p["auto_poweron"], true);
    assert_eq!(p["migrationCompression"], true);
    assert_eq!(p["suspendSr"], shared_id.as_str());
    c.ok("pool.set", json!({ "id": pool, "suspendSr": null }))
        .await;
    c.wait_field(&pool, "suspendSr", Value::Null).await;
    assert_eq!(
        c.err("pool.set", json!({ "id": pool, "crashDumpSr": pool }))
            .await["code"],
        1
    );

    // sr.set / sr.scan
    c.ok("sr.set", json!({ "id": shared_id, "name_label": "nfs" }))
        .await;
    c.wait_field(&shared_id, "name_label", json!("nfs")).await;
    c.ok("sr.scan", json!({ "sr": shared_id })).await;

    // disk.create attached to a running VM: VDI + VBD plugged
    let vm = c.one(json!({"type": "VM", "name_label": "vm-00000"})).await;
    let vm_id = id(&vm);
    let vdi = c
        .ok(
            "disk.create",
            json!({ "name": "data", "size": "1GiB", "sr": shared_id, "vm": vm_id }),
        )
        .await;
    let vdi = vdi.as_str().unwrap().to_owned();
    let v = c.object(&vdi).await.unwrap();
    assert_eq!(
        (v["type"].clone(), v["size"].clone()),
        (json!("VDI"), json!(1_i64 << 30))
    );
    let vbd = c
        .wait_object(&vdi, |o| {
            o.is_some_and(|o| !o["$VBDs"].as_array().unwrap().is_empty())
        })
        .await
        .unwrap()["$VBDs"][0]
        .as_str()
        .unwrap()
        .to_owned();
    c.wait_field(&vbd, "attached", json!(true)).await;

    // vdi.set: resizing an attached disk is VDI_IN_USE (17), as XO calls VDI.resize
    let err = c.err("vdi.set", json!({ "id": vdi, "size": "2GiB" })).await;
    assert_eq!(err["code"], 17, "{err}");
    assert_eq!(err["data"], json!({"objectId": vdi, "operation": "resize"}));

    // vbd.disconnect / connect / delete
    c.ok("vbd.disconnect", json!({ "id": vbd })).await;
    c.wait_field(&vbd, "attached", json!(false)).await;

    // vdi.set: name, grow; shrinking is refused (10)
    c.ok(
        "vdi.set",
        json!({ "id": vdi, "name_label": "data disk", "size": "2GiB" }),
    )
    .await;
    let v = c
        .wait_object(&vdi, |o| {
            o.is_some_and(|o| o["name_label"] == "data disk" && o["size"] == 2_i64 << 30)
        })
        .await
        .unwrap();
    assert_eq!(v["size"], 2_i64 << 30);
    let err = c.err("vdi.set", json!({ "id": vdi, "size": 1024 })).await;
    assert_eq!(err["code"], 10);
    assert_eq!(
        err["message"],
        format!(
            "cannot set new size (1024) below the current size ({})",
            2_i64 << 30
        )
    );

    c.ok("vbd.connect", json!({ "id": vbd })).await;
    c.wait_field(&vbd, "attached", json!(true)).await;
    c.ok("vbd.delete", json!({ "id": vbd })).await;
    c.wait_gone(&vbd).await;

    // vdi.migrate to a local SR, then vdi.delete
    let local = c
        .objects(json!({"type": "SR", "shared": false, "content_type": "user"}))
        .await
        .into_iter()
        .next()
        .unwrap()
        .0;
    c.ok("vdi.migrate", json!({ "id": vdi, "sr_id": local }))
        .await;
    let moved = c
        .wait_object(&vdi, |o| {
            o.is_none() || o.is_some_and(|o| o["$SR"] == local.as_str())
        })
        .await;
    let moved_id = match moved {
        Some(v) => id(&v),
        None => id(&c
            .one(json!({"type": "VDI", "name_label": "data disk"}))
            .await),
    };
    assert_eq!(c.object(&moved_id).await.unwrap()["$SR"], local.as_str());
    c.ok("vdi.delete", json!({ "id": moved_id })).await;
    c.wait_gone(&moved_id).await;

    // network.create / vm.createInterface / vif.delete / network.delete
    let net = c
        .ok(
            "network.create",
            json!({ "pool": pool, "name": "backend", "mtu": 9000 }),
        )
        .await;
    let net = net.as_str().unwrap().to_owned();
    let n = c.object(&net).await.unwrap();
    assert_eq!(
        (n["name_label"].clone(), n["MTU"].clone()),
        (json!("backend"), json!(9000))
    );
    assert_eq!(n["name_description"], "Created with Xen Orchestra");
    assert_eq!(n["automatic"], false);
    let vif = c
        .ok(
            "vm.createInterface",
            json!({ "vm": vm_id, "network": net, "mac": "02:00:00:00:00:99",
                "allowedIpv4Addresses": ["10.0.0.9"] }),
        )
        .await;
    let vif = vif.as_str().unwrap().to_owned();
    let f = c.wait_field(&vif, "attached", json!(true)).await;
    assert_eq!(f["MAC"], "02:00:00:00:00:99");
    assert_eq!(f["lockingMode"], "locked");
    assert_eq!(f["$network"], net.as_str());
    // the network is in use: XAPI refuses to destroy it
    let err = c.err("network.delete", json!({ "id": net })).await;
    assert_eq!(err["code"], -32000, "{err}");
    c.ok("vif.delete", json!({ "id": vif })).await;
    c.wait_gone(&vif).await;
    c.ok("network.delete", json!({ "id": net })).await;
    c.wait_gone(&net).await;

    // tag.add / tag.remove on a VM and on the pool
    for target in [&vm_id, &pool] {
        c.ok("tag.add", json!({ "id": target, "tag": "prod" }))
            .await;
        c.wait_field(target, "tags", json!(["prod"])).await;
        c.ok("tag.remove", json!({ "id": target, "tag": "prod" }))
            .await;
        c.wait_field(target, "tags", json!([])).await;
    }
    assert_eq!(
        c.err("tag.add", json!({ "id": "nope", "tag": "x" })).await["code"],
        1
    );

    // message.delete
    let msg = c
        .objects(json!({"type": "message"}))
        .await
        .into_iter()
        .next()
        .expect("a seeded message")
        .0;
    c.ok("message.delete", json!({ "id": msg })).await;
    c.wait_gone(&msg).await;

    // task.cancel (a non-cancellable task: XAPI error) and task.destroy
    e.pool
        .call(
            "task.create",
            vec![
                super::pools::sim_session(&e.pool),
                json!("import"),
                json!("manual task"),
            ],
        )
        .unwrap();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let task = loop {
        if let Some((tid, _)) = c
            .objects(json!({"type": "task", "name_label": "import"}))
            .await
            .into_iter()
            .next()
        {
            break tid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task never appeared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let err = c.err("task.cancel", json!({ "id": task })).await;
    assert_eq!(err["code"], -32000);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with("OPERATION_NOT_ALLOWED"),
        "{err}"
    );
    c.ok("task.destroy", json!({ "id": task })).await;
    c.wait_gone(&task).await;
    assert_eq!(
        c.err("task.destroy", json!({ "id": vm_id })).await["code"],
        1
    );
    e.server.shutdown().await;
}

// --------------------------------------------- permissions, read-only

#[tokio::test]
async fn objects_permissions_and_read_only_servers() {
    let mut e = env(1, 14).await;
    let vm = id(&e
        .c
        .one(json!({"type": "VM", "name_label": "vm-00012"}))
        .await);
    e.c.ok(
        "user.create",
        json!({"email": "bob", "password": "bob", "permission": "none"}),
    )
    .await;
    let mut bob = Client::connect(&e.server).await;
    bob.ok("session.signIn", json!({"email": "bob", "password": "bob"}))
        .await;
    // no ACL: unauthorized with the permission and the object
    let err = bob.err("vm.start", json!({ "id": vm })).await;
    assert_eq!(
        err,
        json!({"code": 2, "message": "not enough permissions",
            "data": {"permission": "operate", "object": {"id": vm}}})
    );
    let err = bob
        .err("vm.set", json!({ "id": vm, "name_label": "x" }))
        .await;
    assert_eq!(err["data"]["permission"], "administrate");
    // resolution comes first: unknown objects are noSuchObject for everybody
    assert_eq!(
        bob.err("vm.start", json!({ "id": "nope" })).await["code"],
        1
    );
    // not signed in
    let mut anon = Client::connect(&e.server).await;
    assert_eq!(anon.err("vm.start", json!({ "id": vm })).await["code"], 2);

    // read-only server: mutations refused before reaching XAPI, reads still fine
    e.c.ok("server.set", json!({ "id": e.server_id, "readOnly": true }))
        .await;
    let err = e.c.err("vm.start", json!({ "id": vm })).await;
    assert_eq!(err["code"], -32000);
    assert_eq!(err["message"], "cannot call VM.start() in read only mode");
    let err =
        e.c.err("vm.set", json!({ "id": vm, "name_label": "ro" }))
            .await;
    assert_eq!(
        err["message"],
        "cannot call VM.set_name_label() in read only mode"
    );
    assert_eq!(e.c.object(&vm).await.unwrap()["power_state"], "Halted");
    e.c.ok(
        "server.set",
        json!({ "id": e.server_id, "readOnly": false }),
    )
    .await;
    e.c.ok("vm.start", json!({ "id": vm })).await;
    e.c.wait_field(&vm, "power_state", json!("Running")).await;

    // a disconnected pool: serverUnreachable (9)
    e.c.ok("server.disable", json!({ "id": e.server_id })).await;
    let gone = e.c.err("vm.stop", json!({ "id": vm })).await;
    assert!(gone["code"] == 1 || gone["code"] == 9, "{gone}");
    e.server.shutdown().await;
}

// ------------------------------------------- more XO fallbacks and codes

#[tokio::test]
async fn objects_vm_start_stop_fallbacks_and_codes() {
    let mut e = env(1, 14).await;
    let c = &mut e.c;
    let vm = c.one(json!({"type": "VM", "name_label": "vm-00012"})).await;
    let vm_id = id(&vm);
    let host = id(&c.one(json!({"type": "host"})).await);

    // NO_HOSTS_AVAILABLE → 7
    e.pool.faults().fail_next(
        "VM.start",
        XapiError::new("NO_HOSTS_AVAILABLE", Vec::<String>::new()),
    );
    let err = c.err("vm.start", json!({ "id": vm_id })).await;
    assert_eq!(err, json!({"code": 7, "message": "no hosts available"}));

    // a MAC already used by a running VM: operationFailed (21) unless the check is bypassed
    let running = c.one(json!({"type": "VM", "name_label": "vm-00001"})).await;
    let used_mac = c
        .object(running["VIFs"][0].as_str().unwrap())
        .await
        .unwrap()["MAC"]
        .clone();
    let net = c.object(vm["VIFs"][0].as_str().unwrap()).await.unwrap()["$network"].clone();
    c.ok(
        "vm.createInterface",
        json!({ "vm": vm_id, "network": net, "mac": used_mac, "position": 1 }),
    )
    .await;
    let err = c.err("vm.start", json!({ "id": vm_id })).await;
    assert_eq!(
        err,
        json!({"code": 21, "message": "operation failed",
            "data": {"objectId": vm_id, "code": "DUPLICATED_MAC_ADDRESS"}})
    );
    // start on a given host, bypassing the MAC check
    c.ok(
        "vm.start",
        json!({ "id": vm_id, "host": host, "bypassMacAddressesCheck": true }),
    )
    .await;
    c.wait_object(&vm_id, |o| {
        o.is_some_and(|o| o["power_state"] == "Running" && o["$container"] == host.as_str())
    })
    .await;

    // clean shutdown refused for lack of PV drivers: XO's invalidParameters (10)
    for code in ["VM_MISSING_PV_DRIVERS", "VM_LACKS_FEATURE_SHUTDOWN"] {
        e.pool.faults().fail_next(
            "VM.clean_shutdown",
            XapiError::new(code, [vm["_xapiRef"].as_str().unwrap()]),
        );
        let err = c.err("vm.stop", json!({ "id": vm_id })).await;
        assert_eq!(
            err,
            json!({"code": 10, "message": "clean shutdown requires PV drivers", "data": {}})
        );
    }
    // other XAPI errors keep XO's mapping (VM_LACKS_FEATURE → 14) with the ref turned into the id
    e.pool.faults().fail_next(
        "VM.clean_reboot",
        XapiError::new("VM_LACKS_FEATURE", [vm["_xapiRef"].as_str().unwrap()]),
    );
    let err = c.err("vm.restart", json!({ "id": vm_id })).await;
    assert_eq!(err["code"], 14);
    assert_eq!(err["data"]["objectId"], vm_id.as_str());
    // a delayed clean shutdown falls back to a hard one after forceShutdownDelay
    e.pool
        .faults()
        .set_latency(std::time::Duration::from_millis(300));
    let stopped = c
        .call("vm.stop", json!({ "id": vm_id, "forceShutdownDelay": 1 }))
        .await;
    e.pool.faults().set_latency(std::time::Duration::ZERO);
    assert_eq!(stopped["result"], true, "{stopped}");
    c.wait_field(&vm_id, "power_state", json!("Halted")).await;
    e.server.shutdown().await;
}

#[tokio::test]
async fn objects_vm_create_from_a_custom_template() {
    let mut e = env(1, 14).await;
    let c = &mut e.c;
    // a halted VM turned into a template: its disk (userdevice 0) is an existing disk for vm.create
    let vm = c.one(json!({"type": "VM", "name_label": "vm-00013"})).await;
    let session = sim_session(&e.pool);
    e.pool
        .call(
            "VM.set_is_a_template",
            vec![session, vm["_xapiRef"].clone(), json!(true)],
        )
        .unwrap();
    let tpl = id(&vm);
    c.wait_field(&tpl, "type", json!("VM-template")).await;
    let iso = c
        .one(json!({"type": "VDI", "name_label": "guest-tools.iso"}))
        .await;
    let new_vm = c
        .ok(
            "vm.create",
            json!({
                "name_label": "from custom",
                "template": tpl,
                "existingDisks": {"0": {"size": "64GiB", "name_label": "system"}},
                "installation": {"method": "cdrom", "repository": id(&iso)},
                "bootAfterCreate": true,
                "clone": false,
            }),
        )
        .await;
    let new_vm = new_vm.as_str().unwrap().to_owned();
    // booted in the background
    let o = c.wait_field(&new_vm, "power_state", json!("Running")).await;
    let mut disk = None;
    let mut cd = None;
    for vbd in o["$VBDs"].as_array().unwrap() {
        let vbd = c.object(vbd.as_str().unwrap()).await.unwrap();
        if vbd["is_cd_drive"] == true {
            cd = Some(vbd);
        } else {
            disk = Some(vbd);
        }
    }
    assert_eq!(cd.unwrap()["VDI"], id(&iso).as_str());
    let disk = c
        .object(disk.unwrap()["VDI"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(disk["name_label"], "system");
    assert_eq!(disk["size"], 64_i64 << 30);
    // the template's VIF was replaced by none (no VIFs param): XO destroys the cloned ones
    assert_eq!(o["VIFs"], json!([]));
    // shrinking an existing disk is refused, and the half-built VM removed
    let err = c
        .err(
            "vm.create",
            json!({"name_label": "too small", "template": tpl,
                "existingDisks": {"0": {"size": 1024}}}),
        )
        .await;
    assert_eq!(err["code"], -32000);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with("Unable to update to a smaller VDI size"),
        "{err}"
    );
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !c
        .objects(json!({"type": "VM", "name_label": "too small"}))
        .await
        .is_empty()
    {
        assert!(tokio::time::Instant::now() < deadline, "half-built VM left");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    e.server.shutdown().await;
}

#[tokio::test]
async fn objects_host_restart_version_guard() {
    let mut e = env(2, 0).await;
    let c = &mut e.c;
    let pool = c.one(json!({"type": "pool"})).await;
    let master = pool["master"].as_str().unwrap().to_owned();
    let hosts = c.objects(json!({"type": "host"})).await;
    let slave = hosts.keys().find(|h| **h != master).unwrap().clone();
    // both hosts had patches installed after they booted: the master must reboot first
    let session = sim_session(&e.pool);
    for h in hosts.values() {
        e.pool
            .call(
                "host.add_to_other_config",
                vec![
                    session.clone(),
                    h["_xapiRef"].clone(),
                    json!("rpm_patch_installation_time"),
                    json!("4102444800"),
                ],
            )
            .unwrap();
    }
    c.wait_field(&slave, "rebootRequired", json!(true)).await;
    c.wait_field(&master, "rebootRequired", json!(true)).await;
    let err = c.err("host.restart", json!({ "id": slave })).await;
    assert_eq!(
        err,
        json!({"code": 25, "message": "incorrect state", "data": {"actual": true,
            "expected": false, "object": master, "property": "rebootRequired"}})
    );
    // bypassed on request (no VM to evacuate: the slave reboots)
    c.ok(
        "host.restart",
        json!({ "id": slave, "bypassVersionCheck": true }),
    )
    .await;
    e.server.shutdown().await;
}

/// Grants `operate` on the objects listed to everybody (a stand-in for the ACL plugin).
#[derive(Default)]
struct OperateOn(
    parking_lot::Mutex<Vec<String>>,
    parking_lot::Mutex<Vec<String>>,
);

impl PermissionChecker for OperateOn {
    fn first_denied(&self, _user: &User, pairs: &[(String, String)]) -> Option<usize> {
        let granted = self.0.lock();
        pairs
            .iter()
            .position(|(id, action)| !(granted.contains(id) && action == "operate"))
    }

    fn add_acl(&self, subject: &str, object: &str, action: &str) {
        self.1
            .lock()
            .push(format!("add {subject} {object} {action}"));
    }

    fn object_deleted(&self, object: &str) {
        self.1.lock().push(format!("deleted {object}"));
    }
}

#[tokio::test]
async fn objects_permission_checker_hook_and_resolve_table() {
    let table = resolve_table();
    let start = table.iter().find(|(n, _)| *n == "vm.start").unwrap().1;
    assert_eq!(
        start
            .iter()
            .map(|r| (r.param, r.types.to_vec(), r.action))
            .collect::<Vec<_>>(),
        [
            ("host", vec!["host"], "operate"),
            ("id", vec!["VM"], "operate")
        ]
    );
    let mut e = env(1, 14).await;
    // installed on the running app (replacing any checker installed at start)
    let grants = Arc::new(OperateOn::default());
    e.server
        .app()
        .set_extension(Arc::new(Permissions(grants.clone())));
    // every method with resolve entries is registered, with its params
    let info = e.c.ok("system.getMethodsInfo", json!({})).await;
    for (name, entries) in &table {
        let params = &info[*name]["params"];
        for r in entries.iter() {
            assert!(params.get(r.param).is_some(), "{name}: {}", r.param);
        }
    }
    let vm = id(&e
        .c
        .one(json!({"type": "VM", "name_label": "vm-00012"}))
        .await);
    grants.0.lock().push(vm.clone());
    e.c.ok(
        "user.create",
        json!({"email": "op", "password": "op", "permission": "none"}),
    )
    .await;
    let mut op = Client::connect(&e.server).await;
    op.ok("session.signIn", json!({"email": "op", "password": "op"}))
        .await;
    op.ok("vm.start", json!({ "id": vm })).await;
    e.c.wait_field(&vm, "power_state", json!("Running")).await;
    let err = op.err("vm.delete", json!({ "id": vm })).await;
    assert_eq!(
        err["data"],
        json!({"permission": "administrate", "object": {"id": vm}})
    );
    // snapshot needs operate on the VM and on the SRs of its disks; the creator gets admin on it
    let err = op.err("vm.snapshot", json!({ "id": vm })).await;
    assert_eq!(err["data"]["permission"], "operate");
    let sr = err["data"]["object"]["id"].as_str().unwrap().to_owned();
    assert_eq!(e.c.object(&sr).await.unwrap()["type"], "SR");
    grants.0.lock().push(sr);
    let snap = op
        .ok("vm.snapshot", json!({ "id": vm, "name": "mine" }))
        .await;
    let op_id =
        e.c.ok("user.getAll", json!({}))
            .await
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == "op")
            .unwrap()["id"]
            .clone();
    assert_eq!(
        grants.1.lock().as_slice(),
        [format!(
            "add {} {} admin",
            op_id.as_str().unwrap(),
            snap.as_str().unwrap()
        )]
    );
    // deletions are reported to the checker
    e.c.ok("vm.delete", json!({ "id": snap })).await;
    assert_eq!(
        grants.1.lock().last().unwrap(),
        &format!("deleted {}", snap.as_str().unwrap())
    );
    e.server.shutdown().await;
}
