//! Benchmark: small-message latency (p50/p99) and large-stream throughput of an RFB console, direct (raw CONNECT
//! tunnel over TLS) versus through the WebSocket proxy, against xapi-sim in-process. Prints figures and ratios.
//!
//! `cargo run --release -p console-proxy --example bench_proxy [ROUND_TRIPS] [FULL_UPDATES]`

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use console_proxy::{open_console, proxy, ConsoleIo, ConsoleTarget, Limits};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[allow(clippy::large_enum_variant)]
enum Side {
    Direct(Box<dyn ConsoleIo>, VecDeque<u8>),
    Proxied(WebSocketStream<MaybeTlsStream<TcpStream>>, VecDeque<u8>),
}

impl Side {
    async fn send(&mut self, b: &[u8]) -> anyhow::Result<()> {
        match self {
            Side::Direct(io, _) => io.write_all(b).await?,
            Side::Proxied(ws, _) => ws.send(Message::binary(b.to_vec())).await?,
        }
        Ok(())
    }

    async fn recv(&mut self, n: usize) -> anyhow::Result<()> {
        match self {
            Side::Direct(io, pending) => {
                let mut have = pending.len().min(n);
                pending.drain(..have);
                let mut buf = vec![0u8; 64 * 1024];
                while have < n {
                    let want = (n - have).min(buf.len());
                    let got = io.read(&mut buf[..want]).await?;
                    anyhow::ensure!(got > 0, "stream ended");
                    have += got;
                }
            }
            Side::Proxied(ws, pending) => {
                while pending.len() < n {
                    match ws.next().await {
                        Some(Ok(Message::Binary(b))) => pending.extend(b.iter()),
                        Some(Ok(_)) => {}
                        other => anyhow::bail!("stream ended: {other:?}"),
                    }
                }
                pending.drain(..n);
            }
        }
        Ok(())
    }

    async fn handshake(&mut self) -> anyhow::Result<()> {
        self.recv(12).await?;
        self.send(b"RFB 003.008\n").await?;
        self.recv(2).await?;
        self.send(&[1]).await?;
        self.recv(4).await?;
        self.send(&[1]).await?;
        Ok(())
    }
}

/// Read ServerInit (24 bytes, the last 4 giving the name length, then the name) and ask for Raw.
async fn server_init(side: &mut Side) -> anyhow::Result<()> {
    let bytes = recv_bytes(side, 24).await?;
    let n = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]) as usize;
    side.recv(n).await?;
    side.send(&[2, 0, 0, 1, 0, 0, 0, 0]).await?; // SetEncodings [Raw]
    Ok(())
}

async fn recv_bytes(side: &mut Side, n: usize) -> anyhow::Result<Vec<u8>> {
    match side {
        Side::Direct(io, pending) => {
            let mut out: Vec<u8> = pending.drain(..n.min(pending.len())).collect();
            while out.len() < n {
                let mut buf = vec![0u8; n - out.len()];
                let got = io.read(&mut buf).await?;
                anyhow::ensure!(got > 0, "stream ended");
                out.extend_from_slice(&buf[..got]);
            }
            Ok(out)
        }
        Side::Proxied(ws, pending) => {
            while pending.len() < n {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => pending.extend(b.iter()),
                    Some(Ok(_)) => {}
                    other => anyhow::bail!("stream ended: {other:?}"),
                }
            }
            Ok(pending.drain(..n).collect())
        }
    }
}

fn update_request(w: u16, h: u16) -> Vec<u8> {
    let mut m = vec![3, 0, 0, 0, 0, 0];
    m.extend_from_slice(&w.to_be_bytes());
    m.extend_from_slice(&h.to_be_bytes());
    m
}

struct Figures {
    p50: Duration,
    p99: Duration,
    mib_s: f64,
}

async fn measure(
    side: &mut Side,
    round_trips: usize,
    full_updates: usize,
) -> anyhow::Result<Figures> {
    side.handshake().await?;
    server_init(side).await?;
    // Small messages: an 8x16 Raw update (16 + 512 bytes) per request.
    let small = update_request(8, 16);
    let mut lat = Vec::with_capacity(round_trips);
    for _ in 0..round_trips {
        let t = Instant::now();
        side.send(&small).await?;
        side.recv(16 + 8 * 16 * 4).await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    // Large stream: full-screen Raw updates, 1 MB each, pipelined two deep.
    let full = update_request(640, 400);
    let size = 16 + 640 * 400 * 4;
    let t = Instant::now();
    side.send(&full).await?;
    for i in 0..full_updates {
        if i + 1 < full_updates {
            side.send(&full).await?;
        }
        side.recv(size).await?;
    }
    let secs = t.elapsed().as_secs_f64();
    Ok(Figures {
        p50: pct(0.50),
        p99: pct(0.99),
        mib_s: (size * full_updates) as f64 / secs / (1024.0 * 1024.0),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let round_trips: usize = args.next().map_or(Ok(2000), |a| a.parse())?;
    let full_updates: usize = args.next().map_or(Ok(200), |a| a.parse())?;

    let pool = xapi_sim::Sim::builder()
        .vms(2)
        .build()?
        .serve("127.0.0.1:0".parse()?, true)
        .await?;
    let session = pool
        .call(
            "session.login_with_password",
            vec![json!("root"), json!("root")],
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let location = pool.state().read(|db| {
        let vm = db
            .find("VM", |r| {
                r["power_state"] == json!("Running") && r["is_control_domain"] == json!(false)
            })
            .into_iter()
            .min()?;
        let c = db
            .find("console", |c| {
                c["VM"] == json!(vm.as_str()) && c["protocol"] == json!("rfb")
            })
            .into_iter()
            .next()?;
        db.get("console", &c)?["location"]
            .as_str()
            .map(str::to_owned)
    });
    let location = location.ok_or_else(|| anyhow::anyhow!("no running VM console"))?;
    let target = ConsoleTarget::new(location, session.as_str().unwrap_or_default())
        .default_port(pool.port())
        .allow_unauthorized(true);

    let tunnel = open_console(&target, &Limits::default()).await?;
    let mut direct = Side::Direct(tunnel.io, tunnel.early.into());
    let d = measure(&mut direct, round_trips, full_updates).await?;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let t2 = target.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let ws = tokio_tungstenite::accept_async(tcp).await?;
        anyhow::Ok(proxy(ws, &t2, &Limits::default()).await?)
    });
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(format!("ws://{addr}/"), None, true).await?;
    let mut proxied = Side::Proxied(ws, VecDeque::new());
    let p = measure(&mut proxied, round_trips, full_updates).await?;
    if let Side::Proxied(mut ws, _) = proxied {
        ws.close(None).await?;
    }
    let stats = server.await??;

    println!("console proxy benchmark ({round_trips} round trips of 16+512 bytes, {full_updates} full-screen Raw updates of 1 MB; TLS to xapi-sim)");
    println!(
        "{:<10} {:>12} {:>12} {:>14}",
        "path", "p50", "p99", "throughput"
    );
    for (name, f) in [("direct", &d), ("proxied", &p)] {
        println!(
            "{name:<10} {:>12.1?} {:>12.1?} {:>10.1} MiB/s",
            f.p50, f.p99, f.mib_s
        );
    }
    println!(
        "ratios proxied/direct: p50 {:.2}x, p99 {:.2}x, throughput {:.2}x",
        p.p50.as_secs_f64() / d.p50.as_secs_f64(),
        p.p99.as_secs_f64() / d.p99.as_secs_f64(),
        p.mib_s / d.mib_s
    );
    println!(
        "proxy stats: {} bytes to console, {} bytes to client in {} frames, ended {:?}",
        stats.bytes_to_console, stats.bytes_to_client, stats.frames_to_client, stats.end
    );
    pool.shutdown().await;
    Ok(())
}
