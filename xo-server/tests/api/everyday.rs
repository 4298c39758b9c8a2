//! Everyday operations of a sysadmin against a simulated pool: a VM's CD drive (insert, eject, forced
//! insert), its boot order, making a template, a host's maintenance mode (with blocked migrations forced
//! through), host power off and on, the pool's default SR and master.

use std::sync::Arc;

use serde_json::{json, Value};
use xo_server::methods::resolve::{PermissionChecker, Permissions};
use xo_store::User;

use super::objects::{env, id};
use super::pools::sim_session;
use super::Client;

/// The sim's record of `class` `r` (`r` a XAPI ref).
fn sim_record(pool: &xapi_sim::RunningPool, class: &str, r: &str) -> Value {
    pool.state().read(|db| {
        Value::Object(
            db.get(class, &xapi_types::Ref::from(r))
                .unwrap()
                .clone()
                .into_iter()
                .collect(),
        )
    })
}

/// A user `email` (password `pw`, no permission) created by `admin`, signed in on a connection of its own.
async fn new_user(admin: &mut Client, server: &xo_server::RunningServer, email: &str) -> Client {
    admin
        .ok(
            "user.create",
            json!({"email": email, "password": "pw", "permission": "none"}),
        )
        .await;
    let mut u = Client::connect(server).await;
    u.ok("session.signIn", json!({"email": email, "password": "pw"}))
        .await;
    u
}

/// The params `extra` with `id`.
fn with_id(id: &str, extra: Value) -> Value {
    let mut p = json!({ "id": id });
    p.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    p
}

/// The CD drive of the VM `vm` (an XO id), as an XO VBD object.
async fn cd_drive(c: &mut Client, vm: &str) -> Option<Value> {
    c.objects(json!({"type": "VBD", "VM": vm, "is_cd_drive": true}))
        .await
        .into_values()
        .next()
}

#[tokio::test]
async fn everyday_cd_drive_and_boot_order() {
    let mut e = env(1, 20).await;
    let c = &mut e.c;
    let vm = id(&c.one(json!({"type": "VM", "name_label": "vm-00012"})).await);
    let iso = id(&c
        .one(json!({"type": "VDI", "name_label": "guest-tools.iso"}))
        .await);
    let drive = id(&cd_drive(c, &vm)
        .await
        .expect("the seeded VM has a CD drive"));

    // insert, then the same again without force: the drive is not empty
    assert_eq!(
        c.ok(
            "vm.insertCd",
            json!({"id": vm, "cd_id": iso, "force": false})
        )
        .await,
        true
    );
    c.wait_field(&drive, "VDI", json!(iso)).await;
    let err = c
        .err(
            "vm.insertCd",
            json!({"id": vm, "cd_id": iso, "force": false}),
        )
        .await;
    assert_eq!(err["data"]["code"], "VBD_NOT_EMPTY", "{err}");
    // forced (the default): emptied, then inserted
    c.ok("vm.insertCd", json!({"id": vm, "cd_id": iso})).await;
    c.wait_field(&drive, "VDI", json!(iso)).await;

    // eject; ejecting an empty drive is XAPI's refusal
    assert_eq!(c.ok("vm.ejectCd", json!({"id": vm})).await, true);
    c.wait_object(&drive, |o| o.is_some_and(|o| o.get("VDI").is_none()))
        .await;
    let err = c.err("vm.ejectCd", json!({"id": vm})).await;
    assert_eq!(err["data"]["code"], "VBD_IS_EMPTY", "{err}");

    // a VM without a CD drive gets one
    let template = id(&c
        .objects(json!({"type": "VM-template"}))
        .await
        .into_values()
        .find(|t| t["name_label"].as_str().unwrap().contains("Debian"))
        .unwrap());
    let bare = c
        .ok(
            "vm.create",
            json!({"template": template, "name_label": "no drive yet"}),
        )
        .await;
    let bare = bare.as_str().unwrap().to_owned();
    assert!(cd_drive(c, &bare).await.is_none());
    c.ok("vm.insertCd", json!({"id": bare, "cd_id": iso})).await;
    c.wait_object(&bare, |o| {
        o.is_some_and(|o| !o["$VBDs"].as_array().unwrap().is_empty())
    })
    .await;
    let new_drive = cd_drive(c, &bare).await.expect("a CD drive was created");
    assert_eq!(new_drive["VDI"], iso.as_str());
    // nothing to eject from a VM without a drive
    let driveless = c
        .ok(
            "vm.create",
            json!({"template": template, "name_label": "no drive"}),
        )
        .await;
    assert_eq!(c.ok("vm.ejectCd", json!({"id": driveless})).await, true);

    // boot order of an HVM guest: only the `order` key changes
    let vm_obj = c.object(&vm).await.unwrap();
    assert_eq!(vm_obj["virtualizationMode"], "hvm");
    let vm_ref = vm_obj["_xapiRef"].as_str().unwrap().to_owned();
    let before = sim_record(&e.pool, "VM", &vm_ref)["HVM_boot_params"].clone();
    assert_eq!(
        c.ok("vm.setBootOrder", json!({"vm": vm, "order": "dn"}))
            .await,
        true
    );
    let after = sim_record(&e.pool, "VM", &vm_ref)["HVM_boot_params"].clone();
    assert_eq!(after["order"], "dn");
    for (k, v) in before.as_object().unwrap() {
        if k != "order" {
            assert_eq!(&after[k], v, "{k} kept");
        }
    }
    // a PV guest has no boot order
    e.pool
        .state()
        .write(|db| {
            let r = xapi_types::Ref::from(vm_ref.as_str());
            db.set_field("VM", &r, "HVM_boot_policy", json!(""))?;
            db.set_field("VM", &r, "domain_type", json!("pv"))
        })
        .unwrap();
    c.wait_field(&vm, "virtualizationMode", json!("pv")).await;
    let err = c
        .err("vm.setBootOrder", json!({"vm": vm, "order": "c"}))
        .await;
    assert_eq!(err["code"], 10, "{err}");

    // a CD or a disk of another pool
    let other = super::pools::sim(1, 0).await;
    c.ok("server.add", super::pools::add_params(&other)).await;
    let here = c.object(&iso).await.unwrap()["$pool"].clone();
    let mut foreign = None;
    let deadline = tokio::time::Instant::now() + super::TIMEOUT;
    while foreign.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other pool's ISO never came"
        );
        foreign = c
            .objects(json!({"type": "VDI", "name_label": "guest-tools.iso"}))
            .await
            .into_values()
            .find(|v| v["$pool"] != here)
            .map(|v| id(&v));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let foreign = foreign.unwrap();
    let err = c
        .err("vm.insertCd", json!({"id": vm, "cd_id": foreign}))
        .await;
    assert_eq!(
        (&err["code"], &err["message"]),
        (
            &json!(10),
            &json!("the VM and the CD are in different pools")
        ),
        "{err}"
    );
    let err = c
        .err("vm.attachDisk", json!({"vm": vm, "vdi": foreign}))
        .await;
    assert_eq!(err["code"], 10, "{err}");
    e.server.shutdown().await;
}

/// Grants everything except on one object (the pool).
struct AllBut(String);

impl PermissionChecker for AllBut {
    fn first_denied(&self, _user: &User, pairs: &[(String, String)]) -> Option<usize> {
        pairs.iter().position(|(id, _)| *id == self.0)
    }
}

#[tokio::test]
async fn everyday_convert_to_template() {
    let mut e = env(1, 20).await;
    let c = &mut e.c;
    let halted: Vec<String> = c
        .objects(json!({"type": "VM", "power_state": "Halted"}))
        .await
        .values()
        .map(id)
        .collect();
    let running = id(&c
        .objects(json!({"type": "VM", "power_state": "Running"}))
        .await
        .into_values()
        .next()
        .unwrap());

    assert_eq!(
        c.ok("vm.convertToTemplate", json!({"id": halted[0]})).await,
        true
    );
    c.wait_field(&halted[0], "type", json!("VM-template")).await;
    // XO's alias
    c.ok("vm.convert", json!({"id": halted[1]})).await;
    c.wait_field(&halted[1], "type", json!("VM-template")).await;
    // a running VM cannot become a template
    let err = c.err("vm.convertToTemplate", json!({"id": running})).await;
    assert_eq!(err["code"], 13, "{err}");

    // a user who may administrate the VM but not its pool is refused
    let pool_id = c.object(&halted[2]).await.unwrap()["$pool"]
        .as_str()
        .unwrap()
        .to_owned();
    e.server
        .app()
        .set_extension(Arc::new(Permissions(Arc::new(AllBut(pool_id)))));
    let mut u = new_user(c, &e.server, "vmadmin").await;
    let err = u
        .err("vm.convertToTemplate", json!({"id": halted[2]}))
        .await;
    assert_eq!(err["code"], 2, "{err}");
    assert_eq!(c.object(&halted[2]).await.unwrap()["type"], "VM");
    e.server.shutdown().await;
}

#[tokio::test]
async fn everyday_host_maintenance_power_and_pool() {
    let mut e = env(3, 30).await;
    let c = &mut e.c;
    let pool = c.one(json!({"type": "pool"})).await;
    let master = pool["master"].as_str().unwrap().to_owned();
    let hosts: Vec<Value> = c
        .objects(json!({"type": "host"}))
        .await
        .into_values()
        .collect();
    let member = hosts.iter().find(|h| h["id"] != master.as_str()).unwrap();
    let (member, member_ref) = (id(member), member["_xapiRef"].as_str().unwrap().to_owned());
    let guests = |objs: serde_json::Map<String, Value>| objs.len();
    let on_member = c
        .objects(json!({"type": "VM", "power_state": "Running", "$container": member}))
        .await;
    assert!(!on_member.is_empty(), "the seed runs guests on every host");

    // guests on the host's local storage cannot leave it: XAPI's refusal, and the host is enabled again
    let err = c
        .err(
            "host.setMaintenanceMode",
            json!({"id": member, "maintenance": true}),
        )
        .await;
    assert_eq!(err["data"]["code"], "CANNOT_EVACUATE_HOST", "{err}");
    c.wait_field(&member, "enabled", json!(true)).await;
    // the seed puts the disks of the odd-numbered VMs on local storage: those are stopped
    let (local, shared): (Vec<&Value>, Vec<&Value>) = on_member.values().partition(|v| {
        let n: u32 = v["name_label"].as_str().unwrap()[3..].parse().unwrap();
        n % 2 == 1
    });
    assert!(!shared.is_empty());
    for v in &local {
        c.ok("vm.stop", json!({"id": id(v), "force": true})).await;
    }
    for v in &local {
        c.wait_field(&id(v), "power_state", json!("Halted")).await;
    }

    // a guest whose migration is blocked stops the maintenance mode, and the host stays enabled
    let blocked = shared[0].clone();
    let (blocked, blocked_ref) = (
        id(&blocked),
        blocked["_xapiRef"].as_str().unwrap().to_owned(),
    );
    e.pool
        .state()
        .write(|db| {
            db.set_field(
                "VM",
                &xapi_types::Ref::from(blocked_ref.as_str()),
                "blocked_operations",
                json!({"pool_migrate": "kept here"}),
            )
        })
        .unwrap();
    c.wait_object(&blocked, |o| {
        o.is_some_and(|o| o["blockedOperations"].get("pool_migrate").is_some())
    })
    .await;
    let err = c
        .err(
            "host.setMaintenanceMode",
            json!({"id": member, "maintenance": true}),
        )
        .await;
    assert_eq!(
        (&err["code"], &err["message"]),
        (&json!(19), &json!("operation blocked")),
        "{err}"
    );
    assert_eq!(err["data"]["objectId"], blocked.as_str(), "{err}");
    c.wait_field(&member, "enabled", json!(true)).await;
    // forced through: the host is emptied and disabled; the block is back afterwards
    assert_eq!(
        c.ok(
            "host.setMaintenanceMode",
            json!({"id": member, "maintenance": true, "vmsToForceMigrate": [blocked]}),
        )
        .await,
        true
    );
    c.wait_field(&member, "enabled", json!(false)).await;
    assert_eq!(
        sim_record(&e.pool, "VM", &blocked_ref)["blocked_operations"],
        json!({"pool_migrate": "kept here"})
    );
    // (the guests' moves may come in later event batches than the host's change)
    let deadline = tokio::time::Instant::now() + super::TIMEOUT;
    loop {
        let left = guests(
            c.objects(json!({"type": "VM", "power_state": "Running", "$container": member}))
                .await,
        );
        let moved = c.object(&blocked).await.unwrap()["$container"] != member.as_str();
        if left == 0 && moved {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{left} guests left");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // an unknown VM to force is refused before anything changes
    c.ok(
        "host.setMaintenanceMode",
        json!({"id": member, "maintenance": false}),
    )
    .await;
    c.wait_field(&member, "enabled", json!(true)).await;
    let err = c
        .err(
            "host.setMaintenanceMode",
            json!({"id": member, "maintenance": true, "vmsToForceMigrate": ["nope"]}),
        )
        .await;
    assert_eq!(err["code"], 1, "{err}");
    // nor a VM of another pool
    let other = super::pools::sim(1, 1).await;
    c.ok("server.add", super::pools::add_params(&other)).await;
    let here = pool["id"].clone();
    let deadline = tokio::time::Instant::now() + super::TIMEOUT;
    let foreign = loop {
        let found = c
            .objects(json!({"type": "VM"}))
            .await
            .into_values()
            .find(|v| v["$pool"] != here);
        if let Some(v) = found {
            break id(&v);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other pool's VM never came"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let err = c
        .err(
            "host.setMaintenanceMode",
            json!({"id": member, "maintenance": true, "vmsToForceMigrate": [foreign]}),
        )
        .await;
    assert_eq!(err["code"], 1, "{err}");
    assert_eq!(c.object(&member).await.unwrap()["enabled"], true);

    // power: stop clears and shuts the host down; start needs a power-on mode
    assert_eq!(c.ok("host.stop", json!({"id": member})).await, true);
    c.wait_field(&member, "power_state", json!("Halted")).await;
    let err = c.err("host.start", json!({"id": member})).await;
    assert_eq!(err["data"]["code"], "HOST_POWER_ON_MODE_DISABLED", "{err}");
    e.pool
        .call(
            "host.set_power_on_mode",
            vec![
                sim_session(&e.pool),
                json!(member_ref),
                json!("wake-on-lan"),
                json!({}),
            ],
        )
        .unwrap();
    assert_eq!(c.ok("host.start", json!({"id": member})).await, true);
    c.wait_field(&member, "power_state", json!("Running")).await;
    c.wait_field(&member, "enabled", json!(true)).await;

    // a live host cannot be forgotten
    let err = c.err("host.forget", json!({"id": member})).await;
    assert_eq!(err["data"]["code"], "HOST_IS_LIVE", "{err}");

    // the pool's default SR, then its master
    let sr = c
        .objects(json!({"type": "SR", "content_type": "user", "$pool": pool["id"]}))
        .await
        .into_values()
        .find(|s| s["id"] != pool["default_SR"])
        .unwrap();
    let sr = id(&sr);
    assert_eq!(c.ok("pool.setDefaultSr", json!({"sr": sr})).await, true);
    c.wait_field(&id(&pool), "default_SR", json!(sr)).await;
    assert_eq!(
        c.ok("pool.setPoolMaster", json!({"host": member})).await,
        true
    );
    c.wait_field(&id(&pool), "master", json!(member)).await;
    // the connection follows the new master
    assert_eq!(c.ok("host.enable", json!({"id": master})).await, true);
    e.server.shutdown().await;
}

/// Creates an NFS SR through the sim (plugged on every host); its XAPI ref.
fn new_nfs_sr(pool: &xapi_sim::RunningPool, name: &str) -> String {
    let session = sim_session(pool);
    let host = pool.call("host.get_all", vec![session.clone()]).unwrap()[0].clone();
    pool.call(
        "SR.create",
        vec![
            session,
            host,
            json!({"server": "10.0.0.9", "serverpath": format!("/{name}")}),
            json!(0),
            json!(name),
            json!(""),
            json!("nfs"),
            json!("user"),
            json!(true),
            json!({}),
        ],
    )
    .unwrap()
    .as_str()
    .unwrap()
    .to_owned()
}

#[tokio::test]
async fn everyday_storage_connections_and_devices() {
    let mut e = env(3, 20).await;
    let c = &mut e.c;
    new_nfs_sr(&e.pool, "spare");
    let sr = id(&c
        .wait_object_by(json!({"type": "SR", "name_label": "spare"}))
        .await);
    let attached = |objs: &serde_json::Map<String, Value>| {
        objs.values()
            .map(|p| p["attached"].as_bool().unwrap())
            .collect::<Vec<_>>()
    };
    let all = c.objects(json!({"type": "PBD", "SR": sr})).await;
    assert_eq!(attached(&all), vec![true; 3]);

    // every host lets go of it, then connects again
    assert_eq!(c.ok("sr.disconnectAllPbds", json!({"id": sr})).await, true);
    for p in all.keys() {
        c.wait_field(p, "attached", json!(false)).await;
    }
    c.ok("sr.connectAllPbds", json!({"id": sr})).await;
    for p in all.keys() {
        c.wait_field(p, "attached", json!(true)).await;
    }
    // one host's connection alone; an attached PBD cannot be deleted
    let one = all.keys().next().unwrap().clone();
    c.ok("pbd.disconnect", json!({"id": one})).await;
    c.wait_field(&one, "attached", json!(false)).await;
    c.ok("pbd.connect", json!({"id": one})).await;
    c.wait_field(&one, "attached", json!(true)).await;
    let other = all.keys().nth(1).unwrap().clone();
    c.ok("pbd.disconnect", json!({"id": other})).await;
    c.wait_field(&other, "attached", json!(false)).await;
    assert_eq!(c.ok("pbd.delete", json!({"id": other})).await, true);
    c.wait_gone(&other).await;

    // forget: every PBD unplugged first, then the SR's records go
    assert_eq!(c.ok("sr.forget", json!({"id": sr})).await, true);
    c.wait_gone(&sr).await;

    // destroy refuses an SR that holds a disk, and leaves it connected
    new_nfs_sr(&e.pool, "doomed");
    let doomed = id(&c
        .wait_object_by(json!({"type": "SR", "name_label": "doomed"}))
        .await);
    let disk = c
        .ok(
            "disk.create",
            json!({"name": "in the way", "size": 1 << 20, "sr": doomed}),
        )
        .await;
    let err = c.err("sr.destroy", json!({"id": doomed})).await;
    assert_eq!(err["data"]["code"], "SR_NOT_EMPTY", "{err}");
    c.ok("sr.connectAllPbds", json!({"id": doomed})).await;
    c.ok("vdi.delete", json!({"id": disk})).await;
    c.wait_gone(disk.as_str().unwrap()).await;
    assert_eq!(c.ok("sr.destroy", json!({"id": doomed})).await, true);
    c.wait_gone(&doomed).await;

    // a running VM's network interface: unplugged and plugged again
    let running = c
        .objects(json!({"type": "VM", "power_state": "Running"}))
        .await
        .into_values()
        .next()
        .unwrap();
    let vif = running["VIFs"][0].as_str().unwrap().to_owned();
    c.wait_field(&vif, "attached", json!(true)).await;
    assert_eq!(c.ok("vif.disconnect", json!({"id": vif})).await, true);
    c.wait_field(&vif, "attached", json!(false)).await;
    assert_eq!(c.ok("vif.connect", json!({"id": vif})).await, true);
    c.wait_field(&vif, "attached", json!(true)).await;

    // a disk made bootable, then not
    let vbd = running["$VBDs"][0].as_str().unwrap().to_owned();
    let was = c.object(&vbd).await.unwrap()["bootable"].as_bool().unwrap();
    c.ok("vbd.setBootable", json!({"vbd": vbd, "bootable": !was}))
        .await;
    c.wait_field(&vbd, "bootable", json!(!was)).await;
    c.ok("vbd.setBootable", json!({"vbd": vbd, "bootable": was}))
        .await;
    c.wait_field(&vbd, "bootable", json!(was)).await;
    e.server.shutdown().await;
}

#[tokio::test]
async fn everyday_networks_disks_lists_and_emergency_shutdown() {
    let mut e = env(3, 20).await;
    let c = &mut e.c;
    // the fixed lists forms are built from
    for (method, list) in [
        ("vm.getHaValues", json!(["best-effort", "restart", ""])),
        (
            "vif.getLockingModeValues",
            json!(["disabled", "locked", "network_default", "unlocked"]),
        ),
        (
            "network.getBondModes",
            json!(["balance-slb", "active-backup", "lacp"]),
        ),
        (
            "pif.getIpv4ConfigurationModes",
            json!(["None", "DHCP", "Static"]),
        ),
        (
            "pif.getIpv6ConfigurationModes",
            json!(["None", "DHCP", "Static", "Autoconf"]),
        ),
    ] {
        assert_eq!(c.ok(method, json!({})).await, list, "{method}");
    }

    // a network's settings
    let net = id(&c
        .objects(json!({"type": "network"}))
        .await
        .into_values()
        .next()
        .unwrap());
    let args = json!({"id": net, "name_label": "storage lan", "mtu": 9000, "automatic": true,
        "defaultIsLocked": true, "nbd": true});
    assert_eq!(c.ok("network.set", args).await, true);
    // (the changes may come in separate event batches)
    c.wait_object(&net, |o| {
        o.is_some_and(|o| {
            o["name_label"] == "storage lan"
                && (&o["MTU"], &o["automatic"], &o["defaultIsLocked"], &o["nbd"])
                    == (&json!(9000), &json!(true), &json!(true), &json!(true))
        })
    })
    .await;
    c.ok(
        "network.set",
        json!({"id": net, "automatic": false, "defaultIsLocked": false, "nbd": false}),
    )
    .await;
    c.wait_object(&net, |o| {
        o.is_some_and(|o| {
            (&o["automatic"], &o["defaultIsLocked"], &o["nbd"])
                == (&json!(false), &json!(false), &json!(false))
        })
    })
    .await;
    let err = c.err("network.set", json!({"id": net, "mtu": 12})).await;
    assert_eq!(err["code"], 10, "{err}");

    // a disk attached to a halted VM, read-only at position 5, then moved to 6
    let vm = id(&c.one(json!({"type": "VM", "name_label": "vm-00012"})).await);
    let sr = c.one(json!({"type": "pool"})).await["default_SR"]
        .as_str()
        .unwrap()
        .to_owned();
    let disk = c
        .ok(
            "disk.create",
            json!({"name": "data", "size": 1 << 20, "sr": sr}),
        )
        .await;
    let disk = disk.as_str().unwrap().to_owned();
    assert_eq!(
        c.ok(
            "vm.attachDisk",
            json!({"vm": vm, "vdi": disk, "position": "5", "mode": "RO"}),
        )
        .await,
        true
    );
    let vbd = c
        .wait_object_by(json!({"type": "VBD", "VM": vm, "VDI": disk}))
        .await;
    assert_eq!(
        (&vbd["position"], &vbd["read_only"]),
        (&json!("5"), &json!(true))
    );
    assert_eq!(
        c.ok("vbd.set", json!({"id": id(&vbd), "position": 6}))
            .await,
        true
    );
    c.wait_field(&id(&vbd), "position", json!("6")).await;

    // emergency shutdown of a member: its guests suspended, the host down
    let master = c.one(json!({"type": "pool"})).await["master"].clone();
    let member = c
        .objects(json!({"type": "host"}))
        .await
        .into_values()
        .find(|h| h["id"] != master)
        .unwrap();
    let member = id(&member);
    let guests: Vec<String> = c
        .objects(json!({"type": "VM", "power_state": "Running", "$container": member}))
        .await
        .values()
        .map(id)
        .collect();
    assert!(!guests.is_empty());
    assert_eq!(
        c.ok("host.emergencyShutdownHost", json!({"host": member}))
            .await,
        true
    );
    for g in &guests {
        c.wait_field(g, "power_state", json!("Suspended")).await;
    }
    c.wait_field(&member, "power_state", json!("Halted")).await;
    // down for good: forgotten, with what hung off it
    assert_eq!(c.ok("host.forget", json!({"id": member})).await, true);
    c.wait_gone(&member).await;
    assert!(c
        .objects(json!({"type": "PBD", "host": member}))
        .await
        .is_empty());
    e.server.shutdown().await;
}

#[tokio::test]
async fn everyday_vif_settings() {
    let mut e = env(1, 20).await;
    let c = &mut e.c;
    let running = c
        .objects(json!({"type": "VM", "power_state": "Running"}))
        .await
        .into_values()
        .next()
        .unwrap();
    let vif = running["VIFs"][0].as_str().unwrap().to_owned();
    let set = |extra: Value| with_id(&vif, extra);

    // allowed addresses lock the VIF; the id stays
    let same = c
        .ok(
            "vif.set",
            set(json!({"allowedIpv4Addresses": ["10.0.0.5"]})),
        )
        .await;
    assert_eq!(same, vif.as_str());
    let o = c
        .wait_object(&vif, |o| o.is_some_and(|o| o["lockingMode"] == "locked"))
        .await
        .unwrap();
    assert_eq!(o["allowedIpv4Addresses"], json!(["10.0.0.5"]));
    c.ok("vif.set", set(json!({"lockingMode": "disabled"})))
        .await;
    c.wait_field(&vif, "lockingMode", json!("disabled")).await;
    // a rate limit, then none; TX checksumming
    c.ok(
        "vif.set",
        set(json!({"rateLimit": 1000, "txChecksumming": false})),
    )
    .await;
    c.wait_object(&vif, |o| {
        o.is_some_and(|o| o["rateLimit"] == 1000 && o["txChecksumming"] == false)
    })
    .await;
    c.ok("vif.set", set(json!({"rateLimit": null}))).await;
    c.wait_object(&vif, |o| o.is_some_and(|o| o.get("rateLimit").is_none()))
        .await;

    // another network: moved, same VIF, its locks and addresses reset
    let current = c.object(&vif).await.unwrap()["$network"].clone();
    let other = c
        .objects(json!({"type": "network"}))
        .await
        .into_values()
        .find(|n| n["id"] != current)
        .map(|n| id(&n))
        .unwrap();
    assert_eq!(
        c.ok("vif.set", set(json!({"network": other}))).await,
        vif.as_str()
    );
    c.wait_object(&vif, |o| {
        o.is_some_and(|o| {
            (
                &o["$network"],
                &o["lockingMode"],
                &o["allowedIpv4Addresses"],
                &o["attached"],
            ) == (
                &json!(other),
                &json!("network_default"),
                &json!([]),
                &json!(true),
            )
        })
    })
    .await;

    // a move XAPI refuses: the VIF is recreated on the other network instead, under a new id
    e.pool.faults().fail_next(
        "VIF.move",
        xapi_types::XapiError::new("INTERNAL_ERROR", ["move failed"]),
    );
    let moved = c.ok("vif.set", set(json!({"network": current}))).await;
    let moved = moved.as_str().unwrap().to_owned();
    assert_ne!(moved, vif);
    c.wait_gone(&vif).await;
    c.wait_object(&moved, |o| {
        o.is_some_and(|o| o["$network"] == current && o["attached"] == true)
    })
    .await;
    let vif = moved;
    let set = |extra: Value| with_id(&vif, extra);

    // a new MAC: the VIF is replaced, plugged as it was
    let new = c
        .ok("vif.set", set(json!({"mac": "02:00:00:00:00:42"})))
        .await;
    let new = new.as_str().unwrap().to_owned();
    assert_ne!(new, vif);
    c.wait_gone(&vif).await;
    c.wait_object(&new, |o| {
        o.is_some_and(|o| {
            (&o["MAC"], &o["attached"], &o["$network"])
                == (&json!("02:00:00:00:00:42"), &json!(true), &current)
        })
    })
    .await;

    // an unknown network
    let err = c
        .err("vif.set", json!({"id": new, "network": "nope"}))
        .await;
    assert_eq!(err["code"], 1, "{err}");
    e.server.shutdown().await;
}

#[tokio::test]
async fn everyday_adding_storage() {
    let mut e = env(2, 4).await;
    let c = &mut e.c;
    let host = id(&c
        .objects(json!({"type": "host"}))
        .await
        .into_values()
        .next()
        .unwrap());
    let pbds_of = |sr: &Value| sr["$PBDs"].as_array().unwrap().len();

    // NFS: shared, a PBD per host with XO's device configuration
    let nfs = c
        .ok(
            "sr.createNfs",
            json!({"host": host, "nameLabel": "nfs vms", "nameDescription": "", "server": "10.0.0.7",
                "serverPath": "/exports/vms", "nfsVersion": "4.1"}),
        )
        .await;
    let nfs = nfs.as_str().unwrap().to_owned();
    let sr = c
        .wait_object(&nfs, |o| {
            o.is_some_and(|o| o["$PBDs"].as_array().is_some_and(|a| a.len() == 2))
        })
        .await
        .unwrap();
    assert_eq!(
        (&sr["SR_type"], &sr["shared"], &sr["content_type"]),
        (&json!("nfs"), &json!(true), &json!("user"))
    );
    let pbd = c.object(sr["$PBDs"][0].as_str().unwrap()).await.unwrap();
    assert_eq!(
        (
            &pbd["device_config"]["server"],
            &pbd["device_config"]["serverpath"],
            &pbd["device_config"]["nfsversion"]
        ),
        (&json!("10.0.0.7"), &json!("/exports/vms"), &json!("4.1"))
    );

    // forgotten, then reattached by its uuid: same SR, connected on every host again
    c.ok("sr.forget", json!({"id": nfs})).await;
    c.wait_gone(&nfs).await;
    let again = c
        .ok(
            "sr.createNfs",
            json!({"host": host, "nameLabel": "nfs vms", "nameDescription": "back", "server": "10.0.0.7",
                "serverPath": "/exports/vms", "srUuid": nfs}),
        )
        .await;
    assert_eq!(again, nfs.as_str());
    let sr = c
        .wait_object(&nfs, |o| {
            o.is_some_and(|o| o["$PBDs"].as_array().is_some_and(|a| a.len() == 2))
        })
        .await
        .unwrap();
    assert_eq!(sr["name_description"], "back");
    for p in sr["$PBDs"].as_array().unwrap() {
        c.wait_field(p.as_str().unwrap(), "attached", json!(true))
            .await;
    }

    // an ISO library on an SMB share: the password is stored, never shown
    let smb = c
        .ok(
            "sr.createIso",
            json!({"host": host, "nameLabel": "isos", "nameDescription": "", "path": "\\\\files\\isos",
                "type": "smb", "user": "u", "password": "secret-pw"}),
        )
        .await;
    let sr = c
        .wait_object(smb.as_str().unwrap(), |o| {
            o.is_some_and(|o| pbds_of(o) == 2)
        })
        .await
        .unwrap();
    assert_eq!(
        (&sr["content_type"], &sr["shared"]),
        (&json!("iso"), &json!(true))
    );
    let pbd = c.object(sr["$PBDs"][0].as_str().unwrap()).await.unwrap();
    assert_eq!(pbd["device_config"]["location"], "//files/isos");
    assert_eq!(pbd["device_config"]["type"], "cifs");
    assert!(!pbd.to_string().contains("secret-pw"), "{pbd}");
    // a local one: not shared
    let local = c
        .ok(
            "sr.createIso",
            json!({"host": host, "nameLabel": "local isos", "nameDescription": "", "path": "/opt/isos",
                "type": "local"}),
        )
        .await;
    let sr = c
        .wait_object(local.as_str().unwrap(), |o| {
            o.is_some_and(|o| pbds_of(o) == 1)
        })
        .await
        .unwrap();
    assert_eq!(sr["shared"], false);

    // local disks
    for (method, kind) in [("sr.createExt", "ext"), ("sr.createLvm", "lvm")] {
        let uuid = c
            .ok(
                method,
                json!({"host": host, "nameLabel": kind, "nameDescription": "", "device": "/dev/sdb"}),
            )
            .await;
        let sr = c
            .wait_object(uuid.as_str().unwrap(), |o| {
                o.is_some_and(|o| pbds_of(o) == 1)
            })
            .await
            .unwrap();
        assert_eq!(
            (&sr["SR_type"], &sr["shared"]),
            (&json!(kind), &json!(false))
        );
    }
    // an unknown host
    let err = c
        .err(
            "sr.createExt",
            json!({"host": "nope", "nameLabel": "x", "nameDescription": "", "device": "/dev/sdc"}),
        )
        .await;
    assert_eq!(err["code"], 1, "{err}");
    e.server.shutdown().await;
}

#[tokio::test]
async fn everyday_set_and_restart() {
    let mut e = env(1, 20).await;
    let c = &mut e.c;
    let vm = id(&c
        .objects(json!({"type": "VM", "power_state": "Running"}))
        .await
        .into_values()
        .next()
        .unwrap());
    // a change XAPI makes only on a halted VM: the static memory maximum
    assert_eq!(
        c.ok(
            "vm.setAndRestart",
            json!({"id": vm, "memoryStaticMax": 16u64 << 30, "name_label": "bigger", "force": true}),
        )
        .await,
        true
    );
    let o = c
        .wait_object(&vm, |o| {
            o.is_some_and(|o| o["power_state"] == "Running" && o["name_label"] == "bigger")
        })
        .await
        .unwrap();
    assert_eq!(o["memory"]["static"][1], json!(16u64 << 30));
    // a refused change still leaves the VM running again
    let err = c
        .err(
            "vm.setAndRestart",
            json!({"id": vm, "CPUs": 1000, "force": true}),
        )
        .await;
    assert_ne!(err["code"], Value::Null, "{err}");
    c.wait_field(&vm, "power_state", json!("Running")).await;
    e.server.shutdown().await;
}

#[tokio::test]
async fn everyday_tag_colours() {
    let mut e = env(1, 0).await;
    let c = &mut e.c;
    assert_eq!(c.ok("tag.getAllConfigured", json!({})).await, json!([]));
    assert_eq!(
        c.ok("tag.set", json!({"id": "prod", "color": "#ff0000"}))
            .await,
        true
    );
    c.ok("tag.set", json!({"id": "dev", "color": "00ff00"}))
        .await;
    c.ok("tag.set", json!({"id": "plain"})).await;
    // a colour left out keeps the one set
    c.ok("tag.set", json!({"id": "prod"})).await;
    let all = json!([{"id": "dev", "color": "00ff00"}, {"id": "plain"}, {"id": "prod", "color": "#ff0000"}]);
    assert_eq!(c.ok("tag.getAllConfigured", json!({})).await, all);
    // not a colour
    let err = c.err("tag.set", json!({"id": "x", "color": "red"})).await;
    assert_eq!(err["code"], 10, "{err}");
    // any user reads them; only admins set them
    let mut u = new_user(c, &e.server, "viewer").await;
    assert_eq!(u.ok("tag.getAllConfigured", json!({})).await, all);
    let err = u.err("tag.set", json!({"id": "prod", "color": null})).await;
    assert_eq!(err["code"], 2, "{err}");
    // null: the configuration goes
    c.ok("tag.set", json!({"id": "prod", "color": null})).await;
    assert_eq!(
        c.ok("tag.getAllConfigured", json!({})).await,
        json!([{"id": "dev", "color": "00ff00"}, {"id": "plain"}])
    );
    e.server.shutdown().await;
}

#[tokio::test]
async fn everyday_recovery_start() {
    let mut e = env(1, 20).await;
    let c = &mut e.c;
    let iso = id(&c
        .one(json!({"type": "VDI", "name_label": "guest-tools.iso"}))
        .await);
    let ref_of = |o: &Value| o["_xapiRef"].as_str().unwrap().to_owned();

    // HVM: started from the CD, the boot order back as it was
    let hvm = c.one(json!({"type": "VM", "name_label": "vm-00012"})).await;
    let (vm, vm_ref) = (id(&hvm), ref_of(&hvm));
    c.ok("vm.insertCd", json!({"id": vm, "cd_id": iso})).await;
    let order = sim_record(&e.pool, "VM", &vm_ref)["HVM_boot_params"]["order"].clone();
    assert_ne!(order, "d");
    assert_eq!(c.ok("vm.recoveryStart", json!({"id": vm})).await, true);
    c.wait_field(&vm, "power_state", json!("Running")).await;
    assert_eq!(
        sim_record(&e.pool, "VM", &vm_ref)["HVM_boot_params"]["order"],
        order
    );
    let err = c.err("vm.recoveryStart", json!({"id": vm})).await;
    assert_eq!(err["code"], 13, "{err}");
    // a start XAPI refuses: the boot order is restored all the same
    let other = c.one(json!({"type": "VM", "name_label": "vm-00014"})).await;
    let (other, other_ref) = (id(&other), ref_of(&other));
    let order = sim_record(&e.pool, "VM", &other_ref)["HVM_boot_params"]["order"].clone();
    e.pool.faults().fail_next(
        "VM.start",
        xapi_types::XapiError::new("NO_HOSTS_AVAILABLE", Vec::<String>::new()),
    );
    let err = c.err("vm.recoveryStart", json!({"id": other})).await;
    assert_eq!(err["code"], 7, "{err}");
    assert_eq!(
        sim_record(&e.pool, "VM", &other_ref)["HVM_boot_params"]["order"],
        order
    );

    // PV: the bootloader and the drives' flags back as they were; the install source is the CD
    let pv = c.one(json!({"type": "VM", "name_label": "vm-00013"})).await;
    let (pv, pv_ref) = (id(&pv), ref_of(&pv));
    e.pool
        .state()
        .write(|db| {
            let r = xapi_types::Ref::from(pv_ref.as_str());
            db.set_field("VM", &r, "HVM_boot_policy", json!(""))?;
            db.set_field("VM", &r, "domain_type", json!("pv"))?;
            db.set_field("VM", &r, "PV_bootloader", json!("pygrub"))
        })
        .unwrap();
    c.wait_field(&pv, "virtualizationMode", json!("pv")).await;
    let flags = |pool: &xapi_sim::RunningPool| {
        let rec = sim_record(pool, "VM", &pv_ref);
        let mut v: Vec<(String, Value)> = rec["VBDs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let b = b.as_str().unwrap();
                (b.to_owned(), sim_record(pool, "VBD", b)["bootable"].clone())
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let before = flags(&e.pool);
    assert_eq!(c.ok("vm.recoveryStart", json!({"id": pv})).await, true);
    c.wait_field(&pv, "power_state", json!("Running")).await;
    let rec = sim_record(&e.pool, "VM", &pv_ref);
    assert_eq!(rec["PV_bootloader"], "pygrub");
    assert_eq!(rec["other_config"]["install-repository"], "cdrom");
    assert_eq!(flags(&e.pool), before);
    e.server.shutdown().await;
}

#[tokio::test]
async fn everyday_host_network_interfaces() {
    let mut e = env(1, 0).await;
    let c = &mut e.c;
    let eth0 = c.one(json!({"type": "PIF", "device": "eth0"})).await;
    let (eth0, eth0_ref) = (id(&eth0), eth0["_xapiRef"].as_str().unwrap().to_owned());
    // a second NIC appears on the host, unconfigured and unplugged
    e.pool.state().write(|db| {
        let pif = db
            .get("PIF", &xapi_types::Ref::from(eth0_ref.as_str()))
            .unwrap()
            .clone();
        let mut rec = xapi_sim::db::rec([
            ("device", json!("eth1")),
            ("physical", json!(true)),
            ("currently_attached", json!(false)),
            ("ip_configuration_mode", json!("None")),
            ("ipv6_configuration_mode", json!("None")),
        ]);
        for k in ["host", "network"] {
            rec.insert(k.into(), pif[k].clone());
        }
        db.insert("PIF", rec).unwrap();
    });
    let eth1 = id(&c
        .wait_object_by(json!({"type": "PIF", "device": "eth1"}))
        .await);

    assert_eq!(c.ok("pif.connect", json!({"id": eth1})).await, true);
    c.wait_field(&eth1, "attached", json!(true)).await;
    let ip = json!({"id": eth1, "mode": "Static", "ip": "10.1.0.7", "netmask": "255.255.255.0",
        "gateway": "10.1.0.1", "dns": "10.1.0.53", "ipv6Mode": "Static", "ipv6": "fd00::7/64"});
    assert_eq!(c.ok("pif.reconfigureIp", ip).await, true);
    c.wait_object(&eth1, |o| {
        o.is_some_and(|o| {
            (&o["mode"], &o["ip"], &o["ipv6Mode"], &o["ipv6"])
                == (
                    &json!("Static"),
                    &json!("10.1.0.7"),
                    &json!("Static"),
                    &json!(["fd00::7/64"]),
                )
        })
    })
    .await;
    let bad = json!({"id": eth1, "mode": "Static", "ip": "10.1.0.300", "netmask": "255.255.255.0"});
    let err = c.err("pif.reconfigureIp", bad).await;
    assert_eq!(err["data"]["code"], "INVALID_IP_ADDRESS_SPECIFIED", "{err}");

    // the management interface: its DNS changes, it stays the management one; it cannot be unplugged
    let dns = json!({"id": eth0, "mode": "Static", "ip": c.object(&eth0).await.unwrap()["ip"],
        "netmask": "255.0.0.0", "gateway": "127.0.0.254", "dns": "9.9.9.9"});
    c.ok("pif.reconfigureIp", dns).await;
    let o = c.wait_field(&eth0, "dns", json!("9.9.9.9")).await;
    assert_eq!(o["management"], true);
    let err = c.err("pif.disconnect", json!({"id": eth0})).await;
    assert_eq!(err["data"]["code"], "PIF_IS_MANAGEMENT_INTERFACE", "{err}");

    // the host's syslog goes to a remote server, then back to local; a scan of its NICs finds nothing new
    let host = c.one(json!({"type": "host"})).await;
    let host_id = id(&host);
    c.ok(
        "host.setRemoteSyslogHost",
        json!({"id": host_id, "syslogDestination": "logs.example.org"}),
    )
    .await;
    c.wait_field(
        &host_id,
        "logging",
        json!({"syslog_destination": "logs.example.org"}),
    )
    .await;
    c.ok(
        "host.setRemoteSyslogHost",
        json!({"id": host_id, "syslogDestination": null}),
    )
    .await;
    c.wait_field(&host_id, "logging", json!({})).await;
    assert_eq!(c.ok("host.scanPifs", json!({"id": host_id})).await, true);

    // the second NIC: unplugged, then forgotten
    c.ok("pif.disconnect", json!({"id": eth1})).await;
    c.wait_field(&eth1, "attached", json!(false)).await;
    assert_eq!(c.ok("pif.delete", json!({"id": eth1})).await, true);
    c.wait_gone(&eth1).await;
    e.server.shutdown().await;
}

#[tokio::test]
async fn everyday_bonded_network() {
    let mut e = env(2, 0).await;
    let c = &mut e.c;
    let pool = id(&c.one(json!({"type": "pool"})).await);
    // two more NICs on every host, each pair on a network of its own
    let session = sim_session(&e.pool);
    let hosts = e.pool.call("host.get_all", vec![session.clone()]).unwrap();
    for dev in ["eth1", "eth2"] {
        let net = e
            .pool
            .call(
                "network.create",
                vec![
                    session.clone(),
                    json!({"name_label": format!("Pool-wide network associated with {dev}"), "other_config": {}}),
                ],
            )
            .unwrap();
        for h in hosts.as_array().unwrap() {
            e.pool.state().write(|db| {
                let rec = xapi_sim::db::rec([
                    ("device", json!(dev)),
                    ("host", h.clone()),
                    ("network", net.clone()),
                    ("VLAN", json!(-1)),
                    ("physical", json!(true)),
                    ("currently_attached", json!(true)),
                ]);
                db.insert("PIF", rec).unwrap();
            });
        }
    }
    let deadline = tokio::time::Instant::now() + super::TIMEOUT;
    let nics = loop {
        let nics: Vec<Value> = c
            .objects(json!({"type": "PIF"}))
            .await
            .into_values()
            .filter(|p| p["device"] == "eth1" || p["device"] == "eth2")
            .collect();
        if nics.len() == 4 {
            break nics;
        }
        assert!(tokio::time::Instant::now() < deadline, "{nics:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // one NIC of one host names its network: the same NICs of every host are bonded
    let host0 = nics[0]["$host"].clone();
    let picked: Vec<Value> = nics
        .iter()
        .filter(|p| p["$host"] == host0)
        .map(|p| p["id"].clone())
        .collect();
    let args = json!({"pool": pool, "name": "bonded", "pifs": picked, "bondMode": "active-backup"});
    let net = c.ok("network.createBonded", args).await;
    assert_eq!(net["name_label"], "bonded", "{net}");
    assert_eq!(net["PIFs"].as_array().unwrap().len(), 2, "{net}");
    let net = c
        .wait_object_by(json!({"type": "network", "name_label": "bonded"}))
        .await;
    let masters = c.objects(json!({"type": "PIF", "device": "bond0"})).await;
    assert_eq!(masters.len(), 2);
    assert!(masters.values().all(|m| m["$network"] == net["id"]));
    // deleting the network takes its bonds away
    assert_eq!(c.ok("network.delete", json!({"id": id(&net)})).await, true);
    c.wait_gone(&id(&net)).await;
    for m in masters.keys() {
        c.wait_gone(m).await;
    }
    // one NIC alone cannot make a bond
    let err = c
        .err(
            "network.createBonded",
            json!({"pool": pool, "name": "lonely", "pifs": [picked[0]], "bondMode": "lacp"}),
        )
        .await;
    assert_eq!(err["data"]["code"], "PIF_BOND_NEEDS_MORE_MEMBERS", "{err}");
    e.server.shutdown().await;
}

#[tokio::test]
async fn everyday_host_health_and_management_interface() {
    let mut e = env(1, 0).await;
    let c = &mut e.c;
    let host = c.one(json!({"type": "host"})).await;
    let (host, host_ref) = (id(&host), host["_xapiRef"].as_str().unwrap().to_owned());
    assert_eq!(
        c.ok("host.isHostServerTimeConsistent", json!({"host": host}))
            .await,
        true
    );
    // the seeded hosts say threads_per_core = 2 in cpu_info
    assert_eq!(
        c.ok("host.isHyperThreadingEnabled", json!({"id": host}))
            .await,
        true
    );
    // without it, the plugin is asked; a simulated host has no such plugin
    e.pool
        .state()
        .write(|db| {
            let r = xapi_types::Ref::from(host_ref.as_str());
            db.update("host", &r, |h| {
                if let Some(Value::Object(info)) = h.get_mut("cpu_info") {
                    info.remove("threads_per_core");
                }
            })
        })
        .unwrap();

    assert_eq!(
        c.ok("host.isHyperThreadingEnabled", json!({"id": host}))
            .await,
        Value::Null
    );
    assert_eq!(
        c.ok("host.getSmartctlHealth", json!({"id": host})).await,
        Value::Null
    );
    assert_eq!(
        c.ok(
            "host.getSmartctlInformation",
            json!({"id": host, "deviceNames": ["/dev/sda"]})
        )
        .await,
        Value::Null
    );
    // the management interface stays on eth0; it cannot move to a NIC without an address
    let eth0 = c.one(json!({"type": "PIF", "device": "eth0"})).await;
    e.pool.state().write(|db| {
        let rec = xapi_sim::db::rec([
            ("device", json!("eth1")),
            ("host", json!(host_ref)),
            ("physical", json!(true)),
            ("ip_configuration_mode", json!("None")),
        ]);
        db.insert("PIF", rec).unwrap();
    });
    let eth1 = id(&c
        .wait_object_by(json!({"type": "PIF", "device": "eth1"}))
        .await);
    let err = c
        .err(
            "host.managementReconfigure",
            json!({"id": host, "pif": eth1}),
        )
        .await;
    assert_eq!(
        err["data"]["code"], "PIF_HAS_NO_NETWORK_CONFIGURATION",
        "{err}"
    );
    assert_eq!(
        c.ok(
            "host.managementReconfigure",
            json!({"id": host, "pif": id(&eth0)})
        )
        .await,
        true
    );
    e.server.shutdown().await;
}
