//! XO tasks: every JSON-RPC call runs as an `API call: <method>` task (kept when it fails, forgotten when it
//! succeeds), served by the REST API under `/rest/v0/tasks` (listing with `fields`/`filter`/`limit`/`ndjson`,
//! `?wait=result`, abort, delete) with cookie or Basic authentication, administrators only.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use xo_server::tasks::Task;
use xo_server::{ApiError, Method, RunningServer};

use super::{config, start_with, Client, TIMEOUT};

/// A raw HTTP/1.1 answer.
pub(super) struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// `Authorization: Basic …`.
pub(super) fn basic(user: &str, password: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::from("Basic ");
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One request on a fresh connection (`Connection: close`), the whole answer.
pub(super) async fn rest(
    server: &RunningServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    rest_at(server.local_addr(), method, path, headers).await
}

/// [`rest`] to an address.
pub(super) async fn rest_at(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut raw))
        .await
        .expect("no HTTP answer in time")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn admin_auth() -> (&'static str, String) {
    ("authorization", basic("admin@admin.net", "admin"))
}

/// One request as the administrator (Basic).
async fn as_admin(server: &RunningServer, method: &str, path: &str) -> HttpResponse {
    let (k, v) = admin_auth();
    rest(server, method, path, &[(k, &v)]).await
}

async fn get(server: &RunningServer, path: &str) -> HttpResponse {
    as_admin(server, "GET", path).await
}

/// The status of a `GET path` with these headers.
async fn get_status(server: &RunningServer, path: &str, headers: &[(&str, &str)]) -> u16 {
    rest(server, "GET", path, headers).await.status
}

/// Waits until some request watches task `id`.
async fn until_watched(server: &RunningServer, id: &str) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while server.app().tasks().watchers(id) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "nobody watches");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Methods for these tests: `test.block` waits until `release` is notified, `test.waitAbort` until its task is
/// aborted.
fn test_methods(release: Arc<Notify>) -> Vec<Method> {
    vec![
        Method::new("test.block", move |_ctx, _p| {
            let release = release.clone();
            async move {
                release.notified().await;
                Ok(json!("released"))
            }
        }),
        Method::new("test.waitAbort", |_ctx, _p| async move {
            let task = Task::current().ok_or_else(|| ApiError::internal("no current task"))?;
            task.set_progress(10);
            task.aborted().await;
            Err(ApiError::internal("aborted by the user"))
        }),
    ]
}

/// Polls the log until a task of `method` with `status` shows up; the task.
async fn wait_for_task(server: &RunningServer, method: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let found = server.app().tasks().list(
            |t| t["properties"]["method"] == method && t["status"] == status,
            None,
        );
        if let Some(t) = found.into_iter().next() {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {status} task for {method}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn api_calls_run_as_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let release = Arc::new(Notify::new());
    let methods = test_methods(release.clone());
    let server = start_with(config(dir.path()), |b| b.methods(methods)).await;
    let mut c = Client::admin(&server).await;
    let admin_id = c.ok("session.getUser", json!({})).await["id"].clone();
    // a successful call leaves nothing behind (XO's clearLogOnSuccess)
    c.ok("system.getVersion", json!({})).await;
    assert!(
        server.app().tasks().is_empty(),
        "{:?}",
        server.app().tasks().list(|_| true, None)
    );
    // a failed call stays, with the error
    let e = c.err("server.remove", json!({"id": "nope"})).await;
    let failed = wait_for_task(&server, "server.remove", "failure").await;
    assert_eq!(failed["properties"]["name"], "API call: server.remove");
    assert_eq!(failed["properties"]["type"], "api.call");
    assert_eq!(failed["properties"]["params"], json!({"id": "nope"}));
    assert_eq!(failed["properties"]["userId"], admin_id);
    assert_eq!(failed["result"]["code"], e["code"]);
    assert!(failed["end"].is_number());
    // NO_LOG methods never get a task, even failing
    c.err("pool.listMissingPatches", json!({"host": "nope"}))
        .await;
    assert!(server
        .app()
        .tasks()
        .list(
            |t| t["properties"]["method"] == "pool.listMissingPatches",
            None
        )
        .is_empty());
    // calls refused before running (validation) get no task either
    c.err("server.remove", json!({})).await;
    assert_eq!(server.app().tasks().len(), 1);

    // a running call is visible, with its secrets redacted
    let mut other = Client::admin(&server).await;
    let call = tokio::spawn(async move {
        other
            .ok(
                "test.block",
                json!({"password": "s3cret", "user": {"token": "t0k"}}),
            )
            .await
    });
    let pending = wait_for_task(&server, "test.block", "pending").await;
    assert_eq!(
        pending["properties"]["params"],
        json!({"password": "* obfuscated *", "user": {"token": "* obfuscated *"}})
    );
    let id = pending["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 9);
    // REST: hrefs, fields, filter, limit, ndjson
    let list = get(&server, "/rest/v0/tasks").await;
    assert_eq!(list.status, 200, "{}", list.body);
    let hrefs = list.json();
    assert_eq!(hrefs.as_array().unwrap().len(), 2);
    assert!(hrefs
        .as_array()
        .unwrap()
        .contains(&json!(format!("/rest/v0/tasks/{id}"))));
    let picked = get(
        &server,
        "/rest/v0/tasks?fields=id,status,properties.method&filter=status:pending",
    )
    .await
    .json();
    assert_eq!(
        picked,
        json!([{"id": id, "status": "pending", "properties": {"method": "test.block"},
            "href": format!("/rest/v0/tasks/{id}")}])
    );
    let limited = get(&server, "/rest/v0/tasks?limit=1&fields=id")
        .await
        .json();
    assert_eq!(limited.as_array().unwrap().len(), 1);
    let nd = get(&server, "/rest/v0/tasks?ndjson=true&fields=status").await;
    assert_eq!(nd.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = nd
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(get(&server, "/rest/v0/tasks?filter=(").await.status, 400);
    assert_eq!(get(&server, "/rest/v0/tasks?limit=x").await.status, 400);
    let one = get(&server, &format!("/rest/v0/tasks/{id}")).await.json();
    assert_eq!(one["status"], "pending");
    assert_eq!(
        get(&server, &format!("/rest/v0/tasks/{id}/actions"))
            .await
            .json(),
        json!([format!("/rest/v0/tasks/{id}/actions/abort")])
    );
    // ?wait=result answers once the call ended, although the log then forgets it
    let path = format!("/rest/v0/tasks/{id}?wait=result");
    let release_when_watched = async {
        // let the call finish only once the REST request watches the task
        until_watched(&server, &id).await;
        release.notify_one();
    };
    let (ended, ()) = tokio::join!(get(&server, &path), release_when_watched);
    assert_eq!(ended.status, 200);
    let ended = ended.json();
    assert_eq!(ended["status"], "success", "{ended}");
    assert_eq!(ended["result"], "released");
    assert_eq!(call.await.unwrap(), "released");
    assert_eq!(
        get(&server, &format!("/rest/v0/tasks/{id}")).await.status,
        404
    );
    assert_eq!(
        get(&server, "/rest/v0/tasks/nope?wait=result").await.status,
        404
    );
    server.shutdown().await;
}

#[tokio::test]
async fn long_task_is_aborted_through_rest() {
    let dir = tempfile::tempdir().unwrap();
    let methods = test_methods(Arc::new(Notify::new()));
    let server = start_with(config(dir.path()), |b| b.methods(methods)).await;
    let mut c = Client::admin(&server).await;
    let call = tokio::spawn(async move { c.call("test.waitAbort", json!({})).await });
    let pending = wait_for_task(&server, "test.waitAbort", "pending").await;
    let id = pending["id"].as_str().unwrap().to_owned();
    assert_eq!(pending["properties"]["progress"], 10);
    // a pending task cannot be deleted
    let del = as_admin(&server, "DELETE", &format!("/rest/v0/tasks/{id}")).await;
    assert_eq!(del.status, 409, "{}", del.body);
    let abort = as_admin(
        &server,
        "POST",
        &format!("/rest/v0/tasks/{id}/actions/abort"),
    )
    .await;
    assert_eq!(abort.status, 202, "{}", abort.body);
    assert_eq!(
        abort.header("location"),
        Some(format!("/rest/v0/tasks/{id}").as_str())
    );
    let ended = get(&server, &format!("/rest/v0/tasks/{id}?wait=result"))
        .await
        .json();
    assert_eq!(ended["status"], "aborted", "{ended}");
    assert!(ended["abortionRequestedAt"].is_number());
    assert_eq!(ended["result"]["message"], "aborted by the user");
    let answer = call.await.unwrap();
    assert!(answer.get("error").is_some(), "{answer}");
    // a finished task: no action, no abort (404), deletable once
    assert_eq!(
        get(&server, &format!("/rest/v0/tasks/{id}/actions"))
            .await
            .json(),
        json!([])
    );
    let again = as_admin(
        &server,
        "POST",
        &format!("/rest/v0/tasks/{id}/actions/abort"),
    )
    .await;
    assert_eq!(again.status, 404);
    let del = as_admin(&server, "DELETE", &format!("/rest/v0/tasks/{id}")).await;
    assert_eq!(del.status, 200);
    let del = as_admin(&server, "DELETE", &format!("/rest/v0/tasks/{id}")).await;
    assert_eq!(del.status, 404);
    // DELETE on the collection forgets every finished task
    let mut c = Client::admin(&server).await;
    c.err("server.remove", json!({"id": "nope"})).await;
    assert_eq!(server.app().tasks().len(), 1);
    assert_eq!(
        as_admin(&server, "DELETE", "/rest/v0/tasks").await.status,
        200
    );
    assert!(server.app().tasks().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn rest_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), |b| b).await;
    let mut c = Client::admin(&server).await;
    let token = c.ok("token.create", json!({})).await;
    let token = token.as_str().unwrap();
    let path = "/rest/v0/tasks";
    let xo_cli_cookie = format!("authenticationToken={token}");
    let web_ui_cookie = format!("other=1; token={token}");
    let token_cookie = format!("token={token}");
    let admin = basic("admin@admin.net", "admin");
    let nobody = basic("nobody@x", "pw");
    let cases: [(&[(&str, &str)], u16); 8] = [
        // no credentials
        (&[], 401),
        // cookies (xo-cli's and the web UI's)
        (&[("cookie", &xo_cli_cookie)], 200),
        (&[("cookie", &web_ui_cookie)], 200),
        (&[("cookie", "token=garbage")], 401),
        // Basic
        (&[("authorization", &admin)], 200),
        (&[("authorization", "Basic !!!")], 401),
        (&[("authorization", &nobody)], 401),
        // both at once
        (&[("cookie", &token_cookie), ("authorization", &admin)], 400),
    ];
    for (i, (headers, status)) in cases.into_iter().enumerate() {
        assert_eq!(get_status(&server, path, headers).await, status, "case {i}");
    }
    // not an administrator
    c.ok("user.create", json!({"email": "user@x", "password": "pw"}))
        .await;
    let user = basic("user@x", "pw");
    assert_eq!(
        get_status(&server, path, &[("authorization", &user)]).await,
        403
    );
    assert_eq!(
        get_status(&server, "/rest/v0/tasks/x", &[("authorization", &user)]).await,
        403
    );
    server.shutdown().await;
}

#[tokio::test]
async fn waiting_requests_do_not_block_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), |b| b).await;
    // a task that never ends
    let task = server
        .app()
        .tasks()
        .create("endless", serde_json::Map::new());
    let id = task.id().to_owned();
    let addr = server.local_addr();
    let path = format!("/rest/v0/tasks/{id}?wait=result");
    let waiter = tokio::spawn(async move {
        let (k, v) = admin_auth();
        rest_at(addr, "GET", &path, &[(k, &v)]).await
    });
    until_watched(&server, &id).await;
    tokio::time::timeout(TIMEOUT, server.shutdown())
        .await
        .expect("shutdown waited for the task");
    let answer = waiter.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["status"], "pending");
    drop(task);
}
