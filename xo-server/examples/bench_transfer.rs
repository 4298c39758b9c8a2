//! Transfer benchmark: an XVA export of a VM whose disk holds N GiB of written (non-zero) data, read straight from
//! xapi-sim vs through xo-server (`vm.export` + `$getFrom`), and a pool-to-pool `vm.copy` (export piped into an
//! import of another simulated pool); throughput ratios and xo-server's peak memory (VmHWM) per size.
//!
//! `cargo run --release -p xo-server --example bench_transfer [-- --sizes 1,4 --runs 3 --modes through,copy]`
//! (default: 4 GiB, 3 runs, both modes; `--modes through` alone, e.g. to profile the child with `perf record -p`;
//! `relay` adds a bare relay child, the same download read with xapi-client and written to the client socket as
//! it comes with no HTTP server around it: what one extra loopback hop costs by itself; `--source-rate 1100` paces
//! the simulated hosts' exports to 1100 MiB/s, about what a 10 GbE link carries, as a real host's network or
//! storage bounds them)
//!
//! Each run does the three transfers one after the other; the figures are the medians over the runs (ratios: the
//! median of the per-run ratios), and the peak RSS is xo-server's VmHWM, reset before each transfer. The CPU time
//! per GiB of every process is measured too, which bounds the ratio a machine allows: the simulated pool, the
//! client and xo-server share its cores, so a relayed transfer that needs C seconds of CPU per GiB in all cannot
//! take less than C / cores seconds per GiB.
//!
//! xo-server runs in a child process (this binary with `--xo-child`, default allocator settings) so that its VmHWM
//! and CPU time are its own; the simulated pools (plain HTTP, content in memory) run in this process, which
//! re-executes itself with glibc tunables (one arena, no trimming) so that the simulators reuse the memory of the
//! copies destroyed between runs instead of having the kernel zero gigabytes of fresh pages each run. A warm-up
//! export and copy run first, unmeasured.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use xapi_sim::{RunningPool, Sim};
use xapi_types::Ref;
use xo_server::{AppBuilder, Config};

const GIB: u64 = 1 << 30;

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) used so far by process `pid`.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // the fields after the command name (which is in parentheses): utime and stime are the 12th and 13th
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn xo_child() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let dir = tempfile::tempdir()?;
        let app = AppBuilder::new(Config::for_tests(dir.path())).build()?;
        let server = xo_server::serve(app).await?;
        println!("{}", server.local_addr());
        std::io::stdout().flush()?;
        // runs until the parent closes stdin
        tokio::task::spawn_blocking(|| {
            let mut l = String::new();
            while std::io::stdin().lock().read_line(&mut l).unwrap_or(0) > 0 {
                l.clear();
            }
        })
        .await?;
        drop(server);
        Ok(())
    })
}

/// The reference relay (`--relay-child`): for each connection, a request head naming the pool in `Host` and the
/// VM in `?ref=`, answered by the pool's `/export` read with xapi-client (as xo-server reads it) and written to the
/// socket as it comes, behind a minimal head, inside an XAPI task as xo-server's; no HTTP server, no JSON-RPC. What
/// one extra loopback hop costs by itself, to compare xo-server with.
fn relay_child() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", l.local_addr()?);
        std::io::stdout().flush()?;
        loop {
            let (s, _) = l.accept().await?;
            tokio::spawn(async move {
                if let Err(e) = relay_one(s).await {
                    eprintln!("relay: {e}");
                }
            });
        }
    })
}

async fn relay_one(mut s: tokio::net::TcpStream) -> anyhow::Result<()> {
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut b).await?;
        anyhow::ensure!(n > 0, "connection closed in the request head");
        head.extend_from_slice(&b[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let host = head
        .lines()
        .find_map(|l| l.strip_prefix("Host: "))
        .ok_or_else(|| anyhow::anyhow!("no Host"))?
        .trim();
    let vm = head
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.split_once("ref="))
        .map(|(_, r)| r.to_owned())
        .ok_or_else(|| anyhow::anyhow!("no ref"))?;
    let c = xapi_client::Client::connect(xapi_client::ClientOptions::new(
        format!("http://{host}"),
        "root",
        "root",
    ))
    .await?;
    // inside a task of its own, as xo-server's export
    let task = c.create_task("bench relay", "").await?;
    let d = c
        .get_resource("/export", &[("ref", vm), ("task_id", task.0.clone())])
        .await?;
    s.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
    )
    .await?;
    let mut body = d.into_stream();
    while let Some(chunk) = body.next().await {
        s.write_all(&chunk?).await?;
    }
    // the client sees the end of the connection before the task is collected, as with xo-server
    drop(s);
    let _ = c.wait_task(&task).await;
    let _ = c.call("task.destroy", vec![task.0.into()]).await;
    Ok(())
}

fn call(p: &RunningPool, method: &str, args: Vec<Value>) -> anyhow::Result<Value> {
    let s = p.call(
        "session.login_with_password",
        vec![json!("root"), json!("root"), json!("1.0"), json!("bench")],
    )?;
    let mut v = vec![s];
    v.extend(args);
    Ok(p.call(method, v)?)
}

async fn pool(cap: u64, vms: usize, rate: u64) -> anyhow::Result<RunningPool> {
    Ok(Sim::builder()
        .vms(vms)
        .vdi_content_cap(cap)
        .export_rate(rate)
        .build()?
        .serve("127.0.0.1:0".parse()?, false)
        .await?)
}

/// A halted VM whose first disk gets `size` bytes of non-zero data; its ref.
fn prepare_vm(p: &RunningPool, size: u64) -> anyhow::Result<String> {
    let all = call(p, "VM.get_all_records", vec![])?;
    let (vm, rec) = all
        .as_object()
        .and_then(|m| {
            m.iter().find(|(_, v)| {
                v["is_a_template"] == false
                    && v["is_control_domain"] == false
                    && !v["VBDs"].as_array().is_none_or(Vec::is_empty)
            })
        })
        .ok_or_else(|| anyhow::anyhow!("no VM with a disk"))?;
    if rec["power_state"] != "Halted" {
        call(p, "VM.hard_shutdown", vec![json!(vm)])?;
    }
    let mut vdi = None;
    for b in rec["VBDs"].as_array().into_iter().flatten() {
        let b = call(p, "VBD.get_record", vec![b.clone()])?;
        if b["type"] == "Disk" && b["VDI"] != Ref::NULL_STR {
            vdi = b["VDI"].as_str().map(str::to_owned);
            break;
        }
    }
    let vdi = Ref::from(vdi.ok_or_else(|| anyhow::anyhow!("no disk"))?.as_str());
    let (uuid, vsize) = p.state().read(|db| {
        let v = db.get("VDI", &vdi).cloned().unwrap_or_default();
        (
            v["uuid"].as_str().unwrap_or_default().to_owned(),
            v["virtual_size"].as_i64().unwrap_or(0) as u64,
        )
    });
    anyhow::ensure!(vsize >= size, "disk of {vsize} bytes is too small");
    let store = p.state().read(|db| db.vdi_data.clone());
    let mut block = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < size {
        for (i, b) in block.iter_mut().enumerate() {
            *b = ((i as u64 * 31 + off / (1 << 20)) % 255 + 1) as u8;
        }
        store.write_at(&vdi, &uuid, vsize, off, &block)?;
        off += block.len() as u64;
    }
    Ok(vm.clone())
}

async fn direct_export(p: &RunningPool, vm: &str) -> anyhow::Result<(u64, Duration)> {
    let c = xapi_client::Client::connect(xapi_client::ClientOptions::new(
        p.master_url().trim_end_matches('/'),
        "root",
        "root",
    ))
    .await?;
    let t = Instant::now();
    let d = c.get_resource("/export", &[("ref", vm.to_owned())]).await?;
    let mut s = d.into_stream();
    let mut n = 0u64;
    while let Some(c) = s.next().await {
        n += c?.len() as u64;
    }
    Ok((n, t.elapsed()))
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn rpc(ws: &mut Ws, id: &mut i64, method: &str, params: Value) -> anyhow::Result<Value> {
    *id += 1;
    let req = json!({"id": *id, "jsonrpc": "2.0", "method": method, "params": params});
    ws.send(Message::text(req.to_string())).await?;
    while let Some(m) = ws.next().await {
        if let Message::Text(t) = m? {
            let v: Value = serde_json::from_str(&t)?;
            if v["id"] == json!(*id) {
                if let Some(e) = v.get("error") {
                    anyhow::bail!("{method}: {e}");
                }
                return Ok(v["result"].clone());
            }
        }
    }
    anyhow::bail!("connection closed")
}

async fn http_download(addr: &str, path: &str) -> anyhow::Result<u64> {
    http_download_to(addr, path, "bench").await
}

/// The body length of `GET path` on `addr` (`Host: host`).
async fn http_download_to(addr: &str, path: &str, host: &str) -> anyhow::Result<u64> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let mut head: Option<usize> = None;
    let mut first = Vec::new();
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if head.is_none() {
            first.extend_from_slice(&buf[..n]);
            if let Some(p) = first.windows(4).position(|w| w == b"\r\n\r\n") {
                anyhow::ensure!(
                    first.starts_with(b"HTTP/1.1 200") || first.starts_with(b"HTTP/1.0 200"),
                    "bad answer"
                );
                head = Some(p + 4);
                total = (first.len() - p - 4) as u64;
            }
        } else {
            total += n as u64;
        }
    }
    Ok(total)
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Destroys the VM of uuid `uuid` on `p` and its disks (so repeated copies do not pile up in memory).
fn destroy_copy(p: &RunningPool, uuid: &str) -> anyhow::Result<()> {
    let vm = call(p, "VM.get_by_uuid", vec![json!(uuid)])?;
    let vbds = call(p, "VM.get_VBDs", vec![vm.clone()])?;
    for b in vbds.as_array().into_iter().flatten() {
        let vdi = call(p, "VBD.get_VDI", vec![b.clone()])?;
        call(p, "VBD.destroy", vec![b.clone()])?;
        if vdi != Ref::NULL_STR {
            call(p, "VDI.destroy", vec![vdi])?;
        }
    }
    call(p, "VM.destroy", vec![vm])?;
    Ok(())
}

/// Resets the child's VmHWM to its current RSS (`/proc/PID/clear_refs`, value 5).
fn reset_hwm(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// Which transfers through xo-server a run measures (besides the direct export).
#[derive(Debug, Clone, Copy)]
struct Modes {
    through: bool,
    copy: bool,
    relay: bool,
}

async fn run_size(gib: u64, runs: usize, modes: Modes, rate: u64) -> anyhow::Result<()> {
    let size = gib * GIB;
    let a = pool(size + GIB, 2, rate).await?;
    let b = pool(size + GIB, 1, rate).await?;
    let vm = prepare_vm(&a, size)?;
    let vm_uuid = call(&a, "VM.get_uuid", vec![json!(vm)])?;
    let pool_b = call(&b, "pool.get_all", vec![])?[0].clone();
    let sr_b = call(&b, "pool.get_default_SR", vec![pool_b])?;
    let sr_b = call(&b, "SR.get_uuid", vec![sr_b])?;

    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .arg("--xo-child")
        .env_remove("GLIBC_TUNABLES")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut line = String::new();
    std::io::BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
    )
    .read_line(&mut line)?;
    let addr = line.trim().to_owned();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/")).await?;
    let mut id = 0;
    rpc(
        &mut ws,
        &mut id,
        "session.signIn",
        json!({"email": "admin@admin.net", "password": "admin"}),
    )
    .await?;
    for p in [&a, &b] {
        let host = p.master_url().trim_end_matches('/').to_owned();
        rpc(
            &mut ws,
            &mut id,
            "server.add",
            json!({"host": host, "username": "root", "password": "root"}),
        )
        .await?;
    }
    let relay = if modes.relay {
        let mut r = std::process::Command::new(std::env::current_exe()?)
            .arg("--relay-child")
            .env_remove("GLIBC_TUNABLES")
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut l = String::new();
        std::io::BufReader::new(
            r.stdout
                .take()
                .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
        )
        .read_line(&mut l)?;
        Some((r, l.trim().to_owned()))
    } else {
        None
    };
    let hwm_start = status_kib(pid, "VmHWM:");
    // warm-up (not measured): the simulators' first export and import also fault their memory in
    let (xva, _) = direct_export(&a, &vm).await?;
    let new = rpc(
        &mut ws,
        &mut id,
        "vm.copy",
        json!({"vm": vm_uuid, "sr": sr_b, "name": "bench warm-up"}),
    )
    .await?;
    destroy_copy(&b, new.as_str().unwrap_or_default())?;

    let (mut direct, mut through, mut copy) = (Vec::new(), Vec::new(), Vec::new());
    let (mut relayed, mut cpu_relay, mut own_relay) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_through, mut cpu_copy) = (Vec::new(), Vec::new());
    // CPU of this process (the simulated pools and the downloading client) per mode
    let me = std::process::id();
    let (mut own_direct, mut own_through, mut own_copy) = (Vec::new(), Vec::new(), Vec::new());
    let (mut hwm_export, mut hwm_copy) = (0, 0);
    let rate = |t: Duration| mib_s(xva, t);
    // the modes interleaved, run after run, so that drifts of the machine hit them alike
    for run in 1..=runs {
        let own = cpu_s(me);
        let (n, t_direct) = direct_export(&a, &vm).await?;
        own_direct.push(cpu_s(me) - own);
        anyhow::ensure!(n == xva, "direct export sizes differ: {n} vs {xva}");
        direct.push(t_direct.as_secs_f64());
        let mut line = format!("  run {run}: direct {:.0} MiB/s", rate(t_direct));

        if modes.through {
            reset_hwm(pid);
            let (cpu, own) = (cpu_s(pid), cpu_s(me));
            let url = rpc(&mut ws, &mut id, "vm.export", json!({"vm": vm_uuid})).await?;
            let path = url["$getFrom"].as_str().unwrap_or_default().to_owned();
            let t = Instant::now();
            let n = http_download(&addr, &path).await?;
            let t_xo = t.elapsed();
            hwm_export = hwm_export.max(status_kib(pid, "VmHWM:"));
            anyhow::ensure!(n == xva, "sizes differ: {n} vs {xva}");
            cpu_through.push(cpu_s(pid) - cpu);
            own_through.push(cpu_s(me) - own);
            through.push(t_xo.as_secs_f64());
            line += &format!(
                " | through xo-server {:.0} MiB/s ({:.2}x)",
                rate(t_xo),
                t_direct.as_secs_f64() / t_xo.as_secs_f64()
            );
        }

        if let Some((r, raddr)) = &relay {
            let (cpu, own) = (cpu_s(r.id()), cpu_s(me));
            let pool_host = a.master_url().trim_end_matches('/').replace("http://", "");
            let t = Instant::now();
            let n = http_download_to(raddr, &format!("/export?ref={vm}"), &pool_host).await?;
            let t_relay = t.elapsed();
            anyhow::ensure!(n == xva, "relayed sizes differ: {n} vs {xva}");
            cpu_relay.push(cpu_s(r.id()) - cpu);
            own_relay.push(cpu_s(me) - own);
            relayed.push(t_relay.as_secs_f64());
            line += &format!(
                " | bare relay {:.0} MiB/s ({:.2}x)",
                rate(t_relay),
                t_direct.as_secs_f64() / t_relay.as_secs_f64()
            );
        }

        if modes.copy {
            reset_hwm(pid);
            let (cpu, own) = (cpu_s(pid), cpu_s(me));
            let t = Instant::now();
            let new = rpc(
                &mut ws,
                &mut id,
                "vm.copy",
                json!({"vm": vm_uuid, "sr": sr_b, "name": "bench copy"}),
            )
            .await?;
            let t_copy = t.elapsed();
            hwm_copy = hwm_copy.max(status_kib(pid, "VmHWM:"));
            cpu_copy.push(cpu_s(pid) - cpu);
            own_copy.push(cpu_s(me) - own);
            destroy_copy(&b, new.as_str().unwrap_or_default())?;
            copy.push(t_copy.as_secs_f64());
            line += &format!(
                " | pool-to-pool {:.0} MiB/s ({:.2}x)",
                rate(t_copy),
                t_direct.as_secs_f64() / t_copy.as_secs_f64()
            );
        }
        println!("{line}");
    }
    let ratio = |m: &[f64]| median(direct.iter().zip(m).map(|(d, x)| d / x).collect());
    let median_rate = |m: &[f64]| xva as f64 / (1 << 20) as f64 / median(m.to_vec());
    let gib_xva = xva as f64 / GIB as f64;
    let mut summary = format!(
        "{gib} GiB written ({gib_xva:.2} GiB XVA), median of {runs}: direct {:.0} MiB/s",
        median_rate(&direct)
    );
    let mut cpu = Vec::new();
    let mut own = format!(
        "  pools+client CPU time per GiB (median): {:.2} s direct",
        median(own_direct) / gib_xva
    );
    let mut hwm = format!(
        "  xo-server peak RSS (VmHWM): {} MiB after start+server.add",
        hwm_start / 1024
    );
    // Every process of the transfer shares this machine's cores: a mode that needs `cpu` seconds of CPU in all per
    // GiB cannot take less than cpu / cores seconds per GiB, whatever the scheduling, hence a best ratio to direct.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let wall_direct = median(direct.clone()) / gib_xva;
    let mut ceiling = Vec::new();
    let mut bound = |name: &str, relay_cpu: &[f64], own_cpu: &[f64]| {
        let cpu = median(relay_cpu.to_vec()) / gib_xva + median(own_cpu.to_vec()) / gib_xva;
        ceiling.push(format!(
            "{name} <= {:.2}x ({cpu:.2} s CPU per GiB in all)",
            (cores * wall_direct / cpu).min(1.0)
        ));
    };
    if modes.through {
        bound("through xo-server", &cpu_through, &own_through);
    }
    if modes.relay {
        bound("bare relay", &cpu_relay, &own_relay);
    }
    let ceiling = format!(
        "  best ratio {cores} cores allow (direct takes {wall_direct:.2} s per GiB): {}",
        ceiling.join(", ")
    );
    if modes.through {
        summary += &format!(
            " | through xo-server {:.0} MiB/s ({:.2}x direct)",
            median_rate(&through),
            ratio(&through)
        );
        cpu.push(format!(
            "{:.2} s through xo-server",
            median(cpu_through) / gib_xva
        ));
        own += &format!(", {:.2} s through xo-server", median(own_through) / gib_xva);
        hwm += &format!(", {} MiB during the exports", hwm_export / 1024);
    }
    if modes.relay {
        summary += &format!(
            " | bare relay {:.0} MiB/s ({:.2}x direct)",
            median_rate(&relayed),
            ratio(&relayed)
        );
        cpu.push(format!(
            "{:.2} s the bare relay",
            median(cpu_relay) / gib_xva
        ));
        own += &format!(", {:.2} s bare relay", median(own_relay) / gib_xva);
    }
    if modes.copy {
        summary += &format!(
            " | pool-to-pool vm.copy {:.0} MiB/s ({:.2}x direct export)",
            median_rate(&copy),
            ratio(&copy)
        );
        cpu.push(format!("{:.2} s pool-to-pool", median(cpu_copy) / gib_xva));
        own += &format!(", {:.2} s pool-to-pool", median(own_copy) / gib_xva);
        hwm += &format!(", {} MiB during the copies", hwm_copy / 1024);
    }
    let cpu = format!(
        "  xo-server (or relay) CPU time per GiB moved (median): {}",
        cpu.join(", ")
    );
    println!("{summary}\n{cpu}\n{own}\n{ceiling}\n{hwm}");
    if let Some((mut r, _)) = relay {
        let _ = r.kill();
        let _ = r.wait();
    }
    drop(child.stdin.take());
    let _ = child.wait();
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

/// glibc allocator settings for the simulators' process: 1 MiB blocks from the heap (not one mmap each) and freed
/// memory kept, so that the simulated pools reuse their memory from run to run instead of having the kernel zero
/// fresh pages for every block (a cost of the in-memory simulator, not of the transfer; xo-server keeps the
/// defaults).
const SIM_TUNABLES: &str =
    "glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=68719476736";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--xo-child") {
        return xo_child();
    }
    if args.iter().any(|a| a == "--relay-child") {
        return relay_child();
    }
    if cfg!(target_os = "linux") && std::env::var_os("GLIBC_TUNABLES").is_none() {
        // the tunables are read at start: run again with them
        let status = std::process::Command::new(std::env::current_exe()?)
            .args(&args[1..])
            .env("GLIBC_TUNABLES", SIM_TUNABLES)
            .status()?;
        std::process::exit(status.code().unwrap_or(1));
    }
    let sizes: Vec<u64> = args
        .iter()
        .position(|a| a == "--sizes")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![4]);
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let modes = args
        .iter()
        .position(|a| a == "--modes")
        .and_then(|i| args.get(i + 1))
        .map(|m| Modes {
            through: m.split(',').any(|x| x == "through"),
            copy: m.split(',').any(|x| x == "copy"),
            relay: m.split(',').any(|x| x == "relay"),
        })
        .unwrap_or(Modes {
            through: true,
            copy: true,
            relay: false,
        });
    let rate: u64 = args
        .iter()
        .position(|a| a == "--source-rate")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(0, |mib| mib << 20);
    if rate > 0 {
        println!("source paced to {} MiB/s", rate >> 20);
    }
    let rt = tokio::runtime::Runtime::new()?;
    for gib in sizes {
        rt.block_on(run_size(gib, runs.max(1), modes, rate))?;
    }
    Ok(())
}
