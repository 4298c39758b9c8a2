//! The proxy against the simulator in-process: a WebSocket client ↔ `proxy` ↔ `CONNECT /console` on xapi-sim.

use std::collections::VecDeque;
use std::time::Duration;

use console_proxy::{
    open_console, proxy, ConsoleTarget, EndReason, Limits, ProxyError, ProxyStats,
};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use xapi_sim::{RunningPool, Sim};
use xapi_types::Ref;

/// Safety net against hangs (never a timing assertion).
const LONG: Duration = Duration::from_secs(20);

struct Fixture {
    pool: RunningPool,
    session: String,
    vm: Ref,
    tls: bool,
}

async fn fixture(tls: bool) -> Fixture {
    let pool = Sim::builder()
        .hosts(1)
        .vms(3)
        .build()
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap(), tls)
        .await
        .unwrap();
    let session = pool
        .call(
            "session.login_with_password",
            vec![json!("root"), json!("root")],
        )
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    let vm = pool.state().read(|db| {
        db.find("VM", |r| {
            r["power_state"] == json!("Running")
                && r["is_control_domain"] == json!(false)
                && r["is_a_template"] == json!(false)
        })
        .into_iter()
        .min()
        .unwrap()
    });
    Fixture {
        pool,
        session,
        vm,
        tls,
    }
}

impl Fixture {
    /// `console.location` of a VM's rfb console (the sim writes it without a port, like XAPI).
    fn location_of(&self, vm: &Ref) -> String {
        self.pool.state().read(|db| {
            let c = db
                .find("console", |c| {
                    c["VM"] == json!(vm.as_str()) && c["protocol"] == json!("rfb")
                })
                .into_iter()
                .next()
                .unwrap();
            db.get("console", &c).unwrap()["location"]
                .as_str()
                .unwrap()
                .to_owned()
        })
    }

    fn target_of(&self, vm: &Ref) -> ConsoleTarget {
        let mut loc = self.location_of(vm);
        if !self.tls {
            loc = loc.replacen("https://", "http://", 1);
        }
        let mut t = ConsoleTarget::new(loc, self.session.clone()).default_port(self.pool.port());
        if let Some(der) = self.pool.certificate_der() {
            t = t.extra_root(der.to_vec());
        }
        t
    }

    fn target(&self) -> ConsoleTarget {
        self.target_of(&self.vm)
    }
}

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Serve one WebSocket connection with `proxy(target, limits)`; the connected client and the proxy's outcome.
async fn through_proxy(
    target: ConsoleTarget,
    limits: Limits,
) -> (Client, JoinHandle<Result<ProxyStats, ProxyError>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        proxy(ws, &target, &limits).await
    });
    let (client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    (client, task)
}

async fn outcome(
    task: JoinHandle<Result<ProxyStats, ProxyError>>,
) -> Result<ProxyStats, ProxyError> {
    tokio::time::timeout(LONG, task)
        .await
        .expect("proxy ends in time")
        .expect("proxy task")
}

/// A byte-stream view of the client WebSocket.
struct WsBytes {
    ws: Client,
    buf: VecDeque<u8>,
    closed: Option<Option<CloseCode>>,
}

impl WsBytes {
    fn new(ws: Client) -> Self {
        WsBytes {
            ws,
            buf: VecDeque::new(),
            closed: None,
        }
    }

    async fn send(&mut self, b: &[u8]) {
        self.ws.send(Message::binary(b.to_vec())).await.unwrap();
    }

    async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            match tokio::time::timeout(LONG, self.ws.next())
                .await
                .expect("data in time")
            {
                Some(Ok(Message::Binary(b))) => self.buf.extend(b.iter()),
                Some(Ok(Message::Close(f))) => panic!("closed early: {f:?}"),
                Some(Ok(_)) => {}
                other => panic!("stream ended: {other:?}"),
            }
        }
        self.buf.drain(..n).collect()
    }

    /// Wait for the server's Close (or the end of the stream); its code.
    async fn wait_close(&mut self) -> Option<CloseCode> {
        if let Some(c) = self.closed {
            return c;
        }
        loop {
            match tokio::time::timeout(LONG, self.ws.next())
                .await
                .expect("close in time")
            {
                Some(Ok(Message::Close(f))) => {
                    let c = f.map(|f| f.code);
                    self.closed = Some(c);
                    return c;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// One end of an RFB conversation: the raw tunnel or the proxied WebSocket.
#[allow(clippy::large_enum_variant)]
enum Side {
    Direct(Box<dyn console_proxy::ConsoleIo>, VecDeque<u8>),
    Proxied(WsBytes, u64),
}

impl Side {
    async fn send(&mut self, b: &[u8]) {
        match self {
            Side::Direct(io, _) => io.write_all(b).await.unwrap(),
            Side::Proxied(ws, sent) => {
                *sent += b.len() as u64;
                ws.send(b).await
            }
        }
    }

    async fn recv(&mut self, n: usize) -> Vec<u8> {
        match self {
            Side::Direct(io, pending) => {
                let mut out: Vec<u8> = pending.drain(..n.min(pending.len())).collect();
                while out.len() < n {
                    let mut buf = vec![0u8; n - out.len()];
                    let got = tokio::time::timeout(LONG, io.read(&mut buf))
                        .await
                        .expect("data in time")
                        .unwrap();
                    assert!(got > 0, "direct stream ended");
                    out.extend_from_slice(&buf[..got]);
                }
                out
            }
            Side::Proxied(ws, _) => ws.read_exact(n).await,
        }
    }
}

/// A fixed RFB 3.8 script (handshake, Raw, one full update); every byte received.
async fn rfb_script(side: &mut Side) -> Vec<u8> {
    let mut got = Vec::new();
    got.extend(side.recv(12).await);
    side.send(b"RFB 003.008\n").await;
    got.extend(side.recv(2).await);
    side.send(&[1]).await;
    got.extend(side.recv(4).await);
    side.send(&[1]).await;
    let init = side.recv(24).await;
    let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
    got.extend(init);
    got.extend(side.recv(name_len).await);
    side.send(&[2, 0, 0, 1, 0, 0, 0, 0]).await;
    side.send(&[3, 0, 0, 0, 0, 0, 2, 128, 1, 144]).await;
    got.extend(side.recv(4 + 12 + 640 * 400 * 4).await);
    got
}

async fn handshake(c: &mut WsBytes) {
    assert_eq!(c.read_exact(12).await, b"RFB 003.008\n");
    c.send(b"RFB 003.008\n").await;
    assert_eq!(c.read_exact(2).await, [1, 1]);
    c.send(&[1]).await;
    assert_eq!(c.read_exact(4).await, [0, 0, 0, 0]);
    c.send(&[1]).await;
    let init = c.read_exact(24).await;
    let n = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
    c.read_exact(n).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rfb_passes_through_byte_identical() {
    let f = fixture(true).await;
    // Direct: the raw tunnel.
    let tunnel = open_console(&f.target(), &Limits::default()).await.unwrap();
    let mut direct_side = Side::Direct(tunnel.io, tunnel.early.into());
    let direct = rfb_script(&mut direct_side).await;
    // Through the proxy.
    let (ws, task) = through_proxy(f.target(), Limits::default()).await;
    let mut side = Side::Proxied(WsBytes::new(ws), 0);
    let proxied = rfb_script(&mut side).await;
    let Side::Proxied(mut c, sent) = side else {
        unreachable!()
    };
    assert_eq!(direct.len(), proxied.len());
    assert!(direct == proxied, "byte-identical through the proxy");
    assert!(
        proxied.iter().skip(200).any(|b| *b != 0),
        "a drawn framebuffer"
    );
    c.ws.close(None).await.unwrap();
    let stats = outcome(task).await.unwrap();
    assert_eq!(stats.end, EndReason::ClientClosed);
    assert_eq!(stats.bytes_to_console, sent);
    assert_eq!(stats.frames_from_client, 5);
    assert_eq!(stats.bytes_to_client, proxied.len() as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_console_and_typing() {
    let f = fixture(false).await;
    let (ws, task) = through_proxy(f.target(), Limits::default()).await;
    let mut c = WsBytes::new(ws);
    handshake(&mut c).await;
    for ch in b"hi" {
        c.send(&[4, 1, 0, 0, 0, 0, 0, *ch]).await;
    }
    // A full update request after the keys: the keys were applied first.
    c.send(&[3, 0, 0, 0, 0, 0, 2, 128, 1, 144]).await;
    c.read_exact(4 + 12 + 640 * 400 * 4).await;
    let lines = xapi_sim::console::screen_lines(f.pool.state(), &f.vm).unwrap();
    assert!(lines.iter().any(|l| l.ends_with("login: hi")), "{lines:#?}");
    drop(c);
    let r = outcome(task).await;
    assert!(
        matches!(r, Ok(ref s) if s.end == EndReason::ClientClosed)
            || matches!(r, Err(ProxyError::WebSocket(_))),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn host_console_of_dom0() {
    let f = fixture(true).await;
    let dom0 = f.pool.state().read(|db| {
        db.find("VM", |r| r["is_control_domain"] == json!(true))
            .into_iter()
            .next()
            .unwrap()
    });
    let (ws, task) = through_proxy(f.target_of(&dom0), Limits::default()).await;
    let mut c = WsBytes::new(ws);
    handshake(&mut c).await;
    c.ws.close(None).await.unwrap();
    assert_eq!(outcome(task).await.unwrap().end, EndReason::ClientClosed);
}

#[tokio::test(flavor = "multi_thread")]
async fn vm_halted_mid_stream_closes_the_websocket() {
    let f = fixture(true).await;
    let target = f.target();
    let (ws, task) = through_proxy(target.clone(), Limits::default()).await;
    let mut c = WsBytes::new(ws);
    handshake(&mut c).await;
    f.pool
        .call(
            "VM.hard_shutdown",
            vec![json!(f.session), json!(f.vm.as_str())],
        )
        .unwrap();
    assert_eq!(c.wait_close().await, Some(CloseCode::Normal));
    let stats = outcome(task).await.unwrap();
    assert_eq!(stats.end, EndReason::ConsoleClosed);
    // The halted VM's console is refused now (XAPI's 500).
    let (ws, task) = through_proxy(target, Limits::default()).await;
    let mut c = WsBytes::new(ws);
    assert_eq!(c.wait_close().await, Some(CloseCode::Error));
    assert!(matches!(
        outcome(task).await,
        Err(ProxyError::Refused { status: 500, .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_from_the_client_ends_cleanly() {
    let f = fixture(true).await;
    // Garbage instead of the RFB version.
    let (ws, task) = through_proxy(f.target(), Limits::default()).await;
    let mut c = WsBytes::new(ws);
    c.read_exact(12).await;
    c.send(b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(c.wait_close().await, Some(CloseCode::Normal));
    assert_eq!(outcome(task).await.unwrap().end, EndReason::ConsoleClosed);
    // Garbage after a good handshake; text frames are ignored.
    let (ws, task) = through_proxy(f.target(), Limits::default()).await;
    let mut c = WsBytes::new(ws);
    handshake(&mut c).await;
    c.ws.send(Message::text("not RFB")).await.unwrap();
    c.send(&[0xEE; 64]).await;
    assert_eq!(c.wait_close().await, Some(CloseCode::Normal));
    let stats = outcome(task).await.unwrap();
    assert_eq!(stats.end, EndReason::ConsoleClosed);
    // The sim still serves consoles.
    let (ws, task) = through_proxy(f.target(), Limits::default()).await;
    let mut c = WsBytes::new(ws);
    handshake(&mut c).await;
    c.ws.close(None).await.unwrap();
    assert_eq!(outcome(task).await.unwrap().end, EndReason::ClientClosed);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_vanishing_without_close_ends_the_proxy() {
    let f = fixture(true).await;
    let (ws, task) = through_proxy(f.target(), Limits::default()).await;
    let mut c = WsBytes::new(ws);
    handshake(&mut c).await;
    drop(c);
    let r = outcome(task).await;
    assert!(
        matches!(r, Ok(ref s) if s.end == EndReason::ClientClosed)
            || matches!(r, Err(ProxyError::WebSocket(_))),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_total_limits() {
    let f = fixture(true).await;
    let limits = Limits {
        idle: Some(Duration::from_millis(300)),
        ..Limits::default()
    };
    let (ws, task) = through_proxy(f.target(), limits).await;
    let mut c = WsBytes::new(ws);
    handshake(&mut c).await;
    assert_eq!(c.wait_close().await, Some(CloseCode::Away));
    assert_eq!(outcome(task).await.unwrap().end, EndReason::Idle);

    let limits = Limits {
        total: Some(Duration::from_millis(500)),
        idle: None,
        ..Limits::default()
    };
    let (ws, task) = through_proxy(f.target(), limits).await;
    let mut c = WsBytes::new(ws);
    handshake(&mut c).await;
    // Keep traffic flowing: the overall limit still ends the session.
    let mut n = 0;
    let code = loop {
        c.send(&[5, 0, 0, 1, 0, 1]).await; // PointerEvent
        n += 1;
        tokio::select! {
            m = c.ws.next() => match m {
                Some(Ok(Message::Close(f))) => break f.map(|f| f.code),
                Some(Ok(_)) => {}
                _ => break None,
            },
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        assert!(n < 2000, "the session did not end");
    };
    assert_eq!(code, Some(CloseCode::Away));
    assert_eq!(outcome(task).await.unwrap().end, EndReason::Total);
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_and_connection_failures_are_typed() {
    let f = fixture(true).await;
    // Bad session → 401.
    let mut t = f.target();
    t.session_id = "OpaqueRef:not-a-session".into();
    let (ws, task) = through_proxy(t, Limits::default()).await;
    let mut c = WsBytes::new(ws);
    assert_eq!(c.wait_close().await, Some(CloseCode::Error));
    assert!(matches!(
        outcome(task).await,
        Err(ProxyError::Refused { status: 401, .. })
    ));
    // Untrusted certificate without allow_unauthorized; accepted with it.
    let mut t = f.target();
    t.extra_roots.clear();
    assert!(matches!(
        open_console(&t, &Limits::default()).await,
        Err(ProxyError::Tls(_))
    ));
    assert!(
        open_console(&t.allow_unauthorized(true), &Limits::default())
            .await
            .is_ok()
    );
    // Invalid location.
    let mut t = f.target();
    t.location_url = "ftp://nowhere/console".into();
    assert!(matches!(
        open_console(&t, &Limits::default()).await,
        Err(ProxyError::InvalidLocation(_))
    ));
    // Nothing listening.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let t = ConsoleTarget::new(format!("http://127.0.0.1:{port}/console?ref=x"), "s");
    assert!(matches!(
        open_console(&t, &Limits::default()).await,
        Err(ProxyError::Connect { .. })
    ));
    // A server answering garbage, and one answering nothing.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut b = [0u8; 512];
        let _ = s.read(&mut b).await;
        let _ = s.write_all(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        let (s2, _) = l.accept().await.unwrap();
        tokio::time::sleep(LONG).await;
        drop(s2);
    });
    let t = ConsoleTarget::new(format!("http://{addr}/console?ref=x"), "s");
    assert!(matches!(
        open_console(&t, &Limits::default()).await,
        Err(ProxyError::BadResponse(_))
    ));
    let limits = Limits {
        connect_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    assert!(matches!(
        open_console(&t, &limits).await,
        Err(ProxyError::Timeout(_))
    ));
}
