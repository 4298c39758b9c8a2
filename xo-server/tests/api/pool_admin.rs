//! Pool administration end to end: `server.set` on connected and disconnected servers (XO's rules),
//! `host.detach` (`pool.eject`) seen by the cache, XAPI through an HTTP proxy (`httpProxy`), and the
//! `all` forwarder's recovery after it lagged behind the cache.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::pools::{add_params, sim};
use super::{start, Client};

#[tokio::test]
async fn pool_admin_server_set_follows_xo_rules() {
    let pool = sim(1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::admin(&server).await;
    let id = c.ok("server.add", add_params(&pool)).await;
    let id = id.as_str().unwrap().to_owned();
    c.ok("server.enable", json!({"id": id})).await;

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
    c.ok("server.set", json!({"id": id, "label": "lab", "readOnly": true}))
        .await;
    let s = c.server_entry(&id).await;
    assert_eq!((&s["label"], &s["readOnly"], &s["status"]), (&json!("lab"), &json!(true), &json!("connected")));
    let host = c
        .ok("xo.getAllObjects", json!({"filter": {"type": "host"}}))
        .await;
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
