//! Scripted-exchange tests: wire details of the client against a tiny scripted server on loopback.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{self, fail, ok, serve, serve_on, serve_tls, JsonMode, Reply, Seen};
use futures::StreamExt;
use serde_json::{json, Value};
use xapi_client::{Client, ClientOptions, Error, Op, Protocol, Ref, WatchEvent, WatchOptions};

fn opts(url: String) -> ClientOptions {
    ClientOptions::new(url, "root", "s3cret-pw")
}

/// A handler that logs in as `OpaqueRef:session-<n>` and delegates everything else.
fn with_login(
    rest: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> impl Fn(&Seen) -> Reply + Send + Sync {
    let logins = AtomicUsize::new(0);
    move |s: &Seen| match s.method.as_str() {
        "session.login_with_password" => {
            let n = logins.fetch_add(1, Ordering::SeqCst) + 1;
            ok(json!(format!("OpaqueRef:session-{n}")))
        }
        "session.logout" => ok(json!("")),
        _ => rest(s),
    }
}

/// A JSON-RPC server logging in as [`with_login`] does, and a client connected to it.
async fn logged_in(
    rest: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> (support::Server, Client) {
    let srv = serve(JsonMode::Served, with_login(rest)).await;
    let c = Client::connect(opts(srv.url("http"))).await.unwrap();
    (srv, c)
}

/// A scripted answer with this exact body.
fn raw(status: u16, content_type: &'static str, body: &str) -> Reply {
    Reply::Raw {
        status,
        content_type,
        body: body.to_owned(),
    }
}

/// A scripted `200 application/json` answer with this exact body.
fn raw_json(body: &str) -> Reply {
    raw(200, "application/json", body)
}

#[tokio::test]
async fn json_rpc_v2_success_inserts_session() {
    let (srv, c) = logged_in(|_| ok(json!(["OpaqueRef:vm1", "OpaqueRef:vm2"]))).await;
    let v = c.call("VM.get_all", vec![]).await.unwrap();
    assert_eq!(v, json!(["OpaqueRef:vm1", "OpaqueRef:vm2"]));
    assert_eq!(c.protocol(), Some(Protocol::JsonRpc));
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs
        .iter()
        .all(|r| r.protocol == "json" && r.path == "/jsonrpc"));
    assert!(
        reqs[0].body.contains("\"jsonrpc\":\"2.0\""),
        "v2 request: {}",
        reqs[0].body
    );
    assert_eq!(
        reqs[0].params,
        json!(["root", "s3cret-pw", "1.1", "xo-rs"])
            .as_array()
            .unwrap()
            .clone()
    );
    assert_eq!(reqs[1].method, "VM.get_all");
    assert_eq!(reqs[1].params, vec![json!("OpaqueRef:session-1")]);
}

#[tokio::test]
async fn json_rpc_failure_is_typed_xapi_error() {
    let (_srv, c) = logged_in(|_| fail("HANDLE_INVALID", &["VM", "OpaqueRef:nope"])).await;
    match c.call("VM.get_record", vec![json!("OpaqueRef:nope")]).await {
        Err(Error::Xapi(e)) => {
            assert_eq!(e.code, "HANDLE_INVALID");
            assert_eq!(e.params, vec!["VM", "OpaqueRef:nope"]);
        }
        other => panic!("expected XAPI error, got {other:?}"),
    }
}

#[tokio::test]
async fn login_failure_is_returned() {
    let srv = serve(JsonMode::Served, |_| {
        fail(
            "SESSION_AUTHENTICATION_FAILED",
            &["root", "Authentication failure"],
        )
    })
    .await;
    let err = Client::connect(opts(srv.url("http"))).await.unwrap_err();
    assert_eq!(err.xapi_code(), Some("SESSION_AUTHENTICATION_FAILED"));
}

async fn check_xml_fallback(mode: JsonMode) {
    let srv = serve(
        mode,
        with_login(|s| match s.method.as_str() {
            "VM.get_all" => ok(json!(["OpaqueRef:vm1"])),
            _ => fail("MESSAGE_METHOD_UNKNOWN", &[&s.method]),
        }),
    )
    .await;
    let c = Client::connect(opts(srv.url("http"))).await.unwrap();
    assert_eq!(c.protocol(), Some(Protocol::XmlRpc));
    assert_eq!(
        c.call("VM.get_all", vec![]).await.unwrap(),
        json!(["OpaqueRef:vm1"])
    );
    let err = c.call("VM.frobnicate", vec![]).await.unwrap_err();
    assert_eq!(err.xapi_code(), Some("MESSAGE_METHOD_UNKNOWN"));
    let reqs = srv.requests();
    // Only the XML-RPC requests are decoded by the server; /jsonrpc was tried once, then never again.
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.protocol == "xml" && r.path == "/"));
    assert!(reqs[0]
        .body
        .contains("<methodName>session.login_with_password</methodName>"));
    assert!(reqs[1].body.contains("OpaqueRef:session-1"));
}

#[tokio::test]
async fn falls_back_to_xml_rpc_when_jsonrpc_is_html() {
    check_xml_fallback(JsonMode::Html).await;
}

#[tokio::test]
async fn falls_back_to_xml_rpc_when_jsonrpc_is_404() {
    check_xml_fallback(JsonMode::NotFound).await;
}

#[tokio::test]
async fn forced_xml_rpc_encodes_params_and_decodes_structs() {
    let srv = serve(
        JsonMode::Served,
        with_login(|s| match s.method.as_str() {
            "VM.get_record" => {
                ok(json!({"uuid": "u1", "name_label": "vm one", "is_a_template": false}))
            }
            "VM.get_all_records" => {
                ok(json!({"OpaqueRef:vm1": {"uuid": "u1", "name_label": "vm one", "VCPUs_max": 2}}))
            }
            _ => fail("MESSAGE_METHOD_UNKNOWN", &[&s.method]),
        }),
    )
    .await;
    let c = Client::with_protocol(opts(srv.url("http")), Some(Protocol::XmlRpc)).unwrap();
    // Raw records over XML-RPC: canonicalised by the schema (VCPUs_max is an int, sent as a string).
    let raw = c.get_all_records_raw("VM").await.unwrap();
    assert_eq!(raw[0].1.get("VCPUs_max"), Some(json!(2)));
    assert_eq!(raw[0].1.get_str("name_label").as_deref(), Some("vm one"));
    let rec = c
        .get_record("VM", &Ref::from("OpaqueRef:vm1"))
        .await
        .unwrap();
    assert_eq!(rec["name_label"], "vm one");
    assert_eq!(rec["is_a_template"], false);
    assert!(srv.requests().iter().all(|r| r.protocol == "xml"));
}

#[tokio::test]
async fn host_is_slave_redirects_to_master_keeping_port() {
    // The slave listens on 127.0.0.1:P; the master must listen on 127.0.0.2:P (same port, another address).
    let (slave, master) = loop {
        let slave = serve(JsonMode::Served, |s| match s.method.as_str() {
            "session.login_with_password" => fail("HOST_IS_SLAVE", &["127.0.0.2"]),
            _ => fail("HOST_IS_SLAVE", &["127.0.0.2"]),
        })
        .await;
        let addr = format!("127.0.0.2:{}", slave.addr.port()).parse().unwrap();
        let handler: support::Handler = Arc::new(with_login(|_| ok(json!("master answer"))));
        if let Ok(m) = serve_on(addr, JsonMode::Served, None, handler).await {
            break (slave, m);
        }
    };
    let c = Client::connect(opts(slave.url("http"))).await.unwrap();
    assert_eq!(c.url(), format!("http://127.0.0.2:{}", slave.addr.port()));
    assert_eq!(
        c.call("pool.get_all", vec![]).await.unwrap(),
        json!("master answer")
    );
    assert_eq!(slave.methods(), vec!["session.login_with_password"]);
    assert_eq!(
        master.methods(),
        vec!["session.login_with_password", "pool.get_all"]
    );
}

#[tokio::test]
async fn session_invalid_relogs_in_once_and_retries() {
    let (srv, c) = logged_in(|s| {
        if s.params.first() == Some(&json!("OpaqueRef:session-1")) {
            fail("SESSION_INVALID", &["OpaqueRef:session-1"])
        } else {
            ok(json!("fine"))
        }
    })
    .await;
    assert_eq!(c.call("host.get_all", vec![]).await.unwrap(), json!("fine"));
    assert_eq!(
        srv.methods(),
        vec![
            "session.login_with_password",
            "host.get_all",
            "session.login_with_password",
            "host.get_all"
        ]
    );
}

#[tokio::test]
async fn persistent_session_invalid_gives_up_with_redacted_error() {
    let (srv, c) = logged_in(|s| {
        let sid = s
            .params
            .first()
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        Reply::Rpc(Err(xapi_types::XapiError::new("SESSION_INVALID", [sid])))
    })
    .await;
    let err = c.call("host.get_all", vec![]).await.unwrap_err();
    assert_eq!(err.xapi_code(), Some("SESSION_INVALID"));
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains("OpaqueRef:session"),
        "session id leaked: {shown}"
    );
    // One login, one call, one re-login, one retry: no loop.
    assert_eq!(srv.methods().len(), 4);
}

#[tokio::test]
async fn call_timeout_gives_timeout_error() {
    let srv = serve(
        JsonMode::Served,
        with_login(|_| Reply::Delay(Duration::from_secs(5), Box::new(ok(json!("late"))))),
    )
    .await;
    let c = Client::connect(opts(srv.url("http")).call_timeout(Duration::from_millis(200)))
        .await
        .unwrap();
    assert!(matches!(
        c.call("VM.get_all", vec![]).await,
        Err(Error::Timeout(_))
    ));
    let err = c
        .call_with_timeout("VM.get_all", vec![], Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(d) if d == Duration::from_millis(50)));
}

#[tokio::test]
async fn connection_refused_is_transport_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Client::connect(opts(format!("http://127.0.0.1:{port}")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert!(err.is_connection_error());
}

#[tokio::test]
async fn malformed_json_body_is_codec_error() {
    let (_srv, c) = logged_in(|_| raw_json("{\"result\": [1, 2")).await;
    assert!(matches!(
        c.call("VM.get_all", vec![]).await,
        Err(Error::Codec(_))
    ));
}

#[tokio::test]
async fn malformed_xml_body_is_codec_error() {
    let srv = serve(
        JsonMode::NotFound,
        with_login(|_| {
            raw(
                200,
                "text/xml",
                "<?xml version=\"1.0\"?><methodResponse><params><param><value><struct>",
            )
        }),
    )
    .await;
    let c = Client::connect(opts(srv.url("http"))).await.unwrap();
    assert!(matches!(
        c.call("VM.get_all", vec![]).await,
        Err(Error::Codec(_))
    ));
}

#[tokio::test]
async fn http_500_is_http_error() {
    let srv = serve(
        JsonMode::NotFound,
        with_login(|_| raw(500, "text/html", "<html>boom</html>")),
    )
    .await;
    let c = Client::connect(opts(srv.url("http"))).await.unwrap();
    assert!(matches!(
        c.call("VM.get_all", vec![]).await,
        Err(Error::Http { status: 500, .. })
    ));
}

#[tokio::test]
async fn tls_self_signed_accepted_with_allow_unauthorized() {
    let srv = serve_tls(JsonMode::Served, with_login(|_| ok(json!("over tls")))).await;
    let c = Client::connect(opts(srv.url("https")).allow_unauthorized(true))
        .await
        .unwrap();
    assert_eq!(
        c.call("pool.get_all", vec![]).await.unwrap(),
        json!("over tls")
    );
}

#[tokio::test]
async fn tls_self_signed_rejected_by_default() {
    let srv = serve_tls(JsonMode::Served, with_login(|_| ok(json!("over tls")))).await;
    let err = Client::connect(opts(srv.url("https"))).await.unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(srv.requests().is_empty());
}

#[tokio::test]
async fn logout_sends_session_and_forgets_it() {
    let srv = serve(JsonMode::Served, with_login(|_| ok(json!("")))).await;
    let c = Client::connect(opts(srv.url("http"))).await.unwrap();
    assert!(c.is_logged_in());
    c.logout().await.unwrap();
    assert!(!c.is_logged_in());
    assert_eq!(
        srv.methods(),
        vec!["session.login_with_password", "session.logout"]
    );
    assert_eq!(srv.requests()[1].params, vec![json!("OpaqueRef:session-1")]);
    // A later call logs in again.
    c.call("VM.get_all", vec![]).await.unwrap();
    assert_eq!(srv.methods()[2], "session.login_with_password");
}

#[tokio::test]
async fn debug_output_has_no_secrets() {
    let srv = serve(JsonMode::Served, with_login(|_| ok(json!("")))).await;
    let o = opts(srv.url("http"));
    let c = Client::connect(o.clone()).await.unwrap();
    let shown = format!("{o:?} {c:?} {:?}", c.session_id());
    assert!(!shown.contains("s3cret-pw"), "{shown}");
    assert!(!shown.contains("OpaqueRef:session"), "{shown}");
    assert_eq!(c.session_id().unwrap().expose(), "OpaqueRef:session-1");
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let srv = serve(
        JsonMode::Served,
        with_login(|_| Reply::Delay(Duration::from_millis(30), Box::new(ok(json!(1))))),
    )
    .await;
    let c = Client::connect(opts(srv.url("http")).max_concurrency(2))
        .await
        .unwrap();
    let calls = (0..8).map(|_| c.call("VM.get_all", vec![]));
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap(), json!(1));
    }
    let max = srv.in_flight_max.load(Ordering::SeqCst);
    assert!((1..=2).contains(&max), "max in flight {max}");
}

fn task_handler(final_status: &'static str) -> impl Fn(&Seen) -> Reply + Send + Sync {
    with_login(move |s| match s.method.as_str() {
        "Async.VM.clone" => ok(json!("OpaqueRef:task1")),
        "task.get_record" => {
            ok(json!({"uuid": "t", "status": "pending", "result": "", "error_info": []}))
        }
        "event.from" => {
            assert_eq!(s.params[1], json!(["task"]));
            let snapshot = match final_status {
                "success" => {
                    json!({"status": "success", "result": "<value>OpaqueRef:newvm</value>", "error_info": []})
                }
                _ => {
                    json!({"status": "failure", "result": "", "error_info": ["VM_BAD_POWER_STATE", "OpaqueRef:vm", "halted", "running"]})
                }
            };
            ok(json!({
                "events": [{"id": "9", "timestamp": "0.0", "class": "task", "operation": "mod",
                            "ref": "OpaqueRef:task1", "snapshot": snapshot}],
                "valid_ref_counts": {"task": 1},
                "token": "00000000000000000009,00000000000000000000"
            }))
        }
        "task.destroy" => ok(json!("")),
        _ => fail("MESSAGE_METHOD_UNKNOWN", &[&s.method]),
    })
}

#[tokio::test]
async fn call_async_waits_on_task_events_and_parses_result() {
    let srv = serve(JsonMode::Served, task_handler("success")).await;
    let c = Client::connect(opts(srv.url("http"))).await.unwrap();
    let v = c
        .call_async("VM.clone", vec![json!("OpaqueRef:vm"), json!("copy")])
        .await
        .unwrap();
    assert_eq!(v, json!("OpaqueRef:newvm"));
    // The task is read once and watched through event.from (in either order, they run concurrently), then
    // destroyed.
    let mut m = srv.methods();
    assert_eq!(m[..2], ["session.login_with_password", "Async.VM.clone"]);
    assert_eq!(m.pop().unwrap(), "task.destroy");
    m[2..].sort();
    assert_eq!(m[2..], ["event.from", "task.get_record"]);
}

#[tokio::test]
async fn call_async_failure_gives_error_info() {
    let srv = serve(JsonMode::Served, task_handler("failure")).await;
    let c = Client::connect(opts(srv.url("http"))).await.unwrap();
    let err = c
        .call_async("VM.clone", vec![json!("OpaqueRef:vm"), json!("copy")])
        .await
        .unwrap_err();
    match err {
        Error::Xapi(e) => assert_eq!(
            e.to_description(),
            ["VM_BAD_POWER_STATE", "OpaqueRef:vm", "halted", "running"]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(srv.methods().last().unwrap(), "task.destroy");
}

#[tokio::test]
async fn wait_task_on_destroyed_task_is_task_vanished() {
    let (_srv, c) = logged_in(|_| fail("HANDLE_INVALID", &["task", "OpaqueRef:gone"])).await;
    let err = c.wait_task(&Ref::from("OpaqueRef:gone")).await.unwrap_err();
    assert!(matches!(err, Error::TaskVanished(_)), "{err:?}");
}

#[tokio::test]
async fn watcher_loads_follows_events_and_resyncs_on_events_lost() {
    let event_calls = Arc::new(AtomicUsize::new(0));
    let ec = event_calls.clone();
    let srv = serve(JsonMode::Served, with_login(move |s| match s.method.as_str() {
        "system.listMethods" => ok(json!(["VM.get_all_records", "pool.get_all_records", "VM.start", "host.get_record"])),
        "pool.get_all" => ok(json!(["OpaqueRef:pool"])),
        "event.inject" => {
            assert_eq!(s.params[1..], [json!("pool"), json!("OpaqueRef:pool")]);
            ok(json!("00000000000000000010,00000000000000000000"))
        }
        "VM.get_all_records" => ok(json!({"OpaqueRef:vm1": {"uuid": "u1", "power_state": "Halted"}})),
        "pool.get_all_records" => ok(json!({"OpaqueRef:pool": {"uuid": "p"}})),
        "event.from" => match ec.fetch_add(1, Ordering::SeqCst) {
            0 => {
                assert_eq!(s.params[1], json!(["VM", "pool"]));
                assert_eq!(s.params[2], json!("00000000000000000010,00000000000000000000"));
                ok(json!({
                    "events": [
                        {"id": "11", "timestamp": "0.0", "class": "vm", "operation": "mod", "ref": "OpaqueRef:vm1",
                         "snapshot": {"uuid": "u1", "power_state": "Running"}},
                        {"id": "12", "timestamp": "0.0", "class": "vm", "operation": "del", "ref": "OpaqueRef:vm0"}
                    ],
                    "valid_ref_counts": {"vm": 1, "pool": 1},
                    "token": "00000000000000000012,00000000000000000000"
                }))
            }
            1 => {
                assert_eq!(s.params[2], json!("00000000000000000012,00000000000000000000"));
                fail("EVENTS_LOST", &[])
            }
            2 => fail("INTERNAL_ERROR", &["boom"]),
            _ => Reply::Delay(Duration::from_secs(30), Box::new(fail("INTERNAL_ERROR", &["late"]))),
        },
        _ => fail("MESSAGE_METHOD_UNKNOWN", &[&s.method]),
    }))
    .await;
    let c = Client::connect(opts(srv.url("http"))).await.unwrap();
    let mut w = c.watch(WatchOptions {
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        ..WatchOptions::default()
    });
    let Some(WatchEvent::Reset { records }) = w.next().await else {
        panic!("no reset")
    };
    assert_eq!(records.len(), 2);
    assert_eq!(records["VM"][0].0, Ref::from("OpaqueRef:vm1"));
    assert_eq!(records["VM"][0].1.decode()["power_state"], "Halted");
    let Some(WatchEvent::Changes(ch)) = w.next().await else {
        panic!("no changes")
    };
    assert_eq!(ch.len(), 2);
    assert_eq!((ch[0].class.as_str(), ch[0].op), ("VM", Op::Mod));
    assert_eq!(
        ch[0].snapshot.as_ref().unwrap().decode()["power_state"],
        "Running"
    );
    assert_eq!((ch[1].op, ch[1].snapshot.is_none()), (Op::Del, true));
    // EVENTS_LOST: immediate full reload.
    assert!(matches!(w.next().await, Some(WatchEvent::Reset { .. })));
    // Another failure: Disconnected with the backoff delay, then a reload.
    match w.next().await {
        Some(WatchEvent::Disconnected { error, retry_in }) => {
            assert!(error.contains("INTERNAL_ERROR"), "{error}");
            assert_eq!(retry_in, Duration::from_millis(10));
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert!(matches!(w.next().await, Some(WatchEvent::Reset { .. })));
    let inject_count = srv
        .methods()
        .iter()
        .filter(|m| *m == "event.inject")
        .count();
    assert_eq!(inject_count, 3);
}

#[tokio::test]
async fn watcher_backs_off_exponentially_when_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = Client::new(opts(format!("http://127.0.0.1:{port}"))).unwrap();
    let mut w = c.watch(WatchOptions {
        classes: Some(vec!["VM".into()]),
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        ..WatchOptions::default()
    });
    let mut delays = Vec::new();
    for _ in 0..4 {
        match w.next().await {
            Some(WatchEvent::Disconnected { retry_in, error }) => {
                assert!(error.contains("transport"), "{error}");
                delays.push(retry_in.as_millis());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(delays, vec![5, 10, 20, 20]);
}

#[tokio::test]
async fn xml_rpc_results_are_coerced_by_schema() {
    // XAPI's XML-RPC sends ints as untyped `<value>` strings; the client types them with the datamodel.
    let srv = serve(
        JsonMode::NotFound,
        with_login(|s| match s.method.as_str() {
            "VM.get_memory_static_max" => ok(json!("4294967296")),
            "VM.get_VCPUs_max" => ok(json!("not a number")),
            "system.listMethods" => ok(json!(["VM.get_all_records", "host.get_all_records"])),
            _ => ok(json!("raw")),
        }),
    )
    .await;
    let c = Client::connect(opts(srv.url("http"))).await.unwrap();
    assert_eq!(c.protocol(), Some(Protocol::XmlRpc));
    let v = c
        .call("VM.get_memory_static_max", vec![json!("OpaqueRef:vm")])
        .await
        .unwrap();
    assert_eq!(v, json!(4294967296i64));
    // A value that does not fit the schema type is a codec error, not a silent string.
    assert!(matches!(
        c.call("VM.get_VCPUs_max", vec![json!("OpaqueRef:vm")])
            .await,
        Err(Error::Codec(_))
    ));
    // Unknown methods come back raw; listMethods is unwrapped.
    assert_eq!(
        c.call("VM.not_in_schema", vec![]).await.unwrap(),
        json!("raw")
    );
    assert_eq!(c.record_classes().await.unwrap(), vec!["VM", "host"]);
}

#[tokio::test]
async fn login_fails_over_to_a_known_pool_member() {
    // The configured host (127.0.0.1:P) is down; a pool member at 127.0.0.2:P is up.
    let (port, member) = loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.2:{port}").parse().unwrap();
        let handler: support::Handler = Arc::new(with_login(|_| ok(json!("from member"))));
        if let Ok(m) = serve_on(addr, JsonMode::Served, None, handler).await {
            break (port, m);
        }
    };
    let c = Client::new(opts(format!("http://127.0.0.1:{port}"))).unwrap();
    // Without known members the connection error is returned as is.
    assert!(matches!(c.login().await, Err(Error::Transport(_))));
    c.set_pool_hosts(vec!["127.0.0.1".into(), "127.0.0.2".into()]);
    c.login().await.unwrap();
    assert_eq!(c.url(), format!("http://127.0.0.2:{port}"));
    assert_eq!(
        c.call("pool.get_all", vec![]).await.unwrap(),
        json!("from member")
    );
    assert_eq!(
        member.methods(),
        vec!["session.login_with_password", "pool.get_all"]
    );
}

#[tokio::test]
async fn wait_task_ignores_other_tasks_and_cancel_sends_task_cancel() {
    let (srv, c) = logged_in(|s| match s.method.as_str() {
        "task.get_record" => ok(json!({"status": "pending", "result": "", "error_info": []})),
        "task.cancel" => ok(json!("")),
        "event.from" => ok(json!({
            "events": [
                {"id": "1", "timestamp": "0.0", "class": "task", "operation": "mod", "ref": "OpaqueRef:other",
                 "snapshot": {"status": "success", "result": ""}},
                {"id": "2", "timestamp": "0.0", "class": "task", "operation": "mod", "ref": "OpaqueRef:t",
                 "snapshot": {"status": "cancelled", "result": "", "error_info": ["TASK_CANCELLED", "OpaqueRef:t"]}}
            ],
            "valid_ref_counts": {},
            "token": "t1"
        })),
        _ => fail("MESSAGE_METHOD_UNKNOWN", &[&s.method]),
    })
    .await;
    let task = Ref::from("OpaqueRef:t");
    c.cancel_task(&task).await.unwrap();
    let rec = c.wait_task(&task).await.unwrap();
    let err = xapi_client::task_outcome(Some("VM.start"), &rec).unwrap_err();
    assert_eq!(err.xapi_code(), Some("TASK_CANCELLED"));
    let reqs = srv.requests();
    assert_eq!(reqs[1].method, "task.cancel");
    assert_eq!(reqs[1].params[1], json!("OpaqueRef:t"));
    let subs: Vec<Value> = reqs
        .iter()
        .filter(|r| r.method == "event.from")
        .map(|r| r.params[1].clone())
        .collect();
    assert_eq!(subs, vec![json!(["task"])]);
}

#[tokio::test]
async fn watcher_reloads_tasks_when_task_count_disagrees() {
    let event_calls = Arc::new(AtomicUsize::new(0));
    let ec = event_calls.clone();
    let (_srv, c) = logged_in(move |s| match s.method.as_str() {
        "pool.get_all" => ok(json!(["OpaqueRef:pool"])),
        "event.inject" => ok(json!("tok0")),
        "task.get_all_records" if ec.load(Ordering::SeqCst) == 0 => ok(json!({
            "OpaqueRef:t1": {"status": "pending"}, "OpaqueRef:t2": {"status": "pending"}
        })),
        // After a toolstack restart t1 and t2 are gone without events and t3 exists.
        "task.get_all_records" => ok(json!({"OpaqueRef:t3": {"status": "pending"}})),
        "event.from" => match ec.fetch_add(1, Ordering::SeqCst) {
            0 => ok(json!({"events": [], "valid_ref_counts": {"task": 1}, "token": "tok1"})),
            _ => Reply::Delay(
                Duration::from_secs(30),
                Box::new(fail("INTERNAL_ERROR", &["late"])),
            ),
        },
        _ => fail("MESSAGE_METHOD_UNKNOWN", &[&s.method]),
    })
    .await;
    let mut w = c.watch(WatchOptions {
        classes: Some(vec!["task".into()]),
        ..WatchOptions::default()
    });
    let Some(WatchEvent::Reset { records }) = w.next().await else {
        panic!("no reset")
    };
    assert_eq!(records["task"].len(), 2);
    let Some(WatchEvent::Changes(mut ch)) = w.next().await else {
        panic!("no changes")
    };
    ch.sort_by(|a, b| a.obj_ref.cmp(&b.obj_ref));
    let summary: Vec<(&str, Op)> = ch.iter().map(|c| (c.obj_ref.as_str(), c.op)).collect();
    assert_eq!(
        summary,
        vec![
            ("OpaqueRef:t1", Op::Del),
            ("OpaqueRef:t2", Op::Del),
            ("OpaqueRef:t3", Op::Add)
        ]
    );
}

#[tokio::test]
async fn bad_configuration_is_config_error() {
    assert!(matches!(
        Client::new(opts("ftp://127.0.0.1".into())),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Client::new(opts("no scheme".into())),
        Err(Error::Config(_))
    ));
    let mut o = opts("https://127.0.0.1:1".into());
    o.extra_roots = vec![vec![1, 2, 3]];
    assert!(matches!(Client::new(o), Err(Error::Config(_))));
}

#[tokio::test]
async fn tls_trusted_through_extra_root() {
    let (cert, key) = support::self_signed();
    let handler: support::Handler = Arc::new(with_login(|_| ok(json!("trusted"))));
    let srv = serve_on(
        "127.0.0.1:0".parse().unwrap(),
        JsonMode::Served,
        Some((cert.clone(), key)),
        handler,
    )
    .await
    .unwrap();
    let mut o = opts(srv.url("https"));
    o.extra_roots = vec![cert];
    let c = Client::connect(o).await.unwrap();
    assert_eq!(
        c.call("pool.get_all", vec![]).await.unwrap(),
        json!("trusted")
    );
}

#[tokio::test]
async fn json_endpoint_turning_into_html_is_http_error() {
    let (_srv, c) = logged_in(|_| raw(502, "text/html", "<html>bad gateway</html>")).await;
    assert_eq!(c.protocol(), Some(Protocol::JsonRpc));
    assert!(matches!(
        c.call("VM.get_all", vec![]).await,
        Err(Error::Http { status: 502, .. })
    ));
}

#[tokio::test]
async fn redirect_loops_and_empty_master_address_are_errors() {
    // A member that names itself as master: bounded number of hops, then the error.
    let srv = serve(JsonMode::Served, |_| fail("HOST_IS_SLAVE", &["127.0.0.1"])).await;
    let err = Client::connect(opts(srv.url("http"))).await.unwrap_err();
    assert_eq!(err.xapi_code(), Some("HOST_IS_SLAVE"));
    assert_eq!(srv.methods().len(), 4);
    let srv = serve(JsonMode::Served, |_| fail("HOST_IS_SLAVE", &[])).await;
    assert!(matches!(
        Client::connect(opts(srv.url("http"))).await,
        Err(Error::Codec(_))
    ));
}

#[tokio::test]
async fn ill_shaped_results_are_codec_errors() {
    let srv = serve(JsonMode::Served, |s| match s.method.as_str() {
        "session.login_with_password" => ok(json!(42)),
        _ => ok(json!("")),
    })
    .await;
    assert!(matches!(
        Client::connect(opts(srv.url("http"))).await,
        Err(Error::Codec(_))
    ));

    let (_srv, c) = logged_in(|s| match s.method.as_str() {
        "VM.get_all_records" => ok(json!({"OpaqueRef:a": "not a struct"})),
        "VM.get_record" => ok(json!([])),
        "pool.get_all" => ok(json!([])),
        "Async.VM.start" => ok(json!({"not": "a ref"})),
        "event.inject" => ok(json!(1)),
        "system.listMethods" => ok(json!({})),
        _ => ok(json!("")),
    })
    .await;
    assert!(matches!(
        c.get_all_records("VM").await,
        Err(Error::Codec(_))
    ));
    assert!(matches!(
        c.get_all_records_raw("VM").await,
        Err(Error::Codec(_))
    ));
    assert!(matches!(
        c.get_record("VM", &Ref::from("OpaqueRef:a")).await,
        Err(Error::Codec(_))
    ));
    assert!(matches!(c.pool_ref().await, Err(Error::Codec(_))));
    assert!(matches!(
        c.start_async("VM.start", vec![]).await,
        Err(Error::Codec(_))
    ));
    assert!(matches!(
        c.event_inject("pool", &Ref::from("OpaqueRef:p")).await,
        Err(Error::Codec(_))
    ));
    assert!(matches!(c.list_methods().await, Err(Error::Codec(_))));
}

#[tokio::test]
async fn task_deleted_while_waiting_is_task_vanished() {
    let (_srv, c) = logged_in(|s| match s.method.as_str() {
        "task.get_record" => ok(json!({"status": "pending"})),
        "event.from" => ok(json!({
            "events": [{"id": "3", "timestamp": "0.0", "class": "task", "operation": "del", "ref": "OpaqueRef:t"}],
            "valid_ref_counts": {},
            "token": "t1"
        })),
        _ => fail("MESSAGE_METHOD_UNKNOWN", &[&s.method]),
    })
    .await;
    let err = c.wait_task(&Ref::from("OpaqueRef:t")).await.unwrap_err();
    assert!(
        matches!(err, Error::TaskVanished(ref t) if t == "OpaqueRef:t"),
        "{err:?}"
    );
}

#[tokio::test]
async fn oversized_response_is_refused() {
    let srv = serve(
        JsonMode::Served,
        with_login(|_| ok(json!("x".repeat(10_000)))),
    )
    .await;
    let mut o = opts(srv.url("http"));
    o.max_response_bytes = 1_000;
    let c = Client::connect(o).await.unwrap();
    let err = c.call("VM.get_all", vec![]).await.unwrap_err();
    assert!(
        matches!(err, Error::Transport(ref m) if m.contains("limit")),
        "{err:?}"
    );
}

#[tokio::test]
async fn concurrent_async_calls_share_one_task_watcher() {
    let started = Arc::new(AtomicUsize::new(0));
    let st = started.clone();
    let srv = serve(
        JsonMode::Served,
        with_login(move |s| match s.method.as_str() {
            "Async.VM.clone" => {
                let n = st.fetch_add(1, Ordering::SeqCst) + 1;
                ok(json!(format!("OpaqueRef:task{n}")))
            }
            "task.get_record" => ok(json!({"status": "pending"})),
            "event.from" => {
                let n = st.load(Ordering::SeqCst);
                let events: Vec<Value> = (1..=n)
                    .map(|i| {
                        json!({"id": "1", "timestamp": "0.0", "class": "task", "operation": "mod",
                               "ref": format!("OpaqueRef:task{i}"),
                               "snapshot": {"status": "success", "result": format!("<value>OpaqueRef:vm{i}</value>")}})
                    })
                    .collect();
                let batch = json!({"events": events, "valid_ref_counts": {}, "token": format!("t{n}")});
                Reply::Delay(Duration::from_millis(100), Box::new(ok(batch)))
            }
            "task.destroy" => ok(json!("")),
            _ => fail("MESSAGE_METHOD_UNKNOWN", &[&s.method]),
        }),
    )
    .await;
    let c = Client::connect(opts(srv.url("http")).max_concurrency(1))
        .await
        .unwrap();
    let calls =
        (0..4).map(|_| c.call_async("VM.clone", vec![json!("OpaqueRef:vm"), json!("copy")]));
    let mut results: Vec<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().as_str().unwrap().to_owned())
        .collect();
    results.sort();
    assert_eq!(
        results,
        [
            "OpaqueRef:vm1",
            "OpaqueRef:vm2",
            "OpaqueRef:vm3",
            "OpaqueRef:vm4"
        ]
    );
    // Ordinary calls are limited to one at a time; a per-task long poll would add one request in flight per task.
    assert!(srv.in_flight_max.load(Ordering::SeqCst) <= 2);
    assert!(srv
        .requests()
        .iter()
        .filter(|r| r.method == "event.from")
        .all(|r| r.params[1] == json!(["task"])));
}

#[tokio::test]
async fn task_watcher_failure_reaches_waiters() {
    let (srv, c) = logged_in(|s| match s.method.as_str() {
        "task.get_record" => ok(json!({"status": "pending"})),
        "event.from" => fail("INTERNAL_ERROR", &["event subsystem down"]),
        _ => fail("MESSAGE_METHOD_UNKNOWN", &[&s.method]),
    })
    .await;
    let err = c.wait_task(&Ref::from("OpaqueRef:t")).await.unwrap_err();
    assert_eq!(err.xapi_code(), Some("INTERNAL_ERROR"));
    // Retried before giving up.
    assert_eq!(
        srv.methods().iter().filter(|m| *m == "event.from").count(),
        4
    );
}

#[tokio::test]
async fn non_finite_json_floats_are_tolerated() {
    let (_srv, c) = logged_in(|_| {
        raw_json(r#"{"jsonrpc":"2.0","result":{"load":NaN,"max":Infinity,"label":"NaN"},"id":1}"#)
    })
    .await;
    let v = c
        .call("host_metrics.get_record", vec![json!("OpaqueRef:m")])
        .await
        .unwrap();
    assert_eq!(v, json!({"load": null, "max": f64::MAX, "label": "NaN"}));
}

#[tokio::test]
async fn raw_records_tolerate_non_finite_floats_and_keep_the_text() {
    let (_srv, c) = logged_in(|_| raw_json(r#"{"jsonrpc":"2.0","result":{"OpaqueRef:m":{"load":NaN,"label":"NaN","x":[1,{"y":2}]}},"id":1}"#)).await;
    let recs = c.get_all_records_raw("host_metrics").await.unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].0, Ref::from("OpaqueRef:m"));
    assert_eq!(
        recs[0].1.as_str(),
        r#"{"load":null,"label":"NaN","x":[1,{"y":2}]}"#
    );
    assert_eq!(
        serde_json::Value::Object(recs[0].1.decode()),
        json!({"load": null, "label": "NaN", "x": [1, {"y": 2}]})
    );
}

#[tokio::test]
async fn raw_records_of_an_error_answer_are_the_xapi_error() {
    let (_srv, c) = logged_in(|_| {
        raw_json(
            r#"{"jsonrpc":"2.0","error":{"code":1,"message":"MESSAGE_REMOVED","data":[]},"id":1}"#,
        )
    })
    .await;
    let e = c.get_all_records_raw("VM").await.unwrap_err();
    assert_eq!(e.xapi_code(), Some("MESSAGE_REMOVED"));
}
