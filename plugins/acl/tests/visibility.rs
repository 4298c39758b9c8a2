//! The ACL plugin against an in-memory [`PluginHost`]: load/unload registrations, entries persisted in
//! the plugin's storage, permission checks through the inheritance rules, and the per-user visible sets
//! (computed once, updated per batch, recomputed only when a parent object flips, the ACLs or the user's
//! groups change).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};
use xo_plugin::{
    AccessControl, AuthProvider, GroupInfo, MethodDef, Plugin, PluginError, PluginHost, UserInfo,
};
use xo_plugin_acl::AclPlugin;

#[derive(Default)]
struct FakeHost {
    objects: Mutex<BTreeMap<String, Value>>,
    data: Mutex<HashMap<String, Value>>,
    methods: Mutex<BTreeSet<String>>,
    access: Mutex<Option<Arc<dyn AccessControl>>>,
}

impl PluginHost for FakeHost {
    fn plugin_id(&self) -> &str {
        "acl"
    }
    fn register_method(&self, m: MethodDef) -> Result<(), PluginError> {
        if !self.methods.lock().insert(m.name.clone()) {
            return Err(PluginError::failed("duplicate"));
        }
        Ok(())
    }
    fn unregister_method(&self, name: &str) -> bool {
        self.methods.lock().remove(name)
    }
    fn add_auth_provider(&self, _: Arc<dyn AuthProvider>) {}
    fn remove_auth_provider(&self, _: &str) {}
    fn set_access_control(&self, a: Option<Arc<dyn AccessControl>>) {
        *self.access.lock() = a;
    }
    fn data_get(&self, key: &str) -> Result<Option<Value>, PluginError> {
        Ok(self.data.lock().get(key).cloned())
    }
    fn data_set(&self, key: &str, value: &Value) -> Result<(), PluginError> {
        self.data.lock().insert(key.into(), value.clone());
        Ok(())
    }
    fn data_remove(&self, key: &str) -> Result<(), PluginError> {
        self.data.lock().remove(key);
        Ok(())
    }
    fn user(&self, _: &str) -> Result<Option<UserInfo>, PluginError> {
        Ok(None)
    }
    fn user_by_email(&self, _: &str) -> Result<Option<UserInfo>, PluginError> {
        Ok(None)
    }
    fn group(&self, _: &str) -> Result<Option<GroupInfo>, PluginError> {
        Ok(None)
    }
    fn with_object(&self, id: &str, f: &mut dyn FnMut(&Value)) -> bool {
        match self.objects.lock().get(id) {
            Some(v) => {
                f(v);
                true
            }
            None => false,
        }
    }
    fn for_each_object(&self, f: &mut dyn FnMut(&Value)) {
        for v in self.objects.lock().values() {
            f(v);
        }
    }
}

impl FakeHost {
    fn put(&self, v: Value) {
        let id = v["id"].as_str().unwrap().to_owned();
        self.objects.lock().insert(id, v);
    }
}

/// pool p; hosts h1, h2; network n; shared SR s; VM v1 on h1 with VIF i1; VM v2 on h2 with disk d1
/// through VBD b1; a message m about v1.
fn world(host: &FakeHost) {
    for v in [
        json!({"id": "p", "type": "pool"}),
        json!({"id": "h1", "type": "host", "$pool": "p"}),
        json!({"id": "h2", "type": "host", "$pool": "p"}),
        json!({"id": "n", "type": "network", "$pool": "p"}),
        json!({"id": "s", "type": "SR", "$container": "p"}),
        json!({"id": "v1", "type": "VM", "$container": "h1"}),
        json!({"id": "v2", "type": "VM", "$container": "h2"}),
        json!({"id": "i1", "type": "VIF", "$VM": "v1", "$network": "n"}),
        json!({"id": "d1", "type": "VDI", "$SR": "s", "$VBDs": ["b1"]}),
        json!({"id": "b1", "type": "VBD", "VDI": "d1", "VM": "v2"}),
        json!({"id": "m", "type": "message", "$object": "v1"}),
    ] {
        host.put(v);
    }
}

fn user(id: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        id: id.into(),
        email: format!("{id}@x"),
        permission: "none".into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

fn visible(a: &dyn AccessControl, u: &UserInfo) -> BTreeSet<String> {
    a.visible_ids(u).iter().cloned().collect()
}

async fn loaded() -> (AclPlugin, Arc<FakeHost>, Arc<dyn AccessControl>) {
    let host = Arc::new(FakeHost::default());
    world(&host);
    let plugin = AclPlugin::default();
    plugin.load(host.clone()).await.unwrap();
    let access = host
        .access
        .lock()
        .clone()
        .expect("access control installed");
    (plugin, host, access)
}

#[tokio::test]
async fn load_registers_and_unload_removes() {
    let (plugin, host, _) = loaded().await;
    assert_eq!(
        *host.methods.lock(),
        set(&[
            "acl.add",
            "acl.get",
            "acl.getCurrentPermissions",
            "acl.remove",
            "role.getAll",
            "test.getPermissionsForUser",
            "test.hasPermission"
        ])
    );
    plugin.state().add("u", "v1", "viewer").unwrap();
    assert_eq!(
        host.data.lock()["acls"],
        json!([{"id": xo_plugin_acl::entries::acl_id("u", "v1", "viewer"),
            "subject": "u", "object": "v1", "action": "viewer"}])
    );
    plugin.unload(host.clone()).await.unwrap();
    assert!(host.methods.lock().is_empty());
    assert!(host.access.lock().is_none());
    // entries come back from storage
    let plugin2 = AclPlugin::default();
    plugin2.load(host.clone()).await.unwrap();
    assert_eq!(plugin2.state().acls().len(), 1);
    // a corrupt storage fails the load
    host.data.lock().insert("acls".into(), json!("garbage"));
    let plugin3 = AclPlugin::default();
    assert!(plugin3.load(Arc::new(FakeHost::default())).await.is_ok());
    let bad = Arc::new(FakeHost::default());
    bad.data.lock().insert("acls".into(), json!("garbage"));
    assert!(plugin3.load(bad).await.is_err());
}

#[tokio::test]
async fn checks_follow_inheritance() {
    let (plugin, _host, a) = loaded().await;
    let s = plugin.state();
    let u = user("u", &[]);
    let pair = |id: &str, p: &str| vec![(id.to_owned(), p.to_owned())];
    assert_eq!(a.first_denied(&u, &pair("v1", "view")), Some(0));
    s.add("u", "h1", "operator").unwrap();
    assert_eq!(
        a.first_denied(&u, &pair("v1", "operate")),
        None,
        "host → VM"
    );
    assert_eq!(a.first_denied(&u, &pair("v1", "administrate")), Some(0));
    assert_eq!(a.first_denied(&u, &pair("i1", "view")), None, "VM → VIF");
    assert_eq!(a.first_denied(&u, &pair("m", "view")), None, "VM → message");
    assert_eq!(a.first_denied(&u, &pair("v2", "view")), Some(0));
    assert_eq!(a.first_denied(&u, &pair("missing", "view")), Some(0));
    // the first denied pair is reported
    let pairs = vec![
        ("v1".to_owned(), "view".to_owned()),
        ("v2".to_owned(), "view".to_owned()),
    ];
    assert_eq!(a.first_denied(&u, &pairs), Some(1));
    // VM → VDI through VBDs; SR → VDI
    s.add("u", "v2", "viewer").unwrap();
    assert!(s.has_permission(&u, "d1", "view"));
    assert!(!s.has_permission(&u, "d1", "operate"));
    s.add("g", "s", "admin").unwrap();
    assert!(!s.has_permission(&u, "d1", "administrate"));
    assert!(
        s.has_permission(&user("u", &["g"]), "d1", "administrate"),
        "group"
    );
    // pool → host → VM
    s.add("w", "p", "viewer").unwrap();
    let w = user("w", &[]);
    for id in ["h1", "h2", "v1", "v2", "n", "s", "d1", "b1", "i1", "m"] {
        assert!(s.has_permission(&w, id, "view"), "{id}");
    }
}

#[tokio::test]
async fn visible_sets_are_cached_and_updated_per_batch() {
    let (plugin, host, a) = loaded().await;
    let s = plugin.state();
    let u = user("u", &[]);
    assert!(visible(&*a, &u).is_empty(), "no ACL, nothing");
    s.add("u", "h1", "viewer").unwrap();
    assert_eq!(visible(&*a, &u), set(&["h1", "v1", "i1", "m"]));
    let n = s.full_computations();
    assert_eq!(visible(&*a, &u), set(&["h1", "v1", "i1", "m"]));
    assert_eq!(s.full_computations(), n, "cached");

    // an update that changes nothing visible: incremental
    host.put(json!({"id": "v1", "type": "VM", "$container": "h1", "name_label": "x"}));
    let b = a.batch(&["v1"], &[]);
    assert!(b.visible(&u, "v1"));
    assert_eq!(s.full_computations(), n);
    // a new leaf object under a visible VM: incremental, visible
    host.put(json!({"id": "i2", "type": "VIF", "$VM": "v1", "$network": "n"}));
    let b = a.batch(&["i2"], &[]);
    assert!(b.visible(&u, "i2"));
    assert_eq!(s.full_computations(), n);
    assert!(visible(&*a, &u).contains("i2"));

    // v1 migrates to h2: it flips and passes visibility down (its VIFs): full recomputation
    host.put(json!({"id": "v1", "type": "VM", "$container": "h2"}));
    let b = a.batch(&["v1"], &[]);
    assert!(!b.visible(&u, "v1"));
    assert_eq!(visible(&*a, &u), set(&["h1"]));
    assert_eq!(s.full_computations(), n + 1);

    // removals: visible to whoever saw the object before
    s.add("u", "v2", "viewer").unwrap();
    assert_eq!(visible(&*a, &u), set(&["h1", "v2", "d1", "b1"]));
    let other = user("o", &[]);
    assert!(visible(&*a, &other).is_empty());
    host.objects.lock().remove("b1");
    host.put(json!({"id": "d1", "type": "VDI", "$SR": "s", "$VBDs": []}));
    let b = a.batch(&["d1"], &["b1"]);
    assert!(b.visible(&u, "b1"), "exit of a seen object");
    assert!(!b.visible(&other, "b1"), "exit of an unseen object");
    assert!(!b.visible(&u, "d1"), "the disk is no longer attached to v2");
    assert_eq!(visible(&*a, &u), set(&["h1", "v2"]));

    // group changes are noticed through the user's groups
    s.add("g", "n", "viewer").unwrap();
    assert!(!visible(&*a, &u).contains("n"));
    assert!(visible(&*a, &user("u", &["g"])).contains("n"));
    // the server's hooks: creators get admin, deleted objects lose their entries
    a.add_acl("c", "v1", "admin").unwrap();
    assert!(s.has_permission(&user("c", &[]), "v1", "administrate"));
    a.add_acl("c", "v2", "viewer").unwrap();
    a.subject_deleted("c");
    assert!(!s.acls().iter().any(|e| e.subject == "c"));
    a.object_deleted("v1");
    assert!(!s.acls().iter().any(|e| e.object == "v1"));
    assert!(!s.has_permission(&user("c", &[]), "v1", "view"));
    // a lagging forwarder: everything is rebuilt
    a.resync();
    assert_eq!(
        visible(&*a, &user("u", &["g"])),
        set(&["h1", "v2", "n", "i1", "i2"])
    );
}
