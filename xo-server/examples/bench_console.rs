//! Console proxy benchmark: the same RFB workload against a simulated VM console (TLS), straight to the sim
//! (`CONNECT /console` tunnel, raw bytes — the leg xo-server itself opens) and through xo-server's
//! `/api/consoles/<vm id>` WebSocket, in one run, with the ratios.
//!
//! - round trip: a non-incremental FramebufferUpdateRequest for one 8x16 cell (10 bytes up, 528 bytes down),
//!   one at a time: p50 / p99 / max and what the proxy adds;
//! - throughput: full-screen 640x400 raw 32 bpp updates (1 MB each) with `--window` requests in flight.
//!
//! `cargo run --release -p xo-server --example bench_console [-- --rtt 5000 --frames 400 --window 4 --rounds 3 --chunk-kib 64]`
//!
//! Everything (sim, xo-server, client) runs in this process on one multi-threaded runtime; each round runs both
//! paths, and the best figure of each path over the rounds is reported (every round is printed too).

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use xo_server::{AppBuilder, Config};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const W: u16 = 640;
const H: u16 = 400;
const FRAME: usize = 4 + 12 + W as usize * H as usize * 4;
const CELL: usize = 4 + 12 + 8 * 16 * 4;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A console byte stream: raw tunnel or WebSocket binary frames.
enum Conn {
    Direct(console_proxy::Tunnel, Vec<u8>),
    Ws(Box<Ws>, Vec<u8>),
}

impl Conn {
    async fn send(&mut self, b: &[u8]) -> anyhow::Result<()> {
        match self {
            Conn::Direct(t, _) => {
                t.io.write_all(b).await?;
                t.io.flush().await?;
            }
            Conn::Ws(ws, _) => ws.send(Message::binary(b.to_vec())).await?,
        }
        Ok(())
    }

    /// Reads and drops exactly `n` bytes (keeps the remainder).
    async fn skip(&mut self, n: usize) -> anyhow::Result<()> {
        self.read(n, false).await.map(|_| ())
    }

    async fn read_exact(&mut self, n: usize) -> anyhow::Result<Vec<u8>> {
        self.read(n, true).await
    }

    async fn read(&mut self, n: usize, keep: bool) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut need = n;
        loop {
            let buf = match self {
                Conn::Direct(_, b) | Conn::Ws(_, b) => b,
            };
            let take = need.min(buf.len());
            if keep {
                out.extend_from_slice(&buf[..take]);
            }
            buf.drain(..take);
            need -= take;
            if need == 0 {
                return Ok(out);
            }
            match self {
                Conn::Direct(t, b) => {
                    let mut tmp = vec![0u8; 256 * 1024];
                    let k = t.io.read(&mut tmp).await?;
                    anyhow::ensure!(k > 0, "console closed");
                    b.extend_from_slice(&tmp[..k]);
                }
                Conn::Ws(ws, b) => match ws.next().await {
                    Some(Ok(Message::Binary(d))) => b.extend_from_slice(&d),
                    Some(Ok(Message::Close(_))) | None => anyhow::bail!("socket closed"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                },
            }
        }
    }

    /// RFB 3.8 handshake, security None, shared; raw encoding only.
    async fn handshake(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.read_exact(12).await? == b"RFB 003.008\n");
        self.send(b"RFB 003.008\n").await?;
        self.skip(2).await?;
        self.send(&[1]).await?;
        self.skip(4).await?;
        self.send(&[1]).await?;
        let init = self.read_exact(24).await?;
        let len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
        self.skip(len).await?;
        self.send(&[2, 0, 0, 1, 0, 0, 0, 0]).await?; // SetEncodings [Raw]
        Ok(())
    }
}

fn update_request(x: u16, y: u16, w: u16, h: u16) -> Vec<u8> {
    let mut m = vec![3, 0];
    for v in [x, y, w, h] {
        m.extend_from_slice(&v.to_be_bytes());
    }
    m
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    p50: Duration,
    p99: Duration,
    max: Duration,
    mb_s: f64,
}

async fn measure(mut c: Conn, rtt: usize, frames: usize, window: usize) -> anyhow::Result<Figures> {
    c.handshake().await?;
    let cell = update_request(0, 0, 8, 16);
    for _ in 0..200 {
        c.send(&cell).await?;
        c.skip(CELL).await?;
    }
    let mut lat = Vec::with_capacity(rtt);
    for _ in 0..rtt {
        let t = Instant::now();
        c.send(&cell).await?;
        c.skip(CELL).await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    let full = update_request(0, 0, W, H);
    // warm-up frame, then `frames` with `window` in flight
    c.send(&full).await?;
    c.skip(FRAME).await?;
    let t = Instant::now();
    let mut sent = 0;
    while sent < window.min(frames) {
        c.send(&full).await?;
        sent += 1;
    }
    for _ in 0..frames {
        c.skip(FRAME).await?;
        if sent < frames {
            c.send(&full).await?;
            sent += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    Ok(Figures {
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        max: *lat.last().unwrap_or(&Duration::ZERO),
        mb_s: (frames * FRAME) as f64 / secs / 1e6,
    })
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn print(label: &str, f: &Figures) {
    println!(
        "  {label:<12} p50 {:>7.1} µs  p99 {:>7.1} µs  max {:>8.1} µs  throughput {:>7.1} MB/s",
        us(f.p50),
        us(f.p99),
        us(f.max),
        f.mb_s
    );
}

async fn rpc(ws: &mut Ws, id: i64, method: &str, params: Value) -> anyhow::Result<Value> {
    ws.send(Message::text(
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
    ))
    .await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t)?;
                if v["id"] == json!(id) {
                    if let Some(e) = v.get("error") {
                        anyhow::bail!("{method}: {e}");
                    }
                    return Ok(v["result"].clone());
                }
            }
            Some(Ok(_)) => {}
            other => anyhow::bail!("connection lost: {other:?}"),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let (rtt, frames, window, rounds) = (
        arg("--rtt", 5000),
        arg("--frames", 400),
        arg("--window", 4).max(1),
        arg("--rounds", 3).max(1),
    );
    let pool = xapi_sim::Sim::builder()
        .name("bench pool")
        .hosts(1)
        .vms(1)
        .build()?
        .serve("127.0.0.1:0".parse()?, true)
        .await?;
    let dir = tempfile::tempdir()?;
    let mut settings = xo_server::console::ConsoleSettings::default();
    if let Some(kib) = std::env::args()
        .position(|a| a == "--chunk-kib")
        .map(|_| arg("--chunk-kib", 64))
    {
        settings.limits.chunk = kib * 1024;
    }
    println!("proxy read chunk: {} KiB", settings.limits.chunk / 1024);
    let app = AppBuilder::new(Config::for_tests(dir.path()))
        .extension(std::sync::Arc::new(settings))
        .build()?;
    let server = xo_server::serve(app).await?;
    let (mut api, _) = tokio_tungstenite::connect_async(server.api_url()).await?;
    rpc(
        &mut api,
        1,
        "session.signIn",
        json!({"email": "admin@admin.net", "password": "admin"}),
    )
    .await?;
    rpc(
        &mut api,
        2,
        "server.add",
        json!({"host": pool.master_url().trim_end_matches('/'), "username": "root",
               "password": "root", "allowUnauthorized": true}),
    )
    .await?;
    let token = rpc(&mut api, 3, "token.create", json!({})).await?;
    let token = token.as_str().unwrap_or_default().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let vm = loop {
        let all = rpc(
            &mut api,
            4,
            "xo.getAllObjects",
            json!({"filter": {"type": "VM", "power_state": "Running"}}),
        )
        .await?;
        if let Some(vm) = all.as_object().and_then(|m| m.values().next()) {
            break vm.clone();
        }
        anyhow::ensure!(Instant::now() < deadline, "no running VM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let vm_id = vm["id"].as_str().unwrap_or_default().to_owned();
    let vm_ref = vm["_xapiRef"].as_str().unwrap_or_default().to_owned();
    // the direct leg: the console location, a session of the sim, its port
    let session = pool
        .call(
            "session.login_with_password",
            vec![json!("root"), json!("root"), json!("1.0"), json!("bench")],
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let consoles = pool
        .call("VM.get_consoles", vec![session.clone(), json!(vm_ref)])
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let location = pool
        .call(
            "console.get_location",
            vec![session.clone(), consoles[0].clone()],
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let target = console_proxy::ConsoleTarget::new(
        location.as_str().unwrap_or_default(),
        session.as_str().unwrap_or_default(),
    )
    .allow_unauthorized(true)
    .default_port(pool.port());
    let ws_url = format!(
        "{}/api/consoles/{vm_id}",
        server.url().replacen("http", "ws", 1)
    );

    println!(
        "console bench: {rtt} round trips of a 8x16 cell ({CELL} B), {frames} full frames ({FRAME} B) with \
         {window} in flight, {rounds} rounds"
    );
    let mut best: [Option<Figures>; 2] = [None, None];
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        println!("round {round}");
        let tunnel =
            console_proxy::open_console(&target, &console_proxy::Limits::default()).await?;
        let early = tunnel.early.clone();
        let direct = measure(Conn::Direct(tunnel, early), rtt, frames, window).await?;
        print("direct", &direct);
        let mut req = ws_url.as_str().into_client_request()?;
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true).await?;
        let proxied = measure(Conn::Ws(Box::new(ws), Vec::new()), rtt, frames, window).await?;
        print("xo-server", &proxied);
        let r = proxied.mb_s / direct.mb_s;
        let added = us(proxied.p99) - us(direct.p99);
        println!("  this round: throughput ratio {r:.2}×, p99 added {added:+.1} µs");
        ratios.push(r);
        for (slot, f) in best.iter_mut().zip([direct, proxied]) {
            *slot = Some(match *slot {
                None => f,
                Some(b) => Figures {
                    p50: b.p50.min(f.p50),
                    p99: b.p99.min(f.p99),
                    max: b.max.min(f.max),
                    mb_s: b.mb_s.max(f.mb_s),
                },
            });
        }
    }
    let (Some(d), Some(p)) = (best[0], best[1]) else {
        anyhow::bail!("no figures");
    };
    println!("best of {rounds} rounds");
    print("direct", &d);
    print("xo-server", &p);
    let added_p50 = us(p.p50) - us(d.p50);
    let added_p99 = us(p.p99) - us(d.p99);
    println!(
        "  added by xo-server: p50 {added_p50:+.1} µs, p99 {added_p99:+.1} µs (goal < 1000 µs) → {}",
        if added_p99 < 1000.0 { "met" } else { "NOT met" }
    );
    ratios.sort_by(f64::total_cmp);
    println!(
        "  per-round throughput ratios: median {:.2}×, min {:.2}×, max {:.2}×",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    let ratio = p.mb_s / d.mb_s;
    println!(
        "  best throughput through xo-server / best direct: {ratio:.2}× (goal ≥ 0.90×) → {}",
        if ratio >= 0.9 { "met" } else { "NOT met" }
    );
    server.shutdown().await;
    pool.shutdown().await;
    Ok(())
}
