//! The object cache against an in-process xo-server: initial snapshot, `enter`/`exit` updates, and
//! resync after a reconnection (changes made while disconnected show up).

use std::time::Duration;

use serde_json::{json, Value};
use xo_lib::{wait_for_power_state, Backoff, CacheEvent, Credentials, ObjectCache, Options, Xo};

const WAIT: Duration = Duration::from_secs(20);

async fn settle<T>(
    cache: &ObjectCache,
    f: impl FnMut(&std::collections::HashMap<String, Value>) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, cache.wait_until(f))
        .await
        .expect("cache converged in time")
}

#[tokio::test]
async fn cache_follows_notifications_and_resyncs_after_reconnect() {
    let s = crate::support::start().await;
    s.objects
        .lock()
        .unwrap()
        .insert("pool1".into(), json!({"id": "pool1", "type": "pool"}));
    s.objects.lock().unwrap().insert(
        "vm1".into(),
        json!({"id": "vm1", "type": "VM", "power_state": "Halted"}),
    );
    let xo = Xo::connect(
        Options::new(s.url())
            .credentials(Credentials::password("admin@admin.net", "admin"))
            .reconnect(Backoff::new(
                Duration::from_millis(20),
                Duration::from_millis(200),
            )),
    )
    .await
    .unwrap();
    let cache = ObjectCache::start(&xo).await.unwrap();
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.generation(), 1);
    assert_eq!(cache.of_type("VM").len(), 1);

    // enter (update) and exit
    s.enter(&[json!({"id": "vm1", "type": "VM", "power_state": "Running"})]);
    let vm = tokio::time::timeout(WAIT, wait_for_power_state(&cache, "vm1", "Running", WAIT))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(vm["id"], "vm1");
    s.exit(&["pool1"]);
    settle(&cache, |o| (!o.contains_key("pool1")).then_some(())).await;

    // lose the connection; change things while nobody listens
    let mut changes = cache.subscribe();
    let mut events = xo.events();
    s.drop_connections();
    tokio::time::timeout(WAIT, async {
        while !matches!(events.recv().await, Ok(xo_lib::Event::Disconnected { .. })) {}
    })
    .await
    .unwrap();
    {
        let mut objs = s.objects.lock().unwrap();
        objs.remove("vm1");
        objs.insert(
            "vm2".into(),
            json!({"id": "vm2", "type": "VM", "power_state": "Paused"}),
        );
    }
    // after reconnecting and signing in again, the cache resyncs to the server's state
    settle(&cache, |o| {
        (o.len() == 1 && o.contains_key("vm2")).then_some(())
    })
    .await;
    assert_eq!(cache.generation(), 2);
    let resynced = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(CacheEvent::Resynced(g)) = changes.recv().await {
                return g;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(resynced, 2);
    // and keeps following notifications
    s.enter(&[json!({"id": "vm3", "type": "VM", "power_state": "Halted"})]);
    settle(&cache, |o| o.get("vm3").cloned()).await;
    assert!(cache.is_running());
    assert_eq!(cache.find(|o| o["power_state"] == "Paused").len(), 1);
}

#[tokio::test]
async fn cache_needs_a_signed_in_client() {
    let s = crate::support::start().await;
    let anon = Xo::connect(Options::new(s.url())).await.unwrap();
    let e = ObjectCache::start(&anon).await.unwrap_err();
    assert_eq!(e.code(), Some(xo_lib::codes::UNAUTHORIZED));
}

#[tokio::test]
async fn typed_object_helpers() {
    let s = crate::support::start().await;
    s.objects.lock().unwrap().insert(
        "b".into(),
        json!({"id": "b", "type": "VM", "name_label": "beta"}),
    );
    s.objects.lock().unwrap().insert(
        "a".into(),
        json!({"id": "a", "type": "VM", "name_label": "alpha"}),
    );
    s.objects
        .lock()
        .unwrap()
        .insert("h".into(), json!({"id": "h", "type": "host"}));
    let xo = Xo::connect(
        Options::new(s.url()).credentials(Credentials::password("admin@admin.net", "admin")),
    )
    .await
    .unwrap();
    let vms = xo.list_vms().await.unwrap();
    let names: Vec<&str> = vms
        .iter()
        .map(|v| v["name_label"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(xo.get_all_objects(None, Some(1)).await.unwrap().len(), 1);
    let e = xo
        .call("test.noSuchMethod", json!({"id": "a"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(xo_lib::codes::METHOD_NOT_FOUND));
}

/// The "start a VM and wait for it to run" flow, against test doubles of vm.start / vm.stop over fixture
/// objects (state errors with code 13 and data).
#[tokio::test]
async fn start_a_vm_and_wait_until_running() {
    let s = crate::support::start().await;
    s.objects.lock().unwrap().insert(
        "vm1".into(),
        json!({"id": "vm1", "type": "VM", "power_state": "Halted", "name_label": "web"}),
    );
    let xo = Xo::connect(
        Options::new(s.url()).credentials(Credentials::password("admin@admin.net", "admin")),
    )
    .await
    .unwrap();
    let cache = ObjectCache::start(&xo).await.unwrap();
    xo.start_vm("vm1").await.unwrap();
    let vm = wait_for_power_state(&cache, "vm1", "Running", WAIT)
        .await
        .unwrap();
    assert_eq!(vm["name_label"], "web");
    let e = xo.start_vm("vm1").await.unwrap_err();
    assert_eq!(e.code(), Some(xo_lib::codes::VM_BAD_POWER_STATE));
    assert_eq!(e.api().unwrap().data.as_ref().unwrap()["actual"], "Running");
    xo.stop_vm("vm1", false).await.unwrap();
    wait_for_power_state(&cache, "vm1", "Halted", WAIT)
        .await
        .unwrap();
    let e = xo.start_vm("nope").await.unwrap_err();
    assert_eq!(e.code(), Some(xo_lib::codes::NO_SUCH_OBJECT));
    // waiting for a state that never comes times out
    let e = wait_for_power_state(&cache, "vm1", "Paused", Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(e, xo_lib::Error::Timeout));
}

/// The real thing: xo-server's own `xo.getAllObjects` and `all` events over a simulated pool.
#[tokio::test]
async fn cache_of_a_simulated_pool() {
    let s = crate::support::start_demo(3).await;
    let xo = Xo::connect(
        Options::new(s.server.url()).credentials(Credentials::password("admin@admin.net", "admin")),
    )
    .await
    .unwrap();
    let cache = ObjectCache::start(&xo).await.unwrap();
    let vms = settle(&cache, |o| {
        let vms: Vec<Value> = o.values().filter(|v| v["type"] == "VM").cloned().collect();
        (vms.len() == 3).then_some(vms)
    })
    .await;
    for vm in &vms {
        assert!(
            vm["power_state"].is_string() && vm["$pool"].is_string(),
            "{vm}"
        );
    }
    assert_eq!(cache.of_type("pool").len(), 1);
    assert_eq!(cache.of_type("host").len(), 1);
    assert_eq!(xo.list_vms().await.unwrap().len(), 3);
    let servers = xo.servers().await.unwrap();
    assert_eq!(servers.len(), 1);
}

/// Power cycle of a simulated VM through xo-server's real vm.start / vm.stop, observed by the cache.
#[tokio::test]
async fn power_cycle_of_a_simulated_vm() {
    let s = crate::support::start_demo(2).await;
    let xo = Xo::connect(
        Options::new(s.server.url()).credentials(Credentials::password("admin@admin.net", "admin")),
    )
    .await
    .unwrap();
    let cache = ObjectCache::start(&xo).await.unwrap();
    let vm = settle(&cache, |o| {
        o.values()
            .find(|v| v["type"] == "VM")
            .map(|v| v["id"].as_str().unwrap().to_owned())
    })
    .await;
    if cache.get(&vm).unwrap()["power_state"] != "Halted" {
        xo.stop_vm(&vm, true).await.unwrap();
        wait_for_power_state(&cache, &vm, "Halted", WAIT)
            .await
            .unwrap();
    }
    xo.start_vm(&vm).await.unwrap();
    let running = wait_for_power_state(&cache, &vm, "Running", WAIT)
        .await
        .unwrap();
    assert_eq!(running["id"], vm.as_str());
    let e = xo.start_vm(&vm).await.unwrap_err();
    assert!(e.api().is_some(), "{e}");
    xo.stop_vm(&vm, true).await.unwrap();
    wait_for_power_state(&cache, &vm, "Halted", WAIT)
        .await
        .unwrap();
}
