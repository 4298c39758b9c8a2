//! End-to-end tests of the simulator over real HTTP(S) on loopback, with a tiny raw HTTP client.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use xapi_sim::{RunningPool, Sim};
use xapi_types::{jsonrpc, xmlrpc, XapiError};

/// A raw HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub(super) fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned()
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    req: Vec<u8>,
) -> std::io::Result<Answer> {
    s.write_all(&req).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer ({} bytes)", buf.len())))?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: buf[split + 4..].to_vec(),
    })
}

fn request(method: &str, url: &str, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        host_port(url),
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

async fn http(
    method: &str,
    url: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<Answer> {
    assert!(url.starts_with("http://"), "use https() for TLS");
    let s = TcpStream::connect(host_port(url)).await?;
    exchange(s, request(method, url, path, content_type, body)).await
}

async fn xml_call(url: &str, method: &str, params: &[Value]) -> Result<Value, XapiError> {
    let body = xmlrpc::encode_call(method, params, None);
    let a = http("POST", url, "/", "text/xml", body.as_bytes())
        .await
        .expect("http");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("text/xml"));
    xmlrpc::decode_response(&a.body).expect("decodable")
}

pub(super) async fn json_call(
    url: &str,
    v2: bool,
    method: &str,
    params: &[Value],
) -> Result<Value, XapiError> {
    let version = if v2 {
        jsonrpc::Version::V2
    } else {
        jsonrpc::Version::V1
    };
    let body = jsonrpc::encode_call(version, &json!(7), method, params);
    let a = http("POST", url, "/jsonrpc", "application/json", &body)
        .await
        .expect("http");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json"));
    let r = jsonrpc::decode_response(&a.body).expect("decodable");
    assert_eq!(r.id, json!(7));
    r.result
}

async fn pool(hosts: usize, vms: usize) -> RunningPool {
    Sim::builder()
        .hosts(hosts)
        .vms(vms)
        .event_batching(Duration::from_millis(5))
        .build()
        .expect("build")
        .serve("127.0.0.1:0".parse().unwrap(), false)
        .await
        .expect("serve")
}

async fn login(url: &str) -> String {
    let s = json_call(
        url,
        true,
        "session.login_with_password",
        &[json!("root"), json!("root")],
    )
    .await
    .unwrap();
    s.as_str().unwrap().to_owned()
}

/// `session.login_with_password("root", "root")` over JSON-RPC v2 on `stream` (plain or TLS) succeeds.
pub(super) async fn assert_root_login<S: AsyncRead + AsyncWrite + Unpin>(stream: S, url: &str) {
    let body = jsonrpc::encode_call(
        jsonrpc::Version::V2,
        &json!(1),
        "session.login_with_password",
        &[json!("root"), json!("root")],
    );
    let a = exchange(
        stream,
        request("POST", url, "/jsonrpc", "application/json", &body),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    assert!(jsonrpc::decode_response(&a.body).unwrap().result.is_ok());
}

pub(super) fn code(r: Result<Value, XapiError>) -> Vec<String> {
    r.expect_err("expected a failure").to_description()
}

#[tokio::test(flavor = "multi_thread")]
async fn login_over_both_protocols_and_sessions_are_shared() {
    let p = pool(1, 2).await;
    let url = p.master_url();
    let s = xml_call(
        &url,
        "session.login_with_password",
        &[json!("root"), json!("root")],
    )
    .await
    .unwrap();
    let s = s.as_str().unwrap().to_owned();
    assert!(s.starts_with("OpaqueRef:"));
    // The XML-RPC session works over JSON-RPC v1 and v2.
    let pools = json_call(&url, false, "pool.get_all", &[json!(s)])
        .await
        .unwrap();
    assert_eq!(pools.as_array().unwrap().len(), 1);
    let h = json_call(&url, true, "session.get_this_host", &[json!(s), json!(s)])
        .await
        .unwrap();
    assert_eq!(h, json!(p.host_refs()[0].0));
    // 3 and 4 args.
    json_call(
        &url,
        false,
        "session.login_with_password",
        &[json!("root"), json!("root"), json!("1.1")],
    )
    .await
    .unwrap();
    json_call(
        &url,
        false,
        "session.login_with_password",
        &[json!("root"), json!("root"), json!("1.1"), json!("t")],
    )
    .await
    .unwrap();
    // logout → SESSION_INVALID
    xml_call(&url, "session.logout", &[json!(s)]).await.unwrap();
    assert_eq!(
        code(json_call(&url, true, "pool.get_all", &[json!(s)]).await),
        vec!["SESSION_INVALID", s.as_str()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_credentials_and_bad_sessions() {
    let p = pool(1, 0).await;
    let url = p.master_url();
    let e = code(
        xml_call(
            &url,
            "session.login_with_password",
            &[json!("root"), json!("nope")],
        )
        .await,
    );
    assert_eq!(
        e,
        vec![
            "SESSION_AUTHENTICATION_FAILED",
            "root",
            "Authentication failure"
        ]
    );
    let e = code(json_call(&url, false, "VM.get_all", &[json!("OpaqueRef:bogus")]).await);
    assert_eq!(e, vec!["SESSION_INVALID", "OpaqueRef:bogus"]);
    let e = code(json_call(&url, true, "session.login_with_password", &[json!("root")]).await);
    assert_eq!(
        e,
        vec![
            "MESSAGE_PARAMETER_COUNT_MISMATCH",
            "session.login_with_password",
            "4",
            "1"
        ]
    );
    let e = code(json_call(&url, true, "VM.frobnicate", &[json!("x")]).await);
    assert_eq!(e, vec!["MESSAGE_METHOD_UNKNOWN", "VM.frobnicate"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn slaves_redirect_to_the_master() {
    let p = pool(3, 0).await;
    let urls = p.host_urls();
    assert_eq!(urls.len(), 3);
    assert!(urls[1].starts_with("http://127.0.0.2:"));
    let e = code(
        xml_call(
            &urls[1],
            "session.login_with_password",
            &[json!("root"), json!("root")],
        )
        .await,
    );
    assert_eq!(e, vec!["HOST_IS_SLAVE", "127.0.0.1"]);
    // A master session used on a slave is refused the same way.
    let s = login(&urls[0]).await;
    let e = code(json_call(&urls[2], true, "VM.get_all", &[json!(s)]).await);
    assert_eq!(e, vec!["HOST_IS_SLAVE", "127.0.0.1"]);
    // slave-local login works on the slave.
    let l = json_call(
        &urls[1],
        false,
        "session.slave_local_login_with_password",
        &[json!("root"), json!("root")],
    )
    .await
    .unwrap();
    json_call(&urls[1], false, "host.get_all", &[l])
        .await
        .unwrap();
    // Addresses are real.
    let addrs: Vec<String> = {
        let hosts = json_call(&urls[0], true, "host.get_all_records", &[json!(s)])
            .await
            .unwrap();
        let mut v: Vec<String> = hosts
            .as_object()
            .unwrap()
            .values()
            .map(|h| h["address"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(addrs, vec!["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ejected_member_comes_back_as_a_pool_of_its_own() {
    let p = pool(3, 0).await;
    let urls = p.host_urls();
    let s = login(&urls[0]).await;
    let hosts = json_call(&urls[0], true, "host.get_all_records", &[json!(s)])
        .await
        .unwrap();
    let (member, rec) = hosts
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, h)| h["address"] == "127.0.0.2")
        .map(|(r, h)| (r.clone(), h.clone()))
        .unwrap();
    json_call(&urls[0], true, "pool.eject", &[json!(s), json!(member)])
        .await
        .unwrap();
    // the old pool goes on without it
    let left = json_call(&urls[0], true, "host.get_all", &[json!(s)])
        .await
        .unwrap();
    assert_eq!(left.as_array().unwrap().len(), 2);
    // it no longer answers HOST_IS_SLAVE: it masters a pool of its own, with the same identity
    let alone = login(&urls[1]).await;
    let hosts = json_call(&urls[1], true, "host.get_all_records", &[json!(alone)])
        .await
        .unwrap();
    let hosts = hosts.as_object().unwrap();
    assert_eq!(hosts.len(), 1);
    let (me, h) = hosts.iter().next().unwrap();
    for f in ["uuid", "name_label", "hostname", "address"] {
        assert_eq!(h[f], rec[f], "{f}");
    }
    let pools = json_call(&urls[1], true, "pool.get_all_records", &[json!(alone)])
        .await
        .unwrap();
    let pools: Vec<&Value> = pools.as_object().unwrap().values().collect();
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0]["master"], json!(me));
    assert_ne!(
        json_call(&urls[0], true, "pool.get_all", &[json!(s)])
            .await
            .unwrap(),
        json_call(&urls[1], true, "pool.get_all", &[json!(alone)])
            .await
            .unwrap()
    );
    // the old pool's sessions mean nothing there
    let e = code(json_call(&urls[1], true, "VM.get_all", &[json!(s)]).await);
    assert_eq!(e[0], "SESSION_INVALID");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_methods_is_a_bare_array() {
    let p = pool(1, 0).await;
    let body = xmlrpc::encode_call("system.listMethods", &[], None);
    let a = http(
        "POST",
        &p.master_url(),
        "/xmlrpc",
        "text/xml",
        body.as_bytes(),
    )
    .await
    .unwrap();
    let text = String::from_utf8(a.body.clone()).unwrap();
    assert!(!text.contains("Status"), "no Status envelope");
    let v = xmlrpc::decode_response(&a.body).unwrap().unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(names.contains(&"VM.get_all_records"));
    assert!(names.contains(&"event.from"));
    assert!(!names.iter().any(|n| n.starts_with("Async.")));
}

#[tokio::test(flavor = "multi_thread")]
async fn records_are_complete() {
    let p = pool(2, 20).await;
    let url = p.master_url();
    let s = login(&url).await;
    let all = json_call(&url, true, "VM.get_all_records", &[json!(s)])
        .await
        .unwrap();
    let vms = all.as_object().unwrap();
    let spec = xapi_types::schema::class("VM").unwrap();
    // 20 guests + 2 dom0 + templates + snapshots of every 10th VM.
    assert!(vms.len() > 22 + 2, "{}", vms.len());
    for (r, rec) in vms {
        assert!(r.starts_with("OpaqueRef:"));
        assert_eq!(rec.as_object().unwrap().len(), spec.fields.len());
    }
    let controls = vms
        .values()
        .filter(|v| v["is_control_domain"] == json!(true))
        .count();
    assert_eq!(controls, 2);
    assert!(vms
        .values()
        .any(|v| v["is_a_template"] == json!(true) && v["is_default_template"] == json!(true)));
    assert!(vms.values().any(|v| v["is_a_snapshot"] == json!(true)));
    // Inverse sets are consistent: every VBD's VM lists it.
    let vbds = json_call(&url, true, "VBD.get_all_records", &[json!(s)])
        .await
        .unwrap();
    for (r, vbd) in vbds.as_object().unwrap() {
        let vm = &vms[vbd["VM"].as_str().unwrap()];
        assert!(vm["VBDs"].as_array().unwrap().contains(&json!(r)));
    }
    // Same over XML-RPC (decoded raw, then coerced): identical to the in-process value.
    let x = xml_call(&url, "VM.get_all_records", &[json!(s)])
        .await
        .unwrap();
    assert_eq!(x.as_object().unwrap().len(), vms.len());
    let ty = xapi_types::schema::class("VM")
        .unwrap()
        .message("get_all_records")
        .unwrap()
        .result;
    let direct = p.call("VM.get_all_records", vec![json!(s)]).unwrap();
    assert_eq!(xapi_types::schema::coerce(&ty, x).unwrap(), direct);
    assert_eq!(&all, &direct);
    let x = xml_call(
        &url,
        "SR.get_all_records_where",
        &[json!(s), json!(r#"field "shared"="true""#)],
    )
    .await
    .unwrap();
    assert!(!x.as_object().unwrap().is_empty());
    let e = code(
        json_call(
            &url,
            true,
            "SR.get_all_records_where",
            &[json!(s), json!("field")],
        )
        .await,
    );
    assert_eq!(e[0], "INTERNAL_ERROR");
    // where
    let w = json_call(
        &url,
        true,
        "VM.get_all_records_where",
        &[json!(s), json!(r#"field "name_label"="vm-00003""#)],
    )
    .await
    .unwrap();
    assert_eq!(w.as_object().unwrap().len(), 1);
    // Every class answers get_all_records.
    for c in [
        "SM",
        "host_cpu",
        "PIF",
        "network",
        "PBD",
        "SR",
        "VDI",
        "VIF",
        "console",
        "VM_metrics",
        "message",
        "role",
    ] {
        let v = json_call(&url, true, &format!("{c}.get_all_records"), &[json!(s)])
            .await
            .unwrap();
        assert!(!v.as_object().unwrap().is_empty(), "{c}");
    }
    let v = json_call(&url, true, "Bond.get_all_records", &[json!(s)])
        .await
        .unwrap();
    assert_eq!(v, json!({}));
}

#[tokio::test(flavor = "multi_thread")]
async fn setters_and_errors() {
    let p = pool(1, 3).await;
    let url = p.master_url();
    let s = login(&url).await;
    let vm = json_call(
        &url,
        true,
        "VM.get_by_name_label",
        &[json!(s), json!("vm-00001")],
    )
    .await
    .unwrap()[0]
        .clone();
    json_call(
        &url,
        true,
        "VM.set_name_label",
        &[json!(s), vm.clone(), json!("renamed")],
    )
    .await
    .unwrap();
    let n = xml_call(&url, "VM.get_name_label", &[json!(s), vm.clone()])
        .await
        .unwrap();
    assert_eq!(n, json!("renamed"));
    // RO field: no implicit setter.
    let e = code(
        json_call(
            &url,
            true,
            "VM.set_power_state",
            &[json!(s), vm.clone(), json!("Halted")],
        )
        .await,
    );
    assert_eq!(e, vec!["MESSAGE_METHOD_UNKNOWN", "VM.set_power_state"]);
    // Bad ref / uuid / type / enum.
    let e = code(
        json_call(
            &url,
            true,
            "VM.get_record",
            &[json!(s), json!("OpaqueRef:nope")],
        )
        .await,
    );
    assert_eq!(e, vec!["HANDLE_INVALID", "VM", "OpaqueRef:nope"]);
    let e = code(json_call(&url, true, "VM.get_by_uuid", &[json!(s), json!("nope")]).await);
    assert_eq!(e, vec!["UUID_INVALID", "VM", "nope"]);
    let e = code(
        json_call(
            &url,
            true,
            "VM.set_VCPUs_max",
            &[json!(s), vm.clone(), json!("many")],
        )
        .await,
    );
    assert_eq!(e[0], "FIELD_TYPE_ERROR");
    let e = code(
        json_call(
            &url,
            true,
            "VM.set_actions_after_crash",
            &[json!(s), vm.clone(), json!("explode")],
        )
        .await,
    );
    assert_eq!(e[0], "INVALID_VALUE");
    let e = code(json_call(&url, true, "VM.get_record", &[json!(s)]).await);
    assert_eq!(
        e,
        vec![
            "MESSAGE_PARAMETER_COUNT_MISMATCH",
            "VM.get_record",
            "2",
            "1"
        ]
    );
    // Maps and sets.
    let pool_ref = json_call(&url, true, "pool.get_all", &[json!(s)])
        .await
        .unwrap()[0]
        .clone();
    json_call(
        &url,
        true,
        "pool.add_to_other_config",
        &[json!(s), pool_ref.clone(), json!("k"), json!("v")],
    )
    .await
    .unwrap();
    let e = code(
        json_call(
            &url,
            true,
            "pool.add_to_other_config",
            &[json!(s), pool_ref.clone(), json!("k"), json!("w")],
        )
        .await,
    );
    assert_eq!(e[0], "MAP_DUPLICATE_KEY");
    assert_eq!(&e[1..3], &["pool", "other_config"]);
    assert_eq!(e[4], "k");
    json_call(
        &url,
        true,
        "pool.remove_from_other_config",
        &[json!(s), pool_ref.clone(), json!("k")],
    )
    .await
    .unwrap();
    json_call(
        &url,
        true,
        "VM.add_tags",
        &[json!(s), vm.clone(), json!("blue")],
    )
    .await
    .unwrap();
    json_call(
        &url,
        true,
        "VM.add_tags",
        &[json!(s), vm.clone(), json!("blue")],
    )
    .await
    .unwrap();
    let tags = json_call(&url, true, "VM.get_tags", &[json!(s), vm.clone()])
        .await
        .unwrap();
    assert_eq!(tags, json!(["blue"]));
    json_call(
        &url,
        true,
        "VM.remove_tags",
        &[json!(s), vm.clone(), json!("blue")],
    )
    .await
    .unwrap();
    // create / destroy
    let net = json_call(
        &url,
        true,
        "network.create",
        &[json!(s), json!({"name_label": "n1", "other_config": {}})],
    )
    .await
    .unwrap();
    let rec = json_call(&url, true, "network.get_record", &[json!(s), net.clone()])
        .await
        .unwrap();
    assert_eq!(rec["name_label"], json!("n1"));
    json_call(&url, true, "network.destroy", &[json!(s), net.clone()])
        .await
        .unwrap();
    let e = code(json_call(&url, true, "network.destroy", &[json!(s), net.clone()]).await);
    assert_eq!(e[0], "HANDLE_INVALID");
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_failures_and_cors() {
    let p = pool(1, 0).await;
    let url = p.master_url();
    let a = http("POST", &url, "/", "text/xml", b"<methodCall><oops")
        .await
        .unwrap();
    assert_eq!(a.status, 500);
    assert_eq!(a.header("content-type"), Some("text/html"));
    let a = http(
        "POST",
        &url,
        "/jsonrpc",
        "application/json",
        br#"{"method":"x","params":[]}"#,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 500);
    let a = http("OPTIONS", &url, "/jsonrpc", "text/plain", b"")
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));
    // Unknown POST path → XML-RPC.
    let body = xmlrpc::encode_call(
        "session.login_with_password",
        &[json!("root"), json!("root")],
        None,
    );
    for path in ["/RPC2", "/json", "/any/thing"] {
        let a = http("POST", &url, path, "text/xml", body.as_bytes())
            .await
            .unwrap();
        assert_eq!(a.header("content-type"), Some("text/xml"), "{path}");
        assert!(xmlrpc::decode_response(&a.body).unwrap().is_ok());
    }
    let body = jsonrpc::encode_call(
        jsonrpc::Version::V1,
        &json!("x"),
        "session.login_with_password",
        &[json!("root"), json!("root")],
    );
    let a = http("POST", &url, "/jsonrpc?foo=1", "application/json", &body)
        .await
        .unwrap();
    assert_eq!(a.header("content-type"), Some("application/json"));
    let r = jsonrpc::decode_response(&a.body).unwrap();
    assert_eq!(r.id, json!("x"));
    assert!(r.result.is_ok());
    // A body over the limit is a transport failure.
    let big = vec![b'x'; 5 * 1024 * 1024];
    let a = http("POST", &url, "/", "text/xml", &big).await.unwrap();
    assert_eq!(a.status, 500);
    // Other methods on RPC paths: 404.
    let a = http("GET", &url, "/nothing-here", "text/plain", b"")
        .await
        .unwrap();
    assert_eq!(a.status, 404);
}

async fn events_from(
    url: &str,
    s: &str,
    classes: Value,
    token: &str,
    timeout: f64,
) -> Result<Value, XapiError> {
    json_call(
        url,
        true,
        "event.from",
        &[json!(s), classes, json!(token), json!(timeout)],
    )
    .await
}

fn evs(batch: &Value) -> Vec<(String, String, String)> {
    batch["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["class"].as_str().unwrap().to_owned(),
                e["operation"].as_str().unwrap().to_owned(),
                e["ref"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn event_from_semantics() {
    let p = pool(2, 5).await;
    let url = p.master_url();
    let s = login(&url).await;
    let first = events_from(&url, &s, json!(["*"]), "", 1.0).await.unwrap();
    let token = first["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 41);
    assert!(evs(&first).iter().all(|(_, op, _)| op == "add"));
    let n_vm = evs(&first).iter().filter(|(c, _, _)| c == "vm").count();
    assert_eq!(json!(n_vm), first["valid_ref_counts"]["vm"]);
    assert!(first["valid_ref_counts"]["task"].is_number());
    assert!(evs(&first).iter().any(|(c, _, _)| c == "message"));
    assert!(!evs(&first).iter().any(|(c, _, _)| c == "session"));

    // The streamed answers equal the in-process value (JSON as is, XML-RPC once coerced).
    let direct = p
        .call(
            "event.from",
            vec![json!(s), json!(["*"]), json!(""), json!(1.0)],
        )
        .unwrap();
    let again = events_from(&url, &s, json!(["*"]), "", 1.0).await.unwrap();
    assert_eq!(again, direct);
    let x = xml_call(
        &url,
        "event.from",
        &[json!(s), json!(["*"]), json!(""), json!(1.0)],
    )
    .await
    .unwrap();
    assert_eq!(
        xapi_types::schema::coerce(&xapi_types::Type::EventBatch, x).unwrap(),
        direct
    );

    // XML-RPC event.from works too (valid_ref_counts as <i4>).
    let x = xml_call(
        &url,
        "event.from",
        &[json!(s), json!(["pool"]), json!(""), json!(1.0)],
    )
    .await
    .unwrap();
    assert_eq!(x["events"].as_array().unwrap().len(), 1);

    // Coalescing: two changes to one VM → one mod.
    let vm = json_call(
        &url,
        true,
        "VM.get_by_name_label",
        &[json!(s), json!("vm-00002")],
    )
    .await
    .unwrap()[0]
        .clone();
    json_call(
        &url,
        true,
        "VM.set_name_description",
        &[json!(s), vm.clone(), json!("a")],
    )
    .await
    .unwrap();
    json_call(
        &url,
        true,
        "VM.set_name_description",
        &[json!(s), vm.clone(), json!("b")],
    )
    .await
    .unwrap();
    let b = events_from(&url, &s, json!(["VM"]), &token, 5.0)
        .await
        .unwrap();
    let e = evs(&b);
    assert_eq!(
        e,
        vec![(
            "vm".to_owned(),
            "mod".to_owned(),
            vm.as_str().unwrap().to_owned()
        )]
    );
    assert_eq!(b["events"][0]["snapshot"]["name_description"], json!("b"));
    let token = b["token"].as_str().unwrap().to_owned();

    // Relations: a new VIF gives add VIF + mod VM + mod network.
    let net = json_call(&url, true, "network.get_all", &[json!(s)])
        .await
        .unwrap()[0]
        .clone();
    let vif = json_call(
        &url,
        true,
        "VIF.create",
        &[json!(s), json!({"device": "1", "network": net, "VM": vm, "MAC": "", "MTU": 1500, "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})],
    )
    .await
    .unwrap();
    let b = events_from(&url, &s, json!(["vm", "vif", "network"]), &token, 5.0)
        .await
        .unwrap();
    let mut e = evs(&b);
    e.sort();
    assert!(e.contains(&("vif".into(), "add".into(), vif.as_str().unwrap().into())));
    assert!(e.contains(&("vm".into(), "mod".into(), vm.as_str().unwrap().into())));
    assert!(e.contains(&("network".into(), "mod".into(), net.as_str().unwrap().into())));
    let token = b["token"].as_str().unwrap().to_owned();

    // del has no snapshot; created+deleted inside the window gives nothing.
    json_call(&url, true, "VIF.destroy", &[json!(s), vif.clone()])
        .await
        .unwrap();
    let tmp = json_call(
        &url,
        true,
        "network.create",
        &[json!(s), json!({"name_label": "tmp", "other_config": {}})],
    )
    .await
    .unwrap();
    json_call(&url, true, "network.destroy", &[json!(s), tmp.clone()])
        .await
        .unwrap();
    let b = events_from(&url, &s, json!(["vif", "network"]), &token, 5.0)
        .await
        .unwrap();
    let del = b["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["operation"] == "del")
        .expect("a del");
    assert_eq!(del["ref"], vif);
    assert!(del.get("snapshot").is_none());
    assert!(!evs(&b).iter().any(|(_, _, r)| r == tmp.as_str().unwrap()));

    // Object subscription filter.
    let token = b["token"].as_str().unwrap().to_owned();
    json_call(
        &url,
        true,
        "VM.set_name_description",
        &[json!(s), vm.clone(), json!("c")],
    )
    .await
    .unwrap();
    let other = format!("vm/{}", "OpaqueRef:someone-else");
    let b = events_from(&url, &s, json!([other]), &token, 0.2)
        .await
        .unwrap();
    assert!(evs(&b).is_empty());

    // Timeout with nothing new.
    let b2 = events_from(&url, &s, json!(["SR"]), b["token"].as_str().unwrap(), 0.2)
        .await
        .unwrap();
    assert!(evs(&b2).is_empty());

    // inject
    let pool_ref = json_call(&url, true, "pool.get_all", &[json!(s)])
        .await
        .unwrap()[0]
        .clone();
    let t = json_call(
        &url,
        true,
        "event.inject",
        &[json!(s), json!("pool"), pool_ref.clone()],
    )
    .await
    .unwrap();
    let b = events_from(&url, &s, json!(["pool"]), t.as_str().unwrap(), 5.0)
        .await
        .unwrap();
    assert_eq!(
        evs(&b),
        vec![(
            "pool".into(),
            "mod".into(),
            pool_ref.as_str().unwrap().into()
        )]
    );
    let e = code(
        json_call(
            &url,
            true,
            "event.inject",
            &[json!(s), json!("Pool"), pool_ref.clone()],
        )
        .await,
    );
    assert_eq!(e[0], "HANDLE_INVALID");

    // Parse failures.
    let e = code(events_from(&url, &s, json!(["*"]), "garbage", 1.0).await);
    assert_eq!(e, vec!["EVENT_FROM_TOKEN_PARSE_FAILURE", "garbage"]);
    let e = code(events_from(&url, &s, json!(["vm/"]), "", 1.0).await);
    assert_eq!(e, vec!["EVENT_SUBSCRIPTION_PARSE_FAILURE", "vm/"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn blocked_event_from_wakes_on_change_and_on_logout() {
    let p = pool(1, 1).await;
    let url = p.master_url();
    let s = login(&url).await;
    let t = events_from(&url, &s, json!(["pool"]), "", 1.0)
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let u2 = url.clone();
    let s2 = s.clone();
    let t2 = t.clone();
    let waiter =
        tokio::spawn(async move { events_from(&u2, &s2, json!(["pool"]), &t2, 30.0).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pool_ref = json_call(&url, true, "pool.get_all", &[json!(s)])
        .await
        .unwrap()[0]
        .clone();
    json_call(
        &url,
        true,
        "pool.add_to_other_config",
        &[json!(s), pool_ref, json!("xo:barrier:1"), json!("1")],
    )
    .await
    .unwrap();
    let b = waiter.await.unwrap().unwrap();
    assert_eq!(
        b["events"][0]["snapshot"]["other_config"]["xo:barrier:1"],
        json!("1")
    );

    let u3 = url.clone();
    let s3 = s.clone();
    let t3 = b["token"].as_str().unwrap().to_owned();
    let waiter =
        tokio::spawn(async move { events_from(&u3, &s3, json!(["pool"]), &t3, 30.0).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let other = login(&url).await;
    let _ = other;
    json_call(&url, true, "session.logout", &[json!(s)])
        .await
        .unwrap();
    let e = code(waiter.await.unwrap());
    assert_eq!(e, vec!["SESSION_INVALID", s.as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn old_tokens_get_events_lost() {
    let p = Sim::builder()
        .tombstone_limit(1)
        .event_batching(Duration::ZERO)
        .build()
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let url = p.master_url();
    let s = login(&url).await;
    let mut nets = Vec::new();
    for i in 0..2 {
        let rec = json!({"name_label": format!("n{i}"), "other_config": {}});
        nets.push(
            json_call(&url, true, "network.create", &[json!(s), rec])
                .await
                .unwrap(),
        );
    }
    let t = events_from(&url, &s, json!(["network"]), "", 1.0)
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in nets {
        json_call(&url, true, "network.destroy", &[json!(s), n])
            .await
            .unwrap();
    }
    let e = code(events_from(&url, &s, json!(["network"]), &t, 1.0).await);
    assert_eq!(e, vec!["EVENTS_LOST"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_events() {
    let p = pool(1, 1).await;
    let url = p.master_url();
    let s = login(&url).await;
    let e = code(json_call(&url, true, "event.next", &[json!(s)]).await);
    assert_eq!(e, vec!["SESSION_NOT_REGISTERED", s.as_str()]);
    json_call(&url, true, "event.register", &[json!(s), json!(["pool"])])
        .await
        .unwrap();
    let pool_ref = json_call(&url, true, "pool.get_all", &[json!(s)])
        .await
        .unwrap()[0]
        .clone();
    json_call(
        &url,
        true,
        "pool.set_name_label",
        &[json!(s), pool_ref.clone(), json!("a")],
    )
    .await
    .unwrap();
    json_call(
        &url,
        true,
        "pool.set_name_label",
        &[json!(s), pool_ref.clone(), json!("b")],
    )
    .await
    .unwrap();
    let v = json_call(&url, true, "event.next", &[json!(s)])
        .await
        .unwrap();
    let v = v.as_array().unwrap();
    assert_eq!(v.len(), 2, "uncoalesced");
    assert_eq!(v[0]["class"], json!("pool"));
    assert_eq!(v[0]["operation"], json!("mod"));
}

#[tokio::test(flavor = "multi_thread")]
async fn async_calls_complete_their_task() {
    let p = pool(1, 0).await;
    let url = p.master_url();
    let s = login(&url).await;
    let task = json_call(
        &url,
        true,
        "Async.network.create",
        &[json!(s), json!({"name_label": "n", "other_config": {}})],
    )
    .await
    .unwrap();
    let mut rec = Value::Null;
    for _ in 0..200 {
        rec = json_call(&url, true, "task.get_record", &[json!(s), task.clone()])
            .await
            .unwrap();
        if rec["status"] != json!("pending") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rec["status"], json!("success"));
    assert_eq!(rec["name_label"], json!("Async.network.create"));
    let result = rec["result"].as_str().unwrap();
    assert!(
        result.starts_with("<value>OpaqueRef:") && result.ends_with("</value>"),
        "{result}"
    );
    // Not async-capable → unknown.
    let e = code(json_call(&url, true, "Async.VM.get_all", &[json!(s)]).await);
    assert_eq!(e[0], "MESSAGE_METHOD_UNKNOWN");
    // task.create / cancel refused on a non-cancellable task / destroy.
    let t = json_call(
        &url,
        true,
        "task.create",
        &[json!(s), json!("upload"), json!("")],
    )
    .await
    .unwrap();
    let e = code(json_call(&url, true, "task.cancel", &[json!(s), t.clone()]).await);
    assert_eq!(e[0], "OPERATION_NOT_ALLOWED");
    json_call(&url, true, "task.destroy", &[json!(s), t])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_injection() {
    let p = pool(2, 1).await;
    let url = p.master_url();
    let s = login(&url).await;
    p.faults().fail_next(
        "VM.get_all",
        XapiError::new("VM_BAD_POWER_STATE", ["a", "b", "c"]),
    );
    let e = code(json_call(&url, true, "VM.get_all", &[json!(s)]).await);
    assert_eq!(e, vec!["VM_BAD_POWER_STATE", "a", "b", "c"]);
    json_call(&url, true, "VM.get_all", &[json!(s)])
        .await
        .unwrap();

    // Dropped connection: no answer at all.
    p.faults().drop_next_connections(1);
    let body = jsonrpc::encode_call(jsonrpc::Version::V2, &json!(1), "VM.get_all", &[json!(s)]);
    assert!(http("POST", &url, "/jsonrpc", "application/json", &body)
        .await
        .is_err());
    json_call(&url, true, "VM.get_all", &[json!(s)])
        .await
        .unwrap();

    // Latency is applied (no timing assertion: just that calls still work).
    p.faults().set_latency(Duration::from_millis(20));
    json_call(&url, true, "VM.get_all", &[json!(s)])
        .await
        .unwrap();
    p.faults().set_latency(Duration::ZERO);

    // Host restart loses its sessions.
    p.restart_host(0);
    let e = code(json_call(&url, true, "VM.get_all", &[json!(s)]).await);
    assert_eq!(e[0], "SESSION_INVALID");

    // Master change.
    p.set_master(1).unwrap();
    assert!(p.master_url().starts_with("http://127.0.0.2:"));
    let e = code(
        json_call(
            &url,
            true,
            "session.login_with_password",
            &[json!("root"), json!("root")],
        )
        .await,
    );
    assert_eq!(e, vec!["HOST_IS_SLAVE", "127.0.0.2"]);
    login(&p.master_url()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_several_pools() {
    let sims = vec![
        Sim::builder().build().unwrap(),
        Sim::builder().hosts(2).build().unwrap(),
    ];
    let pools = xapi_sim::serve_pools(sims, "127.0.0.1:0".parse().unwrap(), true)
        .await
        .unwrap();
    assert_eq!(pools.len(), 2);
    for p in &pools {
        let url = p.master_url();
        assert!(url.starts_with("https://127.0.0.1:"));
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(
                p.certificate_der().unwrap().to_vec(),
            ))
            .unwrap();
        let cfg = xo_tls::client_config_with_roots(false, roots).unwrap();
        let connector = tokio_rustls::TlsConnector::from(cfg);
        let tcp = TcpStream::connect(host_port(&url)).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        assert_root_login(tls, &url).await;
    }
}

#[test]
fn build_figures() {
    // Figures only (no timing assertion): run with --release --nocapture for the 10k-VM case.
    let n: usize = std::env::var("XAPI_SIM_BENCH_VMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let t = std::time::Instant::now();
    let sim = Sim::builder().hosts(3).vms(n).build().unwrap();
    let built = t.elapsed();
    let total = sim.state().read(|db| db.total());
    let s = sim
        .call(
            "session.login_with_password",
            vec![json!("root"), json!("root")],
        )
        .unwrap();
    let t = std::time::Instant::now();
    let all = sim.call("VM.get_all_records", vec![s.clone()]).unwrap();
    let fetched = t.elapsed();
    let t = std::time::Instant::now();
    let text = xmlrpc::encode_response(
        &Ok(all),
        &xapi_types::schema::class("VM")
            .unwrap()
            .message("get_all_records")
            .unwrap()
            .result,
    );
    println!(
        "{n} VMs: {total} objects built in {built:?}; VM.get_all_records {fetched:?}; XML-RPC encoding {:?} ({} bytes)",
        t.elapsed(),
        text.len()
    );
    let t = std::time::Instant::now();
    let batch = sim
        .call(
            "event.from",
            vec![s.clone(), json!(["*"]), json!(""), json!(1.0)],
        )
        .unwrap();
    let evented = t.elapsed();
    let t = std::time::Instant::now();
    let body = jsonrpc::encode_response(jsonrpc::Version::V2, &json!(1), &Ok(batch));
    println!(
        "event.from(*, \"\") {evented:?}; JSON encoding {:?} ({} bytes)",
        t.elapsed(),
        body.len()
    );
    assert!(total > n * 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_queue_overflow_is_events_lost() {
    let p = Sim::builder()
        .legacy_queue_limit(3)
        .build()
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let url = p.master_url();
    let s = login(&url).await;
    json_call(&url, true, "event.register", &[json!(s), json!(["*"])])
        .await
        .unwrap();
    let pool_ref = json_call(&url, true, "pool.get_all", &[json!(s)])
        .await
        .unwrap()[0]
        .clone();
    for i in 0..5 {
        json_call(
            &url,
            true,
            "pool.set_name_label",
            &[json!(s), pool_ref.clone(), json!(format!("p{i}"))],
        )
        .await
        .unwrap();
    }
    let e = code(json_call(&url, true, "event.next", &[json!(s)]).await);
    assert_eq!(e, vec!["EVENTS_LOST"]);
    // After EVENTS_LOST the cursor restarts from now.
    json_call(
        &url,
        true,
        "pool.set_name_label",
        &[json!(s), pool_ref, json!("again")],
    )
    .await
    .unwrap();
    let v = json_call(&url, true, "event.next", &[json!(s)])
        .await
        .unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn configuration_errors_and_shutdown() {
    let e = Sim::builder()
        .build()
        .unwrap()
        .serve("[::1]:0".parse().unwrap(), false)
        .await
        .unwrap_err();
    assert!(matches!(e, xapi_sim::SimError::Config(_)), "{e}");
    let p = pool(1, 0).await;
    assert!(p.set_master(7).is_err());
    let url = p.master_url();
    let s = login(&url).await;
    let t = events_from(&url, &s, json!(["pool"]), "", 1.0)
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let state = p.state().clone();
    let body = jsonrpc::encode_call(
        jsonrpc::Version::V2,
        &json!(1),
        "event.from",
        &[json!(s), json!(["pool"]), json!(t), json!(60.0)],
    );
    let blocked =
        tokio::spawn(
            async move { http("POST", &url, "/jsonrpc", "application/json", &body).await },
        );
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Shutting down wakes the blocked call: it answers an empty batch or its connection closes.
    p.shutdown().await;
    assert!(state.is_shutdown());
    let r = tokio::time::timeout(Duration::from_secs(20), blocked)
        .await
        .expect("woken")
        .unwrap();
    if let Ok(a) = r {
        let b = jsonrpc::decode_response(&a.body).unwrap().result.unwrap();
        assert!(b["events"].as_array().unwrap().is_empty());
    }
}

fn panicking(_: &xapi_sim::Ctx, _: Vec<Value>) -> Result<Value, XapiError> {
    panic!("scripted bug")
}

fn scripted_name(ctx: &xapi_sim::Ctx, params: Vec<Value>) -> Result<Value, XapiError> {
    // A scripted override: answers from the DB like the real getter, upper-cased.
    let r = xapi_types::Ref::from(params[0].as_str().unwrap_or_default());
    let name = ctx
        .pool
        .read(|db| db.field("VM", &r, "name_label").cloned())?;
    Ok(json!(name.as_str().unwrap_or_default().to_uppercase()))
}

#[tokio::test(flavor = "multi_thread")]
async fn scripted_handlers_and_panics() {
    let p = Sim::builder()
        .vms(1)
        .handler("VM.get_name_label", scripted_name)
        .handler("VM.clean_reboot", panicking)
        .build()
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let url = p.master_url();
    let s = login(&url).await;
    let vm = json_call(
        &url,
        true,
        "VM.get_by_name_label",
        &[json!(s), json!("vm-00000")],
    )
    .await
    .unwrap()[0]
        .clone();
    let n = json_call(&url, true, "VM.get_name_label", &[json!(s), vm.clone()])
        .await
        .unwrap();
    assert_eq!(n, json!("VM-00000"));
    // A panicking handler gives INTERNAL_ERROR (sync, both protocols) or a failed task (Async).
    let e = code(json_call(&url, true, "VM.clean_reboot", &[json!(s), vm.clone()]).await);
    assert_eq!(e[0], "INTERNAL_ERROR");
    let e = code(xml_call(&url, "VM.clean_reboot", &[json!(s), vm.clone()]).await);
    assert_eq!(e[0], "INTERNAL_ERROR");
    let task = json_call(&url, true, "Async.VM.clean_reboot", &[json!(s), vm])
        .await
        .unwrap();
    let mut rec = Value::Null;
    for _ in 0..200 {
        rec = json_call(&url, true, "task.get_record", &[json!(s), task.clone()])
            .await
            .unwrap();
        if rec["status"] != json!("pending") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rec["status"], json!("failure"));
    assert_eq!(rec["error_info"][0], json!("INTERNAL_ERROR"));
}
