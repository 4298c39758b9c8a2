//! Pool administration end to end: `server.set` on connected and disconnected servers (XO's rules),
//! `host.detach` (`pool.eject`) seen by the cache, XAPI through an HTTP proxy (`httpProxy`), and the
//! `all` forwarder's recovery after it lagged behind the cache.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use xapi_sim::RunningPool;

use super::pools::{add_params, sim, sim_vm_refs};
use super::{config, start, start_with, Client};

/// `server.add` with these parameters; the new server's id.
async fn add_server(c: &mut Client, params: Value) -> String {
    c.ok("server.add", params)
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// Adds `pool` as a server and connects it; the server's id.
async fn connect_pool(c: &mut Client, pool: &RunningPool) -> String {
    let id = add_server(c, add_params(pool)).await;
    c.ok("server.enable", json!({"id": id})).await;
    id
}

/// A cache change for the sim's VM `vm`: renamed to `name` (its record otherwise as the sim has it), or deleted.
fn vm_change(pool: &RunningPool, vm: &str, name: Option<&str>) -> xo_cache::ObjectChange {
    let snapshot = name.map(|n| {
        let mut r = pool
            .state()
            .read(|db| db.get("VM", &xapi_types::Ref::from(vm)).unwrap().clone());
        r.insert("name_label".into(), json!(n));
        r
    });
    xo_cache::ObjectChange {
        class: "VM".into(),
        r#ref: vm.to_owned(),
        op: if name.is_some() {
            xo_cache::ChangeOp::Mod
        } else {
            xo_cache::ChangeOp::Del
        },
        snapshot: snapshot.as_ref().map(xo_cache::RawRecord::from_map),
    }
}

/// The objects `c` sees, as the start of a client-side mirror; the notifications before them are dropped
/// (what arrived before the snapshot is in it).
async fn mirror_of(c: &mut Client) -> serde_json::Map<String, Value> {
    let mirror = c
        .ok("xo.getAllObjects", json!({}))
        .await
        .as_object()
        .unwrap()
        .clone();
    c.notifications.clear();
    mirror
}

/// The server's XAPI object cache.
fn cache_of(server: &xo_server::RunningServer) -> xo_cache::Store {
    xo_server::xapi::Pools::of(server.app())
        .unwrap()
        .cache()
        .clone()
}

/// The host objects, by id.
async fn host_objects(c: &mut Client) -> Value {
    c.ok("xo.getAllObjects", json!({"filter": {"type": "host"}}))
        .await
}

#[tokio::test]
async fn pool_admin_server_set_follows_xo_rules() {
    let pool = sim(1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;
    let id = connect_pool(&mut c, &pool).await;

    // connection settings of a connected server: refused, nothing stored
    for (k, v) in [
        ("password", json!("wrong")),
        ("username", json!("other")),
        ("host", json!("127.0.0.9")),
        ("allowUnauthorized", json!(false)),
        ("httpProxy", json!("http://127.0.0.1:1")),
        ("httpProxy", Value::Null),
    ] {
        let e = c.err("server.set", json!({"id": id, k: v})).await;
        assert_eq!(
            e["message"], "this entry require disconnecting the server to update it",
            "{k}: {e}"
        );
    }
    let s = c.server_entry(&id).await;
    assert_eq!(s["status"], "connected");
    assert_eq!(s["username"], "root");
    assert!(s.get("httpProxy").is_none(), "{s}");
    // label and readOnly apply at once, the connection stays
    c.ok(
        "server.set",
        json!({"id": id, "label": "lab", "readOnly": true}),
    )
    .await;
    let s = c.server_entry(&id).await;
    assert_eq!(
        (&s["label"], &s["readOnly"], &s["status"]),
        (&json!("lab"), &json!(true), &json!("connected"))
    );
    let host = host_objects(&mut c).await;
    let host_id = host.as_object().unwrap().keys().next().unwrap().clone();
    let e = c
        .err("host.set", json!({"id": host_id, "name_label": "x"}))
        .await;
    assert!(
        e["message"].as_str().unwrap().contains("read only mode"),
        "{e}"
    );
    c.ok("server.set", json!({"id": id, "readOnly": false}))
        .await;

    // disconnected: a wrong password is stored; connecting fails with XO's error and shows it
    c.ok("server.disable", json!({"id": id})).await;
    c.ok("server.set", json!({"id": id, "password": "wrong"}))
        .await;
    let e = c.err("server.enable", json!({"id": id})).await;
    assert_eq!(e, json!({"code": 8, "message": "authentication failed"}));
    let s = c.server_entry(&id).await;
    assert_eq!(s["status"], "disconnected");
    assert_eq!(s["error"]["code"], "SESSION_AUTHENTICATION_FAILED", "{s}");
    assert!(!s.to_string().contains("wrong"), "{s}");
    // the right one again: connects, the error is cleared
    c.ok("server.set", json!({"id": id, "password": "root"}))
        .await;
    assert_eq!(c.ok("server.enable", json!({"id": id})).await, true);
    let s = c.server_entry(&id).await;
    assert_eq!(s["status"], "connected");
    assert!(s.get("error").is_none(), "{s}");
    assert_eq!(s["label"], "lab");
    server.shutdown().await;
}

/// Guest VMs of the sim still running, paused or suspended on the host with this XAPI ref.
fn live_guests_on(pool: &xapi_sim::RunningPool, host_ref: &str) -> Vec<String> {
    pool.state().read(|db| {
        db.find("VM", |r| {
            r["resident_on"] == host_ref
                && r["is_control_domain"] != json!(true)
                && r["power_state"] != "Halted"
        })
        .into_iter()
        .map(|r| r.0)
        .collect()
    })
}

#[tokio::test]
async fn pool_admin_host_detach_ejects_and_registers_the_host() {
    let pool = sim(3, 9).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), |b| {
        b.pools_config(xo_server::xapi::PoolsConfig {
            ejected_host_connect_delays: vec![std::time::Duration::from_millis(50); 2],
            ..Default::default()
        })
    })
    .await;
    let mut c = Client::admin(&server).await;
    let sid = connect_pool(&mut c, &pool).await;
    let entry = c.server_entry(&sid).await;
    let master = entry["master"].as_str().unwrap().to_owned();
    let hosts = host_objects(&mut c).await;
    let hosts = hosts.as_object().unwrap().clone();
    assert_eq!(hosts.len(), 3);
    let (slave, slave_obj) = hosts
        .iter()
        .find(|(id, _)| **id != master)
        .map(|(id, h)| (id.clone(), h.clone()))
        .unwrap();
    let slave_ref = slave_obj["_xapiRef"].as_str().unwrap().to_owned();
    let address = slave_obj["address"].as_str().unwrap().to_owned();

    // XAPI's refusals come back as XO errors and change nothing
    let e = c.err("host.detach", json!({"id": master})).await;
    assert_eq!(e["code"], -32000, "{e}");
    assert_eq!(e["data"]["code"], "INTERNAL_ERROR", "{e}");
    if !live_guests_on(&pool, &slave_ref).is_empty() {
        let e = c.err("host.detach", json!({"id": slave})).await;
        assert_eq!(e["data"]["code"], "OPERATION_NOT_ALLOWED", "{e}");
        assert_eq!(e["data"]["params"], json!(["VM resident on host"]), "{e}");
    }
    assert_eq!(c.server_entry(&sid).await["status"], "connected");

    // halt what runs there, then detach
    for vm in live_guests_on(&pool, &slave_ref) {
        let id = pool
            .state()
            .read(|db| db.get("VM", &xapi_types::Ref::from(vm.as_str())).unwrap()["uuid"].clone());
        c.ok("vm.stop", json!({"id": id, "force": true})).await;
    }
    assert!(live_guests_on(&pool, &slave_ref).is_empty());
    assert_eq!(c.ok("host.detach", json!({"id": slave})).await, true);

    // the cache sees the host leave: an `exit` for it, and it is gone from the objects
    c.wait_all(|p| p["type"] == "exit" && p["items"].get(slave.as_str()).is_some())
        .await;
    let hosts = host_objects(&mut c).await;
    assert_eq!(hosts.as_object().unwrap().len(), 2);
    assert!(hosts.get(slave.as_str()).is_none());
    let entry = c.server_entry(&sid).await;
    assert_eq!(entry["status"], "connected");
    assert_eq!(entry["poolMembersAddresses"].as_array().unwrap().len(), 2);
    // the ejected host is registered as a server of its own, same credentials, not connected yet
    let all = c.ok("server.getAll", json!({})).await;
    let new = all
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] != sid.as_str())
        .unwrap_or_else(|| panic!("no new server in {all}"));
    assert_eq!(new["host"], address.as_str());
    assert_eq!(new["username"], "root");
    assert_eq!(new["enabled"], true);
    assert_eq!(new["allowUnauthorized"], true);
    assert_eq!(new["status"], "disconnected");
    assert!(new.get("password").is_none());
    // it is tried after the first delay: nothing answers on the bare address (port 443), which XO does
    // not retry; the error is recorded on the new server
    let new_id = new["id"].as_str().unwrap().to_owned();
    let s = c.wait_server(&new_id, |s| s.get("error").is_some()).await;
    assert_eq!(s["error"]["code"], "ECONNREFUSED", "{s}");
    assert_eq!(s["status"], "disconnected");
    // detaching it again: it is no longer an object
    let e = c.err("host.detach", json!({"id": slave})).await;
    assert_eq!(e["code"], 1, "{e}");
    // told the port the simulated hosts listen on, the new server reaches the pool the host now masters alone
    let port = pool
        .master_url()
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    c.ok(
        "server.set",
        json!({"id": new_id, "host": format!("{address}:{port}")}),
    )
    .await;
    c.ok("server.enable", json!({"id": new_id})).await;
    c.wait_server(&new_id, |s| s["status"] == "connected").await;
    c.wait_all(|p| p["type"] == "enter" && p["items"].get(slave.as_str()).is_some())
        .await;
    let hosts = host_objects(&mut c).await;
    assert_eq!(hosts.as_object().unwrap().len(), 3);
    let old_pool = &entry["poolId"];
    assert!(!old_pool.is_null(), "{entry}");
    assert_ne!(&hosts[slave.as_str()]["$pool"], old_pool);
    assert_eq!(hosts[slave.as_str()]["address"], address.as_str());
    server.shutdown().await;
}

/// Applies `all` notifications to a client-side mirror of the objects, as xo-lib does.
fn apply_notifications(mirror: &mut serde_json::Map<String, Value>, notes: Vec<Value>) {
    for n in notes {
        if n["method"] != "all" {
            continue;
        }
        let items = n["params"]["items"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (id, v) in items {
            if n["params"]["type"] == "exit" {
                mirror.remove(&id);
            } else {
                mirror.insert(id, v);
            }
        }
    }
}

#[tokio::test]
async fn pool_admin_lagging_forwarder_resyncs_clients() {
    let pool = sim(1, 6).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), |b| {
        b.pools_config(xo_server::xapi::PoolsConfig {
            batch_queue: 1,
            ..Default::default()
        })
    })
    .await;
    let mut c = Client::admin(&server).await;
    let sid = connect_pool(&mut c, &pool).await;
    let mut mirror = mirror_of(&mut c).await;

    // four batches in a row without yielding to the forwarder, whose queue holds one: it lags
    let cache = cache_of(&server);
    let vms = sim_vm_refs(&pool);
    assert!(vms.len() >= 4);
    let change = |vm: &str, name: Option<&str>| vm_change(&pool, vm, name);
    for ch in [
        change(&vms[0], Some("renamed 0")),
        change(&vms[1], None),
        change(&vms[2], Some("renamed 2")),
        change(&vms[3], Some("renamed 3")),
    ] {
        assert!(cache.apply_changes(&sid, vec![ch]).unwrap().is_some());
    }
    let expected_len = cache.len();

    // the client's mirror converges to the cache (the resync batch carries the missed changes)
    converge(&mut c, &mut mirror, |m| m.len() == expected_len).await;
    assert_eq!(mirror.len(), expected_len);
    let names: Vec<&str> = mirror
        .values()
        .filter(|o| o["type"] == "VM")
        .filter_map(|o| o["name_label"].as_str())
        .collect();
    for n in ["renamed 0", "renamed 2", "renamed 3"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert!(!mirror.values().any(|o| o["_xapiRef"] == vms[1].as_str()));
    server.shutdown().await;
}

/// A loopback HTTP `CONNECT` proxy: counts the tunnels it opens; with `required`, answers 407 to
/// requests without that `Proxy-Authorization`.
async fn connect_proxy(required: Option<&'static str>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let tunnels = Arc::new(AtomicUsize::new(0));
    let count = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((c, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut c = BufReader::new(c);
                let mut request = String::new();
                if c.read_line(&mut request).await.is_err() {
                    return;
                }
                let mut auth = None;
                loop {
                    let mut line = String::new();
                    if c.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("proxy-authorization") {
                            auth = Some(v.trim().to_owned());
                        }
                    }
                }
                let mut c = c.into_inner();
                if required.is_some() && auth.as_deref() != required {
                    let _ = c
                        .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                        .await;
                    return;
                }
                let target = request.split(' ').nth(1).unwrap_or_default().to_owned();
                let Ok(mut up) = TcpStream::connect(target).await else {
                    let _ = c.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                if c.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
                }
            });
        }
    });
    (addr, tunnels)
}

#[tokio::test]
async fn pool_admin_servers_connect_through_their_http_proxy() {
    // base64("xo:pw")
    let (proxy, tunnels) = connect_proxy(Some("Basic eG86cHc=")).await;
    let pool = sim(1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;

    // right credentials: connected, every XAPI connection tunnelled
    let mut params = add_params(&pool);
    params["httpProxy"] = json!(format!("http://xo:pw@{proxy}"));
    let id = add_server(&mut c, params).await;
    c.ok("server.enable", json!({"id": id})).await;
    let s = c.server_entry(&id).await;
    assert_eq!(s["status"], "connected");
    assert!(tunnels.load(Ordering::SeqCst) >= 1);
    assert!(!c.vms().await.is_empty());
    c.ok("server.remove", json!({"id": id})).await;

    // the proxy refuses the credentials: a clear error, stored without the password
    let before = tunnels.load(Ordering::SeqCst);
    let mut params = add_params(&pool);
    params["httpProxy"] = json!(format!("http://xo:s3cret@{proxy}"));
    params["autoConnect"] = json!(false);
    let id = add_server(&mut c, params).await;
    let e = c.err("server.enable", json!({"id": id})).await;
    assert!(
        e["message"].as_str().unwrap_or_default().contains("407")
            || e["data"].to_string().contains("407"),
        "{e}"
    );
    assert!(!e.to_string().contains("s3cret"), "{e}");
    let s = c.server_entry(&id).await;
    assert_eq!(s["status"], "disconnected");
    let err = s["error"].to_string();
    assert!(err.contains("407") && err.contains(&proxy), "{s}");
    assert!(!err.contains("s3cret"), "{s}");
    assert_eq!(tunnels.load(Ordering::SeqCst), before);
    c.ok("server.remove", json!({"id": id})).await;

    // the proxy is unreachable: serverUnreachable, like an unreachable host
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut params = add_params(&pool);
    params["httpProxy"] = json!(format!("http://127.0.0.1:{port}"));
    params["autoConnect"] = json!(false);
    let id = add_server(&mut c, params).await;
    let e = c.err("server.enable", json!({"id": id})).await;
    assert_eq!(
        e,
        json!({"code": 9, "message": "server unreachable", "data": {"objectId": id}})
    );
    let s = c.server_entry(&id).await;
    assert_eq!(s["error"]["code"], "ECONNREFUSED", "{s}");
    assert!(
        s["error"]["message"].as_str().unwrap().contains("proxy"),
        "{s}"
    );
    server.shutdown().await;
}

/// Waits until the mirror of `c` holds every object `xo.getAllObjects` gives it, with the same values,
/// and `done` holds (bounded by TIMEOUT). Objects that only became invisible to a non-admin (not
/// removed) may stay in the mirror: XO sends no `exit` for them, lag or not.
async fn converge(
    c: &mut Client,
    mirror: &mut serde_json::Map<String, Value>,
    done: impl Fn(&serde_json::Map<String, Value>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + super::TIMEOUT;
    loop {
        let expected = c.ok("xo.getAllObjects", json!({})).await;
        apply_notifications(mirror, std::mem::take(&mut c.notifications));
        let expected = expected.as_object().unwrap();
        if expected.iter().all(|(k, v)| mirror.get(k) == Some(v)) && done(mirror) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client never caught up: {} mirrored, {} expected",
            mirror.len(),
            expected.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn pool_admin_lag_resync_respects_acls() {
    let pool = sim(1, 6).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), |b| {
        b.no_default_plugins()
            .plugin(Arc::new(xo_plugin_acl::AclPlugin::default()))
            .pools_config(xo_server::xapi::PoolsConfig {
                batch_queue: 1,
                ..Default::default()
            })
    })
    .await;
    let mut admin = Client::admin(&server).await;
    let sid = connect_pool(&mut admin, &pool).await;
    let vms = sim_vm_refs(&pool);
    let uuid = |r: &str| {
        pool.state().read(|db| {
            db.get("VM", &xapi_types::Ref::from(r)).unwrap()["uuid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
    };
    let (a, b, c) = (uuid(&vms[0]), uuid(&vms[1]), uuid(&vms[2]));
    let bob_id = admin
        .ok("user.create", json!({"email": "bob@x", "password": "pw"}))
        .await;
    for v in [&a, &c] {
        admin
            .ok(
                "acl.add",
                json!({"subject": bob_id, "object": v, "action": "viewer"}),
            )
            .await;
    }
    let mut bob = Client::connect(&server).await;
    bob.ok(
        "session.signIn",
        json!({"email": "bob@x", "password": "pw"}),
    )
    .await;
    let mut mirror = mirror_of(&mut bob).await;
    assert!(mirror.contains_key(&a) && mirror.contains_key(&c) && !mirror.contains_key(&b));

    // a visible VM removed, an invisible and a visible one renamed: four batches, a queue of one
    let cache = cache_of(&server);
    let rename = |r: &str, n: &str| vm_change(&pool, r, Some(n));
    let delete = vm_change(&pool, &vms[0], None);
    for ch in [
        delete,
        rename(&vms[1], "b renamed"),
        rename(&vms[2], "c renamed"),
        rename(&vms[1], "b again"),
    ] {
        assert!(cache.apply_changes(&sid, vec![ch]).unwrap().is_some());
    }
    // bob gets the exit of the VM he saw and the rename of the other, never the invisible one
    converge(&mut bob, &mut mirror, |m| {
        !m.contains_key(&a) && m.get(&c).is_some_and(|o| o["name_label"] == "c renamed")
    })
    .await;
    assert!(!mirror.contains_key(&b));
    assert!(!mirror
        .values()
        .any(|o| o["type"] == "VM" && o["id"] != c.as_str()));
    server.shutdown().await;
}

#[tokio::test]
async fn pool_admin_host_detach_with_the_host_already_registered() {
    let pool = sim(2, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;
    let sid = connect_pool(&mut c, &pool).await;
    let master = c.server_entry(&sid).await["master"].clone();
    let hosts = host_objects(&mut c).await;
    let slave = hosts
        .as_object()
        .unwrap()
        .values()
        .find(|h| h["id"] != master)
        .unwrap()
        .clone();
    let other = c
        .ok(
            "server.add",
            json!({"host": slave["address"], "username": "u", "password": "p", "autoConnect": false}),
        )
        .await;
    // the eject succeeds; registering the ejected host again is skipped (XO ignores that failure)
    assert_eq!(c.ok("host.detach", json!({"id": slave["id"]})).await, true);
    c.wait_all(|p| p["type"] == "exit" && p["items"].get(slave["id"].as_str().unwrap()).is_some())
        .await;
    let all = c.ok("server.getAll", json!({})).await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let o = c.server_entry(other.as_str().unwrap()).await;
    assert_eq!(
        (&o["username"], &o["enabled"]),
        (&json!("u"), &json!(false))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn pool_admin_slow_client_is_cut_off_with_a_reason() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let pool = sim(1, 6).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        xo_server::Config {
            send_queue: 2,
            ..config(dir.path())
        },
        |b| b,
    )
    .await;
    let mut admin = Client::admin(&server).await;
    let sid = connect_pool(&mut admin, &pool).await;
    // ten batches at once: more notification frames than the client's queue holds before its writer runs
    let cache = cache_of(&server);
    let vm = sim_vm_refs(&pool)[0].clone();
    for i in 0..10 {
        let ch = vm_change(&pool, &vm, Some(&format!("n{i}")));
        assert!(cache.apply_changes(&sid, vec![ch]).unwrap().is_some());
    }
    // the client gets what was queued, then a close frame saying why
    let close = loop {
        match tokio::time::timeout(super::TIMEOUT, admin.ws.next())
            .await
            .expect("no close in time")
        {
            Some(Ok(Message::Close(f))) => break f,
            Some(Ok(_)) => continue,
            other => panic!("connection ended without a close frame: {other:?}"),
        }
    };
    let close = close.expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(close.reason.as_str(), "too slow");
    // the server and other clients are fine
    let mut other = Client::admin(&server).await;
    assert_eq!(other.server_entry(&sid).await["status"], "connected");
    server.shutdown().await;
}

#[tokio::test]
async fn pool_admin_a_pool_connects_through_one_server_only() {
    let pool = sim(2, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;
    let first = connect_pool(&mut c, &pool).await;
    let pool_id = c.server_entry(&first).await["poolId"].clone();
    let objects = c.ok("xo.getAllObjects", json!({})).await;
    // the same pool through a member's address: the login lands on the master, and XO refuses the second
    // connection with PoolAlreadyConnected
    let member = pool.host_urls()[1].trim_end_matches('/').to_owned();
    let second = add_server(
        &mut c,
        json!({"host": member, "username": "root", "password": "root", "allowUnauthorized": true, "autoConnect": false}),
    )
    .await;
    let e = c.err("server.enable", json!({"id": second})).await;
    assert_eq!(e["code"], -32000, "{e}");
    assert_eq!(e["message"], "this pool is already connected", "{e}");
    assert_eq!(e["data"]["name"], "PoolAlreadyConnected", "{e}");
    assert_eq!(e["data"]["poolId"], pool_id, "{e}");
    assert_eq!(e["data"]["connectedServerId"], first.as_str(), "{e}");
    assert_eq!(e["data"]["connectingServerId"], second.as_str(), "{e}");
    let s = c.server_entry(&second).await;
    assert_eq!(s["status"], "disconnected", "{s}");
    assert_eq!(
        s["error"]["message"], "this pool is already connected",
        "{s}"
    );
    assert_eq!(c.server_entry(&first).await["status"], "connected");
    // nothing was loaded twice, nothing was lost
    assert_eq!(c.ok("xo.getAllObjects", json!({})).await, objects);
    // once the first lets go, the second connects
    c.ok("server.disable", json!({"id": first})).await;
    c.ok("server.enable", json!({"id": second})).await;
    let s = c.server_entry(&second).await;
    assert_eq!(
        (&s["status"], &s["poolId"]),
        (&json!("connected"), &pool_id)
    );
    assert!(s.get("error").is_none_or(Value::is_null), "{s}");
    server.shutdown().await;
}

#[tokio::test]
async fn pool_admin_a_failed_pool_lookup_leaves_the_server_disconnected() {
    let pool = sim(1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;
    let mut params = add_params(&pool);
    params["autoConnect"] = json!(false);
    let id = add_server(&mut c, params).await;
    // the first call after the login asks which pool this is
    pool.faults().fail_next(
        "pool.get_all_records",
        xapi_types::XapiError::new("INTERNAL_ERROR", ["pool lookup failed"]),
    );
    let e = c.err("server.enable", json!({"id": id})).await;
    assert_eq!(e["code"], -32000, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("pool lookup failed"),
        "{e}"
    );
    let s = c.server_entry(&id).await;
    assert_eq!(s["status"], "disconnected", "{s}");
    assert!(c
        .ok("xo.getAllObjects", json!({"filter": {"type": "VM"}}))
        .await
        .as_object()
        .unwrap()
        .is_empty());
    // the next attempt connects
    c.ok("server.enable", json!({"id": id})).await;
    assert_eq!(c.server_entry(&id).await["status"], "connected");
    server.shutdown().await;
}
