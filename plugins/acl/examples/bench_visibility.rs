//! Prints figures for the ACL plugin's visible sets on a large in-memory pool: the first full
//! computation per user, then per-batch incremental updates (`cargo run --release -p xo-plugin-acl
//! --example bench_visibility [VMS] [USERS]`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use serde_json::{json, Value};
use xo_plugin::{
    AccessControl, AuthProvider, GroupInfo, MethodDef, Plugin, PluginError, PluginHost, UserInfo,
};
use xo_plugin_acl::AclPlugin;

#[derive(Default)]
struct Host {
    objects: RwLock<BTreeMap<String, Value>>,
    access: RwLock<Option<Arc<dyn AccessControl>>>,
}

impl PluginHost for Host {
    fn plugin_id(&self) -> &str {
        "acl"
    }
    fn register_method(&self, _: MethodDef) -> Result<(), PluginError> {
        Ok(())
    }
    fn unregister_method(&self, _: &str) -> bool {
        true
    }
    fn add_auth_provider(&self, _: Arc<dyn AuthProvider>) {}
    fn remove_auth_provider(&self, _: &str) {}
    fn set_access_control(&self, a: Option<Arc<dyn AccessControl>>) {
        *self.access.write() = a;
    }
    fn data_get(&self, _: &str) -> Result<Option<Value>, PluginError> {
        Ok(None)
    }
    fn data_set(&self, _: &str, _: &Value) -> Result<(), PluginError> {
        Ok(())
    }
    fn data_remove(&self, _: &str) -> Result<(), PluginError> {
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
        self.objects.read().get(id).map(f).is_some()
    }
    fn for_each_object(&self, f: &mut dyn FnMut(&Value)) {
        for v in self.objects.read().values() {
            f(v);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let vms: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let users: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let hosts = 50;
    let host = Arc::new(Host::default());
    {
        let mut o = host.objects.write();
        let mut put = |v: Value| {
            o.insert(v["id"].as_str().unwrap().to_owned(), v);
        };
        put(json!({"id": "p", "type": "pool"}));
        put(json!({"id": "sr", "type": "SR", "$container": "p"}));
        for h in 0..hosts {
            put(json!({"id": format!("h{h}"), "type": "host", "$pool": "p"}));
        }
        for v in 0..vms {
            put(
                json!({"id": format!("vm{v}"), "type": "VM", "$container": format!("h{}", v % hosts), "$VBDs": [format!("b{v}")]}),
            );
            put(
                json!({"id": format!("b{v}"), "type": "VBD", "VDI": format!("d{v}"), "VM": format!("vm{v}")}),
            );
            put(
                json!({"id": format!("d{v}"), "type": "VDI", "$SR": "sr", "$VBDs": [format!("b{v}")]}),
            );
            put(json!({"id": format!("i{v}"), "type": "VIF", "$VM": format!("vm{v}")}));
        }
    }
    let objects = host.objects.read().len();
    let plugin = AclPlugin::default();
    futures_lite_block_on(plugin.load(host.clone())).unwrap();
    let access = host.access.read().clone().unwrap();
    let state = plugin.state();
    let people: Vec<UserInfo> = (0..users)
        .map(|u| UserInfo {
            id: format!("u{u}"),
            email: String::new(),
            permission: "none".into(),
            groups: vec![],
        })
        .collect();
    for (i, u) in people.iter().enumerate() {
        state
            .add(&u.id, &format!("h{}", i % hosts), "viewer")
            .unwrap();
    }
    let t = Instant::now();
    let mut seen = 0;
    for u in &people {
        seen += access.visible_ids(u).len();
    }
    let first = t.elapsed();
    println!(
        "{objects} objects, {users} users: first visible sets {first:?} ({:?}/user, {} ids visible per user on average)",
        first / users as u32,
        seen / users
    );
    // batches of 100 updated VMs (metrics-like churn, no visibility change)
    let batches = 100;
    let t = Instant::now();
    for b in 0..batches {
        let ids: Vec<String> = (0..100)
            .map(|i| format!("vm{}", (b * 100 + i) % vms))
            .collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let view = access.batch(&refs, &[]);
        for u in &people {
            for id in &refs {
                std::hint::black_box(view.visible(u, id));
            }
        }
    }
    let per = t.elapsed() / batches as u32;
    println!(
        "{batches} batches of 100 changed VMs: {per:?}/batch for {users} users ({} full recomputations)",
        state.full_computations() - users as u64
    );
}

/// A tiny executor for the (immediately ready) load future.
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(f)
}
