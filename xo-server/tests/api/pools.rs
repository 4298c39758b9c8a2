//! XAPI pools end to end: `server.*` against in-process simulated pools (xapi-sim), objects in
//! `xo.getAllObjects`, `all` notifications for changes and disconnections, the handler seam
//! ([`xo_server::xapi::Pools`]), one-shot NDJSON downloads and demo mode.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xapi_sim::{RunningPool, Sim};
use xo_server::xapi::Pools;

use super::{config, start, start_with, Client, TIMEOUT};

pub(crate) async fn sim(hosts: usize, vms: usize) -> RunningPool {
    Sim::builder()
        .hosts(hosts)
        .vms(vms)
        .name("test pool")
        .event_batching(Duration::from_millis(5))
        .build()
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap(), true)
        .await
        .unwrap()
}

/// Guest VMs of the simulated pool (what XO shows as `type: "VM"`).
pub(crate) fn sim_vm_refs(pool: &RunningPool) -> Vec<String> {
    pool.state().read(|db| {
        db.find("VM", |r| {
            r["is_a_template"] != json!(true)
                && r["is_control_domain"] != json!(true)
                && r["is_a_snapshot"] != json!(true)
        })
        .into_iter()
        .map(|r| r.0)
        .collect()
    })
}

pub(crate) fn sim_session(pool: &RunningPool) -> Value {
    pool.call(
        "session.login_with_password",
        vec![json!("root"), json!("root"), json!("1.0"), json!("test")],
    )
    .unwrap()
}

pub(crate) fn add_params(pool: &RunningPool) -> Value {
    json!({
        "host": pool.master_url().trim_end_matches('/'),
        "username": "root",
        "password": "root",
        "allowUnauthorized": true,
    })
}

impl Client {
    /// The `server.getAll` entry of `id`.
    pub(crate) async fn server_entry(&mut self, id: &str) -> Value {
        let all = self.ok("server.getAll", json!({})).await;
        all.as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("server {id} not in {all}"))
    }

    /// Polls `server.getAll` until `pred` holds for the entry of `id` (bounded by TIMEOUT).
    pub(crate) async fn wait_server(&mut self, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let s = self.server_entry(id).await;
            if pred(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server never reached the expected state: {s}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reads frames until an `all` notification satisfies `pred`; returns it.
    pub(crate) async fn wait_all(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self
            .notifications
            .iter()
            .position(|n| n["method"] == "all" && pred(&n["params"]))
        {
            return self.notifications.remove(i)["params"].clone();
        }
        loop {
            let v = self.recv().await.expect("connection closed");
            if v["method"] == "all" && pred(&v["params"]) {
                return v["params"].clone();
            }
        }
    }

    pub(crate) async fn vms(&mut self) -> serde_json::Map<String, Value> {
        self.ok("xo.getAllObjects", json!({"filter": {"type": "VM"}}))
            .await
            .as_object()
            .unwrap()
            .clone()
    }
}

#[tokio::test]
async fn pools_server_add_connects_and_objects_appear() {
    let pool = sim(2, 8).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;
    let id = c.ok("server.add", add_params(&pool)).await;
    let id = id.as_str().unwrap();
    let s = c.wait_server(id, |s| s["status"] == "connected").await;
    assert_eq!(s["poolNameLabel"], "test pool");
    assert_eq!(s["label"], "test pool");
    assert!(s["poolId"].is_string(), "{s}");
    assert!(s["master"].is_string(), "{s}");
    assert_eq!(
        s["poolMembersAddresses"].as_array().unwrap().len(),
        2,
        "{s}"
    );
    assert!(s.get("error").is_none(), "{s}");
    assert!(s.get("password").is_none());
    let vms = c.vms().await;
    let expected = sim_vm_refs(&pool);
    assert_eq!(vms.len(), expected.len());
    for (vid, vm) in &vms {
        assert_eq!(vm["id"], *vid);
        assert_eq!(vm["$pool"], s["poolId"]);
        assert!(expected.contains(&vm["_xapiRef"].as_str().unwrap().to_owned()));
    }
    // the pool object itself, and hosts
    let all = c.ok("xo.getAllObjects", json!({})).await;
    assert_eq!(all[s["poolId"].as_str().unwrap()]["type"], "pool");
    let hosts = c
        .ok("xo.getAllObjects", json!({"filter": {"type": "host"}}))
        .await;
    assert_eq!(hosts.as_object().unwrap().len(), 2);
    // enabling an already connected server is fine
    assert_eq!(c.ok("server.enable", json!({"id": id})).await, true);
    server.shutdown().await;
}

#[tokio::test]
async fn pools_bad_credentials_are_stored_and_reported() {
    let pool = sim(1, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;
    let mut params = add_params(&pool);
    params["password"] = json!("wrong");
    let id = c.ok("server.add", params).await;
    let id = id.as_str().unwrap();
    let s = c.wait_server(id, |s| s.get("error").is_some()).await;
    assert_eq!(s["status"], "disconnected");
    assert_eq!(s["error"]["code"], "SESSION_AUTHENTICATION_FAILED", "{s}");
    assert!(!s["error"]["message"].as_str().unwrap().contains("wrong"));
    let e = c.err("server.enable", json!({"id": id})).await;
    assert_eq!(e, json!({"code": 8, "message": "authentication failed"}));
    // fixing the password and enabling connects and clears the error
    c.ok("server.set", json!({"id": id, "password": "root"}))
        .await;
    assert_eq!(c.ok("server.enable", json!({"id": id})).await, true);
    let s = c.server_entry(id).await;
    assert_eq!(s["status"], "connected");
    assert!(s.get("error").is_none(), "{s}");
    server.shutdown().await;
}

#[tokio::test]
async fn pools_unreachable_host_gives_server_unreachable() {
    // a port nobody listens on
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;
    let id = c
        .ok(
            "server.add",
            json!({"host": format!("127.0.0.1:{port}"), "username": "root", "password": "root",
                "allowUnauthorized": true}),
        )
        .await;
    let id = id.as_str().unwrap();
    let s = c.wait_server(id, |s| s.get("error").is_some()).await;
    assert_eq!(s["status"], "disconnected");
    assert_eq!(s["error"]["code"], "ECONNREFUSED", "{s}");
    let e = c.err("server.enable", json!({"id": id})).await;
    assert_eq!(
        e,
        json!({"code": 9, "message": "server unreachable", "data": {"objectId": id}})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn pools_unknown_server_ids() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;
    for m in [
        "server.remove",
        "server.enable",
        "server.disable",
        "server.set",
    ] {
        let e = c.err(m, json!({"id": "nope"})).await;
        assert_eq!(
            e,
            json!({"code": 1, "message": "no such xenServer nope",
                "data": {"id": "nope", "type": "xenServer"}}),
            "{m}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn pools_changes_arrive_as_enter_and_disconnect_as_exit() {
    let pool = sim(1, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;
    let mut watcher = Client::admin(&server).await;
    let id = c.ok("server.add", add_params(&pool)).await;
    let id = id.as_str().unwrap().to_owned();
    // the full load arrives as one enter carrying the VMs
    let enter = watcher
        .wait_all(|p| {
            p["type"] == "enter"
                && p["items"]
                    .as_object()
                    .is_some_and(|m| m.values().any(|o| o["type"] == "VM"))
        })
        .await;
    let n_vms = enter["items"]
        .as_object()
        .unwrap()
        .values()
        .filter(|o| o["type"] == "VM")
        .count();
    assert_eq!(n_vms, sim_vm_refs(&pool).len());
    c.wait_server(&id, |s| s["status"] == "connected").await;

    // a change in the pool: the renamed VM comes back whole in an enter
    let vm_ref = sim_vm_refs(&pool)[0].clone();
    let session = sim_session(&pool);
    pool.call(
        "VM.set_name_label",
        vec![session.clone(), json!(vm_ref), json!("renamed by the test")],
    )
    .unwrap();
    let enter = watcher
        .wait_all(|p| {
            p["type"] == "enter"
                && p["items"]
                    .as_object()
                    .is_some_and(|m| m.values().any(|o| o["name_label"] == "renamed by the test"))
        })
        .await;
    let vm = enter["items"]
        .as_object()
        .unwrap()
        .values()
        .find(|o| o["name_label"] == "renamed by the test")
        .unwrap();
    assert_eq!(vm["_xapiRef"], json!(vm_ref));
    assert_eq!(vm["type"], "VM");

    // disconnecting: every object of the pool leaves with exit (value 0)
    let ids: Vec<String> = c
        .ok("xo.getAllObjects", json!({}))
        .await
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(!ids.is_empty());
    assert_eq!(c.ok("server.disable", json!({"id": id})).await, true);
    let exit = watcher
        .wait_all(|p| p["type"] == "exit" && p["items"].get(&ids[0]).is_some())
        .await;
    let items = exit["items"].as_object().unwrap();
    assert_eq!(items.len(), ids.len());
    assert!(items.values().all(|v| *v == json!(0)));
    assert_eq!(c.ok("xo.getAllObjects", json!({})).await, json!({}));
    assert_eq!(c.server_entry(&id).await["status"], "disconnected");
    // enabling again brings them back; removing makes them leave again
    assert_eq!(c.ok("server.enable", json!({"id": id})).await, true);
    assert_eq!(c.vms().await.len(), sim_vm_refs(&pool).len());
    assert_eq!(c.ok("server.remove", json!({"id": id})).await, true);
    assert_eq!(c.ok("xo.getAllObjects", json!({})).await, json!({}));
    assert_eq!(c.ok("server.getAll", json!({})).await, json!([]));
    server.shutdown().await;
}

#[tokio::test]
async fn pools_many_at_once() {
    let a = sim(1, 2).await;
    let b = sim(2, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;
    let ia = c.ok("server.add", add_params(&a)).await;
    let ib = c.ok("server.add", add_params(&b)).await;
    c.ok("server.enable", json!({"id": ia})).await;
    c.ok("server.enable", json!({"id": ib})).await;
    assert_eq!(
        c.vms().await.len(),
        sim_vm_refs(&a).len() + sim_vm_refs(&b).len()
    );
    let pools = c
        .ok("xo.getAllObjects", json!({"filter": {"type": "pool"}}))
        .await;
    assert_eq!(pools.as_object().unwrap().len(), 2);
    c.ok("server.disable", json!({"id": ia})).await;
    assert_eq!(c.vms().await.len(), sim_vm_refs(&b).len());
    server.shutdown().await;
}

/// GET over plain HTTP/1.0 (the body ends with the connection): status line and body.
async fn http_get(server: &xo_server::RunningServer, path: &str) -> (String, String, String) {
    let mut s = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_owned();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn pools_get_all_objects_filters_limit_and_ndjson() {
    let pool = sim(1, 12).await;
    let session = sim_session(&pool);
    let refs = sim_vm_refs(&pool);
    for r in &refs[..3] {
        pool.call(
            "VM.set_name_label",
            vec![session.clone(), json!(r), json!(format!("web-{r}"))],
        )
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;
    let id = c.ok("server.add", add_params(&pool)).await;
    c.ok("server.enable", json!({"id": id})).await;
    let vms = c.vms().await;
    let running = vms
        .values()
        .filter(|v| v["power_state"] == "Running")
        .count();
    // object filter: partial deep equality
    let got = c
        .ok(
            "xo.getAllObjects",
            json!({"filter": {"type": "VM", "power_state": "Running"}}),
        )
        .await;
    assert_eq!(got.as_object().unwrap().len(), running);
    // string filter: complex-matcher
    let got = c
        .ok(
            "xo.getAllObjects",
            json!({"filter": "type:VM name_label:web-"}),
        )
        .await;
    assert_eq!(got.as_object().unwrap().len(), 3, "{got}");
    let got = c
        .ok(
            "xo.getAllObjects",
            json!({"filter": "type:/^VM$/ !power_state:Running"}),
        )
        .await;
    assert_eq!(got.as_object().unwrap().len(), vms.len() - running);
    // limit
    let got = c
        .ok(
            "xo.getAllObjects",
            json!({"filter": {"type": "VM"}, "limit": 5}),
        )
        .await;
    assert_eq!(got.as_object().unwrap().len(), 5);
    // bad filter
    let e = c
        .err("xo.getAllObjects", json!({"filter": "type:(VM"}))
        .await;
    assert_eq!(e["code"], 10, "{e}");
    let e = c.err("xo.getAllObjects", json!({"filter": 3})).await;
    assert_eq!(e["code"], 10, "{e}");
    // ndjson: a one-shot URL streaming one object per line
    let got = c
        .ok(
            "xo.getAllObjects",
            json!({"filter": {"type": "VM"}, "ndjson": true}),
        )
        .await;
    let path = got["$getFrom"].as_str().unwrap().to_owned();
    assert_eq!(got.as_object().unwrap().len(), 1);
    assert!(path.starts_with("/api/") && path.len() == 5 + 43, "{path}");
    let (status, head, body) = http_get(&server, &path).await;
    assert!(status.contains("200"), "{status}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(body.ends_with('\n'));
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), vms.len());
    for l in &lines {
        assert_eq!(vms[l["id"].as_str().unwrap()], *l);
    }
    // consumed on first use
    let (status, _, _) = http_get(&server, &path).await;
    assert!(status.contains("404"), "{status}");
    let (status, _, _) = http_get(&server, "/api/not-a-token").await;
    assert!(status.contains("404"), "{status}");
    server.shutdown().await;
}

#[tokio::test]
async fn pools_seam_for_object_methods() {
    let pool = sim(1, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;
    let id = c.ok("server.add", add_params(&pool)).await;
    let id = id.as_str().unwrap();
    c.ok("server.enable", json!({"id": id})).await;
    let pools = Pools::of(server.app()).unwrap();
    let vm_ref = sim_vm_refs(&pool)[0].clone();
    // by ref and by id
    let vm = pools.object(&vm_ref).unwrap();
    assert_eq!(vm.kind(), "VM");
    assert_eq!(pools.object(vm.id()).unwrap().xapi_ref(), vm_ref);
    assert!(pools
        .object_of_type(vm.id(), &["VM", "VM-snapshot"])
        .is_ok());
    let e = pools.object_of_type(vm.id(), &["host"]).unwrap_err();
    assert_eq!(e.code(), 1);
    assert_eq!(
        e.to_json(false)["message"],
        format!("no such host {}", vm.id())
    );
    assert_eq!(pools.client_for_object("nope").unwrap_err().code(), 1);
    assert_eq!(
        pools.server_id_of_pool(vm.pool().unwrap()).as_deref(),
        Some(id)
    );
    // calls go through, XAPI errors become XO errors with XO ids
    let xapi = pools.client_for_object(vm.id()).unwrap();
    assert!(!xapi.is_read_only());
    xapi.call(
        "VM.set_name_description",
        vec![json!(vm_ref), json!("through the seam")],
    )
    .await
    .unwrap();
    let power = vm.get("power_state").unwrap().as_str().unwrap().to_owned();
    let e = if power == "Running" {
        xapi.call_async("VM.start", vec![json!(vm_ref), json!(false), json!(false)])
            .await
            .unwrap_err()
    } else {
        xapi.call_async("VM.clean_shutdown", vec![json!(vm_ref)])
            .await
            .unwrap_err()
    };
    assert_eq!(e.code(), 13, "{e:?}");
    assert_eq!(e.to_json(false)["data"]["objectId"], json!(vm.id()));
    // the pool client by pool id and by server id
    assert!(pools.client_for_pool(vm.pool().unwrap()).is_ok());
    assert!(pools.client_for_pool(id).is_ok());
    assert_eq!(pools.client_for_pool("nope").unwrap_err().code(), 1);
    // read-only servers refuse mutating calls but still read
    c.ok("server.set", json!({"id": id, "readOnly": true}))
        .await;
    let xapi = pools.client_for_object(vm.id()).unwrap();
    assert!(xapi.is_read_only());
    let e = xapi
        .call("VM.set_name_label", vec![json!(vm_ref), json!("x")])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("read only"), "{e}");
    let e = xapi
        .call_async("VM.clean_shutdown", vec![json!(vm_ref)])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("read only"), "{e}");
    let rec = xapi
        .call("VM.get_record", vec![json!(vm_ref)])
        .await
        .unwrap();
    assert_eq!(rec["name_description"], "through the seam");
    // a disconnected pool: serverUnreachable
    let pool_id = vm.pool().unwrap().to_owned();
    c.ok("server.disable", json!({"id": id})).await;
    assert!(pools.object(vm.id()).is_none());
    assert_eq!(pools.client_for_pool(id).unwrap_err().code(), 9);
    assert_eq!(pools.client_for_pool(&pool_id).unwrap_err().code(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn pools_readers_wait_for_a_connecting_pool() {
    let pool = sim(1, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;
    // server.add connects in the background; the very next read already sees the objects
    let id = c.ok("server.add", add_params(&pool)).await;
    assert_eq!(c.vms().await.len(), sim_vm_refs(&pool).len());
    c.ok("server.remove", json!({"id": id})).await;
    server.shutdown().await;
}

#[tokio::test]
async fn pools_demo_mode_starts() {
    let dir = tempfile::tempdir().unwrap();
    let opts = xo_server::demo::DemoOptions {
        pools: 2,
        hosts: 1,
        vms: 3,
    };
    let server = start_with(config(dir.path()), |b| xo_server::demo::install(b, opts)).await;
    let demo = server
        .app()
        .extension::<xo_server::demo::DemoPools>()
        .unwrap();
    assert_eq!(demo.pools().len(), 2);
    let expected: usize = demo.pools().iter().map(|p| sim_vm_refs(p).len()).sum();
    let mut c = Client::admin(&server).await;
    let servers = c.ok("server.getAll", json!({})).await;
    let servers = servers.as_array().unwrap().clone();
    assert_eq!(servers.len(), 2);
    for s in &servers {
        assert!(s["label"]
            .as_str()
            .unwrap()
            .starts_with(xo_server::demo::LABEL_PREFIX));
        c.wait_server(s["id"].as_str().unwrap(), |s| s["status"] == "connected")
            .await;
    }
    assert_eq!(c.vms().await.len(), expected);
    server.shutdown().await;

    // a second demo start on the same data replaces the demo servers instead of piling them up
    let server = start_with(config(dir.path()), |b| xo_server::demo::install(b, opts)).await;
    let mut c = Client::admin(&server).await;
    let servers = c.ok("server.getAll", json!({})).await;
    assert_eq!(servers.as_array().unwrap().len(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn pools_lost_pool_shows_disconnected_with_error() {
    let pool = sim(1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;
    let id = c.ok("server.add", add_params(&pool)).await;
    let id = id.as_str().unwrap();
    c.ok("server.enable", json!({"id": id})).await;
    let n = c.vms().await.len();
    assert!(n > 0);
    // the pool goes away: the watcher reports it and retries
    pool.shutdown().await;
    let s = c.wait_server(id, |s| s["status"] == "disconnected").await;
    assert!(s["error"]["message"].is_string(), "{s}");
    // the objects stay visible while it retries (XO's xapiMarkDisconnectedDelay)
    assert_eq!(c.vms().await.len(), n);
    // disabling drops them
    c.ok("server.disable", json!({"id": id})).await;
    assert_eq!(c.vms().await.len(), 0);
    let s = c.server_entry(id).await;
    assert_eq!(s["status"], "disconnected");
    assert!(s.get("error").is_none(), "{s}");
    server.shutdown().await;
}
