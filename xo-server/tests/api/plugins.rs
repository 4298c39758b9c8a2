//! The plugin system end to end: a test plugin defined here (configuration schema with a secret and a
//! default, presets, test schema; registers a method and an authentication provider when loaded) driven
//! through `plugin.*`: shape of `plugin.get`, configuration validation (code 10), obfuscated secrets kept
//! on reconfiguration, load/unload making the method and the provider appear and disappear, `test`,
//! `purgeConfiguration`, autoload from the store across restarts, XO's error messages.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use xo_plugin::{
    AuthOutcome, AuthProvider, BoxFuture, CallContext, Manifest, MethodDef, Plugin, PluginError,
    PluginHost,
};

use super::{config, start_with, Client};

const OBFUSCATED: &str = "obfuscated-q3oi6d9X8uenGvdLnHk2";

/// What the test plugin saw.
#[derive(Default)]
struct Seen {
    configurations: Vec<Value>,
    loads: usize,
    unloads: usize,
    tests: Vec<Value>,
}

struct TestPlugin {
    seen: Arc<Mutex<Seen>>,
}

/// Signs `admin@admin.net` in for `{magic: "open sesame"}`.
struct MagicProvider {
    host: Arc<dyn PluginHost>,
}

impl AuthProvider for MagicProvider {
    fn name(&self) -> &str {
        "magic"
    }

    fn authenticate(
        &self,
        credentials: Map<String, Value>,
    ) -> BoxFuture<'static, Result<Option<AuthOutcome>, String>> {
        let host = self.host.clone();
        Box::pin(async move {
            if credentials.get("magic") != Some(&json!("open sesame")) {
                return Ok(None);
            }
            let user = host
                .user_by_email("admin@admin.net")
                .map_err(|e| e.to_string())?
                .ok_or("no admin")?;
            Ok(Some(AuthOutcome {
                user_id: user.id,
                expiration: None,
                bypass_otp: false,
            }))
        })
    }
}

impl Plugin for TestPlugin {
    fn manifest(&self) -> Manifest {
        Manifest {
            name: "test".into(),
            version: "1.2.3".into(),
            description: "plugin used by the tests".into(),
            keywords: vec!["test".into()],
        }
    }

    fn configuration_schema(&self) -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {
                "foo": {"type": "string", "minLength": 1},
                "password": {"type": "string"},
                "port": {"type": "integer", "default": 80},
            },
            "required": ["foo"],
            "additionalProperties": false,
        }))
    }

    fn configuration_presets(&self) -> Option<Value> {
        Some(json!({"preset 1": {"foo": "bar"}, "preset 2": {"foo": "baz"}}))
    }

    fn test_schema(&self) -> Option<Value> {
        Some(
            json!({"type": "object", "properties": {"test": {"type": "string"}}, "required": ["test"]}),
        )
    }

    fn testable(&self) -> bool {
        true
    }

    fn configure<'a>(
        &'a self,
        _host: Arc<dyn PluginHost>,
        configuration: Value,
        _loaded: bool,
    ) -> BoxFuture<'a, Result<(), PluginError>> {
        self.seen.lock().configurations.push(configuration);
        Box::pin(async { Ok(()) })
    }

    fn load<'a>(&'a self, host: Arc<dyn PluginHost>) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            self.seen.lock().loads += 1;
            host.register_method(
                MethodDef::new("testPlugin.echo", |ctx: CallContext, p: Map<String, Value>| async move {
                    if p.get("fail") == Some(&json!(true)) {
                        return Err(PluginError::invalid_parameters("asked to fail"));
                    }
                    Ok(json!({"params": p, "user": ctx.user.map(|u| u.email), "plugin": ctx.host.plugin_id()}))
                })
                .description("echoes its params")
                .params(json!({"text": {"type": "string"}, "fail": {"type": "boolean", "optional": true}})),
            )?;
            host.add_auth_provider(Arc::new(MagicProvider { host: host.clone() }));
            host.data_set("counter", &json!(self.seen.lock().loads))?;
            Ok(())
        })
    }

    fn unload<'a>(&'a self, _host: Arc<dyn PluginHost>) -> BoxFuture<'a, Result<(), PluginError>> {
        // deliberately leaves its method and provider registered: the server removes them
        self.seen.lock().unloads += 1;
        Box::pin(async { Ok(()) })
    }

    fn test<'a>(
        &'a self,
        _host: Arc<dyn PluginHost>,
        data: Value,
    ) -> BoxFuture<'a, Result<(), PluginError>> {
        self.seen.lock().tests.push(data.clone());
        Box::pin(async move {
            if data["test"] == "fail" {
                Err(PluginError::failed("test failed"))
            } else {
                Ok(())
            }
        })
    }
}

fn test_plugin() -> (Arc<TestPlugin>, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let p = Arc::new(TestPlugin { seen: seen.clone() });
    (p, seen)
}

async fn start_plugin(dir: &Path, p: Arc<TestPlugin>) -> xo_server::RunningServer {
    start_with(config(dir), move |b| b.plugin(p)).await
}

fn entry<'a>(all: &'a Value, id: &str) -> &'a Value {
    all.as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no plugin {id} in {all}"))
}

#[tokio::test]
async fn plugins_get_configure_load_unload_test() {
    let dir = tempfile::tempdir().unwrap();
    let (p, seen) = test_plugin();
    let server = start_plugin(dir.path(), p).await;
    let mut c = Client::admin(&server).await;

    let all = c.ok("plugin.get", json!({})).await;
    // the built-in ACL plugin is there and loaded
    let acl = entry(&all, "acl");
    assert_eq!(acl["loaded"], true);
    assert_eq!(acl["autoload"], true);
    assert!(acl.get("configurationSchema").is_none());
    // the test plugin: not configured yet, so not loaded (`loaded` absent before the first load)
    let t = entry(&all, "test").clone();
    assert_eq!(
        t,
        json!({
            "id": "test", "name": "test", "autoload": true, "description": "plugin used by the tests",
            "keywords": ["test"], "unloadable": true, "version": "1.2.3", "testable": true,
            "configurationPresets": {"preset 1": {"foo": "bar"}, "preset 2": {"foo": "baz"}},
            "configurationSchema": TestPlugin { seen: Default::default() }
                .configuration_schema().unwrap(),
            "testSchema": {"type": "object", "properties": {"test": {"type": "string"}}, "required": ["test"]},
        })
    );
    // the stored configuration ({} on first start) was invalid
    assert_eq!(seen.lock().configurations.len(), 0);
    let e = c.err("plugin.load", json!({"id": "test"})).await;
    assert_eq!(
        e,
        json!({"code": 10, "message": "plugin not configured", "data": {}})
    );

    // invalid configurations: code 10 with the schema errors
    let e = c
        .err(
            "plugin.configure",
            json!({"id": "test", "configuration": {"port": "x"}}),
        )
        .await;
    assert_eq!(e["code"], 10);
    assert_eq!(e["message"], "invalid parameters");
    let keywords: Vec<&str> = e["data"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["keyword"].as_str())
        .collect();
    assert!(
        keywords.contains(&"required") && keywords.contains(&"type"),
        "{e}"
    );
    let e = c
        .err(
            "plugin.configure",
            json!({"id": "test", "configuration": {"foo": "a", "bar": 1}}),
        )
        .await;
    assert_eq!(e["code"], 10, "{e}");
    assert_eq!(
        c.err("plugin.configure", json!({"id": "test"})).await["code"],
        10
    );
    assert_eq!(seen.lock().configurations.len(), 0);

    // a valid one: the plugin gets the defaults filled in; plugin.get obfuscates the secret
    c.ok(
        "plugin.configure",
        json!({"id": "test", "configuration": {"foo": "bar", "password": "s3cret"}}),
    )
    .await;
    assert_eq!(
        seen.lock().configurations.last().unwrap(),
        &json!({"foo": "bar", "password": "s3cret", "port": 80})
    );
    let all = c.ok("plugin.get", json!({})).await;
    assert!(!all.to_string().contains("s3cret"));
    assert_eq!(
        entry(&all, "test")["configuration"],
        json!({"foo": "bar", "password": OBFUSCATED})
    );
    // sending back the placeholder keeps the stored secret
    c.ok(
        "plugin.configure",
        json!({"id": "test", "configuration": {"foo": "baz", "password": OBFUSCATED}}),
    )
    .await;
    assert_eq!(
        seen.lock().configurations.last().unwrap(),
        &json!({"foo": "baz", "password": "s3cret", "port": 80})
    );

    // load: the method and the provider appear
    assert_eq!(
        c.err("testPlugin.echo", json!({"text": "hi"})).await["code"],
        -32601
    );
    let mut magic = Client::connect(&server).await;
    assert_eq!(
        magic
            .err("session.signIn", json!({"magic": "open sesame"}))
            .await["code"],
        3
    );
    c.ok("plugin.load", json!({"id": "test"})).await;
    assert_eq!(
        entry(&c.ok("plugin.get", json!({})).await, "test")["loaded"],
        true
    );
    let r = c.ok("testPlugin.echo", json!({"text": "hi"})).await;
    assert_eq!(
        r,
        json!({"params": {"text": "hi"}, "user": "admin@admin.net", "plugin": "test"})
    );
    // plugin methods are validated and their errors mapped
    assert_eq!(c.err("testPlugin.echo", json!({})).await["code"], 10);
    assert_eq!(
        c.err("testPlugin.echo", json!({"text": "x", "fail": true}))
            .await,
        json!({"code": 10, "message": "asked to fail", "data": {}})
    );
    let info = c.ok("system.getMethodsInfo", json!({})).await;
    assert_eq!(
        info["testPlugin.echo"],
        json!({"description": "echoes its params",
            "params": {"text": {"type": "string"}, "fail": {"type": "boolean", "optional": true}}})
    );
    let u = magic
        .ok("session.signIn", json!({"magic": "open sesame"}))
        .await;
    assert_eq!(u["email"], "admin@admin.net");
    // plugin data went to the store
    let host = xo_server::plugins::Plugins::of(server.app())
        .unwrap()
        .host("test")
        .unwrap();
    assert_eq!(host.data_get("counter").unwrap(), Some(json!(1)));
    assert_eq!(
        c.err("plugin.load", json!({"id": "test"})).await["message"],
        "plugin already loaded"
    );

    // test: data required by the test schema, validated, then handed to the plugin
    let e = c.err("plugin.test", json!({"id": "test"})).await;
    assert_eq!(
        e,
        json!({"code": 10, "message": "invalid parameters",
            "data": {"errors": [{"field": "data", "message": "is the wrong type"}]}})
    );
    assert_eq!(
        c.err("plugin.test", json!({"id": "test", "data": {"test": 1}}))
            .await["code"],
        10
    );
    c.ok("plugin.test", json!({"id": "test", "data": {"test": "x"}}))
        .await;
    assert_eq!(seen.lock().tests, vec![json!({"test": "x"})]);
    let e = c
        .err(
            "plugin.test",
            json!({"id": "test", "data": {"test": "fail"}}),
        )
        .await;
    assert_eq!(e["code"], -32000);
    assert_eq!(e["message"], "test failed");

    // unload: method and provider disappear even though the plugin's unload left them
    c.ok("plugin.unload", json!({"id": "test"})).await;
    assert_eq!(seen.lock().unloads, 1);
    assert_eq!(
        entry(&c.ok("plugin.get", json!({})).await, "test")["loaded"],
        false
    );
    assert_eq!(
        c.err("testPlugin.echo", json!({"text": "hi"})).await["code"],
        -32601
    );
    let info = c.ok("system.getMethodsInfo", json!({})).await;
    assert!(info.get("testPlugin.echo").is_none());
    let mut magic2 = Client::connect(&server).await;
    assert_eq!(
        magic2
            .err("session.signIn", json!({"magic": "open sesame"}))
            .await["code"],
        3
    );
    assert_eq!(
        c.err("plugin.unload", json!({"id": "test"})).await["message"],
        "plugin already unloaded"
    );
    assert_eq!(
        c.err("plugin.test", json!({"id": "test", "data": {"test": "x"}}))
            .await["message"],
        "plugin not loaded"
    );
    // and back again
    c.ok("plugin.load", json!({"id": "test"})).await;
    c.ok("testPlugin.echo", json!({"text": "again"})).await;

    // purgeConfiguration: unloads, forgets the configuration
    c.ok("plugin.purgeConfiguration", json!({"id": "test"}))
        .await;
    let t = entry(&c.ok("plugin.get", json!({})).await, "test").clone();
    assert!(t.get("configuration").is_none(), "{t}");
    assert_eq!(t["loaded"], false);
    assert_eq!(
        c.err("testPlugin.echo", json!({"text": "x"})).await["code"],
        -32601
    );
    assert_eq!(
        c.err("plugin.load", json!({"id": "test"})).await["message"],
        "plugin not configured"
    );

    // the ACL plugin is not configurable, not testable
    assert_eq!(
        c.err(
            "plugin.configure",
            json!({"id": "acl", "configuration": {}})
        )
        .await["message"],
        "plugin not configurable"
    );
    assert_eq!(
        c.err("plugin.test", json!({"id": "acl"})).await["message"],
        "plugin not testable"
    );
    // unknown plugins
    for m in [
        "plugin.load",
        "plugin.unload",
        "plugin.enableAutoload",
        "plugin.purgeConfiguration",
    ] {
        let e = c.err(m, json!({"id": "nope"})).await;
        assert_eq!(
            e,
            json!({"code": 1, "message": "no such plugin nope", "data": {"id": "nope", "type": "plugin"}}),
            "{m}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn plugins_autoload_and_configuration_persist_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = test_plugin();
    let server = start_plugin(dir.path(), p).await;
    let mut c = Client::admin(&server).await;
    c.ok(
        "plugin.configure",
        json!({"id": "test", "configuration": {"foo": "kept", "password": "pw"}}),
    )
    .await;
    c.ok("plugin.load", json!({"id": "test"})).await;
    c.ok("plugin.disableAutoload", json!({"id": "test"})).await;
    assert_eq!(
        entry(&c.ok("plugin.get", json!({})).await, "test")["autoload"],
        false
    );
    server.shutdown().await;

    // configured from the store, but not loaded
    let (p, seen) = test_plugin();
    let server = start_plugin(dir.path(), p).await;
    assert_eq!(
        seen.lock().configurations,
        vec![json!({"foo": "kept", "password": "pw", "port": 80})]
    );
    assert_eq!(seen.lock().loads, 0);
    let mut c = Client::admin(&server).await;
    let t = entry(&c.ok("plugin.get", json!({})).await, "test").clone();
    assert!(t.get("loaded").is_none(), "{t}");
    assert_eq!(t["configuration"]["foo"], "kept");
    c.ok("plugin.enableAutoload", json!({"id": "test"})).await;
    server.shutdown().await;

    // autoloaded
    let (p, seen) = test_plugin();
    let server = start_plugin(dir.path(), p).await;
    assert_eq!(seen.lock().loads, 1);
    let mut c = Client::admin(&server).await;
    assert_eq!(
        entry(&c.ok("plugin.get", json!({})).await, "test")["loaded"],
        true
    );
    c.ok("testPlugin.echo", json!({"text": "hi"})).await;
    server.shutdown().await;
}

#[tokio::test]
async fn plugins_methods_are_admin_only_and_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), |b| b).await;
    server
        .app()
        .store()
        .create_user("bob@x", Some("pw"), xo_store::Permission::None)
        .unwrap();
    let mut bob = Client::connect(&server).await;
    bob.ok(
        "session.signIn",
        json!({"email": "bob@x", "password": "pw"}),
    )
    .await;
    for m in ["plugin.get", "plugin.load", "acl.get", "acl.add"] {
        assert_eq!(bob.err(m, json!({})).await["code"], 2, "{m}");
    }
    let info = bob.ok("system.getMethodsInfo", json!({})).await;
    let names = [
        "plugin.get",
        "plugin.configure",
        "plugin.load",
        "plugin.unload",
        "plugin.enableAutoload",
        "plugin.disableAutoload",
        "plugin.purgeConfiguration",
        "plugin.test",
        "acl.add",
        "acl.remove",
        "acl.get",
        "acl.getCurrentPermissions",
        "role.getAll",
        "test.hasPermission",
        "test.getPermissionsForUser",
    ];
    if let Some(reference) = super::methods_reference() {
        for n in names {
            assert_eq!(info[n], reference[n], "{n}");
        }
    }
    server.shutdown().await;
}

/// A plugin that refuses some configurations, may fail to load (after registering a method), and cannot
/// be unloaded.
struct Picky {
    fail_load: Arc<AtomicBool>,
    /// When set, `load` signals `entered` then waits for `release`.
    gated: Arc<AtomicBool>,
    entered: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl Plugin for Picky {
    fn manifest(&self) -> Manifest {
        Manifest {
            name: "picky".into(),
            version: "0.1.0".into(),
            ..Manifest::default()
        }
    }

    fn configuration_schema(&self) -> Option<Value> {
        Some(json!({"type": "object", "properties": {"fail": {"type": "boolean"}}}))
    }

    fn unloadable(&self) -> bool {
        false
    }

    fn configure<'a>(
        &'a self,
        _host: Arc<dyn PluginHost>,
        configuration: Value,
        _loaded: bool,
    ) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            if configuration["fail"] == true {
                return Err(PluginError::failed("configuration refused"));
            }
            Ok(())
        })
    }

    fn load<'a>(&'a self, host: Arc<dyn PluginHost>) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            host.register_method(MethodDef::new("picky.hello", |_, _| async {
                Ok(json!("hello"))
            }))?;
            if self.gated.load(Ordering::SeqCst) {
                self.entered.notify_one();
                self.release.notified().await;
            }
            if self.fail_load.load(Ordering::SeqCst) {
                return Err(PluginError::invalid_parameters("cannot start"));
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn plugins_failures_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let fail_load = Arc::new(AtomicBool::new(true));
    let gated = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let picky = Arc::new(Picky {
        fail_load: fail_load.clone(),
        gated: gated.clone(),
        entered: entered.clone(),
        release: release.clone(),
    });
    let server = start_with(config(dir.path()), move |b| b.plugin(picky)).await;
    let mut c = Client::admin(&server).await;
    // configured with {} at start, autoload failed: nothing registered, `loaded` still absent
    let p = entry(&c.ok("plugin.get", json!({})).await, "picky").clone();
    assert!(p.get("loaded").is_none(), "{p}");
    assert_eq!(p["unloadable"], false);
    assert_eq!(c.err("picky.hello", json!({})).await["code"], -32601);
    assert_eq!(
        c.err("plugin.load", json!({"id": "picky"})).await,
        json!({"code": 10, "message": "cannot start", "data": {}})
    );
    assert_eq!(c.err("picky.hello", json!({})).await["code"], -32601);
    // a configuration the plugin refuses is not stored, and the plugin stays configured
    let e = c
        .err(
            "plugin.configure",
            json!({"id": "picky", "configuration": {"fail": true}}),
        )
        .await;
    assert_eq!(e["code"], -32000);
    assert_eq!(e["message"], "configuration refused");
    let p = entry(&c.ok("plugin.get", json!({})).await, "picky").clone();
    assert!(p.get("configuration").is_none(), "{p}");
    fail_load.store(false, Ordering::SeqCst);
    // a load in progress: a second one is refused
    gated.store(true, Ordering::SeqCst);
    c.send_raw(r#"{"id":"slow","jsonrpc":"2.0","method":"plugin.load","params":{"id":"picky"}}"#)
        .await;
    entered.notified().await;
    let mut c2 = Client::admin(&server).await;
    assert_eq!(
        c2.err("plugin.load", json!({"id": "picky"})).await["message"],
        "plugin is loading"
    );
    gated.store(false, Ordering::SeqCst);
    release.notify_one();
    let r = c.recv().await.unwrap();
    assert_eq!(r["id"], "slow");
    assert_eq!(r["result"], true, "{r}");
    assert_eq!(c.ok("picky.hello", json!({})).await, "hello");
    assert_eq!(
        c.err("plugin.unload", json!({"id": "picky"})).await["message"],
        "plugin cannot be unloaded"
    );
    assert_eq!(c.ok("picky.hello", json!({})).await, "hello");
    server.shutdown().await;
}
