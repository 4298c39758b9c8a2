//! The per-pool sync driver fed with synthetic inputs.

use crate::support;

use std::time::Duration;

use futures::channel::mpsc;
use serde_json::json;
use xo_cache::sync::{spawn_pool_sync_with, SyncConfig};
use xo_cache::{spawn_pool_sync, ChangeOp, ObjectChange, PoolStatus, Store, SyncInput};

async fn settle<F: Fn() -> bool>(cond: F) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition never met");
}

fn metrics_mod(n: i64) -> SyncInput {
    let mut m = support::record("OpaqueRef:vmm-debian-web").1;
    m.insert("VCPUs_number".into(), json!(n));
    SyncInput::Changes(vec![ObjectChange {
        class: "VM_metrics".into(),
        r#ref: "OpaqueRef:vmm-debian-web".into(),
        op: ChangeOp::Mod,
        snapshot: Some(xo_cache::RawRecord::from_map(&m)),
    }])
}

#[tokio::test]
async fn reset_then_changes_reach_subscribers_in_order() {
    let store = Store::default();
    let mut sub = store.subscribe();
    let (tx, rx) = mpsc::unbounded();
    let handle = spawn_pool_sync(store.clone(), "srv1", rx);
    assert_eq!(handle.key(), "srv1");
    assert_eq!(store.status("srv1"), Some(PoolStatus::Connecting));
    tx.unbounded_send(SyncInput::Reset {
        records: support::pool_raw(),
    })
    .unwrap();
    tx.unbounded_send(metrics_mod(1)).unwrap();
    let first = sub.recv().await.unwrap();
    assert_eq!(first.enter.len(), 36);
    let second = sub.recv().await.unwrap();
    assert_eq!(second.enter.len(), 1);
    assert_eq!(second.enter[0].value()["CPUs"]["number"], 1);
    assert_eq!(store.wait_ready("srv1").await.unwrap(), support::POOL_UUID);
    // Stream end: objects leave, pool stays registered as disconnected.
    drop(tx);
    let exit = sub.recv().await.unwrap();
    assert_eq!(exit.exit.len(), 36);
    handle.join().await;
    assert!(store.is_empty());
    assert_eq!(
        store.status("srv1"),
        Some(PoolStatus::Disconnected {
            error: None,
            retry_in: None
        })
    );
}

#[tokio::test]
async fn disconnection_keeps_objects_until_the_next_reset() {
    let store = Store::default();
    let mut sub = store.subscribe();
    let (tx, rx) = mpsc::unbounded();
    let _h = spawn_pool_sync_with(store.clone(), "srv1", rx, SyncConfig { forget_after: None });
    tx.unbounded_send(SyncInput::Reset {
        records: support::pool_raw(),
    })
    .unwrap();
    sub.recv().await.unwrap();
    tx.unbounded_send(SyncInput::Disconnected {
        error: "EVENTS_LOST".into(),
        retry_in: Some(Duration::from_secs(5)),
    })
    .unwrap();
    settle(|| matches!(store.status("srv1"), Some(PoolStatus::Disconnected { .. }))).await;
    assert_eq!(store.len(), 36, "objects stay visible while reconnecting");
    assert!(store.wait_ready("srv1").await.is_err());
    // Resync with one VM gone: a single batch with just the difference.
    let mut records = support::pool_records();
    records.get_mut("message").unwrap().clear();
    tx.unbounded_send(SyncInput::Reset {
        records: support::raw(records),
    })
    .unwrap();
    let b = sub.recv().await.unwrap();
    assert!(b.enter.is_empty());
    assert_eq!(b.exit.len(), 1);
    assert_eq!(store.wait_ready("srv1").await.unwrap(), support::POOL_UUID);
}

#[tokio::test]
async fn changes_after_a_disconnection_mean_ready_again() {
    let store = Store::default();
    let (tx, rx) = mpsc::unbounded();
    let _h = spawn_pool_sync(store.clone(), "srv1", rx);
    tx.unbounded_send(SyncInput::Reset {
        records: support::pool_raw(),
    })
    .unwrap();
    tx.unbounded_send(SyncInput::Disconnected {
        error: "timeout".into(),
        retry_in: None,
    })
    .unwrap();
    settle(|| matches!(store.status("srv1"), Some(PoolStatus::Disconnected { .. }))).await;
    tx.unbounded_send(metrics_mod(2)).unwrap();
    settle(|| matches!(store.status("srv1"), Some(PoolStatus::Ready { .. }))).await;
}

#[tokio::test(start_paused = true)]
async fn long_disconnection_forgets_objects() {
    let store = Store::default();
    let mut sub = store.subscribe();
    let (tx, rx) = mpsc::unbounded();
    let _h = spawn_pool_sync_with(
        store.clone(),
        "srv1",
        rx,
        SyncConfig {
            forget_after: Some(Duration::from_secs(60)),
        },
    );
    tx.unbounded_send(SyncInput::Reset {
        records: support::pool_raw(),
    })
    .unwrap();
    sub.recv().await.unwrap();
    tx.unbounded_send(SyncInput::Disconnected {
        error: "host unreachable".into(),
        retry_in: None,
    })
    .unwrap();
    // Paused clock: the runtime auto-advances to the deadline once everything is idle.
    let b = sub.recv().await.unwrap();
    assert_eq!(b.exit.len(), 36);
    assert!(store.is_empty());
    assert!(matches!(
        store.status("srv1"),
        Some(PoolStatus::Disconnected { error: Some(_), .. })
    ));
    // A later reset brings everything back.
    tx.unbounded_send(SyncInput::Reset {
        records: support::pool_raw(),
    })
    .unwrap();
    assert_eq!(sub.recv().await.unwrap().enter.len(), 36);
}

#[tokio::test]
async fn removing_the_pool_stops_the_driver() {
    let store = Store::default();
    let (tx, rx) = mpsc::unbounded();
    let h = spawn_pool_sync(store.clone(), "srv1", rx);
    tx.unbounded_send(SyncInput::Reset {
        records: support::pool_raw(),
    })
    .unwrap();
    store.wait_ready("srv1").await.unwrap();
    store.remove_pool("srv1").unwrap();
    tx.unbounded_send(metrics_mod(3)).unwrap();
    h.join().await;
    assert!(store.is_empty());
    assert!(store.status("srv1").is_none());
}

#[tokio::test]
async fn stop_aborts_the_driver() {
    let store = Store::default();
    let (tx, rx) = mpsc::unbounded::<SyncInput>();
    let h = spawn_pool_sync(store.clone(), "srv1", rx);
    assert!(!h.is_finished());
    h.stop().await;
    assert!(
        tx.unbounded_send(metrics_mod(1)).is_err(),
        "receiver dropped with the task"
    );
}
