//! xo-server benchmark with a 10,000-VM simulated pool: time from `server.add` to a ready cache, resident
//! memory after the sync, XAPI change → `all` notification latency with 1 and 100 WebSocket clients, and
//! `session.getUser` calls/s over one WebSocket.
//!
//! `cargo run --release -p xo-server --example bench_server [-- --vms 10000 --hosts 3 --changes 200 --calls 200000]`
//!
//! `BENCH_EXIT_AFTER_SYNC=1` exits right after the memory figures, so that a heap profiler's "leaked" report is
//! exactly what xo-server holds after a sync.
//!
//! The simulated pool runs in a child process (this same binary with `--sim-child`) so that the memory
//! figures are xo-server's own; its `event.from` batching is disabled so that latencies are xo-server's.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use xo_server::{AppBuilder, Config};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: Option<u32>) -> u64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".into(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) this process has used so far.
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The child: serve the simulated pool, print its URL, exit when stdin closes.
fn sim_child() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let started = Instant::now();
        let pool = xapi_sim::Sim::builder()
            .name("bench pool")
            .hosts(arg("--hosts", 3))
            .vms(arg("--vms", 10_000))
            .event_batching(Duration::ZERO)
            .build()?
            .serve("127.0.0.1:0".parse()?, true)
            .await?;
        eprintln!(
            "sim: built and serving in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        println!("{}", pool.master_url());
        std::io::stdout().flush()?;
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
        })
        .await?;
        pool.shutdown().await;
        Ok(())
    })
}

struct Rpc {
    ws: Ws,
    next: i64,
}

impl Rpc {
    async fn connect(url: &str) -> anyhow::Result<Rpc> {
        // No size limit: an `all` notification of a whole 10k-VM pool is ~40 MiB.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(url, Some(config), false).await?;
        Ok(Rpc { ws, next: 0 })
    }

    /// Send a request; returns its id.
    async fn send(&mut self, method: &str, params: Value) -> anyhow::Result<i64> {
        self.next += 1;
        let id = self.next;
        self.ws
            .send(Message::text(
                json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
            ))
            .await?;
        Ok(id)
    }

    /// The next text frame for which `answer` says it is done.
    async fn wait<T>(&mut self, mut answer: impl FnMut(&str) -> Option<T>) -> anyhow::Result<T> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    if let Some(v) = answer(&t) {
                        return Ok(v);
                    }
                }
                Some(Ok(_)) => {}
                other => anyhow::bail!("connection lost: {other:?}"),
            }
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.send(method, params).await?;
        let v = self
            .wait(|t| {
                // Large frames are `all` notifications (the whole pool entering): skipped unparsed.
                if t.len() > 1 << 20 {
                    return None;
                }
                serde_json::from_str::<Value>(t)
                    .ok()
                    .filter(|v| v["id"] == json!(id))
            })
            .await?;
        if let Some(e) = v.get("error") {
            anyhow::bail!("{method}: {e}");
        }
        Ok(v["result"].clone())
    }

    /// Send a call and wait for its answer frame, left unparsed; returns its size in bytes.
    async fn call_unparsed(&mut self, method: &str, params: Value) -> anyhow::Result<usize> {
        let id = self.send(method, params).await?;
        let tag = format!("\"id\":{id},");
        self.wait(|t| t.get(..64).unwrap_or(t).contains(&tag).then_some(t.len()))
            .await
    }

    async fn admin(url: &str) -> anyhow::Result<Rpc> {
        let mut c = Rpc::connect(url).await?;
        c.call(
            "session.signIn",
            json!({"email": "admin@admin.net", "password": "admin"}),
        )
        .await?;
        Ok(c)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `changes` VM renames through XAPI (after one warm-up rename); returns the delay from just before the
/// XAPI call until each of `n_clients` got the `all` enter.
async fn notification_latency(
    api_url: &str,
    xapi: &xapi_client::Client,
    vm_ref: &str,
    n_clients: usize,
    changes: usize,
    tag: &str,
) -> anyhow::Result<Vec<Duration>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut tasks = Vec::new();
    for _ in 0..n_clients {
        let mut c = Rpc::admin(api_url).await?;
        let tx = tx.clone();
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = c.ws.next().await {
                if let Message::Text(t) = msg {
                    let now = Instant::now();
                    // the marker is `<tag>-<i>"`
                    if let Some(pos) = t.find(&format!("{tag}-")) {
                        let rest = &t[pos + tag.len() + 1..];
                        let end = rest.find('"').unwrap_or(rest.len());
                        if let Ok(i) = rest[..end].parse::<usize>() {
                            let _ = tx.send((i, now));
                        }
                    }
                }
            }
        }));
    }
    drop(tx);
    let mut latencies = Vec::with_capacity(changes * n_clients);
    // change 0 warms up (the bench's own XAPI connection, first frames): not counted
    for i in 0..=changes {
        let t0 = Instant::now();
        xapi.call(
            "VM.set_name_label",
            vec![json!(vm_ref), json!(format!("{tag}-{i}"))],
        )
        .await?;
        let mut got = 0;
        while got < n_clients {
            let (j, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("clients gone"))?;
            if j == i {
                if i > 0 {
                    latencies.push(at - t0);
                }
                got += 1;
            }
        }
    }
    for t in tasks {
        t.abort();
    }
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        let slow: Vec<(usize, u128)> = latencies
            .iter()
            .enumerate()
            .filter(|(_, l)| l.as_millis() >= 10)
            .map(|(i, l)| (1 + i / n_clients, l.as_millis()))
            .collect();
        eprintln!("{tag}: samples ≥ 10 ms (change index, ms): {slow:?}");
    }
    latencies.sort();
    Ok(latencies)
}

async fn calls_per_second(api_url: &str, calls: usize) -> anyhow::Result<f64> {
    let c = Rpc::admin(api_url).await?;
    let (mut sink, mut stream) = c.ws.split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for id in 0..calls {
            let req = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"session.getUser","params":{{}}}}"#
            );
            if sink.feed(Message::text(req)).await.is_err() {
                break;
            }
        }
        let _ = sink.flush().await;
        sink
    });
    let mut got = 0;
    while got < calls {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await? {
            Some(Ok(Message::Text(t))) => {
                if t.contains("\"result\"") {
                    got += 1;
                } else if t.contains("\"error\"") {
                    anyhow::bail!("call failed: {t}");
                }
            }
            Some(Ok(_)) => {}
            other => anyhow::bail!("connection lost after {got} answers: {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    let _ = writer.await;
    Ok(calls as f64 / elapsed.as_secs_f64())
}

fn print_latency(label: &str, l: &[Duration]) {
    println!(
        "notification latency, {label}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
        percentile(l, 0.5).as_secs_f64() * 1e3,
        percentile(l, 0.99).as_secs_f64() * 1e3,
        l.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        l.len()
    );
}

async fn bench() -> anyhow::Result<()> {
    let vms = arg("--vms", 10_000);
    let hosts = arg("--hosts", 3);
    let changes = arg("--changes", 200);
    let calls = arg("--calls", 200_000);

    // the pool, in a child process
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .args([
            "--sim-child",
            "--vms",
            &vms.to_string(),
            "--hosts",
            &hosts.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let pool_url = line.trim().trim_end_matches('/').to_owned();
    anyhow::ensure!(pool_url.starts_with("https://"), "sim did not start");
    println!("simulated pool: {vms} VMs, {hosts} hosts at {pool_url} (child process)");

    // xo-server
    let dir = tempfile::tempdir()?;
    let mut config = Config::for_tests(dir.path());
    config.send_queue = 1 << 16;
    let app = AppBuilder::new(config).build()?;
    let server = xo_server::serve(app).await?;
    let api_url = server.api_url();
    let mut admin = Rpc::admin(&api_url).await?;
    let rss_before = rss_kib(None);

    // sync
    let cpu_before = cpu_time();
    let started = Instant::now();
    let id = admin
        .call(
            "server.add",
            json!({"host": pool_url, "username": "root", "password": "root", "allowUnauthorized": true}),
        )
        .await?;
    admin.call("server.enable", json!({"id": id})).await?;
    let sync = started.elapsed();
    let pools = xo_server::xapi::Pools::of(server.app()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let n_objects = pools.cache().len();
    let n_vms = pools.cache().find(|o| o.kind() == "VM", None).len();
    println!(
        "server.add → ready cache: {:.3} s ({n_objects} objects, {n_vms} VMs; xo-server CPU {:.2} s)",
        sync.as_secs_f64(),
        (cpu_time() - cpu_before).as_secs_f64()
    );
    // The admin connection has not read its `all` notifications (the whole pool, ~40 MiB at 10k VMs): close it,
    // so that the figure is the server holding a synced pool, not a frame waiting for a client.
    drop(admin);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_half_second = rss_kib(None);
    // Settled: the records are packed and freed memory handed back (jemalloc purges within ~0.3 s) once the
    // figure stops falling (sampled every 100 ms, until it has not fallen for 1 s, 10 s at most).
    let mut rss_after = rss_half_second;
    let mut steady = 0;
    for _ in 0..95 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = rss_kib(None);
        steady = if now < rss_after { 0 } else { steady + 1 };
        rss_after = rss_after.min(now);
        if steady >= 10 {
            break;
        }
    }
    println!(
        "xo-server RSS: {:.1} MiB before server.add, {:.1} MiB after sync, settled (+{:.1} MiB; {:.1} MiB 0.5 s after); sim child RSS {:.1} MiB",
        mib(rss_before),
        mib(rss_after),
        mib(rss_after.saturating_sub(rss_before)),
        mib(rss_half_second),
        mib(rss_kib(Some(child.id())))
    );
    if std::env::var_os("BENCH_EXIT_AFTER_SYNC").is_some() {
        // For heap profilers (`heaptrack`): everything still allocated at exit is what the sync left held.
        std::process::exit(0);
    }

    // a whole listing (every object unpacked and written into one answer)
    let mut lister = Rpc::admin(&api_url).await?;
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..3 {
        let started = Instant::now();
        bytes = lister.call_unparsed("xo.getAllObjects", json!({})).await?;
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "xo.getAllObjects (all {n_objects} objects, {:.1} MiB answer): median {:.0} ms over 3 calls",
        bytes as f64 / (1 << 20) as f64,
        times[1].as_secs_f64() * 1000.0
    );
    drop(lister);

    // notifications
    let xapi = xapi_client::Client::connect(
        xapi_client::ClientOptions::new(pool_url.clone(), "root", "root").allow_unauthorized(true),
    )
    .await?;
    // breakdown: the XAPI full load alone (login, every class's get_all_records, JSON decoding)
    let started = Instant::now();
    let mut watch = xapi.watch(xapi_client::WatchOptions::default());
    if let Some(xapi_client::WatchEvent::Reset { records }) = watch.next().await {
        println!(
            "  of which the XAPI full load alone (fetch + decode, {} classes): {:.3} s; the rest is the cache's derivation",
            records.len(),
            started.elapsed().as_secs_f64()
        );
    }
    drop(watch);
    let vm = pools
        .cache()
        .find(|o| o.kind() == "VM", Some(1))
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no VM"))?;
    let vm_ref = vm.xapi_ref().to_owned();
    let l1 = notification_latency(&api_url, &xapi, &vm_ref, 1, changes, "bench-one").await?;
    print_latency("1 client", &l1);
    let l100 = notification_latency(&api_url, &xapi, &vm_ref, 100, changes, "bench-many").await?;
    print_latency("100 clients", &l100);

    // calls
    let rate = calls_per_second(&api_url, calls).await?;
    println!("session.getUser over one WebSocket: {rate:.0} calls/s ({calls} pipelined calls)");

    server.shutdown().await;
    drop(child.stdin.take());
    let _ = child.wait();
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--sim-child") {
        return sim_child();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench())
}
