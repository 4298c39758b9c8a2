//! Full-load and event-following benchmark of the client against a simulated pool in a child process.
//!
//! `cargo bench -p xapi-client --bench load` (env: `BENCH_VMS` = 10000, `BENCH_CHANGES` = 1000, `BENCH_TLS` = 1
//! (HTTPS, default) or 0, `BENCH_HOSTS` = 3). The sim runs in a child process (this binary with `--sim-child`), so
//! the client's CPU and memory are this process's alone and the sim's CPU is the child's (from /proc, Linux only).
//! Set `BENCH_URL` (and `BENCH_USER`/`BENCH_PASSWORD`, default root/root) to measure against an external pool.
//! Changes are made by a second client in this process (its CPU counts as client CPU in the events phase).
//! Prints figures; asserts nothing about time.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Map, Value};
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
    cpu_of("/proc/self/stat")
}

fn sim_cpu(pid: Option<u32>) -> f64 {
    pid.map_or(0.0, |p| cpu_of(&format!("/proc/{p}/stat")))
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
    sim: f64,
    sim_pid: Option<u32>,
}

impl Span {
    fn start(sim_pid: Option<u32>) -> Self {
        Span {
            wall: Instant::now(),
            client: client_cpu(),
            sim: sim_cpu(sim_pid),
            sim_pid,
        }
    }

    /// (wall, client CPU, sim CPU) seconds.
    fn stop(&self) -> (f64, f64, f64) {
        let wall = self.wall.elapsed().as_secs_f64();
        let client = client_cpu() - self.client;
        let sim = sim_cpu(self.sim_pid) - self.sim;
        (wall, client, sim)
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// The child: serve a simulated pool, print its URL, run until stdin closes.
fn sim_child(hosts: usize, vms: usize, tls: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = Instant::now();
        let pool = xapi_sim::Sim::builder()
            .hosts(hosts)
            .vms(vms)
            .build()
            .expect("sim build")
            .serve("127.0.0.1:0".parse().unwrap(), tls)
            .await
            .expect("sim serve");
        eprintln!(
            "simulated pool (child process): {hosts} hosts, {vms} VMs, built and serving in {:.2} s (tls: {tls})",
            t.elapsed().as_secs_f64()
        );
        println!("{}", pool.master_url());
        std::io::stdout().flush().unwrap();
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
        })
        .await
        .unwrap();
        pool.shutdown().await;
    });
}

fn main() {
    let vms = env_num("BENCH_VMS", 10_000);
    let changes = env_num("BENCH_CHANGES", 1_000);
    let hosts = env_num("BENCH_HOSTS", 3);
    let tls = env_num("BENCH_TLS", 1) == 1;
    if std::env::args().any(|a| a == "--sim-child") {
        return sim_child(hosts, vms, tls);
    }
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut child = None;
    let opts = match std::env::var("BENCH_URL") {
        Ok(url) => {
            let user = std::env::var("BENCH_USER").unwrap_or_else(|_| "root".into());
            let password = std::env::var("BENCH_PASSWORD").unwrap_or_else(|_| "root".into());
            println!("external pool at {url}");
            ClientOptions::new(url, user, password).allow_unauthorized(true)
        }
        Err(_) => {
            let exe = std::env::current_exe().expect("own path");
            let mut c = std::process::Command::new(exe)
                .arg("--sim-child")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn the sim");
            let mut line = String::new();
            std::io::BufReader::new(c.stdout.take().expect("piped"))
                .read_line(&mut line)
                .expect("sim URL");
            let url = line.trim().to_owned();
            assert!(url.starts_with("http"), "the sim did not start");
            child = Some(c);
            ClientOptions::new(url, "root", "root").allow_unauthorized(true)
        }
    };
    let sim_pid = child.as_ref().map(std::process::Child::id);
    client_rt.block_on(run(sim_pid, opts, changes));
    if let Some(mut c) = child {
        drop(c.stdin.take());
        let _ = c.wait();
    }
}

async fn run(sim_pid: Option<u32>, opts: ClientOptions, changes: usize) {
    let rss_base = status_bytes("VmRSS:");
    // 1. Full load through the watcher (every class from system.listMethods).
    let client = Client::connect(opts.clone()).await.expect("login");
    let span = Span::start(sim_pid);
    let mut watch = client.watch(WatchOptions::default());
    let Some(WatchEvent::Reset { records }) = watch.next().await else {
        panic!("no initial load")
    };
    let (wall, ccpu, scpu) = span.stop();
    let objects: usize = records.values().map(Vec::len).sum();
    let held = status_bytes("VmRSS:").saturating_sub(rss_base);
    let per_object = |b: u64| b as f64 / objects as f64;
    let text: usize = records.values().flatten().map(|(_, r)| r.len()).sum();
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
        "  memory: records handed over (JSON text) {:.0} B/object; client RSS +{:.1} MiB with them held = {:.0} B/object, \
         i.e. {:.0} B/object above the records (goal <= 2048); peak RSS {:.1} MiB",
        per_object(text as u64),
        mib(held),
        per_object(held),
        per_object(held) - per_object(text as u64),
        mib(status_bytes("VmHWM:"))
    );
    // Side by side: the same records decoded into serde_json trees (what the watcher handed out before).
    let before = status_bytes("VmRSS:");
    let trees: Vec<Map<String, Value>> = records
        .values()
        .flatten()
        .map(|(_, r)| r.decode())
        .collect();
    let tree_bytes = status_bytes("VmRSS:").saturating_sub(before);
    println!(
        "  the same records as serde_json trees: +{:.1} MiB = {:.0} B/object ({:.1}x the raw records)",
        mib(tree_bytes),
        per_object(tree_bytes),
        tree_bytes as f64 / text.max(1) as f64
    );
    drop(trees);
    let vm_refs: Vec<String> = records["VM"]
        .iter()
        .filter(|(_, r)| r.get("is_a_template") == Some(json!(false)))
        .filter(|(_, r)| r.get("is_control_domain") == Some(json!(false)))
        .map(|(r, _)| r.0.clone())
        .take(changes)
        .collect();
    let changes = vm_refs.len();
    drop(records);

    // 2. Follow `changes` VM renames made over the wire by a second client (counted in client CPU).
    let span = Span::start(sim_pid);
    let started = Instant::now();
    let mutator = spawn_mutator(&opts, vm_refs.clone()).await;
    let mut pending: HashSet<String> = vm_refs.into_iter().collect();
    let (mut batches, mut received) = (0usize, 0usize);
    while !pending.is_empty() {
        match tokio::time::timeout(Duration::from_secs(120), watch.next()).await {
            Ok(Some(WatchEvent::Changes(ch))) => {
                batches += 1;
                received += ch.len();
                for c in ch.iter().filter(|c| c.op == Op::Mod && c.class == "VM") {
                    let name = c.snapshot.as_ref().and_then(|s| s.get_str("name_label"));
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
        let span = Span::start(sim_pid);
        let n = c.get_all_records("VM").await.unwrap().len();
        let (wall, ccpu, scpu) = span.stop();
        println!("VM.get_all_records over {proto:?}: {n} VMs, wall {wall:.3} s, client CPU {ccpu:.3} s, sim CPU {scpu:.3} s");
    }
}

/// Start renaming `refs` to `bench-<i>` from a second client; the returned future waits for the end.
async fn spawn_mutator(
    opts: &ClientOptions,
    refs: Vec<String>,
) -> futures::future::BoxFuture<'static, ()> {
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
