//! End-to-end tests of xo-server's JSON-RPC API over WebSocket: a server on 127.0.0.1:0 with a temporary
//! data directory, driven by tokio-tungstenite.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use xo_server::{
    Access, ApiError, AppBuilder, Config, ConnectError, Ctx, Method, PoolConnector, RunningServer,
};

#[path = "api/acl.rs"]
mod acl;
#[path = "api/console.rs"]
mod console;
#[path = "api/everyday.rs"]
mod everyday;
#[path = "api/ldap.rs"]
mod ldap;
#[path = "api/objects.rs"]
mod objects;
#[path = "api/patches.rs"]
mod patches;
#[path = "api/plugins.rs"]
mod plugins;
#[path = "api/pool_admin.rs"]
mod pool_admin;
#[path = "api/pools.rs"]
mod pools;
#[path = "api/secrets.rs"]
mod secrets;
#[path = "api/tasks.rs"]
mod tasks;
#[path = "api/transfers.rs"]
mod transfers;
#[path = "api/xo_lib.rs"]
mod xo_lib;

const TIMEOUT: Duration = Duration::from_secs(20);

fn config(dir: &Path) -> Config {
    Config {
        // long enough that an immediate retry is always throttled, whatever the machine's speed
        sign_in_throttle_ms: 600_000,
        ..Config::for_tests(dir)
    }
}

async fn start_with(
    config: Config,
    builder: impl FnOnce(AppBuilder) -> AppBuilder,
) -> RunningServer {
    let app = builder(AppBuilder::new(config)).build().unwrap();
    xo_server::serve(app).await.unwrap()
}

async fn start(dir: &Path) -> RunningServer {
    start_with(config(dir), |b| b).await
}

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: i64,
    notifications: Vec<Value>,
}

impl Client {
    async fn connect(server: &RunningServer) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(server.api_url())
            .await
            .unwrap();
        Client {
            ws,
            next_id: -9007199254740991,
            notifications: Vec::new(),
        }
    }

    async fn send_raw(&mut self, text: impl Into<String>) {
        self.ws.send(Message::text(text.into())).await.unwrap();
    }

    /// Next text frame, `None` when the connection closed.
    async fn recv_text(&mut self) -> Option<String> {
        loop {
            match tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("no frame in time")
            {
                Some(Ok(Message::Text(t))) => return Some(t.to_string()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    async fn recv(&mut self) -> Option<Value> {
        self.recv_text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap())
    }

    /// The full response to a call (notifications received meanwhile are kept).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_raw(
            json!({"id": id, "jsonrpc": "2.0", "method": method, "params": params}).to_string(),
        )
        .await;
        loop {
            let v = self
                .recv()
                .await
                .expect("connection closed before the response");
            if v.get("method").is_some() {
                self.notifications.push(v);
                continue;
            }
            assert_eq!(v["id"], json!(id), "{v}");
            assert_eq!(v["jsonrpc"], "2.0");
            return v;
        }
    }

    async fn ok(&mut self, method: &str, params: Value) -> Value {
        let v = self.call(method, params).await;
        assert!(v.get("error").is_none(), "{method} failed: {v}");
        v["result"].clone()
    }

    async fn err(&mut self, method: &str, params: Value) -> Value {
        let v = self.call(method, params).await;
        assert!(v.get("result").is_none(), "{method} should fail: {v}");
        v["error"].clone()
    }

    async fn admin(server: &RunningServer) -> Client {
        let mut c = Client::connect(server).await;
        c.ok(
            "session.signIn",
            json!({"email": "admin@admin.net", "password": "admin"}),
        )
        .await;
        c
    }

    /// Whether the server closes the connection (close frame or EOF) before sending any text frame.
    async fn closed_without_reply(&mut self) -> bool {
        self.recv_text().await.is_none()
    }
}

fn methods_reference() -> Option<Map<String, Value>> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/specs/xo-server-methods.json");
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

// ------------------------------------------------------------------ sign-in

#[tokio::test]
async fn sign_in_with_password_good_and_bad() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(&server).await;
    let e = c
        .err(
            "session.signIn",
            json!({"email": "admin@admin.net", "password": "wrong"}),
        )
        .await;
    assert_eq!(e, json!({"code": 3, "message": "invalid credentials"}));
    // throttled for that user name, even with the right password: masked as an unknown error
    let e = c
        .err(
            "session.signIn",
            json!({"email": "admin@admin.net", "password": "admin"}),
        )
        .await;
    assert_eq!(
        e,
        json!({"code": -32000, "message": "unknown error from the peer"})
    );
    // other user names are not throttled; `username` is an alias of `email`
    let mut admin = Client::connect(&server).await;
    let e = admin
        .err(
            "session.signIn",
            json!({"username": "nobody@x", "password": ""}),
        )
        .await;
    assert_eq!(e["code"], -32000, "empty password");
    server
        .app()
        .store()
        .create_user("other@x", Some("pw"), xo_store::Permission::None)
        .unwrap();
    let user = admin
        .ok(
            "session.signInWithPassword",
            json!({"email": "other@x", "password": "pw"}),
        )
        .await;
    assert_eq!(user["permission"], "none");
    assert_eq!(
        admin
            .err("session.signInWithPassword", json!({"email": "other@x"}))
            .await["code"],
        10
    );
    server.shutdown().await;
}

#[tokio::test]
async fn sign_in_returns_public_user_and_binds_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(&server).await;
    let e = c.err("session.getUser", json!({})).await;
    assert_eq!(
        e,
        json!({"code": -32000, "message": "unknown error from the peer"})
    );
    let e = c.err("user.getAll", json!({})).await;
    assert_eq!(
        e,
        json!({"code": 2, "message": "not enough permissions", "data": {"permission": "admin", "object": {}}})
    );
    let u = c
        .ok(
            "session.signIn",
            json!({"username": "admin@admin.net", "password": "admin"}),
        )
        .await;
    assert_eq!(u["email"], "admin@admin.net");
    assert_eq!(u["permission"], "admin");
    assert_eq!(u["groups"], json!([]));
    assert_eq!(u["preferences"], json!({}));
    assert!(u.get("pw_hash").is_none());
    assert_eq!(c.ok("session.getUser", json!({})).await, u);
    assert_eq!(c.ok("user.getAll", json!({})).await, json!([u]));
    assert_eq!(c.ok("session.signOut", json!({})).await, json!(true));
    assert_eq!(c.err("user.getAll", json!({})).await["code"], 2);
    server.shutdown().await;
}

#[tokio::test]
async fn sign_in_with_token_and_expired_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut admin = Client::admin(&server).await;
    let token = admin
        .ok(
            "token.create",
            json!({"expiresIn": "1 hour", "description": "ci"}),
        )
        .await;
    let token = token.as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43);

    let mut c = Client::connect(&server).await;
    let u = c.ok("session.signIn", json!({"token": token})).await;
    assert_eq!(u["email"], "admin@admin.net");
    let mut c2 = Client::connect(&server).await;
    c2.ok("session.signInWithToken", json!({"token": token}))
        .await;

    // last use is recorded; the id shown is the stored hash, never the secret
    let tokens = admin.ok("user.getAuthenticationTokens", json!({})).await;
    let t = &tokens.as_array().unwrap()[0];
    assert_ne!(t["id"], json!(token));
    assert_eq!(t["description"], "ci");
    assert!(t["last_uses"]["127.0.0.1"]["timestamp"].is_number(), "{t}");

    // an expired token is refused
    let uid = u["id"].as_str().unwrap();
    let now = xo_server::now_ms();
    let (expired, _) = server
        .app()
        .store()
        .create_token(uid, now - 10_000, now - 1, None, None)
        .unwrap();
    let mut c3 = Client::connect(&server).await;
    assert_eq!(
        c3.err("session.signIn", json!({"token": expired})).await["code"],
        3
    );
    assert_eq!(
        c3.err("session.signIn", json!({"token": "garbage"})).await["code"],
        3
    );
    server.shutdown().await;
}

#[tokio::test]
async fn token_expiry_closes_the_connection_on_next_frame() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let admin_id = server
        .app()
        .store()
        .user_by_email("admin@admin.net")
        .unwrap()
        .unwrap()
        .id;
    let expiration = xo_server::now_ms() + 300;
    let (secret, _) = server
        .app()
        .store()
        .create_token(&admin_id, 0, expiration, None, None)
        .unwrap();
    let mut c = Client::connect(&server).await;
    c.ok("session.signIn", json!({"token": secret})).await;
    while xo_server::now_ms() <= expiration {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.send_raw(r#"{"id":1,"jsonrpc":"2.0","method":"system.getVersion"}"#)
        .await;
    assert!(c.closed_without_reply().await);
    server.shutdown().await;
}

// ------------------------------------------------------------ introspection

#[tokio::test]
async fn introspection_matches_the_real_server_shape() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(&server).await;
    assert_eq!(c.ok("system.getVersion", json!({})).await, "0.1");
    assert_eq!(c.ok("system.getServerVersion", json!({})).await, "5.207.2");
    assert_eq!(
        c.ok(
            "system.methodSignature",
            json!({"method": "session.signIn"})
        )
        .await,
        json!([{"name": "session.signIn", "description": "sign in", "params": {}, "permission": null}])
    );
    assert_eq!(
        c.err("system.methodSignature", json!({})).await,
        json!({"message": "invalid parameters", "code": 10, "data": {"errors": [{"instancePath": "",
            "schemaPath": "#/required", "keyword": "required", "params": {"missingProperty": "method"},
            "message": "must have required property 'method'"}]}})
    );
    assert_eq!(
        c.err("system.methodSignature", json!({"method": "no.such"}))
            .await["code"],
        1
    );
    let names = c.ok("system.listMethods", json!({})).await;
    let info = c.ok("system.getMethodsInfo", json!({})).await;
    let info = info.as_object().unwrap();
    assert_eq!(names.as_array().unwrap().len(), info.len());
    for name in [
        "session.signIn",
        "user.create",
        "token.create",
        "server.add",
        "group.getAll",
        "api.getConnections",
    ] {
        assert!(info.contains_key(name), "{name}");
    }
    // server.getServerTimezone needs a user
    assert_eq!(
        c.err("system.getServerTimezone", json!({})).await["code"],
        2
    );
    // every implemented method has exactly the real server's description, params and permission
    match methods_reference() {
        Some(reference) => {
            for (name, ours) in info {
                let theirs = reference
                    .get(name)
                    .unwrap_or_else(|| panic!("{name} is not an XO method"));
                assert_eq!(ours, theirs, "{name}");
            }
        }
        None => {
            eprintln!("shared/specs/xo-server-methods.json not found: reference comparison skipped")
        }
    }
    c.ok(
        "session.signIn",
        json!({"email": "admin@admin.net", "password": "admin"}),
    )
    .await;
    assert!(c
        .ok("system.getServerTimezone", json!({}))
        .await
        .is_string());
    server.shutdown().await;
}

#[tokio::test]
async fn api_reference_doc_is_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let app = AppBuilder::new(config(dir.path())).build().unwrap();
    let generated = xo_server::docs::api_reference(app.registry());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api.md");
    if std::env::var_os("XO_UPDATE_DOCS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/api.md is stale: run `XO_UPDATE_DOCS=1 cargo test -p xo-server --test api api_reference`"
    );
}

// --------------------------------------------------------------- validation

#[tokio::test]
async fn param_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;
    // missing
    let e = c.err("server.remove", json!({})).await;
    assert_eq!(e["code"], 10);
    assert_eq!(
        e["data"]["errors"][0]["params"],
        json!({"missingProperty": "id"})
    );
    // extra
    let e = c.err("server.remove", json!({"id": "x", "foo": 1})).await;
    assert_eq!(e["code"], 10);
    assert_eq!(
        e["data"]["errors"],
        json!([{"instancePath": "", "schemaPath": "#/additionalProperties", "keyword": "additionalProperties",
            "params": {"additionalProperty": "foo"}, "message": "must NOT have additional properties"}])
    );
    // wrong type, no coercion
    let e = c
        .err(
            "server.add",
            json!({"host": "h", "username": "u", "password": "p", "allowUnauthorized": "yes"}),
        )
        .await;
    assert_eq!(
        e["data"]["errors"],
        json!([{"instancePath": "/allowUnauthorized", "schemaPath": "#/properties/allowUnauthorized/type",
            "keyword": "type", "params": {"type": "boolean"}, "message": "must be boolean"}])
    );
    // union types
    let e = c.err("token.create", json!({"expiresIn": true})).await;
    assert_eq!(e["data"]["errors"][0]["message"], "must be number,string");
    // empty strings are rejected
    let e = c.err("server.remove", json!({"id": ""})).await;
    assert_eq!(e["data"]["errors"][0]["keyword"], "minLength");
    // positional params become {"0": …} and fail
    let v = c.call("server.remove", json!(["x"])).await;
    assert_eq!(v["error"]["code"], 10);
    // `?`-suffixed unknown keys are dropped, known ones renamed
    let e = c
        .err("server.remove", json!({"id": "nope", "force?": true}))
        .await;
    assert_eq!(
        e,
        json!({"code": 1, "message": "no such xenServer nope", "data": {"id": "nope", "type": "xenServer"}})
    );
    assert_eq!(
        c.err("server.remove", json!({"id?": "nope"})).await["code"],
        1
    );
    let e = c.err("server.remove", json!({"id": "a", "id?": "b"})).await;
    assert_eq!(e["code"], -32000);
    assert_eq!(e["message"], "conflicting keys");
    // `server=` is rewritten to `id=`
    assert_eq!(
        c.err("server.remove", json!({"server": "nope"})).await["code"],
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn protocol_errors_and_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(&server).await;
    assert_eq!(
        c.err("no.suchMethod", json!({})).await,
        json!({"code": -32601, "data": "no.suchMethod", "message": "method not found: no.suchMethod"})
    );
    c.send_raw("not json").await;
    assert_eq!(
        c.recv_text().await.unwrap(),
        r#"{"error":{"code":-32700,"message":"invalid JSON"},"id":null,"jsonrpc":"2.0"}"#
    );
    c.send_raw(r#"[{"jsonrpc":"2.0","id":100,"method":"system.getVersion"}]"#)
        .await;
    let v = c.recv().await.unwrap();
    assert_eq!(v["error"]["code"], -32600);
    assert_eq!(v["id"], Value::Null);
    // a client notification gets no answer; a request without params is fine; string ids are echoed
    c.send_raw(r#"{"jsonrpc":"2.0","method":"system.getVersion","params":{}}"#)
        .await;
    c.send_raw(r#"{"jsonrpc":"2.0","id":"str-id","method":"system.getServerVersion"}"#)
        .await;
    assert_eq!(
        c.recv_text().await.unwrap(),
        r#"{"id":"str-id","jsonrpc":"2.0","result":"5.207.2"}"#
    );
    // ids beyond 64-bit integers are echoed byte for byte
    c.send_raw(r#"{"id":123456789012345678901234567890,"method":"system.getVersion"}"#)
        .await;
    assert_eq!(
        c.recv_text().await.unwrap(),
        r#"{"id":123456789012345678901234567890,"jsonrpc":"2.0","result":"0.1"}"#
    );
    c.send_raw(r#"{"id":1,"method":7}"#).await;
    assert_eq!(c.recv().await.unwrap()["error"]["code"], -32600);
    // still usable
    assert_eq!(c.ok("system.getVersion", json!({})).await, "0.1");
    server.shutdown().await;
}

#[tokio::test]
async fn huge_frame_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_message_bytes = 1 << 20;
    let server = start_with(cfg, |b| b).await;
    let mut other = Client::admin(&server).await;
    let id = other
        .ok("user.create", json!({"email": "kept@x", "password": "p"}))
        .await;
    let mut c = Client::connect(&server).await;
    let big = format!(
        r#"{{"id":1,"method":"system.getVersion","params":{{"x":"{}"}}}}"#,
        "a".repeat(2 << 20)
    );
    let _ = c.ws.send(Message::text(big)).await;
    let mut close_code = None;
    while let Ok(Some(msg)) = tokio::time::timeout(TIMEOUT, c.ws.next()).await {
        match msg {
            Ok(Message::Close(Some(f))) => {
                close_code = Some(u16::from(f.code));
                break;
            }
            Ok(Message::Text(t)) => panic!("unexpected reply {t}"),
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    eprintln!("huge frame: close code {close_code:?}");
    assert!(close_code.is_none_or(|c| c == 1009), "{close_code:?}");
    // the other client and the store are unaffected
    let users = other.ok("user.getAll", json!({})).await;
    assert!(users.as_array().unwrap().iter().any(|u| u["id"] == id));
    let mut fresh = Client::connect(&server).await;
    assert_eq!(fresh.ok("system.getVersion", json!({})).await, "0.1");
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_calls_echo_negative_ids() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(&server).await;
    let first = -9007199254740991i64;
    for i in 0..50 {
        let method = if i % 2 == 0 {
            "system.getVersion"
        } else {
            "session.signIn"
        };
        let params = if i % 2 == 0 {
            json!({})
        } else {
            json!({"email": "admin@admin.net", "password": "admin"})
        };
        c.send_raw(
            json!({"id": first + i, "jsonrpc": "2.0", "method": method, "params": params})
                .to_string(),
        )
        .await;
    }
    let mut seen = Vec::new();
    for _ in 0..50 {
        let text = c.recv_text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let id = v["id"].as_i64().unwrap();
        assert!(text.starts_with(&format!(r#"{{"id":{id},"#)), "{text}");
        seen.push(id);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..50).map(|i| first + i).collect::<Vec<_>>());
    server.shutdown().await;
}

// --------------------------------------------------------------------- CRUD

#[tokio::test]
async fn user_crud_and_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut admin = Client::admin(&server).await;
    let id = admin
        .ok(
            "user.create",
            json!({"email": "bob@x", "password": "pw", "permission": "read"}),
        )
        .await;
    let id = id.as_str().unwrap().to_owned();
    assert_eq!(
        admin
            .err("user.create", json!({"email": "bob@x", "password": "pw"}))
            .await["code"],
        16
    );
    assert_eq!(
        admin
            .err(
                "user.create",
                json!({"email": "c@x", "password": "pw", "permission": "god"})
            )
            .await["code"],
        10
    );

    let mut bob = Client::connect(&server).await;
    let u = bob
        .ok(
            "session.signIn",
            json!({"email": "bob@x", "password": "pw"}),
        )
        .await;
    assert_eq!(u["permission"], "read");
    assert_eq!(bob.err("user.getAll", json!({})).await["code"], 2);
    assert_eq!(
        bob.err("user.set", json!({"id": id, "permission": "admin"}))
            .await["code"],
        10
    );
    // non-admin internal errors are masked, admins see the message
    assert_eq!(
        bob.err("token.create", json!({"expiresIn": "soon"})).await,
        json!({"code": -32000, "message": "unknown error from the peer"})
    );
    assert_eq!(
        admin.err("token.create", json!({"expiresIn": "10s"})).await["message"],
        "invalid expiresIn duration"
    );
    assert_eq!(
        admin.err("token.create", json!({"expiresIn": "10y"})).await["message"],
        "too high expiresIn duration"
    );
    // `_log` is for admins only
    assert_eq!(
        bob.err("system.getVersion", json!({"_log": true})).await["code"],
        2
    );
    assert_eq!(
        admin.ok("system.getVersion", json!({"_log": true})).await,
        "0.1"
    );
    bob.ok(
        "user.set",
        json!({"id": id, "preferences": {"lang": "fr", "x": 1}}),
    )
    .await;
    bob.ok("user.set", json!({"id": id, "preferences": {"x": null}}))
        .await;
    assert_eq!(
        bob.ok("session.getUser", json!({})).await["preferences"],
        json!({"lang": "fr"})
    );
    assert_eq!(
        bob.err(
            "user.changePassword",
            json!({"oldPassword": "bad", "newPassword": "n"})
        )
        .await["code"],
        3
    );
    bob.ok(
        "user.changePassword",
        json!({"oldPassword": "pw", "newPassword": "pw2"}),
    )
    .await;

    admin
        .ok(
            "user.set",
            json!({"id": id, "email": "robert@x", "permission": "write"}),
        )
        .await;
    let admin_id = admin.ok("session.getUser", json!({})).await["id"].clone();
    assert_eq!(
        admin
            .err("user.set", json!({"id": admin_id, "permission": "none"}))
            .await["code"],
        10
    );
    assert_eq!(
        admin.err("user.delete", json!({"id": admin_id})).await["code"],
        10
    );
    let mut bob2 = Client::connect(&server).await;
    assert_eq!(
        bob2.ok(
            "session.signIn",
            json!({"email": "robert@x", "password": "pw2"})
        )
        .await["permission"],
        "write"
    );

    admin.ok("user.delete", json!({"id": id})).await;
    assert_eq!(admin.err("user.delete", json!({"id": id})).await["code"], 1);
    // the deleted user's connections are closed
    assert!(bob.closed_without_reply().await);
    let users = admin.ok("user.getAll", json!({})).await;
    assert_eq!(users.as_array().unwrap().len(), 1);

    // groups
    let uid = admin
        .ok("user.create", json!({"email": "g@x", "password": "p"}))
        .await;
    let gid = admin.ok("group.create", json!({"name": "ops"})).await;
    assert_eq!(
        admin.err("group.create", json!({"name": "ops"})).await["code"],
        16
    );
    admin
        .ok("group.addUser", json!({"id": gid, "userId": uid}))
        .await;
    let groups = admin.ok("group.getAll", json!({})).await;
    assert_eq!(
        groups,
        json!([{"id": gid, "name": "ops", "users": [uid], "aclRoleIds": []}])
    );
    assert_eq!(
        admin
            .err("group.addUser", json!({"id": gid, "userId": "nobody"}))
            .await["code"],
        1
    );
    admin
        .ok("group.removeUser", json!({"id": gid, "userId": uid}))
        .await;
    admin.ok("group.delete", json!({"id": gid})).await;
    assert_eq!(admin.ok("group.getAll", json!({})).await, json!([]));
    server.shutdown().await;
}

#[tokio::test]
async fn token_crud() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut admin = Client::admin(&server).await;
    let t1 = admin
        .ok(
            "token.create",
            json!({"expiresIn": 3_600_000, "client": {"id": "cli-1"}}),
        )
        .await;
    let t2 = admin
        .ok(
            "token.create",
            json!({"expiresIn": "30d", "client": {"id": "cli-1"}}),
        )
        .await;
    assert_ne!(t1, t2);
    // one token per client: the older one was replaced
    let tokens = admin.ok("user.getAuthenticationTokens", json!({})).await;
    assert_eq!(tokens.as_array().unwrap().len(), 1);
    let mut c = Client::connect(&server).await;
    assert_eq!(
        c.err("session.signIn", json!({"token": t1})).await["code"],
        3
    );
    let t3 = admin.ok("token.create", json!({"description": "x"})).await;
    admin
        .ok("token.set", json!({"id": t3, "description": "renamed"}))
        .await;
    let tokens = admin.ok("user.getAuthenticationTokens", json!({})).await;
    assert!(tokens
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["description"] == "renamed"));
    admin
        .ok("token.set", json!({"id": t3, "description": null}))
        .await;
    assert_eq!(
        admin.err("token.set", json!({"id": "nope"})).await["code"],
        1
    );
    admin.ok("token.deleteOwn", json!({"tokens": [t3]})).await;
    admin
        .ok(
            "token.delete",
            json!({"pattern": {"client": {"id": "cli-1"}}}),
        )
        .await;
    assert_eq!(
        admin.ok("user.getAuthenticationTokens", json!({})).await,
        json!([])
    );
    let mut c = Client::connect(&server).await;
    assert_eq!(
        c.err("session.signIn", json!({"token": t2})).await["code"],
        3
    );
    server.shutdown().await;
}

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
}

struct RecordingConnector(Arc<Recorder>);

impl PoolConnector for RecordingConnector {
    fn connect(
        &self,
        _app: xo_server::App,
        server: xo_store::Server,
    ) -> futures::future::BoxFuture<'static, Result<(), ConnectError>> {
        self.0.calls.lock().push(format!("connect {}", server.host));
        let fail = server.host == "unreachable";
        Box::pin(async move {
            if fail {
                Err(ConnectError::new(
                    "connect ECONNREFUSED",
                    Some("ECONNREFUSED"),
                ))
            } else {
                Ok(())
            }
        })
    }

    fn disconnect(
        &self,
        _app: xo_server::App,
        id: String,
    ) -> futures::future::BoxFuture<'static, ()> {
        self.0.calls.lock().push(format!("disconnect {id}"));
        Box::pin(async {})
    }
}

#[tokio::test]
async fn server_crud_calls_the_pool_connector() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let conn = Arc::new(RecordingConnector(rec.clone()));
    let server = start_with(config(dir.path()), |b| b.pool_connector(conn)).await;
    let mut admin = Client::admin(&server).await;
    let id = admin
        .ok("server.add", json!({"host": "10.0.0.1", "username": "root", "password": "s3cret", "autoConnect": false}))
        .await;
    assert!(rec.calls.lock().is_empty());
    let dup = admin
        .err(
            "server.add",
            json!({"host": "10.0.0.1", "username": "root", "password": "x"}),
        )
        .await;
    assert_eq!(dup["code"], 16);
    let all = admin.ok("server.getAll", json!({})).await;
    assert_eq!(
        all,
        json!([{"id": id, "host": "10.0.0.1", "username": "root", "allowUnauthorized": false, "enabled": false,
            "readOnly": false, "status": "disconnected"}])
    );
    admin
        .ok(
            "server.set",
            json!({"id": id, "label": "lab", "readOnly": true, "allowUnauthorized": true}),
        )
        .await;
    admin.ok("server.enable", json!({"id": id})).await;
    assert_eq!(rec.calls.lock().as_slice(), ["connect 10.0.0.1"]);
    admin.ok("server.disable", json!({"id": id})).await;
    let s = &admin.ok("server.getAll", json!({})).await[0];
    assert_eq!(
        (
            s["label"].clone(),
            s["readOnly"].clone(),
            s["enabled"].clone()
        ),
        (json!("lab"), json!(true), json!(false))
    );
    admin
        .ok("server.set", json!({"id": id, "label": null}))
        .await;
    assert!(admin.ok("server.getAll", json!({})).await[0]
        .get("label")
        .is_none());

    let bad = admin
        .ok(
            "server.add",
            json!({"host": "unreachable", "username": "u", "password": "p", "autoConnect": false}),
        )
        .await;
    let e = admin.err("server.enable", json!({"id": bad})).await;
    assert_eq!(
        e,
        json!({"code": 9, "message": "server unreachable", "data": {"objectId": bad}})
    );
    let all = admin.ok("server.getAll", json!({})).await;
    let s = all
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == bad)
        .unwrap()
        .clone();
    assert_eq!(s["error"]["code"], "ECONNREFUSED");

    admin.ok("server.remove", json!({"id": id})).await;
    assert_eq!(
        admin.err("server.remove", json!({"id": id})).await["code"],
        1
    );
    assert!(rec
        .calls
        .lock()
        .contains(&format!("disconnect {}", id.as_str().unwrap())));
    let mut anon = Client::connect(&server).await;
    assert_eq!(anon.err("server.getAll", json!({})).await["code"], 2);
    server.shutdown().await;
}

#[tokio::test]
async fn everything_persists_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (token, sid) = {
        let server = start(dir.path()).await;
        let mut admin = Client::admin(&server).await;
        admin
            .ok("user.create", json!({"email": "p@x", "password": "pw"}))
            .await;
        let token = admin.ok("token.create", json!({})).await;
        let sid = admin
            .ok(
                "server.add",
                json!({"host": "h", "username": "u", "password": "p", "autoConnect": false}),
            )
            .await;
        admin.ok("group.create", json!({"name": "g"})).await;
        server.shutdown().await;
        (token, sid)
    };
    let server = start(dir.path()).await;
    let mut c = Client::connect(&server).await;
    c.ok("session.signIn", json!({"email": "p@x", "password": "pw"}))
        .await;
    let mut admin = Client::connect(&server).await;
    admin.ok("session.signIn", json!({"token": token})).await;
    assert_eq!(admin.ok("server.getAll", json!({})).await[0]["id"], sid);
    assert_eq!(admin.ok("group.getAll", json!({})).await[0]["name"], "g");
    // the default admin is not re-created
    assert_eq!(
        admin
            .ok("user.getAll", json!({}))
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    server.shutdown().await;
}

// ------------------------------------------------------------- notifications

#[tokio::test]
async fn all_notifications_reach_signed_in_clients_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut a = Client::admin(&server).await;
    let mut b = Client::admin(&server).await;
    let mut anon = Client::connect(&server).await;
    anon.ok("system.getVersion", json!({})).await;

    let mut enter = Map::new();
    enter.insert(
        "vm1".into(),
        json!({"id": "vm1", "type": "VM", "name_label": "a"}),
    );
    enter.insert("vm2".into(), json!({"id": "vm2", "type": "VM"}));
    let stats = server.app().publish(enter, vec!["gone".into()]);
    assert_eq!((stats.frames, stats.delivered, stats.cut_off), (2, 2, 0));
    for c in [&mut a, &mut b] {
        let enter = c.recv().await.unwrap();
        assert_eq!(
            enter,
            json!({"jsonrpc": "2.0", "method": "all", "params": {"type": "enter", "items": {
                "vm1": {"id": "vm1", "type": "VM", "name_label": "a"}, "vm2": {"id": "vm2", "type": "VM"}}}})
        );
        let exit = c.recv().await.unwrap();
        assert_eq!(
            exit,
            json!({"jsonrpc": "2.0", "method": "all", "params": {"type": "exit", "items": {"gone": 0}}})
        );
    }
    // frames are queued in order: the anonymous client's next frame is its response, not a notification
    anon.ok("system.getVersion", json!({})).await;
    assert!(anon.notifications.is_empty());
    assert_eq!(server.app().publish(Map::new(), vec![]).frames, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn filtered_publish_hides_invisible_objects() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let bob_id = server
        .app()
        .store()
        .create_user("bob@x", Some("pw"), xo_store::Permission::None)
        .unwrap()
        .id;
    let mut admin = Client::admin(&server).await;
    let mut bob = Client::connect(&server).await;
    bob.ok(
        "session.signIn",
        json!({"email": "bob@x", "password": "pw"}),
    )
    .await;
    let mut enter = Map::new();
    enter.insert("public".into(), json!({"id": "public"}));
    enter.insert("secret".into(), json!({"id": "secret"}));
    let visible = |user: &str, id: &str| user != bob_id || id != "secret";
    let stats = server
        .app()
        .publish_filtered(enter, vec!["secret".into()], &visible);
    assert_eq!((stats.delivered, stats.frames), (2, 3));
    assert_eq!(
        admin.recv().await.unwrap()["params"]["items"],
        json!({"public": {"id": "public"}, "secret": {"id": "secret"}})
    );
    assert_eq!(
        admin.recv().await.unwrap()["params"],
        json!({"type": "exit", "items": {"secret": 0}})
    );
    assert_eq!(
        bob.recv().await.unwrap()["params"],
        json!({"type": "enter", "items": {"public": {"id": "public"}}})
    );
    bob.ok("system.getVersion", json!({})).await;
    assert!(bob.notifications.is_empty(), "{:?}", bob.notifications);
    server.shutdown().await;
}

struct Greeting(String);

#[tokio::test]
async fn methods_extensions_and_hooks_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), |b| {
        b.extension(Arc::new(Greeting("hello".into())))
            .on_start(|app| {
                Box::pin(async move {
                    app.store()
                        .set_setting("started", &json!(true))
                        .map_err(|e| e.to_string())
                })
            })
    })
    .await;
    let app = server.app();
    assert_eq!(app.store().setting("started").unwrap(), Some(json!(true)));
    let hello = || {
        Method::new(
            "plugin.hello",
            |ctx: Ctx, p: Map<String, Value>| async move {
                let g = ctx
                    .app
                    .extension::<Greeting>()
                    .ok_or_else(|| ApiError::internal("no greeting"))?;
                Ok(json!(format!(
                    "{} {}",
                    g.0,
                    p["name"].as_str().unwrap_or_default()
                )))
            },
        )
        .description("says hello")
        .params(json!({"name": {"type": "string"}}))
        .access(Access::Anonymous)
    };
    app.registry().register(hello()).unwrap();
    assert!(app.registry().register(hello()).is_err());
    app.registry()
        .register(Method::new("plugin.void", |_, _| async { Ok(Value::Null) }))
        .unwrap();
    assert!(app
        .registry()
        .register(Method::new("nonamespace", |_, _| async { Ok(Value::Null) }))
        .is_err());

    let mut c = Client::connect(&server).await;
    assert_eq!(
        c.ok("plugin.hello", json!({"name": "you"})).await,
        "hello you"
    );
    assert_eq!(c.err("plugin.hello", json!({})).await["code"], 10);
    assert_eq!(c.err("plugin.void", json!({})).await["code"], 2);
    let info = c.ok("system.getMethodsInfo", json!({})).await;
    assert_eq!(
        info["plugin.hello"],
        json!({"description": "says hello", "params": {"name": {"type": "string"}}, "permission": null})
    );
    assert_eq!(info["plugin.void"], json!({"params": {}}));

    let mut admin = Client::admin(&server).await;
    assert_eq!(admin.ok("plugin.void", json!({})).await, json!(true));
    let conns = admin.ok("api.getConnections", json!({})).await;
    let conns = conns.as_array().unwrap();
    assert_eq!(conns.len(), 2);
    assert!(conns.iter().all(|c| c["user_ip"] == "127.0.0.1"));
    assert_eq!(
        conns.iter().filter(|c| c.get("user_id").is_some()).count(),
        1
    );

    assert!(app.registry().unregister("plugin.hello"));
    assert_eq!(
        c.err("plugin.hello", json!({"name": "you"})).await["code"],
        -32601
    );
    admin.ok("api.closeAllConnections", json!({})).await;
    assert!(c.closed_without_reply().await);
    assert_eq!(admin.ok("system.getVersion", json!({})).await, "0.1");
    server.shutdown().await;
}

#[tokio::test]
async fn slow_subscriber_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.send_queue = 2;
    let server = start_with(cfg, |b| b).await;
    let mut slow = Client::admin(&server).await;
    assert_eq!(server.app().connections().len(), 1);
    let big = "x".repeat(1 << 20);
    let mut cut = 0;
    // 64 MiB never read by `slow`: more than socket buffers hold, so its 2-frame queue fills up
    for i in 0..64 {
        let mut enter = Map::new();
        enter.insert(format!("o{i}"), json!({"id": format!("o{i}"), "blob": big}));
        cut += server.app().publish(enter, vec![]).cut_off;
        if cut > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(cut >= 1);
    // the slow client eventually sees the end of its stream (after what was already buffered)
    while let Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) =
        tokio::time::timeout(TIMEOUT, slow.ws.next())
            .await
            .expect("slow client never closed")
    {}
    // it is removed from the connections; others are still served
    for _ in 0..2000 {
        if server.app().connections().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(server.app().connections().is_empty());
    let mut other = Client::admin(&server).await;
    assert_eq!(other.ok("system.getVersion", json!({})).await, "0.1");
    server.shutdown().await;
}

// ---------------------------------------------------------------------- TLS

#[derive(Debug)]
struct AcceptAnyCertificate;

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Signs in over `wss://` and returns the admin's email; `roots: None` accepts any certificate.
async fn wss_sign_in(
    server: &RunningServer,
    roots: Option<rustls::RootCertStore>,
) -> Result<String, String> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?;
    let config = match roots {
        Some(r) => builder.with_root_certificates(r).with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate))
            .with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server.local_addr())
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let url = format!("wss://localhost:{}/api/", server.local_addr().port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .map_err(|e| e.to_string())?;
    let req = json!({"id": 1, "jsonrpc": "2.0", "method": "session.signIn",
        "params": {"email": "admin@admin.net", "password": "admin"}});
    ws.send(Message::text(req.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(TIMEOUT, ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => {
            let v: Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
            Ok(v["result"]["email"].as_str().unwrap_or_default().to_owned())
        }
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test]
async fn wss_with_provided_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let mut cfg = config(&dir.path().join("db"));
    cfg.cert = Some(cert);
    cfg.key = Some(key);
    let server = start_with(cfg, |b| b).await;
    assert!(server.url().starts_with("https://"));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    assert_eq!(
        wss_sign_in(&server, Some(roots)).await.unwrap(),
        "admin@admin.net"
    );
    // a client that does not trust this certificate is refused
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let mut wrong = rustls::RootCertStore::empty();
    wrong.add(other.cert.der().clone()).unwrap();
    assert!(wss_sign_in(&server, Some(wrong)).await.is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn bad_certificate_files_fail_start() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let mut cfg = config(&dir.path().join("db"));
    cfg.cert = Some(cert);
    cfg.key = Some(key);
    let app = AppBuilder::new(cfg).build().unwrap();
    let err = xo_server::serve(app).await.unwrap_err();
    assert!(err.to_string().contains("key.pem"), "{err}");
}

#[tokio::test]
async fn https_with_generated_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.https = true;
    let server = start_with(cfg, |b| b).await;
    assert!(server.url().starts_with("https://127.0.0.1:"));
    assert_eq!(wss_sign_in(&server, None).await.unwrap(), "admin@admin.net");
    // plain HTTP on a TLS port gets no HTTP answer
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut buf)).await;
    assert!(!buf.starts_with(b"HTTP/1.1 200"));
    server.shutdown().await;
}

#[tokio::test]
async fn default_argon2_cost_sign_in() {
    // production hashing parameters work end to end (the other tests use cheap ones)
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.argon2 = Config::default().argon2;
    let server = start_with(cfg, |b| b).await;
    let started = std::time::Instant::now();
    let mut c = Client::admin(&server).await;
    eprintln!(
        "sign-in with default argon2 parameters: {:?}",
        started.elapsed()
    );
    assert_eq!(
        c.ok("session.getUser", json!({})).await["email"],
        "admin@admin.net"
    );
    let hash = server
        .app()
        .store()
        .user_by_email("admin@admin.net")
        .unwrap()
        .unwrap()
        .pw_hash
        .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    server.shutdown().await;
}

/// Runs the `xo-server` binary and returns it with the URL it printed on stdout.
async fn spawn_binary(dir: &Path, config_file: &Path) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_xo-server"))
        .args([
            "--config",
            config_file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(TIMEOUT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = line
        .strip_prefix("xo-server listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    (child, url)
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("xo.toml");
    std::fs::write(&config_file, "[argon2]\nm_cost = 1024\nt_cost = 1\n").unwrap();
    let data = dir.path().join("data");
    let (mut child, url) = spawn_binary(&data, &config_file).await;
    assert!(url.starts_with("http://127.0.0.1:"));
    let api = format!("{}/api/", url.replacen("http", "ws", 1));
    let (ws, _) = tokio_tungstenite::connect_async(&api).await.unwrap();
    let mut c = Client {
        ws,
        next_id: 1,
        notifications: vec![],
    };
    c.ok(
        "session.signIn",
        json!({"email": "admin@admin.net", "password": "admin"}),
    )
    .await;
    c.ok(
        "user.create",
        json!({"email": "durable@x", "password": "pw"}),
    )
    .await;
    let token = c.ok("token.create", json!({})).await;
    child.kill().await.unwrap(); // SIGKILL: no shutdown code runs
    let (_child, url) = spawn_binary(&data, &config_file).await;
    let api = format!("{}/api/", url.replacen("http", "ws", 1));
    let (ws, _) = tokio_tungstenite::connect_async(&api).await.unwrap();
    let mut c = Client {
        ws,
        next_id: 1,
        notifications: vec![],
    };
    c.ok(
        "session.signIn",
        json!({"email": "durable@x", "password": "pw"}),
    )
    .await;
    c.ok("session.signIn", json!({"token": token})).await;
}
