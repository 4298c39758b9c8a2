//! Full-load and event-following benchmark of the client against an in-process simulated pool.
//!
//! `cargo bench -p xapi-client --bench load` (env: `BENCH_VMS` = 10000, `BENCH_CHANGES` = 1000, `BENCH_TLS` = 1 (HTTPS, default) or 0,
//! `BENCH_HOSTS` = 3). The sim runs on its own multi-thread runtime; the client on a current-thread runtime on the
//! main thread, so client CPU = main-thread CPU and sim CPU = process CPU − client CPU (from /proc, Linux only).
//! In-process, RSS includes the sim; set `BENCH_URL` (and `BENCH_USER`/`BENCH_PASSWORD`, default root/root) to
//! measure against an external pool (e.g. the `xapi-sim` binary) and get the client's memory alone.
//! Prints figures; asserts nothing about time.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use xapi_client::{Client, ClientOptions, Op, Protocol, WatchEvent, WatchOptions};

const TICKS_PER_SEC: f64 = 100.0;

/// (utime + stime) in seconds from a /proc stat file.
fn cpu_of(path: &str) -> f64 {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let after = s.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / TICKS_PER_SEC
}

fn client_cpu() -> f64 {
    cpu_of("/proc/thread-self/stat")
}

fn process_cpu() -> f64 {
    cpu_of("/proc/self/stat")
}

/// A `VmXXX:` line of /proc/self/status, in bytes.
fn status_bytes(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn env_num(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Span {
    wall: Instant,
    client: f64,
    process: f64,
}

impl Span {
    fn start() -> Self {
        Span {
            wall: Instant::now(),
            client: client_cpu(),
            process: process_cpu(),
        }
    }

    /// (wall, client CPU, sim CPU) seconds.
    fn stop(&self) -> (f64, f64, f64) {
        let wall = self.wall.elapsed().as_secs_f64();
        let client = client_cpu() - self.client;
        let sim = (process_cpu() - self.process - client).max(0.0);
        (wall, client, sim)
    }
}

/// Estimated heap bytes of a decoded value: serde_json `Value` is 32 bytes, a map entry adds its key `String` (24)
/// and its `Value` in B-tree nodes (bulk-built, so nearly full: ~64 B/entry), plus string and vector buffers.
fn heap_estimate(v: &Value) -> usize {
    match v {
        Value::String(s) => s.capacity(),
        Value::Array(a) => a.capacity() * 32 + a.iter().map(heap_estimate).sum::<usize>(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| 64 + k.capacity() + heap_estimate(v))
            .sum(),
        _ => 0,
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    let vms = env_num("BENCH_VMS", 10_000);
    let changes = env_num("BENCH_CHANGES", 1_000);
    let hosts = env_num("BENCH_HOSTS", 3);
    let tls = env_num("BENCH_TLS", 1) == 1;

    let sim_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let (pool, opts) = match std::env::var("BENCH_URL") {
        Ok(url) => {
            let user = std::env::var("BENCH_USER").unwrap_or_else(|_| "root".into());
            let password = std::env::var("BENCH_PASSWORD").unwrap_or_else(|_| "root".into());
            println!("external pool at {url} (RSS is the client's alone)");
            (
                None,
                ClientOptions::new(url, user, password).allow_unauthorized(true),
            )
        }
        Err(_) => {
            let t = Instant::now();
            let sim = xapi_sim::Sim::builder()
                .hosts(hosts)
                .vms(vms)
                .build()
                .expect("sim build");
            let pool = sim_rt
                .block_on(sim.serve("127.0.0.1:0".parse().unwrap(), tls))
                .expect("sim serve");
            println!(
                "in-process sim: {hosts} hosts, {vms} VMs, built and serving in {:.2} s (tls: {tls}; RSS includes the sim)",
                t.elapsed().as_secs_f64()
            );
            let opts =
                ClientOptions::new(pool.master_url(), "root", "root").allow_unauthorized(true);
            (Some(Arc::new(pool)), opts)
        }
    };
    client_rt.block_on(run(pool.clone(), opts, changes));
    if let Some(Ok(pool)) = pool.map(Arc::try_unwrap) {
        sim_rt.block_on(pool.shutdown());
    }
}

async fn run(pool: Option<Arc<xapi_sim::RunningPool>>, opts: ClientOptions, changes: usize) {
    let rss_base = status_bytes("VmRSS:");
    // 1. Full load through the watcher (every class from system.listMethods).
    let client = Client::connect(opts.clone()).await.expect("login");
    let span = Span::start();
    let mut watch = client.watch(WatchOptions::default());
    let Some(WatchEvent::Reset { records }) = watch.next().await else {
        panic!("no initial load")
    };
    let (wall, ccpu, scpu) = span.stop();
    let objects: usize = records.values().map(Vec::len).sum();
    let held = status_bytes("VmRSS:").saturating_sub(rss_base);
    let per_object = |b: usize| b as f64 / objects as f64;
    let heap: usize = records
        .values()
        .flatten()
        .map(|(r, rec)| {
            r.0.capacity()
                + 24
                + rec
                    .iter()
                    .map(|(k, v)| 64 + k.capacity() + heap_estimate(v))
                    .sum::<usize>()
        })
        .sum();
    let text: usize = records
        .values()
        .flatten()
        .map(|(_, r)| serde_json::to_vec(r).map_or(0, |v| v.len()))
        .sum();
    println!(
        "full load (JSON-RPC): {objects} objects in {} classes: wall {wall:.3} s, client CPU {ccpu:.3} s, sim CPU {scpu:.3} s",
        records.len()
    );
    println!(
        "  client CPU per 1k objects {:.2} ms; client/sim CPU ratio {:.2}; objects/s (wall) {:.0}",
        ccpu * 1e6 / objects as f64,
        if scpu > 0.0 { ccpu / scpu } else { f64::NAN },
        objects as f64 / wall
    );
    println!(
        "  memory: JSON text {:.0} B/object; records as serde_json maps ~{:.0} B/object (estimate); RSS +{:.1} MiB \
         with records held = {:.0} B/object; peak RSS {:.1} MiB",
        per_object(text),
        per_object(heap),
        mib(held),
        per_object(held as usize),
        mib(status_bytes("VmHWM:"))
    );
    let vm_refs: Vec<String> = records["VM"]
        .iter()
        .filter(|(_, r)| r.get("is_a_template") == Some(&json!(false)))
        .filter(|(_, r)| r.get("is_control_domain") == Some(&json!(false)))
        .map(|(r, _)| r.0.clone())
        .take(changes)
        .collect();
    let changes = vm_refs.len();
    drop(records);

    // 2. Follow `changes` VM renames: made in-process on the sim from another thread, or over the wire by a
    //    second client (then counted in client CPU) for an external pool.
    let span = Span::start();
    let started = Instant::now();
    let mutator = spawn_mutator(pool, &opts, vm_refs.clone()).await;
    let mut pending: HashSet<String> = vm_refs.into_iter().collect();
    let (mut batches, mut received) = (0usize, 0usize);
    while !pending.is_empty() {
        match tokio::time::timeout(Duration::from_secs(120), watch.next()).await {
            Ok(Some(WatchEvent::Changes(ch))) => {
                batches += 1;
                received += ch.len();
                for c in ch.iter().filter(|c| c.op == Op::Mod && c.class == "VM") {
                    let name = c
                        .snapshot
                        .as_ref()
                        .and_then(|s| s.get("name_label"))
                        .and_then(Value::as_str);
                    if name.is_some_and(|n| n.starts_with("bench-")) {
                        pending.remove(&c.obj_ref.0);
                    }
                }
            }
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) | Err(_) => panic!("events stalled with {} changes missing", pending.len()),
        }
    }
    let follow = started.elapsed().as_secs_f64();
    let (_, ccpu, scpu) = span.stop();
    println!(
        "events: {changes} VM changes followed in {follow:.3} s ({:.0} changes/s), {received} object changes in \
         {batches} batches; client CPU {ccpu:.3} s, sim CPU {scpu:.3} s",
        changes as f64 / follow
    );
    mutator.await;
    drop(watch);

    // 3. For comparison: VM.get_all_records alone over JSON-RPC and over XML-RPC.
    for proto in [Protocol::JsonRpc, Protocol::XmlRpc] {
        let c = Client::with_protocol(opts.clone(), Some(proto)).unwrap();
        c.login().await.unwrap();
        let span = Span::start();
        let n = c.get_all_records("VM").await.unwrap().len();
        let (wall, ccpu, scpu) = span.stop();
        println!("VM.get_all_records over {proto:?}: {n} VMs, wall {wall:.3} s, client CPU {ccpu:.3} s, sim CPU {scpu:.3} s");
    }
}

/// Start renaming `refs` to `bench-<i>`; the returned future waits for the end.
async fn spawn_mutator(
    pool: Option<Arc<xapi_sim::RunningPool>>,
    opts: &ClientOptions,
    refs: Vec<String>,
) -> futures::future::BoxFuture<'static, ()> {
    match pool {
        Some(pool) => {
            let session = pool
                .call(
                    "session.login_with_password",
                    vec![json!("root"), json!("root")],
                )
                .expect("sim login");
            let t = std::thread::spawn(move || {
                for (i, r) in refs.iter().enumerate() {
                    let params = vec![session.clone(), json!(r), json!(format!("bench-{i}"))];
                    pool.call("VM.set_name_label", params)
                        .expect("VM.set_name_label");
                }
            });
            Box::pin(async move { t.join().expect("mutator thread") })
        }
        None => {
            let c = Client::connect(opts.clone()).await.expect("mutator login");
            let t = tokio::spawn(async move {
                let calls = refs.into_iter().enumerate().map(|(i, r)| {
                    let c = c.clone();
                    async move {
                        let params = vec![json!(r), json!(format!("bench-{i}"))];
                        c.call("VM.set_name_label", params).await
                    }
                });
                let results: Vec<_> = futures::stream::iter(calls)
                    .buffer_unordered(16)
                    .collect()
                    .await;
                results.into_iter().for_each(|r| {
                    r.expect("VM.set_name_label");
                });
            });
            Box::pin(async move { t.await.expect("mutator task") })
        }
    }
}
