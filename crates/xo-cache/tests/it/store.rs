//! Store behaviour: resets, incremental re-derivation, batches, conflicts, removal, subscriptions, queries.

use crate::support;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Value};
use xo_cache::{
    Batch, ChangeOp, Filter, ObjectChange, PoolStatus, Record, Store, StoreConfig,
    SubscriptionError, WaitError,
};

const VM1: &str = "OpaqueRef:vm-debian-web";

fn rec(r: &str) -> Record {
    support::record(r).1
}

fn change(class: &str, r: &str, op: ChangeOp, snapshot: Option<Record>) -> ObjectChange {
    ObjectChange {
        class: class.into(),
        r#ref: r.into(),
        op,
        snapshot: snapshot.as_ref().map(xo_cache::RawRecord::from_map),
    }
}

fn loaded() -> (Store, Arc<Batch>) {
    let store = Store::default();
    store.register_pool("srv1");
    let batch = store
        .apply_reset("srv1", support::pool_raw())
        .unwrap()
        .expect("first load publishes");
    (store, batch)
}

fn ids(b: &Batch) -> HashSet<String> {
    b.enter.iter().map(|o| o.id().to_owned()).collect()
}

fn vm1_id() -> String {
    rec(VM1)["uuid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn reset_publishes_every_object_once_and_marks_ready() {
    let store = Store::default();
    let mut sub = store.subscribe();
    store.register_pool("srv1");
    assert_eq!(store.status("srv1"), Some(PoolStatus::Connecting));
    let batch = store
        .apply_reset("srv1", support::pool_raw())
        .unwrap()
        .unwrap();
    let got = sub.recv().await.unwrap();
    assert!(
        Arc::ptr_eq(&batch, &got),
        "the same Arc goes to every subscriber"
    );
    assert!(batch.exit.is_empty());
    // 36 transformable records: 1 pool, 2 hosts, 6 VMs, 4 SRs, 5 PBDs, 6 VDIs, 4 VBDs, 2 VIFs, 2 networks,
    // 2 PIFs, 1 task, 1 message.
    assert_eq!(batch.enter.len(), 36);
    assert_eq!(store.len(), 36);
    assert_eq!(store.wait_ready("srv1").await.unwrap(), support::POOL_UUID);
    assert_eq!(store.pool_uuid("srv1").as_deref(), Some(support::POOL_UUID));
    assert_eq!(
        store.pool_key_of(support::POOL_UUID).as_deref(),
        Some("srv1")
    );
    let vm = store.get(&vm1_id()).unwrap();
    assert_eq!(vm.kind(), "VM");
    assert_eq!(vm.xapi_ref(), VM1);
    assert_eq!(vm.pool(), Some(support::POOL_UUID));
    assert_eq!(store.get_by_ref("srv1", VM1).unwrap().id(), vm1_id());
    assert_eq!(store.get_by_any_ref(VM1).unwrap().id(), vm1_id());
    assert!(store.get_by_ref("nope", VM1).is_none());
    // The serialised form is the object.
    let parsed: Value = serde_json::from_str(&vm.json()).unwrap();
    assert_eq!(&parsed, vm.value());
}

#[tokio::test]
async fn second_reset_emits_only_the_differences() {
    let (store, _) = loaded();
    let mut records = support::pool_records();
    for (r, rec) in records.get_mut("VM").unwrap() {
        if r == VM1 {
            rec.insert("name_label".into(), json!("renamed"));
        }
    }
    records.get_mut("message").unwrap().clear();
    let batch = store
        .apply_reset("srv1", support::raw(records))
        .unwrap()
        .unwrap();
    assert_eq!(ids(&batch), HashSet::from([vm1_id()]));
    assert_eq!(batch.enter[0].get("name_label"), Some(&json!("renamed")));
    let msg_uuid = rec("OpaqueRef:message-1")["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        batch.exit.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        vec![msg_uuid.clone()]
    );
    assert!(store.get(&msg_uuid).is_none());
    // Identical reset: nothing.
    let mut again = support::pool_records();
    again.get_mut("message").unwrap().clear();
    for (r, rec) in again.get_mut("VM").unwrap() {
        if r == VM1 {
            rec.insert("name_label".into(), json!("renamed"));
        }
    }
    assert!(store
        .apply_reset("srv1", support::raw(again))
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn vm_metrics_mod_rederives_the_vm() {
    let (store, _) = loaded();
    let mut m = rec("OpaqueRef:vmm-debian-web");
    m.insert("VCPUs_number".into(), json!(3));
    let batch = store
        .apply_changes(
            "srv1",
            vec![change(
                "vm_metrics",
                "OpaqueRef:vmm-debian-web",
                ChangeOp::Mod,
                Some(m),
            )],
        )
        .unwrap()
        .unwrap();
    assert_eq!(ids(&batch), HashSet::from([vm1_id()]));
    assert_eq!(store.get(&vm1_id()).unwrap().value()["CPUs"]["number"], 3);
}

#[tokio::test]
async fn guest_metrics_change_updates_addresses() {
    let (store, _) = loaded();
    let mut gm = rec("OpaqueRef:vmgm-debian-web");
    gm.insert("networks".into(), json!({"0/ipv4/0": "172.16.0.9"}));
    let batch = store
        .apply_changes(
            "srv1",
            vec![change(
                "VM_guest_metrics",
                "OpaqueRef:vmgm-debian-web",
                ChangeOp::Mod,
                Some(gm),
            )],
        )
        .unwrap()
        .unwrap();
    assert_eq!(ids(&batch), HashSet::from([vm1_id()]));
    let vm = store.get(&vm1_id()).unwrap();
    assert_eq!(vm.value()["addresses"], json!({"0/ipv4/0": "172.16.0.9"}));
    assert_eq!(vm.value()["mainIpAddress"], "172.16.0.9");
}

#[tokio::test]
async fn host_metrics_change_updates_host_memory_and_power_state() {
    let (store, _) = loaded();
    let host_id = rec("OpaqueRef:host-1-aaaa")["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut hm = rec("OpaqueRef:hm-1");
    hm.insert("memory_free".into(), json!(30_000_000_000_i64));
    hm.insert("live".into(), json!(false));
    let batch = store
        .apply_changes(
            "srv1",
            vec![change(
                "host_metrics",
                "OpaqueRef:hm-1",
                ChangeOp::Mod,
                Some(hm),
            )],
        )
        .unwrap()
        .unwrap();
    assert_eq!(ids(&batch), HashSet::from([host_id.clone()]));
    let host = store.get(&host_id).unwrap();
    assert_eq!(
        host.value()["memory"]["usage"],
        json!(34_359_738_368_i64 - 30_000_000_000)
    );
    assert_eq!(host.value()["power_state"], "Halted");
}

#[tokio::test]
async fn irrelevant_metric_changes_publish_nothing() {
    let (store, _) = loaded();
    let mut sub = store.subscribe();
    let mut m = rec("OpaqueRef:vmm-debian-web");
    m.insert("last_updated".into(), json!("20241122T02:00:00Z"));
    let out = store
        .apply_changes(
            "srv1",
            vec![change(
                "VM_metrics",
                "OpaqueRef:vmm-debian-web",
                ChangeOp::Mod,
                Some(m),
            )],
        )
        .unwrap();
    assert!(out.is_none());
    assert_eq!(sub.try_recv().unwrap().map(|b| b.enter.len()), None);
}

#[tokio::test]
async fn created_and_destroyed_objects_enter_and_exit_with_their_dependents() {
    let (store, _) = loaded();
    let vif_ref = "OpaqueRef:vif-web-1";
    let mut vif = rec("OpaqueRef:vif-web-0");
    vif.insert("uuid".into(), json!("11111111-2222-4333-8444-555555555555"));
    vif.insert("device".into(), json!("1"));
    let mut vm = rec(VM1);
    vm.insert("VIFs".into(), json!(["OpaqueRef:vif-web-0", vif_ref]));
    // VM mod first, VIF add second: the VM must still link the new VIF (same batch).
    let batch = store
        .apply_changes(
            "srv1",
            vec![
                change("VM", VM1, ChangeOp::Mod, Some(vm.clone())),
                change("VIF", vif_ref, ChangeOp::Add, Some(vif)),
            ],
        )
        .unwrap()
        .unwrap();
    assert!(ids(&batch).contains("11111111-2222-4333-8444-555555555555"));
    assert!(ids(&batch).contains(&vm1_id()));
    assert_eq!(
        store.get(&vm1_id()).unwrap().value()["VIFs"][1],
        "11111111-2222-4333-8444-555555555555"
    );
    // Destroy it: VIF exits; the VM (still listing the ref until its own mod) now has a null link.
    let batch = store
        .apply_changes("srv1", vec![change("VIF", vif_ref, ChangeOp::Del, None)])
        .unwrap()
        .unwrap();
    assert_eq!(batch.exit.len(), 1);
    assert_eq!(&*batch.exit[0], "11111111-2222-4333-8444-555555555555");
    assert_eq!(
        store.get(&vm1_id()).unwrap().value()["VIFs"][1],
        Value::Null
    );
}

#[tokio::test]
async fn links_to_late_objects_are_filled_when_they_appear() {
    let (store, _) = loaded();
    // A new halted VM whose VBD/VDI on the local SR arrive in a later batch: $container moves to the host.
    let vm_ref = "OpaqueRef:vm-late";
    let mut vm = rec("OpaqueRef:vm-win-halted");
    vm.insert("uuid".into(), json!("aaaaaaaa-0000-4000-8000-000000000001"));
    vm.insert("VBDs".into(), json!(["OpaqueRef:vbd-late"]));
    vm.insert("VIFs".into(), json!([]));
    store
        .apply_changes("srv1", vec![change("VM", vm_ref, ChangeOp::Add, Some(vm))])
        .unwrap();
    let o = store.get("aaaaaaaa-0000-4000-8000-000000000001").unwrap();
    assert_eq!(o.value()["$container"], support::POOL_UUID);
    assert_eq!(o.value()["$VBDs"], json!([null]));
    let mut vbd = rec("OpaqueRef:vbd-win-xvda");
    vbd.insert("uuid".into(), json!("aaaaaaaa-0000-4000-8000-000000000002"));
    vbd.insert("VM".into(), json!(vm_ref));
    let batch = store
        .apply_changes(
            "srv1",
            vec![change(
                "VBD",
                "OpaqueRef:vbd-late",
                ChangeOp::Add,
                Some(vbd),
            )],
        )
        .unwrap()
        .unwrap();
    let o = store.get("aaaaaaaa-0000-4000-8000-000000000001").unwrap();
    assert!(ids(&batch).contains("aaaaaaaa-0000-4000-8000-000000000001"));
    assert_eq!(
        o.value()["$VBDs"],
        json!(["aaaaaaaa-0000-4000-8000-000000000002"])
    );
    let host1 = rec("OpaqueRef:host-1-aaaa")["uuid"].clone();
    assert_eq!(
        o.value()["$container"],
        host1,
        "VBD → VDI on local SR → PBD host"
    );
}

#[tokio::test]
async fn template_turning_default_changes_id() {
    let (store, _) = loaded();
    let r = "OpaqueRef:vm-tpl-custom";
    let uuid = rec(r)["uuid"].as_str().unwrap().to_owned();
    let mut t = rec(r);
    t.insert("is_default_template".into(), json!(true));
    let batch = store
        .apply_changes("srv1", vec![change("VM", r, ChangeOp::Mod, Some(t))])
        .unwrap()
        .unwrap();
    let new_id = format!("{}-{uuid}", support::POOL_UUID);
    assert_eq!(ids(&batch), HashSet::from([new_id.clone()]));
    assert_eq!(
        batch.exit.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        vec![uuid.clone()]
    );
    assert!(store.get(&uuid).is_none());
    assert!(store.get(&new_id).is_some());
}

#[tokio::test]
async fn pool_uuid_change_rederives_everything() {
    let (store, _) = loaded();
    let mut p = rec("OpaqueRef:1c3c8a3e-0000-4000-8000-000000000001");
    p.insert("uuid".into(), json!("99999999-0000-4000-8000-000000000000"));
    let batch = store
        .apply_changes(
            "srv1",
            vec![change(
                "pool",
                "OpaqueRef:1c3c8a3e-0000-4000-8000-000000000001",
                ChangeOp::Mod,
                Some(p),
            )],
        )
        .unwrap()
        .unwrap();
    assert_eq!(batch.enter.len(), 36);
    assert!(batch
        .enter
        .iter()
        .all(|o| o.pool() == Some("99999999-0000-4000-8000-000000000000")));
    // Old pool object and old default-template id left.
    assert!(batch.exit.iter().any(|id| &**id == support::POOL_UUID));
}

#[tokio::test]
async fn same_id_in_two_pools_is_shadowed_then_promoted() {
    let (store, _) = loaded();
    let sr_uuid = rec("OpaqueRef:sr-nfs")["uuid"].as_str().unwrap().to_owned();
    // Pool 2: its own pool record + the same SR uuid.
    let mut pool2 = rec("OpaqueRef:1c3c8a3e-0000-4000-8000-000000000001");
    pool2.insert("uuid".into(), json!("22222222-0000-4000-8000-000000000000"));
    pool2.insert("master".into(), json!("OpaqueRef:NULL"));
    pool2.insert("name_label".into(), json!("pool two"));
    let mut sr = rec("OpaqueRef:sr-nfs");
    sr.insert("name_label".into(), json!("pool two's view"));
    let records = std::collections::HashMap::from([
        ("pool".to_owned(), vec![("OpaqueRef:p2".to_owned(), pool2)]),
        ("SR".to_owned(), vec![("OpaqueRef:p2-sr".to_owned(), sr)]),
    ]);
    assert_eq!(
        store
            .apply_reset("srv2", support::raw(records.clone()))
            .unwrap_err(),
        WaitError::UnknownPool("srv2".into()),
        "resets need a registered pool"
    );
    store.register_pool("srv2");
    let batch = store
        .apply_reset("srv2", support::raw(records))
        .unwrap()
        .unwrap();
    assert_eq!(
        ids(&batch),
        HashSet::from(["22222222-0000-4000-8000-000000000000".to_owned()])
    );
    assert_eq!(
        store.get(&sr_uuid).unwrap().value()["name_label"],
        "NFS VM store"
    );
    assert_eq!(
        store.get_by_ref("srv2", "OpaqueRef:p2-sr").unwrap().value()["name_label"],
        "pool two's view"
    );
    // Pool 1 goes: its SR copy is replaced by pool 2's (enter), everything else exits.
    let batch = store.remove_pool("srv1").unwrap().unwrap();
    assert_eq!(ids(&batch), HashSet::from([sr_uuid.clone()]));
    assert!(!batch.exit.iter().any(|id| **id == *sr_uuid));
    assert_eq!(batch.exit.len(), 35);
    assert_eq!(
        store.get(&sr_uuid).unwrap().value()["$pool"],
        "22222222-0000-4000-8000-000000000000"
    );
    assert_eq!(store.len(), 2);
}

#[tokio::test]
async fn removed_pool_rejects_writes_and_waiters() {
    let (store, _) = loaded();
    let batch = store.remove_pool("srv1").unwrap().unwrap();
    assert_eq!(batch.exit.len(), 36);
    assert!(store.is_empty());
    assert_eq!(
        store.wait_ready("srv1").await,
        Err(WaitError::UnknownPool("srv1".into()))
    );
    assert!(store.apply_changes("srv1", vec![]).is_err());
    assert!(
        store.apply_reset("srv1", support::pool_raw()).is_err(),
        "no resurrection"
    );
    assert!(store.remove_pool("srv1").is_err());
    assert!(store.status("srv1").is_none());
}

#[tokio::test]
async fn wait_ready_waits_for_the_load_and_fails_on_disconnect() {
    let store = Store::default();
    store.register_pool("srv1");
    let s2 = store.clone();
    let waiter = tokio::spawn(async move { s2.wait_ready("srv1").await });
    tokio::task::yield_now().await;
    store.apply_reset("srv1", support::pool_raw()).unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), support::POOL_UUID);

    store.register_pool("srv2");
    let s2 = store.clone();
    let waiter = tokio::spawn(async move { s2.wait_ready("srv2").await });
    tokio::task::yield_now().await;
    store
        .set_status(
            "srv2",
            PoolStatus::Disconnected {
                error: Some("connection refused".into()),
                retry_in: None,
            },
        )
        .unwrap();
    assert!(matches!(
        waiter.await.unwrap(),
        Err(WaitError::Disconnected { .. })
    ));

    store.register_pool("srv3");
    let s2 = store.clone();
    let waiter = tokio::spawn(async move { s2.wait_ready("srv3").await });
    tokio::task::yield_now().await;
    store.remove_pool("srv3").unwrap();
    assert_eq!(
        waiter.await.unwrap(),
        Err(WaitError::Removed("srv3".into()))
    );
}

#[tokio::test]
async fn reset_without_pool_record_is_an_error_status() {
    let store = Store::default();
    store.register_pool("srv1");
    let mut records = support::pool_records();
    records.remove("pool");
    assert!(store
        .apply_reset("srv1", support::raw(records))
        .unwrap()
        .is_none());
    assert!(matches!(
        store.status("srv1"),
        Some(PoolStatus::Disconnected { .. })
    ));
    assert!(store.is_empty());
}

#[tokio::test]
async fn slow_subscriber_is_cut_off_not_skipped() {
    let store = Store::new(StoreConfig {
        subscriber_capacity: 2,
    });
    store.register_pool("srv1");
    let mut slow = store.subscribe();
    store.apply_reset("srv1", support::pool_raw()).unwrap();
    for n in 0..3 {
        let mut m = rec("OpaqueRef:vmm-debian-web");
        m.insert("VCPUs_number".into(), json!(n + 1));
        store
            .apply_changes(
                "srv1",
                vec![change(
                    "VM_metrics",
                    "OpaqueRef:vmm-debian-web",
                    ChangeOp::Mod,
                    Some(m),
                )],
            )
            .unwrap()
            .unwrap();
    }
    assert!(matches!(
        slow.recv().await,
        Err(SubscriptionError::Lagged(_))
    ));
    assert_eq!(slow.recv().await.unwrap_err(), SubscriptionError::Closed);
    assert_eq!(slow.try_recv().unwrap_err(), SubscriptionError::Closed);
}

#[tokio::test]
async fn subscribe_with_snapshot_has_no_gap() {
    let (store, _) = loaded();
    let (objs, mut sub) =
        store.subscribe_with_snapshot(&Filter::from_param(Some(&json!({"type": "VM"}))).unwrap());
    assert_eq!(objs.len(), 2);
    let mut m = rec("OpaqueRef:vmm-debian-web");
    m.insert("VCPUs_number".into(), json!(1));
    store
        .apply_changes(
            "srv1",
            vec![change(
                "VM_metrics",
                "OpaqueRef:vmm-debian-web",
                ChangeOp::Mod,
                Some(m),
            )],
        )
        .unwrap();
    let b = sub.recv().await.unwrap();
    assert_eq!(b.enter[0].value()["CPUs"]["number"], 1);
}

#[test]
fn select_with_object_and_string_filters() {
    let (store, _) = loaded();
    let f = |v: Value| Filter::from_param(Some(&v)).unwrap();
    assert_eq!(store.select(&Filter::All, None).len(), 36);
    assert_eq!(store.select(&f(json!({"type": "VM"})), None).len(), 2);
    assert_eq!(
        store
            .select(&f(json!({"type": "VM", "power_state": "Running"})), None)
            .len(),
        1
    );
    assert_eq!(store.select(&f(json!({"tags": ["web"]})), None).len(), 1);
    // Substring semantics: `type:VM` also matches VM-template/-snapshot/-controller.
    assert_eq!(
        store
            .select(&f(json!("type:VM power_state:halted")), None)
            .len(),
        4
    );
    assert_eq!(
        store
            .select(&f(json!("type:/^VM$/ power_state:halted")), None)
            .len(),
        1
    );
    assert_eq!(
        store
            .select(&f(json!("|(type:host type:pool)")), None)
            .len(),
        3
    );
    assert_eq!(
        store
            .select(&f(json!("type:VDI size:>=21474836480")), None)
            .len(),
        4
    );
    assert_eq!(
        store
            .select(&f(json!("type:VDI size:>21474836480")), None)
            .len(),
        1
    );
    assert_eq!(store.select(&f(json!("type:VM")), Some(1)).len(), 1);
    assert_eq!(store.select(&f(json!("")), Some(5)).len(), 5);
    assert!(Filter::from_param(Some(&json!("type:("))).is_err());
    assert!(Filter::from_param(Some(&json!(42))).is_err());
}

#[test]
fn big_enter_notifications_are_split_into_bounded_frames() {
    let (_store, batch) = loaded();
    // The fixture batch is small: one frame, the same text as the single notification.
    let frames = batch.enter_frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(*frames[0], *batch.enter_notification().unwrap());
    // With a small limit: several frames, each a valid `all` enter, together exactly the batch's objects.
    let objects: Vec<&xo_cache::XoObject> = batch.enter.iter().map(|o| &**o).collect();
    let frames = xo_cache::store::enter_notifications_for(objects.iter().copied(), 2_000);
    assert!(frames.len() > 3, "{} frames", frames.len());
    let mut seen = HashSet::new();
    for f in &frames {
        let v: Value = serde_json::from_str(f).unwrap();
        assert_eq!(
            (v["method"].as_str(), v["params"]["type"].as_str()),
            (Some("all"), Some("enter"))
        );
        let items = v["params"]["items"].as_object().unwrap();
        assert!(!items.is_empty());
        for id in items.keys() {
            assert!(seen.insert(id.clone()), "{id} twice");
        }
    }
    assert_eq!(seen.len(), objects.len());
    assert!(xo_cache::store::enter_notifications_for([], 2_000).is_empty());
}

#[test]
fn notifications_are_serialised_once_in_xo_format() {
    let (_store, batch) = loaded();
    let text = batch.enter_notification().unwrap();
    assert!(Arc::ptr_eq(&text, &batch.enter_notification().unwrap()));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["method"], "all");
    assert_eq!(v["params"]["type"], "enter");
    assert_eq!(v["params"]["items"].as_object().unwrap().len(), 36);
    assert_eq!(
        v["params"]["items"][vm1_id()]["name_label"],
        "debian-web-01"
    );
    assert!(batch.exit_notification().is_none());
    let exit = xo_cache::store::exit_notification_for(["a", "b\""]);
    let v: Value = serde_json::from_str(&exit).unwrap();
    assert_eq!(
        v["params"],
        json!({"type": "exit", "items": {"a": 0, "b\"": 0}})
    );
}

#[tokio::test]
async fn vhd_parent_usage_change_updates_the_child_chain_usage() {
    let (store, _) = loaded();
    let child = rec("OpaqueRef:vdi-web-root")["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        store.get(&child).unwrap().value()["chainPhysicalUsage"],
        json!(8_589_934_592_i64)
    );
    let mut base = rec("OpaqueRef:vdi-web-base");
    base.insert("physical_utilisation".into(), json!(1_073_741_824));
    let batch = store
        .apply_changes(
            "srv1",
            vec![change(
                "VDI",
                "OpaqueRef:vdi-web-base",
                ChangeOp::Mod,
                Some(base),
            )],
        )
        .unwrap()
        .unwrap();
    assert!(ids(&batch).contains(&child));
    assert_eq!(
        store.get(&child).unwrap().value()["chainPhysicalUsage"],
        json!(5_368_709_120_i64 + 1_073_741_824)
    );
}

#[tokio::test]
async fn malformed_or_cancelling_changes_publish_nothing() {
    let (store, _) = loaded();
    let mut vif = rec("OpaqueRef:vif-web-0");
    vif.insert("uuid".into(), json!("33333333-0000-4000-8000-000000000000"));
    let out = store
        .apply_changes(
            "srv1",
            vec![
                // add/mod without a snapshot: ignored
                change("VM", VM1, ChangeOp::Mod, None),
                // del of an unknown ref: ignored
                change("VM", "OpaqueRef:unknown", ChangeOp::Del, None),
                // add then del in the same batch: cancel out
                change("VIF", "OpaqueRef:transient", ChangeOp::Add, Some(vif)),
                change("VIF", "OpaqueRef:transient", ChangeOp::Del, None),
            ],
        )
        .unwrap();
    assert!(out.is_none());
    assert_eq!(store.len(), 36);
    assert!(store.get("33333333-0000-4000-8000-000000000000").is_none());
}

#[tokio::test]
async fn busy_fields_only_rederive_what_reads_them() {
    let (store, _) = loaded();
    let sr_id = rec("OpaqueRef:sr-local")["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let vm2_id = rec("OpaqueRef:vm-win-halted")["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    // SR usage changes (every snapshot/scan): only the SR itself changes.
    let mut sr = rec("OpaqueRef:sr-local");
    sr.insert("physical_utilisation".into(), json!(42));
    let batch = store
        .apply_changes(
            "srv1",
            vec![change(
                "SR",
                "OpaqueRef:sr-local",
                ChangeOp::Mod,
                Some(sr.clone()),
            )],
        )
        .unwrap()
        .unwrap();
    assert_eq!(ids(&batch), HashSet::from([sr_id.clone()]));
    // The SR becomes shared: the halted VM whose disk lives there moves from its host to the pool.
    sr.insert("shared".into(), json!(true));
    let batch = store
        .apply_changes(
            "srv1",
            vec![change("SR", "OpaqueRef:sr-local", ChangeOp::Mod, Some(sr))],
        )
        .unwrap()
        .unwrap();
    assert_eq!(ids(&batch), HashSet::from([sr_id, vm2_id.clone()]));
    assert_eq!(
        store.get(&vm2_id).unwrap().value()["$container"],
        support::POOL_UUID
    );
}
