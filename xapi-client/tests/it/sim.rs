//! Client against the in-process simulator (`xapi-sim`): login, every class, async tasks, the watcher.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use xapi_client::{Client, ClientOptions, Op, Protocol, Ref, Watch, WatchEvent, WatchOptions};
use xapi_sim::{RunningPool, Sim};
use xapi_types::XapiError;

async fn pool(hosts: usize, vms: usize, tls: bool) -> RunningPool {
    let sim = Sim::builder()
        .hosts(hosts)
        .vms(vms)
        .event_batching(Duration::from_millis(5))
        .build()
        .unwrap();
    sim.serve("127.0.0.1:0".parse().unwrap(), tls)
        .await
        .unwrap()
}

fn opts(url: String) -> ClientOptions {
    ClientOptions::new(url, "root", "root").allow_unauthorized(true)
}

/// A halted, non-template, non-dom0 VM.
/// The watcher's next change of `obj` (other changes skipped).
async fn next_change_of(w: &mut Watch, obj: &Ref) -> xapi_client::ObjectChange {
    loop {
        match next_event(w).await {
            WatchEvent::Changes(ch) => {
                if let Some(c) = ch.into_iter().find(|c| &c.obj_ref == obj) {
                    return c;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn halted_vm(c: &Client) -> Ref {
    let vms = c.get_all_records("VM").await.unwrap();
    vms.into_iter()
        .find(|(_, r)| {
            r["is_a_template"] == json!(false)
                && r["is_control_domain"] == json!(false)
                && r["is_a_snapshot"] == json!(false)
                && r["power_state"] == json!("Halted")
        })
        .map(|(r, _)| r)
        .expect("a halted VM in the seed")
}

async fn next_event(w: &mut Watch) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(30), w.next())
        .await
        .expect("watcher stalled")
        .expect("stream ended")
}

#[tokio::test]
async fn sim_login_via_slave_and_get_all_records_of_every_class() {
    let p = pool(3, 20, true).await;
    let slave = p.host_urls()[1].clone();
    let c = Client::connect(opts(slave)).await.unwrap();
    assert_eq!(
        c.url().trim_end_matches('/'),
        p.master_url().trim_end_matches('/')
    );
    assert_eq!(c.protocol(), Some(Protocol::JsonRpc));
    let classes = c.record_classes().await.unwrap();
    assert!(
        classes.iter().any(|c| c == "VM") && classes.iter().any(|c| c == "host"),
        "{classes:?}"
    );
    for class in &classes {
        match c.get_all_records(class).await {
            Ok(_) => {}
            Err(e) if e.xapi_code() == Some("MESSAGE_REMOVED") => {}
            Err(e) => panic!("{class}.get_all_records: {e}"),
        }
    }
    let guests = c
        .get_all_records("VM")
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, r)| {
            r["is_a_template"] == json!(false) && r["is_control_domain"] == json!(false)
        })
        .filter(|(_, r)| r["is_a_snapshot"] == json!(false))
        .count();
    assert_eq!(guests, 20);
    assert_eq!(c.get_all_records("host").await.unwrap().len(), 3);
    c.logout().await.unwrap();
}

#[tokio::test]
async fn sim_xml_rpc_records_are_typed_like_json_rpc() {
    let p = pool(1, 20, false).await;
    let json_client = Client::with_protocol(opts(p.master_url()), Some(Protocol::JsonRpc)).unwrap();
    let xml_client = Client::with_protocol(opts(p.master_url()), Some(Protocol::XmlRpc)).unwrap();
    for class in ["VM", "host", "SR", "pool"] {
        let mut a = json_client.get_all_records(class).await.unwrap();
        let mut b = xml_client.get_all_records(class).await.unwrap();
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(a, b, "{class} differs between JSON-RPC and XML-RPC");
    }
    let vm = halted_vm(&xml_client).await;
    let mem = xml_client
        .call("VM.get_memory_static_max", vec![json!(vm.0)])
        .await
        .unwrap();
    assert!(mem.is_i64(), "{mem}");
}

#[tokio::test]
async fn sim_vm_start_and_shutdown_through_async_tasks() {
    let p = pool(2, 20, true).await;
    let c = Client::connect(opts(p.master_url())).await.unwrap();
    let vm = halted_vm(&c).await;
    let r = c
        .call_async("VM.start", vec![json!(vm.0), json!(false), json!(false)])
        .await
        .unwrap();
    assert_eq!(r, json!(""));
    assert_eq!(
        c.call("VM.get_power_state", vec![json!(vm.0)])
            .await
            .unwrap(),
        json!("Running")
    );
    // Starting it again fails with the task's error_info.
    let err = c
        .call_async("VM.start", vec![json!(vm.0), json!(false), json!(false)])
        .await
        .unwrap_err();
    assert_eq!(err.xapi_code(), Some("VM_BAD_POWER_STATE"), "{err}");
    c.call_async("VM.clean_shutdown", vec![json!(vm.0)])
        .await
        .unwrap();
    assert_eq!(
        c.call("VM.get_power_state", vec![json!(vm.0)])
            .await
            .unwrap(),
        json!("Halted")
    );
    // A ref-returning async call: the result is parsed from the task's XML-RPC text.
    let clone = c
        .call_async("VM.clone", vec![json!(vm.0), json!("copy")])
        .await
        .unwrap();
    let clone = clone.as_str().expect("a ref").to_owned();
    assert!(clone.starts_with("OpaqueRef:"), "{clone}");
    assert_eq!(
        c.get_record("VM", &Ref(clone)).await.unwrap()["name_label"],
        json!("copy")
    );
    // Finished tasks are destroyed.
    let pending: Vec<_> = c.get_all_records("task").await.unwrap();
    assert!(pending.is_empty(), "{} tasks left", pending.len());
}

#[tokio::test]
async fn sim_injected_async_failure_comes_back_as_xapi_error() {
    let p = pool(1, 20, false).await;
    let c = Client::connect(opts(p.master_url())).await.unwrap();
    let vm = halted_vm(&c).await;
    p.faults().fail_next(
        "VM.start",
        XapiError::new("HOST_NOT_ENOUGH_FREE_MEMORY", ["1", "0"]),
    );
    let err = c
        .call_async("VM.start", vec![json!(vm.0), json!(false), json!(false)])
        .await
        .unwrap_err();
    assert_eq!(err.xapi_code(), Some("HOST_NOT_ENOUGH_FREE_MEMORY"));
}

#[tokio::test]
async fn sim_watcher_initial_load_then_incremental_changes() {
    let p = pool(2, 20, true).await;
    let c = Client::connect(opts(p.master_url())).await.unwrap();
    let mut w = c.watch(WatchOptions::default());
    let WatchEvent::Reset { records } = next_event(&mut w).await else {
        panic!("expected Reset")
    };
    let direct = c.get_all_records("VM").await.unwrap();
    assert_eq!(records["VM"].len(), direct.len());
    assert_eq!(records["host"].len(), 2);
    assert!(records.contains_key("pool") && records.contains_key("SR"));
    // Hosts' addresses are remembered for failover.
    assert_eq!(c.pool_hosts().len(), 2);

    let vm = halted_vm(&c).await;
    c.call(
        "VM.set_name_label",
        vec![json!(vm.0), json!("renamed by test")],
    )
    .await
    .unwrap();
    let change = next_change_of(&mut w, &vm).await;
    assert_eq!((change.class.as_str(), change.op), ("VM", Op::Mod));
    assert_eq!(
        change.snapshot.unwrap().decode()["name_label"],
        json!("renamed by test")
    );

    let clone = c
        .call("VM.clone", vec![json!(vm.0), json!("fresh")])
        .await
        .unwrap();
    let clone = Ref(clone.as_str().unwrap().to_owned());
    c.call("VM.destroy", vec![json!(clone.0)])
        .await
        .unwrap_or_else(|e| panic!("destroy: {e}"));
    // Either coalesced away or an add then a del; never a leftover.
    let mut seen: Vec<Op> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, w.next()).await {
        if let WatchEvent::Changes(ch) = ev {
            seen.extend(ch.iter().filter(|c| c.obj_ref == clone).map(|c| c.op));
        }
    }
    assert!(seen.is_empty() || seen.last() == Some(&Op::Del), "{seen:?}");
}

#[tokio::test]
async fn sim_watcher_resyncs_after_events_lost() {
    let p = pool(1, 20, false).await;
    let c = Client::connect(opts(p.master_url())).await.unwrap();
    let mut w = c.watch(WatchOptions {
        classes: Some(vec!["VM".into(), "pool".into()]),
        ..Default::default()
    });
    assert!(matches!(next_event(&mut w).await, WatchEvent::Reset { .. }));
    p.faults()
        .fail_next("event.from", XapiError::code("EVENTS_LOST"));
    // The pending event.from is already blocked: make a change so the next one runs and hits the fault.
    let vm = halted_vm(&c).await;
    c.call("VM.set_name_description", vec![json!(vm.0), json!("poke")])
        .await
        .unwrap();
    loop {
        match next_event(&mut w).await {
            WatchEvent::Reset { records } => {
                assert_eq!(records.len(), 2);
                break;
            }
            WatchEvent::Changes(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn sim_watcher_resyncs_after_master_toolstack_restart() {
    let p = pool(2, 20, true).await;
    let c = Client::connect(opts(p.master_url())).await.unwrap();
    let mut w = c.watch(WatchOptions {
        classes: Some(vec!["VM".into(), "host".into()]),
        ..Default::default()
    });
    assert!(matches!(next_event(&mut w).await, WatchEvent::Reset { .. }));
    // All sessions on the master vanish; the blocked event.from fails SESSION_INVALID; the watcher logs in again
    // and reloads.
    p.restart_host(0);
    match next_event(&mut w).await {
        WatchEvent::Reset { records } => assert_eq!(records["host"].len(), 2),
        other => panic!("expected Reset, got {other:?}"),
    }
    // And keeps following changes.
    let vm = halted_vm(&c).await;
    c.call(
        "VM.set_name_label",
        vec![json!(vm.0), json!("after restart")],
    )
    .await
    .unwrap();
    loop {
        if let WatchEvent::Changes(ch) = next_event(&mut w).await {
            if ch.iter().any(|c| c.obj_ref == vm) {
                break;
            }
        }
    }
}

#[tokio::test]
async fn sim_master_change_is_followed() {
    let p = pool(3, 20, false).await;
    let c = Client::connect(opts(p.master_url())).await.unwrap();
    let before = c.url();
    p.set_master(2).unwrap();
    let v: Value = c.call("pool.get_all", vec![]).await.unwrap();
    assert!(v.is_array());
    assert_ne!(c.url(), before);
    assert_eq!(
        c.url().trim_end_matches('/'),
        p.master_url().trim_end_matches('/')
    );
}

#[tokio::test]
async fn sim_logout_after_a_master_change_ends_the_session_on_the_new_master() {
    let p = pool(3, 20, false).await;
    let c = Client::connect(opts(p.master_url())).await.unwrap();
    let sessions = || p.state().read(|db| db.refs("session").len());
    let before = sessions();
    p.set_master(2).unwrap();
    // the old master answers HOST_IS_SLAVE: the logout is told to the new one
    c.logout().await.unwrap();
    assert_eq!(sessions(), before - 1);
    assert_eq!(
        c.url().trim_end_matches('/'),
        p.master_url().trim_end_matches('/')
    );
}

#[tokio::test]
async fn sim_watcher_reports_disconnection_when_pool_goes_away() {
    let p = pool(1, 20, false).await;
    let c = Client::connect(opts(p.master_url())).await.unwrap();
    let mut w = c.watch(WatchOptions {
        classes: Some(vec!["VM".into()]),
        backoff_initial: Duration::from_millis(10),
        ..Default::default()
    });
    assert!(matches!(next_event(&mut w).await, WatchEvent::Reset { .. }));
    p.shutdown().await;
    loop {
        match next_event(&mut w).await {
            WatchEvent::Disconnected { retry_in, .. } => {
                assert_eq!(retry_in, Duration::from_millis(10));
                break;
            }
            WatchEvent::Reset { .. } | WatchEvent::Changes(_) => continue,
        }
    }
}

#[tokio::test]
async fn sim_concurrent_async_starts_share_the_task_watcher() {
    let p = pool(4, 20, false).await;
    let c = Client::connect(opts(p.master_url())).await.unwrap();
    let halted: Vec<Ref> = c
        .get_all_records("VM")
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, r)| {
            r["is_a_template"] == json!(false)
                && r["is_control_domain"] == json!(false)
                && r["is_a_snapshot"] == json!(false)
                && r["power_state"] == json!("Halted")
        })
        .map(|(r, _)| r)
        .take(3)
        .collect();
    assert!(halted.len() == 3, "seed has {} halted VMs", halted.len());
    let starts = halted
        .iter()
        .map(|vm| c.call_async("VM.start", vec![json!(vm.0), json!(false), json!(false)]));
    for r in futures::future::join_all(starts).await {
        r.unwrap();
    }
    for vm in &halted {
        assert_eq!(
            c.call("VM.get_power_state", vec![json!(vm.0)])
                .await
                .unwrap(),
            json!("Running")
        );
    }
}

#[tokio::test]
async fn sim_error_paths_are_typed_xapi_errors() {
    let p = pool(2, 20, true).await;
    // Wrong password: SESSION_AUTHENTICATION_FAILED, typed.
    let bad = ClientOptions::new(p.master_url(), "root", "wrong").allow_unauthorized(true);
    let e = Client::connect(bad).await.unwrap_err();
    assert_eq!(e.xapi_code(), Some("SESSION_AUTHENTICATION_FAILED"), "{e}");
    assert!(
        !format!("{e} {e:?}").contains("wrong"),
        "password leaked: {e:?}"
    );

    let c = Client::connect(opts(p.master_url())).await.unwrap();
    let vm = halted_vm(&c).await;
    // Bad calls: unknown message, wrong arity, wrong type, stale ref.
    let e = c.call("VM.no_such_message", vec![]).await.unwrap_err();
    assert_eq!(e.xapi_code(), Some("MESSAGE_METHOD_UNKNOWN"), "{e}");
    let e = c.call("VM.get_name_label", vec![]).await.unwrap_err();
    assert_eq!(
        e.xapi_code(),
        Some("MESSAGE_PARAMETER_COUNT_MISMATCH"),
        "{e}"
    );
    let e = c
        .call("VM.set_VCPUs_at_startup", vec![json!(vm.0), json!("many")])
        .await
        .unwrap_err();
    assert_eq!(e.xapi_code(), Some("FIELD_TYPE_ERROR"), "{e}");
    let e = c
        .call("VM.get_record", vec![json!("OpaqueRef:no-such-vm")])
        .await
        .unwrap_err();
    assert_eq!(e.xapi_code(), Some("HANDLE_INVALID"), "{e}");
    match e {
        xapi_client::Error::Xapi(x) => assert_eq!(x.params, vec!["VM", "OpaqueRef:no-such-vm"]),
        other => panic!("not an XAPI error: {other:?}"),
    }

    // The master's toolstack restarts (sessions lost): the next call logs in again and succeeds.
    let before = c.session_id().unwrap();
    p.restart_host(0);
    c.call("VM.get_all", vec![]).await.unwrap();
    assert_ne!(c.session_id().unwrap(), before);

    // A dropped connection is a connection error, and the client recovers on the next call.
    p.faults().drop_next_connections(1);
    let e = c.call("VM.get_all", vec![]).await.unwrap_err();
    assert!(e.is_connection_error(), "{e:?}");
    c.call("VM.get_all", vec![]).await.unwrap();

    // API latency beyond the call's timeout: Timeout.
    p.faults().set_latency(Duration::from_millis(500));
    let e = c
        .call_with_timeout("VM.get_all", vec![], Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(e, xapi_client::Error::Timeout(_)), "{e:?}");
    p.faults().set_latency(Duration::ZERO);
    c.call("VM.get_all", vec![]).await.unwrap();
    c.logout().await.unwrap();
    assert!(!c.is_logged_in());
}

/// A long operation for the cancel test: runs until its task is cancelled (gives up after ~20 s).
fn runs_until_cancelled(ctx: &xapi_sim::Ctx, _: Vec<Value>) -> Result<Value, XapiError> {
    let Some(task) = ctx.task.clone() else {
        return Ok(json!(""));
    };
    for _ in 0..4000 {
        if ctx.pool.task_cancelling(&task) {
            return Err(XapiError::new("TASK_CANCELLED", [task.0.clone()]));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(json!(""))
}

#[tokio::test]
async fn sim_task_cancel_ends_the_task_cancelled() {
    let sim = Sim::builder()
        .hosts(1)
        .vms(20)
        .event_batching(Duration::from_millis(5))
        .handler("VM.clean_reboot", runs_until_cancelled)
        .build()
        .unwrap();
    let p = sim
        .serve("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let c = Client::connect(opts(p.master_url())).await.unwrap();
    let vm = halted_vm(&c).await;
    let task = c
        .start_async("VM.clean_reboot", vec![json!(vm.0)])
        .await
        .unwrap();
    let rec = c.get_record("task", &task).await.unwrap();
    assert_eq!(rec["status"], json!("pending"));
    assert_eq!(rec["allowed_operations"], json!(["cancel"]));
    let waiter = {
        let c = c.clone();
        let task = task.clone();
        tokio::spawn(async move { c.wait_task(&task).await })
    };
    c.cancel_task(&task).await.unwrap();
    let rec = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("wait_task stalled")
        .unwrap()
        .unwrap();
    assert_eq!(rec["status"], json!("cancelled"));
    let e = xapi_client::task_outcome(Some("VM.clean_reboot"), &rec).unwrap_err();
    assert_eq!(e.xapi_code(), Some("TASK_CANCELLED"), "{e}");
    // Cancelling a finished task is refused.
    let e = c.cancel_task(&task).await.unwrap_err();
    assert_eq!(e.xapi_code(), Some("OPERATION_NOT_ALLOWED"), "{e}");
}

#[tokio::test]
async fn watcher_keeps_only_the_fields_asked_for() {
    let p = pool(1, 20, false).await;
    let c = Client::connect(opts(p.master_url())).await.unwrap();
    let keep = xapi_client::FieldFilter::new(|class, field| {
        field == "uuid" || (class == "VM" && field == "name_label")
    });
    let mut w = c.watch(WatchOptions {
        fields: Some(keep),
        ..WatchOptions::default()
    });
    let WatchEvent::Reset { records } = next_event(&mut w).await else {
        panic!("expected Reset")
    };
    for (class, recs) in &records {
        for (_, rec) in recs {
            let fields: Vec<String> = rec.decode().keys().cloned().collect();
            let expected: &[&str] = if class == "VM" {
                &["name_label", "uuid"]
            } else {
                &["uuid"]
            };
            assert_eq!(fields, expected, "{class}");
        }
    }
    let vm = halted_vm(&c).await;
    c.call("VM.set_name_label", vec![json!(vm.0), json!("trimmed")])
        .await
        .unwrap();
    let change = next_change_of(&mut w, &vm).await;
    let snap = change.snapshot.unwrap().decode();
    assert_eq!(
        Value::Object(snap.clone()).get("name_label"),
        Some(&json!("trimmed"))
    );
    assert_eq!(snap.len(), 2, "{snap:?}");
}
