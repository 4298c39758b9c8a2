//! The ACL plugin end to end against an in-process simulated pool connected with `server.add`:
//! `acl.add/remove/get/getCurrentPermissions`, `role.getAll`, inheritance (pool → host → VM, SR → VDI,
//! VM → VDI through VBDs, groups), a generated test walking every method that resolves objects (a
//! non-admin without ACLs gets code 2), and per-user filtering of `xo.getAllObjects` and `all`
//! notifications, with the per-user visible set computed once and then updated per batch.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use xapi_sim::RunningPool;
use xo_plugin::{BoxFuture, CallContext, Manifest, MethodDef, Plugin, PluginError, PluginHost};
use xo_plugin_acl::visibility::AclState;
use xo_plugin_acl::AclPlugin;

/// A plugin adding a method that resolves a VM with the `view` permission.
struct Probe;

impl Plugin for Probe {
    fn manifest(&self) -> Manifest {
        Manifest {
            name: "probe".into(),
            version: "0.0.1".into(),
            ..Manifest::default()
        }
    }

    fn load<'a>(&'a self, host: Arc<dyn PluginHost>) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            host.register_method(
                MethodDef::new(
                    "probe.vmName",
                    |_: CallContext, p: Map<String, Value>| async move {
                        Ok(p["vm"]["name_label"].clone())
                    },
                )
                .params(json!({"id": {"type": "string"}}))
                .resolve("vm", "id", &["VM"], "view"),
            )
        })
    }
}

use super::pools::{add_params, sim, sim_session, sim_vm_refs};
use super::{config, start_with, Client, TIMEOUT};

struct Env {
    _dir: tempfile::TempDir,
    server: xo_server::RunningServer,
    pool: RunningPool,
    admin: Client,
    acl: AclState,
    /// Every object, as the admin sees it.
    all: Map<String, Value>,
}

async fn objects(c: &mut Client, filter: Value) -> Map<String, Value> {
    match c.ok("xo.getAllObjects", json!({ "filter": filter })).await {
        Value::Object(m) => m,
        other => panic!("not an object map: {other}"),
    }
}

async fn env(hosts: usize, vms: usize) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let pool = sim(hosts, vms).await;
    let plugin = AclPlugin::default();
    let acl = plugin.state().clone();
    let server = start_with(config(dir.path()), move |b| {
        b.no_default_plugins()
            .plugin(Arc::new(plugin))
            .plugin(Arc::new(Probe))
    })
    .await;
    let mut admin = Client::admin(&server).await;
    admin.ok("server.add", add_params(&pool)).await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let all = loop {
        let all = objects(&mut admin, json!({})).await;
        let vms = all.values().filter(|o| o["type"] == "VM").count();
        if vms == sim_vm_refs(&pool).len() && all.values().any(|o| o["type"] == "VDI") {
            break all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pool objects never appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Env {
        _dir: dir,
        server,
        pool,
        admin,
        acl,
        all,
    }
}

/// Creates a non-admin user and signs a client in; returns (client, user id).
async fn user(
    admin: &mut Client,
    server: &xo_server::RunningServer,
    email: &str,
) -> (Client, String) {
    let id = admin
        .ok("user.create", json!({"email": email, "password": "pw"}))
        .await;
    let mut c = Client::connect(server).await;
    c.ok("session.signIn", json!({"email": email, "password": "pw"}))
        .await;
    (c, id.as_str().unwrap().to_owned())
}

fn of_type<'a>(all: &'a Map<String, Value>, kind: &str) -> Vec<&'a Value> {
    let mut v: Vec<&Value> = all.values().filter(|o| o["type"] == kind).collect();
    v.sort_by_key(|o| o["id"].as_str().unwrap_or("").to_owned());
    v
}

fn id(o: &Value) -> String {
    o["id"].as_str().unwrap().to_owned()
}

fn strs(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => vec![],
    }
}

/// An independent oracle of the inheritance rules (fixpoint iteration over every object): ids on which
/// `perm` is granted given direct grants `(object, permissions)`.
fn oracle(all: &Map<String, Value>, grants: &[(&str, &[&str])], perm: &str) -> BTreeSet<String> {
    let direct: HashMap<&str, bool> = grants
        .iter()
        .map(|(o, ps)| (*o, ps.contains(&perm)))
        .collect();
    let mut granted: BTreeSet<String> = BTreeSet::new();
    loop {
        let mut changed = false;
        for (oid, o) in all {
            if granted.contains(oid) {
                continue;
            }
            let kind = o["type"].as_str().unwrap_or("");
            let (self_ok, fields): (bool, &[&str]) = match kind {
                "host" | "network" | "VM-template" => (true, &["$pool"]),
                "SR" | "VM" => (true, &["$container"]),
                "VM-controller" => (false, &["$container"]),
                "VM-snapshot" | "VDI-snapshot" => (true, &["$snapshot_of"]),
                "VDI" | "VDI-unmanaged" => (true, &["$SR"]),
                "VBD" => (false, &["VDI"]),
                "VIF" => (false, &["$network", "$VM"]),
                "PIF" | "PCI" | "task" => (false, &["$host"]),
                "PBD" => (false, &["host", "SR"]),
                "message" => (false, &["$object"]),
                _ => (true, &[]),
            };
            let mut parents: Vec<String> = fields.iter().flat_map(|f| strs(&o[*f])).collect();
            if kind == "VDI" {
                for vbd in strs(&o["$VBDs"]) {
                    if let Some(vm) = all.get(&vbd).and_then(|b| b["VM"].as_str()) {
                        parents.push(vm.to_owned());
                    }
                }
            }
            let ok = (self_ok && direct.get(oid.as_str()) == Some(&true))
                || parents.iter().any(|p| p != oid && granted.contains(p));
            if ok {
                granted.insert(oid.clone());
                changed = true;
            }
        }
        if !changed {
            return granted;
        }
    }
}

async fn visible(c: &mut Client) -> BTreeSet<String> {
    objects(c, json!({})).await.keys().cloned().collect()
}

#[tokio::test]
async fn acl_add_remove_get_and_current_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), |b| b).await;
    let mut admin = Client::admin(&server).await;
    let (mut bob, bob_id) = user(&mut admin, &server, "bob@x").await;
    assert_eq!(
        bob.ok("acl.getCurrentPermissions", json!({})).await,
        json!({})
    );
    assert_eq!(
        bob.ok("role.getAll", json!({})).await,
        json!([
            {"id": "viewer", "name": "Viewer", "permissions": ["view"]},
            {"id": "operator", "name": "Operator", "permissions": ["view", "operate"]},
            {"id": "admin", "name": "Admin", "permissions": ["view", "operate", "administrate"]},
        ])
    );
    let add = json!({"subject": bob_id, "object": "obj-1", "action": "viewer"});
    assert_eq!(admin.ok("acl.add", add.clone()).await, json!(true));
    assert_eq!(
        admin.ok("acl.add", add.clone()).await,
        json!(true),
        "idempotent"
    );
    let acls = admin.ok("acl.get", json!({})).await;
    let acls = acls.as_array().unwrap();
    assert_eq!(acls.len(), 1);
    assert_eq!(acls[0]["subject"], json!(bob_id));
    assert_eq!(acls[0]["object"], "obj-1");
    assert_eq!(acls[0]["action"], "viewer");
    // XO's id: multiKeyHash(subject, object, action)
    assert_eq!(
        acls[0]["id"],
        json!(xo_plugin_acl::entries::acl_id(
            bob_id.as_str(),
            "obj-1",
            "viewer"
        ))
    );
    // an id computed by XO itself (node + npm multikey-hash) for ("a", "b", "viewer")
    admin
        .ok(
            "acl.add",
            json!({"subject": "a", "object": "b", "action": "viewer"}),
        )
        .await;
    let ids: Vec<Value> = admin
        .ok("acl.get", json!({}))
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["subject"] == "a")
        .map(|a| a["id"].clone())
        .collect();
    assert_eq!(ids, [json!("J-k_HQ")]);
    admin
        .ok(
            "acl.remove",
            json!({"subject": "a", "object": "b", "action": "viewer"}),
        )
        .await;
    // through a group, and a verbatim permission
    let g = admin.ok("group.create", json!({"name": "ops"})).await;
    admin
        .ok("group.addUser", json!({"id": g, "userId": bob_id}))
        .await;
    admin
        .ok(
            "acl.add",
            json!({"subject": g, "object": "obj-2", "action": "operator"}),
        )
        .await;
    admin
        .ok(
            "acl.add",
            json!({"subject": bob_id, "object": "obj-2", "action": "custom"}),
        )
        .await;
    assert_eq!(
        bob.ok("acl.getCurrentPermissions", json!({})).await,
        json!({"obj-1": {"view": 1}, "obj-2": {"custom": 1, "operate": 1, "view": 1}})
    );
    // the resolver exposed to admins
    assert_eq!(
        admin
            .ok("test.getPermissionsForUser", json!({"userId": bob_id}))
            .await,
        json!({"obj-1": {"view": 1}, "obj-2": {"custom": 1, "operate": 1, "view": 1}})
    );
    assert_eq!(
        admin
            .err("test.getPermissionsForUser", json!({"userId": "nope"}))
            .await["code"],
        1
    );
    // (no such object in the pool-less server: denied)
    assert_eq!(
        admin
            .ok(
                "test.hasPermission",
                json!({"userId": bob_id, "objectId": "obj-1", "permission": "view"})
            )
            .await,
        json!(false)
    );
    // removing
    admin.ok("acl.remove", add.clone()).await;
    admin.ok("acl.remove", add.clone()).await;
    admin
        .ok("group.removeUser", json!({"id": g, "userId": bob_id}))
        .await;
    assert_eq!(
        bob.ok("acl.getCurrentPermissions", json!({})).await,
        json!({"obj-2": {"custom": 1}})
    );
    // admin only
    assert_eq!(bob.err("acl.add", add.clone()).await["code"], 2);
    assert_eq!(bob.err("acl.get", json!({})).await["code"], 2);
    assert_eq!(
        admin.err("acl.add", json!({"subject": "x"})).await["code"],
        10
    );
    // entries survive an unload/load of the plugin
    admin.ok("plugin.unload", json!({"id": "acl"})).await;
    assert_eq!(admin.err("acl.get", json!({})).await["code"], -32601);
    admin.ok("plugin.load", json!({"id": "acl"})).await;
    assert_eq!(
        admin
            .ok("acl.get", json!({}))
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // deleting a group or a user deletes its entries
    admin.ok("group.delete", json!({"id": g})).await;
    assert_eq!(
        admin
            .ok("acl.get", json!({}))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    admin.ok("user.delete", json!({"id": bob_id})).await;
    assert_eq!(admin.ok("acl.get", json!({})).await, json!([]));
    server.shutdown().await;
}

#[tokio::test]
async fn acl_inheritance_filters_get_all_objects() {
    let mut e = env(2, 6).await;
    let (mut bob, bob_id) = user(&mut e.admin, &e.server, "bob@x").await;
    // no ACL: nothing at all (the real XO would send everything)
    assert!(visible(&mut bob).await.is_empty());
    let admin_sees = visible(&mut e.admin).await;
    assert_eq!(admin_sees.len(), e.all.len());

    let pool = id(of_type(&e.all, "pool")[0]);
    let hosts: Vec<String> = of_type(&e.all, "host").iter().map(|h| id(h)).collect();
    // a VM with a disk
    let vdi = of_type(&e.all, "VDI")
        .into_iter()
        .find(|d| {
            strs(&d["$VBDs"])
                .iter()
                .any(|b| e.all.get(b).is_some_and(|b| b["VM"].is_string()))
        })
        .expect("a VDI attached to a VM")
        .clone();
    let vbd = strs(&vdi["$VBDs"])
        .into_iter()
        .find(|b| e.all[b]["VM"].is_string())
        .unwrap();
    let vm = e.all[&vbd]["VM"].as_str().unwrap().to_owned();
    let sr = vdi["$SR"].as_str().unwrap().to_owned();

    let cases: Vec<(&str, String, &[&str])> = vec![
        ("VM → its VDIs through VBDs", vm.clone(), &["view"]),
        (
            "host → resident VMs, local SRs",
            hosts[0].clone(),
            &["view"],
        ),
        ("SR → VDIs", sr.clone(), &["view"]),
        ("pool → everything below", pool.clone(), &["view"]),
    ];
    for (what, object, perms) in cases {
        e.admin
            .ok(
                "acl.add",
                json!({"subject": bob_id, "object": object, "action": "viewer"}),
            )
            .await;
        let expected = oracle(&e.all, &[(&object, perms)], "view");
        let seen = visible(&mut bob).await;
        assert_eq!(seen, expected, "{what}");
        assert!(seen.contains(&object), "{what}");
        e.admin
            .ok(
                "acl.remove",
                json!({"subject": bob_id, "object": object, "action": "viewer"}),
            )
            .await;
        assert!(visible(&mut bob).await.is_empty(), "{what}: removal");
    }
    // spot checks of the chains
    let by_vm = oracle(&e.all, &[(&vm, &["view"])], "view");
    assert!(by_vm.contains(&id(&vdi)), "VM → VDI through VBDs");
    assert!(!by_vm.contains(&pool) && !by_vm.contains(&sr));
    let by_pool = oracle(&e.all, &[(&pool, &["view"])], "view");
    assert!(hosts.iter().all(|h| by_pool.contains(h)), "pool → hosts");
    assert!(by_pool.contains(&vm), "pool → host → VM");
    let by_sr = oracle(&e.all, &[(&sr, &["view"])], "view");
    assert!(by_sr.contains(&id(&vdi)), "SR → VDI");

    // through a group; leaving the group takes it away (cache follows group changes)
    let g = e.admin.ok("group.create", json!({"name": "viewers"})).await;
    e.admin
        .ok("group.addUser", json!({"id": g, "userId": bob_id}))
        .await;
    e.admin
        .ok(
            "acl.add",
            json!({"subject": g, "object": pool, "action": "viewer"}),
        )
        .await;
    assert_eq!(visible(&mut bob).await, by_pool);
    e.admin
        .ok("group.removeUser", json!({"id": g, "userId": bob_id}))
        .await;
    assert!(visible(&mut bob).await.is_empty());

    // filters and limits apply to the visible objects only
    e.admin
        .ok(
            "acl.add",
            json!({"subject": bob_id, "object": vm, "action": "viewer"}),
        )
        .await;
    let vms = objects(&mut bob, json!({"type": "VM"})).await;
    assert_eq!(vms.keys().cloned().collect::<Vec<_>>(), vec![vm.clone()]);
    let one = bob
        .ok(
            "xo.getAllObjects",
            json!({"filter": {"type": "VDI"}, "limit": 1}),
        )
        .await;
    assert_eq!(one.as_object().unwrap().len(), 1);
    e.server.shutdown().await;
}

#[tokio::test]
async fn acl_method_checks_follow_inheritance() {
    let mut e = env(2, 6).await;
    let (mut bob, bob_id) = user(&mut e.admin, &e.server, "bob@x").await;
    let pool = id(of_type(&e.all, "pool")[0]);
    let vm = id(of_type(&e.all, "VM")[0]);
    let container = e.all[&vm]["$container"].as_str().unwrap().to_owned();
    // nothing granted
    assert_eq!(
        bob.err("probe.vmName", json!({"id": vm})).await,
        json!({"code": 2, "message": "not enough permissions",
            "data": {"permission": "view", "object": {"id": vm}}})
    );
    let err = bob.err("vm.start", json!({"id": vm})).await;
    assert_eq!(
        err,
        json!({"code": 2, "message": "not enough permissions",
            "data": {"permission": "operate", "object": {"id": vm}}})
    );
    // viewer is not enough to operate
    e.admin
        .ok(
            "acl.add",
            json!({"subject": bob_id, "object": vm, "action": "viewer"}),
        )
        .await;
    assert_eq!(bob.err("vm.start", json!({"id": vm})).await["code"], 2);
    // operator on the VM's container (pool or host) is inherited by the VM
    e.admin
        .ok(
            "acl.add",
            json!({"subject": bob_id, "object": container, "action": "operator"}),
        )
        .await;
    let r = bob.call("vm.start", json!({"id": vm})).await;
    assert!(
        r.get("error").is_none_or(|e| e["code"] != 2),
        "operate inherited from {container}: {r}"
    );
    // plugin methods resolve and check their objects the same way
    let name = e.all[&vm]["name_label"].clone();
    assert_eq!(bob.ok("probe.vmName", json!({"id": vm})).await, name);
    assert_eq!(e.admin.ok("probe.vmName", json!({"id": vm})).await, name);
    assert_eq!(
        bob.err("probe.vmName", json!({"id": "nope"})).await["code"],
        1
    );
    assert_eq!(
        bob.err("probe.vmName", json!({"id": container})).await["code"],
        1,
        "wrong type"
    );
    assert_eq!(
        e.admin
            .ok(
                "test.hasPermission",
                json!({"userId": bob_id, "objectId": vm, "permission": "operate"})
            )
            .await,
        json!(true)
    );
    // but not administrate
    assert_eq!(
        bob.err("vm.set", json!({"id": vm, "name_label": "x"}))
            .await["data"]["permission"],
        "administrate"
    );
    // admin on the pool: pool → host → VM
    e.admin
        .ok(
            "acl.add",
            json!({"subject": bob_id, "object": pool, "action": "admin"}),
        )
        .await;
    let r = bob
        .call("vm.set", json!({"id": vm, "name_label": "renamed by bob"}))
        .await;
    assert!(r.get("error").is_none(), "{r}");
    // the plugin unloaded: non-admins hold nothing
    e.admin.ok("plugin.unload", json!({"id": "acl"})).await;
    assert_eq!(
        bob.err("vm.set", json!({"id": vm, "name_label": "y"}))
            .await["code"],
        2
    );
    assert!(visible(&mut bob).await.is_empty());
    e.admin.ok("plugin.load", json!({"id": "acl"})).await;
    let r = bob
        .call("vm.set", json!({"id": vm, "name_label": "z"}))
        .await;
    assert!(r.get("error").is_none(), "{r}");
    // a non-admin creator gets `admin` on its snapshot; deleting it drops the entries about it
    let snap = bob
        .ok("vm.snapshot", json!({"id": vm, "name": "bob's"}))
        .await;
    let acls = e.admin.ok("acl.get", json!({})).await;
    assert!(
        acls.as_array()
            .unwrap()
            .iter()
            .any(|a| a["subject"] == json!(bob_id)
                && a["object"] == snap
                && a["action"] == "admin"),
        "{acls}"
    );
    bob.ok("vm.delete", json!({"id": snap})).await;
    let acls = e.admin.ok("acl.get", json!({})).await;
    assert!(
        !acls.as_array().unwrap().iter().any(|a| a["object"] == snap),
        "{acls}"
    );
    e.server.shutdown().await;
}

/// A value passing the XO-dialect schema `s` (enough for the generated test).
fn sample(s: &Value) -> Value {
    if let Some(e) = s
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return e.clone();
    }
    if let Some(d) = s.get("default") {
        return d.clone();
    }
    let t = match &s["type"] {
        Value::String(t) => t.clone(),
        Value::Array(a) => a
            .first()
            .and_then(Value::as_str)
            .unwrap_or("string")
            .to_owned(),
        _ => "string".into(),
    };
    match t.as_str() {
        "integer" | "number" => json!(1),
        "boolean" => json!(false),
        "array" => json!([]),
        "object" => {
            let mut m = Map::new();
            if let Some(props) = s["properties"].as_object() {
                for (k, p) in props {
                    if p["optional"] != true {
                        m.insert(k.clone(), sample(p));
                    }
                }
            }
            Value::Object(m)
        }
        _ => json!("x"),
    }
}

#[tokio::test]
async fn acl_every_resolving_method_refuses_a_user_without_acls() {
    let mut e = env(2, 6).await;
    let (mut bob, _) = user(&mut e.admin, &e.server, "bob@x").await;
    // a pending task, so that task.* are covered too
    let session = sim_session(&e.pool);
    e.pool
        .call("task.create", vec![session, json!("t"), json!("d")])
        .unwrap();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !objects(&mut e.admin, json!({}))
        .await
        .values()
        .any(|o| o["type"] == "task")
    {
        assert!(tokio::time::Instant::now() < deadline, "no task object");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.all = objects(&mut e.admin, json!({})).await;
    let app = e.server.app();
    let mut checked = Vec::new();
    let mut skipped = Vec::new();
    // (method, [(param, types, action)]) of the core object methods and of loaded plugins' methods
    type Entry = (String, Vec<(String, Vec<String>, String)>);
    let mut table: Vec<Entry> = xo_server::methods::resolve::resolve_table()
        .into_iter()
        .map(|(n, spec)| {
            let spec = spec
                .iter()
                .map(|r| {
                    let types = r.types.iter().map(|t| (*t).to_owned()).collect();
                    (r.param.to_owned(), types, r.action.to_owned())
                })
                .collect();
            (n.to_owned(), spec)
        })
        .collect();
    let plugins = xo_server::plugins::Plugins::of(app)
        .unwrap()
        .resolve_table();
    assert!(plugins.iter().any(|(n, _)| n == "probe.vmName"));
    table.extend(plugins.into_iter().map(|(n, spec)| {
        let spec = spec
            .into_iter()
            .map(|r| (r.param, r.types, r.action))
            .collect();
        (n, spec)
    }));
    for (name, spec) in &table {
        let name = name.as_str();
        if spec.iter().all(|(_, _, action)| action.is_empty()) {
            continue;
        }
        let Some(method) = app.registry().get(name) else {
            skipped.push(format!("{name}: not registered"));
            continue;
        };
        let declared = method.get_params().cloned().unwrap_or(json!({}));
        let mut params = Map::new();
        let mut missing = None;
        for (param, types, action) in spec.iter() {
            let candidate = e
                .all
                .values()
                .find(|o| types.is_empty() || types.iter().any(|t| o["type"] == *t));
            match candidate {
                Some(o) => {
                    params.insert(param.clone(), o["id"].clone());
                }
                None => {
                    let required = declared[param]["optional"] != true;
                    if required || !action.is_empty() {
                        missing = Some(format!("{name}: no object of types {types:?}"));
                    }
                }
            }
        }
        if let Some(m) = missing {
            skipped.push(m);
            continue;
        }
        if let Some(props) = declared.as_object() {
            for (k, s) in props {
                if !params.contains_key(k) && s["optional"] != true && s.get("default").is_none() {
                    params.insert(k.clone(), sample(s));
                }
            }
        }
        let err = bob.err(name, Value::Object(params.clone())).await;
        assert_eq!(err["code"], 2, "{name} {params:?}: {err}");
        assert_eq!(err["message"], "not enough permissions", "{name}");
        let actions: Vec<&str> = spec
            .iter()
            .map(|(_, _, a)| a.as_str())
            .filter(|a| !a.is_empty())
            .collect();
        assert!(
            actions.contains(&err["data"]["permission"].as_str().unwrap_or("")),
            "{name}: {err}"
        );
        checked.push(name);
    }
    eprintln!(
        "unauthorized checked on {} methods; skipped {}: {skipped:#?}",
        checked.len(),
        skipped.len()
    );
    assert!(skipped.is_empty(), "{skipped:?}");
    assert!(
        checked.len() >= 30,
        "only {} methods checked",
        checked.len()
    );
    assert!(checked.contains(&"vm.start") && checked.contains(&"host.restart"));
    e.server.shutdown().await;
}

/// Next `all` notification (bounded by TIMEOUT), keeping nothing else.
async fn next_all(c: &mut Client) -> Value {
    if let Some(i) = c.notifications.iter().position(|n| n["method"] == "all") {
        return c.notifications.remove(i)["params"].clone();
    }
    loop {
        let v = c.recv().await.expect("connection closed");
        if v["method"] == "all" {
            return v["params"].clone();
        }
    }
}

/// Reads `all` notifications until one carries `id`; returns every id seen on the way.
async fn until_id(c: &mut Client, wanted: &str) -> (BTreeSet<String>, Value) {
    let mut seen = BTreeSet::new();
    loop {
        let n = next_all(c).await;
        let ids: Vec<String> = n["items"].as_object().unwrap().keys().cloned().collect();
        seen.extend(ids.iter().cloned());
        if ids.iter().any(|i| i == wanted) {
            return (seen, n);
        }
    }
}

fn rename(pool: &RunningPool, session: &Value, obj: &Value, name: &str) {
    pool.call(
        "VM.set_name_label",
        vec![session.clone(), obj["_xapiRef"].clone(), json!(name)],
    )
    .unwrap();
}

#[tokio::test]
async fn acl_all_notifications_are_filtered_per_user() {
    let mut e = env(1, 6).await;
    let (mut bob, bob_id) = user(&mut e.admin, &e.server, "bob@x").await;
    let vms: Vec<Value> = of_type(&e.all, "VM").into_iter().cloned().collect();
    let (a, b, c) = (&vms[0], &vms[1], &vms[2]);
    e.admin
        .ok(
            "acl.add",
            json!({"subject": bob_id, "object": id(a), "action": "viewer"}),
        )
        .await;
    let first = visible(&mut bob).await;
    assert!(first.contains(&id(a)) && !first.contains(&id(b)));
    let computations = e.acl.full_computations();
    let session = sim_session(&e.pool);

    // B changes, then A: bob only ever hears about A; the admin hears about both
    rename(&e.pool, &session, b, "b renamed");
    rename(&e.pool, &session, a, "a renamed");
    let (seen, n) = until_id(&mut bob, &id(a)).await;
    assert_eq!(n["type"], "enter");
    assert_eq!(n["items"][id(a)]["name_label"], "a renamed");
    assert!(seen.iter().all(|i| first.contains(i)), "bob saw {seen:?}");
    let (seen, _) = until_id(&mut e.admin, &id(a)).await;
    let (seen2, _) = if seen.contains(&id(b)) {
        (seen, Value::Null)
    } else {
        until_id(&mut e.admin, &id(b)).await
    };
    assert!(seen2.contains(&id(b)) || seen2.contains(&id(a)));

    // many unrelated changes: no full recomputation of bob's set, still nothing leaks
    for i in 0..10 {
        rename(&e.pool, &session, b, &format!("b {i}"));
    }
    rename(&e.pool, &session, a, "a again");
    let (seen, _) = until_id(&mut bob, &id(a)).await;
    assert!(seen.iter().all(|i| first.contains(i)), "bob saw {seen:?}");
    assert_eq!(
        e.acl.full_computations(),
        computations,
        "visible set recomputed for unrelated batches"
    );

    // an ACL change applies to the next batch
    e.admin
        .ok(
            "acl.add",
            json!({"subject": bob_id, "object": id(b), "action": "viewer"}),
        )
        .await;
    rename(&e.pool, &session, b, "b visible now");
    let (_, n) = until_id(&mut bob, &id(b)).await;
    assert_eq!(n["items"][id(b)]["name_label"], "b visible now");

    // removals: bob gets the exit of what he could see, not of the rest
    for v in [b, c] {
        // destroyable once halted
        let _ = e.pool.call(
            "VM.hard_shutdown",
            vec![session.clone(), v["_xapiRef"].clone()],
        );
    }
    e.pool
        .call("VM.destroy", vec![session.clone(), c["_xapiRef"].clone()])
        .unwrap();
    e.pool
        .call("VM.destroy", vec![session.clone(), b["_xapiRef"].clone()])
        .unwrap();
    let (seen, n) = until_id(&mut bob, &id(b)).await;
    assert_eq!(n["type"], "exit");
    assert_eq!(n["items"][id(b)], 0);
    assert!(
        !seen.contains(&id(c)),
        "bob saw the removal of an object he never saw"
    );
    e.server.shutdown().await;
}
