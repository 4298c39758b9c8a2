//! The console route `/api/consoles/<id>` against an in-process simulated pool (TLS, connected with
//! `server.add`): refusals before the upgrade (401/403/404/409/503 and a non-WebSocket GET), RFB through the
//! proxy (ServerInit name, key events reaching the sim's screen), host ids → dom0 console, the ACL `operate`
//! right, and the edges of a session: VM halted mid-stream, the client leaving (the console slot is released),
//! the sim closing (its console idle timeout), garbage and text frames from the client, the proxy's idle limit.
//! Plus noVNC in headless Chromium (`novnc_in_chromium_shows_the_console_and_types`), driven by
//! `tests/peers/novnc/driver.mjs`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use xapi_sim::console::screen::PALETTE;
use xapi_sim::console::{font, screen_lines};
use xapi_sim::RunningPool;
use xapi_types::Ref;
use xo_server::console::ConsoleSettings;

use super::pools::{add_params, sim, sim_session};
use super::{config, start_with, Client, TIMEOUT};

struct Env {
    _dir: tempfile::TempDir,
    server: xo_server::RunningServer,
    pool: RunningPool,
    admin: Client,
    /// An admin token (for the cookie or Bearer).
    token: String,
    all: Map<String, Value>,
}

async fn env() -> Env {
    env_with(|b| b).await
}

async fn env_with(builder: impl FnOnce(xo_server::AppBuilder) -> xo_server::AppBuilder) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let pool = sim(2, 3).await;
    let server = start_with(config(dir.path()), builder).await;
    let mut admin = Client::admin(&server).await;
    admin.ok("server.add", add_params(&pool)).await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let all = loop {
        let all = match admin.ok("xo.getAllObjects", json!({})).await {
            Value::Object(m) => m,
            other => panic!("{other}"),
        };
        let running = all
            .values()
            .any(|o| o["type"] == "VM" && o["power_state"] == "Running");
        if running && all.values().any(|o| o["type"] == "VM-controller") {
            break all;
        }
        assert!(tokio::time::Instant::now() < deadline, "no objects");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let token = admin
        .ok("token.create", json!({"expiresIn": "1 hour"}))
        .await
        .as_str()
        .unwrap()
        .to_owned();
    Env {
        _dir: dir,
        server,
        pool,
        admin,
        token,
        all,
    }
}

impl Env {
    /// A guest VM in `state` (its XO object).
    fn vm(&self, state: &str) -> Value {
        let mut v: Vec<&Value> = self
            .all
            .values()
            .filter(|o| o["type"] == "VM" && o["power_state"] == state)
            .collect();
        v.sort_by_key(|o| o["id"].as_str().unwrap().to_owned());
        (*v.first().unwrap_or_else(|| panic!("no {state} VM"))).clone()
    }

    fn of_type(&self, kind: &str) -> Value {
        self.all
            .values()
            .find(|o| o["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
            .clone()
    }

    fn url(&self, id: &str) -> String {
        format!(
            "{}/api/consoles/{id}",
            self.server.url().replacen("http", "ws", 1)
        )
    }

    fn lines(&self, vm: &Value) -> Vec<String> {
        screen_lines(self.pool.state(), &xapi_ref(vm)).unwrap_or_default()
    }

    /// Polls the sim's screen of `vm` until a line contains `text` (bounded).
    async fn wait_screen_text(&self, vm: &Value, text: &str) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let lines = self.lines(vm);
            if lines.iter().any(|l| l.contains(text)) {
                return lines;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{text:?} never appeared on the console: {lines:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Halts a running VM other than `keep` and waits until xo-server's cache has it `Halted`.
    async fn halt_another(&mut self, keep: &Value) -> Value {
        let vm = self
            .all
            .values()
            .find(|o| o["type"] == "VM" && o["power_state"] == "Running" && o["id"] != keep["id"])
            .expect("a second running VM")
            .clone();
        self.sim_call("VM.hard_shutdown", vec![json!(xapi_ref(&vm).as_str())]);
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let o = self
                .admin
                .ok("xo.getAllObjects", json!({"filter": {"id": vm["id"]}}))
                .await;
            if o[id(&vm)]["power_state"] == "Halted" {
                return o[id(&vm)].clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "VM never halted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn sim_call(&self, method: &str, mut params: Vec<Value>) -> Value {
        params.insert(0, sim_session(&self.pool));
        self.pool.call(method, params).unwrap()
    }

    /// A non-admin user and a token of theirs.
    async fn user_token(&mut self, email: &str) -> (String, String) {
        let id = self
            .admin
            .ok("user.create", json!({"email": email, "password": "pw"}))
            .await
            .as_str()
            .unwrap()
            .to_owned();
        let mut c = Client::connect(&self.server).await;
        c.ok("session.signIn", json!({"email": email, "password": "pw"}))
            .await;
        let token = c
            .ok("token.create", json!({"expiresIn": "1 hour"}))
            .await
            .as_str()
            .unwrap()
            .to_owned();
        (id, token)
    }
}

fn xapi_ref(o: &Value) -> Ref {
    Ref(o["_xapiRef"].as_str().unwrap().to_owned())
}

fn id(o: &Value) -> String {
    o["id"].as_str().unwrap().to_owned()
}

/// How a test client authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
}

/// A console WebSocket with a byte buffer over its binary frames.
struct ConsoleWs {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    buf: Vec<u8>,
}

/// Opens `url`: the socket, or the HTTP status and body of the refusal.
async fn open(url: &str, auth: Auth<'_>) -> Result<ConsoleWs, (u16, String)> {
    let mut req = url.into_client_request().unwrap();
    match auth {
        Auth::None => {}
        Auth::Bearer(t) => {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Auth::Cookie(t) => {
            req.headers_mut()
                .insert("cookie", format!("lang=en; token={t}").parse().unwrap());
        }
    }
    req.headers_mut()
        .insert("sec-websocket-protocol", "binary".parse().unwrap());
    match tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(req))
        .await
        .expect("upgrade answered in time")
    {
        Ok((ws, res)) => {
            assert_eq!(res.headers()["sec-websocket-protocol"], "binary");
            Ok(ConsoleWs {
                ws,
                buf: Vec::new(),
            })
        }
        Err(WsError::Http(res)) => {
            let body = res
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((res.status().as_u16(), body))
        }
        Err(e) => panic!("unexpected WebSocket error: {e}"),
    }
}

async fn refused(url: &str, auth: Auth<'_>) -> (u16, String) {
    match open(url, auth).await {
        Ok(_) => panic!("{url} should be refused"),
        Err(r) => r,
    }
}

impl ConsoleWs {
    async fn send(&mut self, bytes: &[u8]) {
        self.ws.send(Message::binary(bytes.to_vec())).await.unwrap();
    }

    /// `n` bytes of the console stream (`None` if the socket closes first).
    async fn read_exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            match tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("console bytes in time")
            {
                Some(Ok(Message::Binary(b))) => self.buf.extend_from_slice(&b),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
        let rest = self.buf.split_off(n);
        Some(std::mem::replace(&mut self.buf, rest))
    }

    /// RFB 3.8 handshake with security None; returns the desktop name of ServerInit.
    async fn handshake(&mut self) -> String {
        assert_eq!(self.read_exact(12).await.unwrap(), b"RFB 003.008\n");
        self.send(b"RFB 003.008\n").await;
        assert_eq!(self.read_exact(2).await.unwrap(), [1, 1]);
        self.send(&[1]).await;
        assert_eq!(self.read_exact(4).await.unwrap(), [0, 0, 0, 0]);
        self.send(&[1]).await;
        let init = self.read_exact(24).await.unwrap();
        assert_eq!(&init[..4], &[2, 128, 1, 144], "640x400");
        let len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
        String::from_utf8(self.read_exact(len).await.unwrap()).unwrap()
    }

    /// KeyEvent down and up for each character (its keysym is its Latin-1 code).
    async fn type_text(&mut self, text: &str) {
        for c in text.bytes() {
            for down in [1u8, 0] {
                let mut m = vec![4, down, 0, 0];
                m.extend_from_slice(&u32::from(c).to_be_bytes());
                self.send(&m).await;
            }
        }
    }

    /// Reads until the socket closes; the close code if a Close frame came.
    async fn closed(&mut self) -> Option<(CloseCode, String)> {
        loop {
            match tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("the console socket should close")
            {
                Some(Ok(Message::Close(f))) => {
                    return f.map(|f| (f.code, f.reason.to_string()));
                }
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }
}

// ------------------------------------------------------------------ through the proxy

#[tokio::test(flavor = "multi_thread")]
async fn console_with_bearer_or_cookie_shows_the_vm_and_takes_keys() {
    let e = env().await;
    let vm = e.vm("Running");
    for (auth, text) in [
        (Auth::Bearer(&e.token), "bearer1"),
        (Auth::Cookie(&e.token), "cookie2"),
    ] {
        let mut c = open(&e.url(&id(&vm)), auth).await.unwrap();
        assert_eq!(c.handshake().await, vm["name_label"].as_str().unwrap());
        c.type_text(text).await;
        let lines = e.wait_screen_text(&vm, text).await;
        assert!(lines[0].contains(vm["name_label"].as_str().unwrap()));
        // a full non-incremental update comes back through the proxy byte for byte: 640x400 raw 32 bpp
        c.send(&[3, 0, 0, 0, 0, 0, 2, 128, 1, 144]).await;
        let head = c.read_exact(16).await.unwrap();
        assert_eq!(&head[..4], &[0, 0, 0, 1]);
        assert_eq!(&head[4..12], &[0, 0, 0, 0, 2, 128, 1, 144]);
        assert_eq!(&head[12..16], &[0, 0, 0, 0], "raw encoding");
        let px = c.read_exact(640 * 400 * 4).await.unwrap();
        assert_eq!(ocr(&px, 640, 400), e.lines(&vm));
        c.ws.close(None).await.unwrap();
    }
    e.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn host_id_opens_its_control_domain_console() {
    let e = env().await;
    let host = e.of_type("host");
    let dom0 = e.all[host["controlDomain"].as_str().unwrap()].clone();
    assert_eq!(dom0["type"], "VM-controller");
    for target in [id(&host), id(&dom0)] {
        let mut c = open(&e.url(&target), Auth::Bearer(&e.token)).await.unwrap();
        assert_eq!(c.handshake().await, dom0["name_label"].as_str().unwrap());
        c.type_text("dom0").await;
        e.wait_screen_text(&dom0, "dom0").await;
    }
    e.server.shutdown().await;
}

// ------------------------------------------------------------------ refusals before the upgrade

#[tokio::test(flavor = "multi_thread")]
async fn console_refusals_come_before_the_upgrade() {
    let mut e = env().await;
    let vm = e.vm("Running");
    let url = e.url(&id(&vm));
    // authentication
    let (status, _) = refused(&url, Auth::None).await;
    assert_eq!(status, 401);
    for bad in ["nope", ""] {
        assert_eq!(refused(&url, Auth::Bearer(bad)).await.0, 401);
        assert_eq!(refused(&url, Auth::Cookie(bad)).await.0, 401);
    }
    // a deleted token no longer opens anything
    let t2 = e
        .admin
        .ok("token.create", json!({"expiresIn": "1 hour"}))
        .await;
    let t2 = t2.as_str().unwrap().to_owned();
    assert!(open(&url, Auth::Cookie(&t2)).await.is_ok());
    e.admin.ok("token.delete", json!({"tokens": [t2]})).await;
    assert_eq!(refused(&url, Auth::Cookie(&t2)).await.0, 401);
    // objects
    let token = e.token.clone();
    assert_eq!(
        refused(&e.url("no-such-id"), Auth::Bearer(&token)).await.0,
        404
    );
    let sr = e.of_type("SR");
    assert_eq!(refused(&e.url(&id(&sr)), Auth::Bearer(&token)).await.0, 404);
    let halted = e.halt_another(&vm).await;
    let (status, body) = refused(&e.url(&id(&halted)), Auth::Bearer(&token)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("Halted"), "{body}");
    // a plain GET with valid credentials is not upgraded (and opens no console)
    let http = reqwest_like_get(&e.server, &format!("/api/consoles/{}", id(&vm)), &token).await;
    assert!(
        http.starts_with("HTTP/1.1 426") || http.starts_with("HTTP/1.1 400"),
        "{http}"
    );
    // rights: a user without ACL gets 403; `viewer` is not enough; `operator` is
    let (user, utoken) = e.user_token("op@x").await;
    let (status, body) = refused(&url, Auth::Cookie(&utoken)).await;
    assert_eq!(status, 403, "{body}");
    e.admin
        .ok(
            "acl.add",
            json!({"subject": user, "object": id(&vm), "action": "viewer"}),
        )
        .await;
    assert_eq!(refused(&url, Auth::Cookie(&utoken)).await.0, 403);
    e.admin
        .ok(
            "acl.add",
            json!({"subject": user, "object": id(&vm), "action": "operator"}),
        )
        .await;
    let mut c = open(&url, Auth::Cookie(&utoken)).await.unwrap();
    assert_eq!(c.handshake().await, vm["name_label"].as_str().unwrap());
    // operate on the VM does not extend to the others; a grant on the host covers its dom0 (`$container`)
    // (the right is checked before the power state: the halted VM answers 403, not 409)
    assert_eq!(
        refused(&e.url(&id(&halted)), Auth::Cookie(&utoken)).await.0,
        403
    );
    let host = e.of_type("host");
    assert_eq!(
        refused(&e.url(&id(&host)), Auth::Cookie(&utoken)).await.0,
        403
    );
    e.admin
        .ok(
            "acl.add",
            json!({"subject": user, "object": id(&host), "action": "operator"}),
        )
        .await;
    let mut d = open(&e.url(&id(&host)), Auth::Cookie(&utoken))
        .await
        .unwrap();
    d.handshake().await;
    e.server.shutdown().await;
}

/// A raw HTTP/1.1 GET (no upgrade) with the token cookie; the whole answer head.
async fn reqwest_like_get(server: &xo_server::RunningServer, path: &str, token: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: token={token}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn console_session_limit_and_client_leaving() {
    let e = env().await;
    let vm = e.vm("Running");
    let url = e.url(&id(&vm));
    let pool_ref = e.pool.state().pool_ref();
    e.sim_call(
        "pool.set_limit_console_sessions",
        vec![json!(pool_ref.as_str()), json!(true)],
    );
    let mut first = open(&url, Auth::Bearer(&e.token)).await.unwrap();
    first.handshake().await;
    // the host refuses a second console while one is open: 503 before the upgrade
    let (status, body) = refused(&url, Auth::Bearer(&e.token)).await;
    assert_eq!(status, 503, "{body}");
    // the client goes away without a Close frame: the proxy closes the console, the slot frees up
    drop(first);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut second = loop {
        match open(&url, Auth::Bearer(&e.token)).await {
            Ok(c) => break c,
            Err((503, _)) => {
                assert!(tokio::time::Instant::now() < deadline, "slot never freed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("{other:?}"),
        }
    };
    second.handshake().await;
    // a clean Close from the client frees it as well
    second.ws.close(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match open(&url, Auth::Bearer(&e.token)).await {
            Ok(mut c) => {
                c.handshake().await;
                break;
            }
            Err((503, _)) => {
                assert!(tokio::time::Instant::now() < deadline, "slot never freed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    e.server.shutdown().await;
}

// ------------------------------------------------------------------ a session's end

#[tokio::test(flavor = "multi_thread")]
async fn vm_halted_mid_stream_closes_the_socket() {
    let e = env().await;
    let vm = e.vm("Running");
    let mut c = open(&e.url(&id(&vm)), Auth::Bearer(&e.token))
        .await
        .unwrap();
    c.handshake().await;
    e.sim_call("VM.hard_shutdown", vec![json!(xapi_ref(&vm).as_str())]);
    let (code, reason) = c.closed().await.expect("a Close frame");
    assert_eq!(code, CloseCode::Normal);
    assert_eq!(reason, "console closed");
    // and it cannot be reopened: the VM is halted now (once xo-server's cache knows)
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match open(&e.url(&id(&vm)), Auth::Bearer(&e.token)).await {
            Err((409, _)) => break,
            Err((502, _)) | Ok(_) => {
                assert!(tokio::time::Instant::now() < deadline);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    e.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sim_closing_the_console_closes_the_socket() {
    let e = env().await;
    let vm = e.vm("Running");
    let pool_ref = e.pool.state().pool_ref();
    // XAPI's console idle timeout (seconds): the host ends the session
    e.sim_call(
        "pool.set_vm_console_idle_timeout",
        vec![json!(pool_ref.as_str()), json!(1)],
    );
    let mut c = open(&e.url(&id(&vm)), Auth::Bearer(&e.token))
        .await
        .unwrap();
    c.handshake().await;
    let (code, reason) = c.closed().await.expect("a Close frame");
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Normal, "console closed")
    );
    e.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_from_the_client_ends_the_session_and_text_is_ignored() {
    let e = env().await;
    let vm = e.vm("Running");
    let mut c = open(&e.url(&id(&vm)), Auth::Cookie(&e.token))
        .await
        .unwrap();
    c.handshake().await;
    // text frames are not console bytes: ignored, the session goes on
    c.ws.send(Message::text("\u{4}\u{1}hello")).await.unwrap();
    c.type_text("ok").await;
    e.wait_screen_text(&vm, "ok").await;
    // an unknown RFB message type: the console server ends the session, the socket closes
    c.send(&[0xFF, 0xFF, 0xFF, 0xFF]).await;
    let (code, _) = c.closed().await.expect("a Close frame");
    assert_eq!(code, CloseCode::Normal);
    // a message over the size limit is a protocol error on the WebSocket: closed too
    let mut c = open(&e.url(&id(&vm)), Auth::Cookie(&e.token))
        .await
        .unwrap();
    c.handshake().await;
    let _ = c.ws.send(Message::binary(vec![0u8; 2 << 20])).await;
    assert_ne!(
        c.closed().await.map(|(code, _)| code),
        Some(CloseCode::Normal)
    );
    // garbage before the RFB handshake is done
    let mut c = open(&e.url(&id(&vm)), Auth::Cookie(&e.token))
        .await
        .unwrap();
    assert_eq!(c.read_exact(12).await.unwrap(), b"RFB 003.008\n");
    c.send(b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(c.closed().await.is_some());
    e.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_idle_limit_closes_the_socket() {
    let settings = ConsoleSettings {
        limits: console_proxy::Limits {
            idle: Some(Duration::from_millis(300)),
            ..Default::default()
        },
        ..Default::default()
    };
    let e = env_with(move |b| b.extension(Arc::new(settings))).await;
    let vm = e.vm("Running");
    let mut c = open(&e.url(&id(&vm)), Auth::Bearer(&e.token))
        .await
        .unwrap();
    c.handshake().await;
    let (code, reason) = c.closed().await.expect("a Close frame");
    assert_eq!((code, reason.as_str()), (CloseCode::Away, "idle timeout"));
    e.server.shutdown().await;
}

// ------------------------------------------------------------------ noVNC in Chromium

/// The text of a 640x400 RGBA (or 32 bpp BGRX from the sim) framebuffer, read back with the sim's font: each
/// 8x16 cell is tried with the console's (foreground, background) colour pairs.
fn ocr_with(px: &[u8], w: usize, h: usize, rgb: impl Fn(&[u8]) -> (u8, u8, u8)) -> Vec<String> {
    let pairs = [(1usize, 0usize), (3, 2), (0, 1)];
    let (cols, rows) = (w / font::WIDTH, h / font::HEIGHT);
    (0..rows)
        .map(|r| {
            let line: String = (0..cols)
                .map(|c| {
                    let pixel = |x: usize, y: usize| {
                        let i = ((r * font::HEIGHT + y) * w + c * font::WIDTH + x) * 4;
                        rgb(&px[i..i + 4])
                    };
                    for (fg, bg) in pairs {
                        let (fg, bg) = (PALETTE[fg], PALETTE[bg]);
                        let mut glyph = [0u8; font::HEIGHT];
                        let mut ok = true;
                        for (y, row) in glyph.iter_mut().enumerate() {
                            for x in 0..font::WIDTH {
                                let p = pixel(x, y);
                                if p == fg {
                                    *row |= 0x80 >> x;
                                } else if p != bg {
                                    ok = false;
                                }
                            }
                        }
                        if let Some(ch) = ok.then(|| font::recognise(&glyph)).flatten() {
                            return ch as char;
                        }
                    }
                    '\u{FFFD}'
                })
                .collect();
            line.trim_end().to_owned()
        })
        .collect()
}

/// The sim's native pixel format: 32 bpp little-endian, red at bit 16 (bytes B, G, R, X).
fn ocr(px: &[u8], w: usize, h: usize) -> Vec<String> {
    ocr_with(px, w, h, |p| (p[2], p[1], p[0]))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Node, Chromium and the peers' node_modules, or a failure pointing at the setup script (never a skip).
fn browser_prerequisites() -> (PathBuf, PathBuf) {
    let root = repo_root();
    let peers = root.join("tests/peers");
    let setup =
        "run scripts/setup-peers.sh (installs nodejs, chromium and tests/peers/node_modules)";
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.exists(),
        "{} not found: {setup}",
        chromium.display()
    );
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(node_ok, "node not found: {setup}");
    for m in ["playwright-core/package.json", "@novnc/novnc/core/rfb.js"] {
        let p = peers.join("node_modules").join(m);
        assert!(p.exists(), "{} missing: {setup}", p.display());
    }
    (peers.join("novnc/driver.mjs"), chromium)
}

struct Driver {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Driver {
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(120), self.lines.next_line())
            .await
            .expect("the browser driver answers in time")
            .unwrap()
            .expect("the browser driver exited");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("driver: {line}"));
        assert!(v.get("error").is_none(), "browser driver failed: {v:#}");
        v
    }

    async fn cmd(&mut self, cmd: Value) -> Value {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        self.next().await
    }

    /// Captures the page until the canvas' text satisfies `pred` (bounded); the last capture and its text.
    async fn capture_until(
        &mut self,
        name: &str,
        pred: impl Fn(&[String]) -> bool,
    ) -> (Value, Vec<String>) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let cap = self.cmd(json!({"cmd": "capture", "name": name})).await;
            let rgba = std::fs::read(cap["rgba"].as_str().unwrap()).unwrap();
            let (w, h) = (
                cap["width"].as_u64().unwrap(),
                cap["height"].as_u64().unwrap(),
            );
            assert_eq!((w, h), (640, 400));
            // canvas pixels are R, G, B, A
            let text = ocr_with(&rgba, 640, 400, |p| (p[0], p[1], p[2]));
            if pred(&text) {
                return (cap, text);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the browser never showed the expected console: {text:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn novnc_in_chromium_shows_the_console_and_types() {
    let (script, chromium) = browser_prerequisites();
    let e = env().await;
    let vm = e.vm("Running");
    let out = std::env::temp_dir().join(format!("xo-console-test-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let cfg = json!({
        "ws": e.url(&id(&vm)),
        "token": e.token,
        "outDir": out,
        "chromium": chromium,
    });
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .arg(cfg.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node");
    let stdin = child.stdin.take().unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut d = Driver {
        child,
        stdin,
        lines,
    };
    let ready = d.next().await;
    assert_eq!(ready["event"], "ready");
    assert_eq!(ready["desktopName"], vm["name_label"]);

    // what the browser shows is the sim's screen (title with the VM name, boot log, prompt)
    let expected = e.lines(&vm);
    let (cap, text) = d
        .capture_until("console", |t| t == expected.as_slice())
        .await;
    assert!(text[0].contains(vm["name_label"].as_str().unwrap()));
    println!("console screenshot: {}", cap["png"].as_str().unwrap());

    // keys typed in the browser reach the console, and the browser shows them
    d.cmd(json!({"cmd": "type", "text": "hello from chromium"}))
        .await;
    let lines = e.wait_screen_text(&vm, "hello from chromium").await;
    let (cap, _) = d.capture_until("typed", |t| t == lines.as_slice()).await;
    println!("typed screenshot: {}", cap["png"].as_str().unwrap());

    let state = d.cmd(json!({"cmd": "state"})).await;
    assert_eq!(state["state"]["connected"], true, "{state:#}");
    d.cmd(json!({"cmd": "quit"})).await;
    let status = tokio::time::timeout(TIMEOUT, d.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    e.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn token_expiry_bounds_the_session() {
    let e = env().await;
    let vm = e.vm("Running");
    let store = e.server.app().store();
    let admin = store.user_by_email("admin@admin.net").unwrap().unwrap();
    let now = xo_server::now_ms();
    let (expired, _) = store
        .create_token(&admin.id, now - 10_000, now - 1, None, None)
        .unwrap();
    assert_eq!(
        refused(&e.url(&id(&vm)), Auth::Cookie(&expired)).await.0,
        401
    );
    let (short, _) = store
        .create_token(&admin.id, now, now + 5_000, None, None)
        .unwrap();
    let mut c = open(&e.url(&id(&vm)), Auth::Cookie(&short)).await.unwrap();
    c.handshake().await;
    let (code, reason) = c.closed().await.expect("a Close frame");
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Away, "session time limit")
    );
    e.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn console_problems_on_the_host_are_http_errors() {
    let e = env().await;
    let vm = e.vm("Running");
    let vm_ref = xapi_ref(&vm);
    let console = e.pool.state().read(|db| {
        db.find("console", |c| c["VM"] == json!(vm_ref.as_str()))
            .into_iter()
            .next()
            .expect("a console row")
    });
    let set = |field: &str, value: Value| {
        e.pool
            .state()
            .write(|db| db.set_field("console", &console, field, value))
            .unwrap();
    };
    let location = e.pool.state().read(|db| {
        db.get("console", &console).unwrap()["location"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    // the location names a host where the VM does not run: the host answers 500 → 502
    let elsewhere = if location.starts_with("https://127.0.0.1/") {
        location.replacen("https://127.0.0.1/", "https://127.0.0.2/", 1)
    } else {
        location.replacen("https://127.0.0.2/", "https://127.0.0.1/", 1)
    };
    assert_ne!(elsewhere, location);
    set("location", json!(elsewhere));
    let (status, body) = refused(&e.url(&id(&vm)), Auth::Bearer(&e.token)).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HTTP 500"), "{body}");
    // no graphical (rfb) console at all: 409
    set("location", json!(location));
    set("protocol", json!("vt100"));
    let (status, body) = refused(&e.url(&id(&vm)), Auth::Bearer(&e.token)).await;
    assert_eq!(status, 409, "{body}");
    set("protocol", json!("rfb"));
    let mut c = open(&e.url(&id(&vm)), Auth::Bearer(&e.token))
        .await
        .unwrap();
    c.handshake().await;
    e.server.shutdown().await;
}
