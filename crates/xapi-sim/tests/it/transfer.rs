//! HTTP transfer handlers over real HTTP on loopback with a raw client written here: XVA export/import (tar
//! listing, re-import into another pool with byte-for-byte disk comparison, corrupt and truncated archives,
//! rollback), raw VDI round trip, authentication (401, Basic), task completion, RRD updates and dumps.

use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xapi_sim::{RunningPool, Sim};
use xapi_types::Ref;

const MIB: usize = 1 << 20;

/// A pool served over plain HTTP and a logged-in session.
struct P {
    pool: RunningPool,
    s: String,
}

impl P {
    async fn new(vms: usize) -> P {
        P::with(Sim::builder().vms(vms).build().expect("build")).await
    }

    async fn with(sim: Sim) -> P {
        let pool = sim
            .serve("127.0.0.1:0".parse().unwrap(), false)
            .await
            .expect("serve");
        let s = pool
            .call(
                "session.login_with_password",
                vec![json!("root"), json!("root"), json!("1.0"), json!("t")],
            )
            .expect("login");
        P {
            pool,
            s: s.as_str().unwrap().to_owned(),
        }
    }

    fn call(&self, method: &str, args: Vec<Value>) -> Value {
        let mut p = vec![json!(self.s)];
        p.extend(args);
        self.pool
            .call(method, p)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    fn addr(&self) -> String {
        self.pool
            .master_url()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned()
    }

    fn count(&self, class: &str) -> usize {
        self.pool.state().read(|db| db.count(class))
    }

    fn default_sr(&self) -> String {
        let pool = self.call("pool.get_all", vec![])[0]
            .as_str()
            .unwrap()
            .to_owned();
        self.call("pool.get_default_SR", vec![json!(pool)])
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn new_task(&self) -> String {
        self.call("task.create", vec![json!("transfer"), json!("")])
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Wait (bounded) until the task is no longer pending; its record.
    async fn task_done(&self, task: &str) -> Value {
        for _ in 0..1000 {
            let t = self.call("task.get_record", vec![json!(task)]);
            if t["status"] != "pending" {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("task {task} still pending");
    }

    /// A halted VM with at least one disk (a running one is shut down).
    fn halted_vm_with_disk(&self) -> String {
        let all = self.call("VM.get_all_records", vec![]);
        let mut candidates: Vec<(String, String)> = all
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| v["is_a_template"] == false && v["is_control_domain"] == false)
            .filter(|(_, v)| {
                v["VBDs"].as_array().unwrap().iter().any(|b| {
                    let b = self.call("VBD.get_record", vec![b.clone()]);
                    b["type"] == "Disk" && b["VDI"] != Ref::NULL_STR
                })
            })
            .map(|(r, v)| (r.clone(), v["power_state"].as_str().unwrap().to_owned()))
            .collect();
        candidates.sort_by_key(|(_, p)| p != "Halted");
        let (vm, power) = candidates.into_iter().next().expect("a VM with a disk");
        if power != "Halted" {
            self.call("VM.hard_shutdown", vec![json!(vm)]);
        }
        vm
    }

    fn disks_of(&self, vm: &str) -> Vec<String> {
        let rec = self.call("VM.get_record", vec![json!(vm)]);
        let mut out: Vec<(String, String)> = rec["VBDs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| self.call("VBD.get_record", vec![b.clone()]))
            .filter(|b| b["type"] == "Disk" && b["VDI"] != Ref::NULL_STR)
            .map(|b| {
                (
                    b["userdevice"].as_str().unwrap().to_owned(),
                    b["VDI"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        out.sort();
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// A VDI's content: its size and its non-zero blocks.
    fn content(&self, vdi: &str) -> (u64, Vec<(u64, Vec<u8>)>) {
        let r = Ref::from(vdi);
        let (uuid, size) = self.pool.state().read(|db| {
            let v = db.get("VDI", &r).expect("vdi");
            (
                v["uuid"].as_str().unwrap().to_owned(),
                v["virtual_size"].as_i64().unwrap() as u64,
            )
        });
        let store = self.pool.state().read(|db| db.vdi_data.clone());
        let blocks = store
            .allocated(&r, &uuid, size)
            .into_iter()
            .map(|i| (i, store.read_block(&r, &uuid, i, size)))
            .filter(|(_, b)| b.iter().any(|x| *x != 0))
            .collect();
        (size, blocks)
    }
}

/// One HTTP exchange.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// Send a request (HTTP/1.1, `Connection: close`); `body` is sent whole, or only its first `send` bytes followed
/// by a write shutdown (a truncated upload with the full Content-Length announced).
async fn http(
    addr: &str,
    method: &str,
    target: &str,
    extra: &[(&str, &str)],
    body: Option<&[u8]>,
    send: Option<usize>,
) -> Resp {
    let s = TcpStream::connect(addr).await.expect("connect");
    exchange(s, addr, method, target, extra, body, send).await
}

/// [`http`] over any stream (plain TCP or TLS).
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    addr: &str,
    method: &str,
    target: &str,
    extra: &[(&str, &str)],
    body: Option<&[u8]>,
    send: Option<usize>,
) -> Resp {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    if let Some(b) = body {
        let n = send.unwrap_or(b.len()).min(b.len());
        // The server answers before reading the body; write while it may already be replying.
        let _ = s.write_all(&b[..n]).await;
        if send.is_some() {
            let _ = s.shutdown().await;
        }
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    parse(&raw)
}

fn parse(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end..];
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&b[..i]);
        let len =
            usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if len == 0 || b.len() < i + 2 + len {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + len]);
        b = b.get(i + 4 + len..).unwrap_or_default();
    }
    out
}

/// Entries (name, data) of a tar archive.
fn entries(tar_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut ar = tar::Archive::new(tar_bytes);
    ar.entries()
        .expect("tar")
        .map(|e| {
            let mut e = e.expect("entry");
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut d = Vec::new();
            e.read_to_end(&mut d).unwrap();
            (name, d)
        })
        .collect()
}

fn build_tar(items: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in items {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

async fn export(p: &P, vm: &str, extra: &str) -> Resp {
    let r = http(
        &p.addr(),
        "GET",
        &format!("/export?session_id={}&ref={vm}{extra}", p.s),
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "export: {r:?}");
    r
}

async fn import(p: &P, xva: &[u8], extra: &str, send: Option<usize>) -> (Resp, Value) {
    let task = p.new_task();
    let sr = p.default_sr();
    let r = http(
        &p.addr(),
        "PUT",
        &format!(
            "/import?session_id={}&task_id={task}&sr_id={sr}{extra}",
            p.s
        ),
        &[],
        Some(xva),
        send,
    )
    .await;
    let t = p.task_done(&task).await;
    (r, t)
}

/// XAPI's `.xxhash` entry: 16 upper-case hex digits of XXH64 (seed 0).
fn xxhash_hex(d: &[u8]) -> String {
    format!("{:016X}", twox_hash::XxHash64::oneshot(0, d))
}

/// The first VM ref of a successful import task's result (`<value><array><data><value>OpaqueRef:…`).
fn imported_vm(task: &Value) -> String {
    task["result"]
        .as_str()
        .unwrap()
        .split("<value>")
        .nth(2)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned()
}

/// The legacy `.checksum` entry: lower-case SHA-1 hex.
fn sha1_hex(d: &[u8]) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(d)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_xva_lists_with_tar_and_reimports_byte_for_byte() {
    let a = P::new(3).await;
    let vm = a.halted_vm_with_disk();
    let disk = a.disks_of(&vm)[0].clone();
    // Real written data on top of the generated image (a block far in the disk).
    let store = a.pool.state().read(|db| db.vdi_data.clone());
    let (uuid, size) = a.pool.state().read(|db| {
        let v = db.get("VDI", &Ref::from(disk.as_str())).unwrap();
        (
            v["uuid"].as_str().unwrap().to_owned(),
            v["virtual_size"].as_i64().unwrap() as u64,
        )
    });
    store
        .write_at(
            &Ref::from(disk.as_str()),
            &uuid,
            size,
            40 * MIB as u64 + 7,
            b"written by the test",
        )
        .unwrap();

    let task = a.new_task();
    let r = http(
        &a.addr(),
        "GET",
        &format!("/export?session_id={}&task_id={task}&ref={vm}", a.s),
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get("task-id"), Some(&task));
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/octet-stream")
    );
    let t = a.task_done(&task).await;
    assert_eq!(t["status"], "success", "{t}");
    assert_eq!(
        a.call("VM.get_current_operations", vec![json!(vm)]),
        json!({})
    );

    let es = entries(&r.body);
    assert_eq!(es[0].0, "ova.xml");
    let ova = String::from_utf8(es[0].1.clone()).unwrap();
    for class in ["VM", "VBD", "VDI", "SR"] {
        assert!(
            ova.contains(&format!("<value>{class}</value>")),
            "ova.xml lacks {class}"
        );
    }
    assert!(ova.contains("<name>export_vsn</name><value><i4>2</i4></value>"));
    // Chunks: each followed by its XXH64 (modern XAPI); first and last always present; sparse chunks skipped.
    let chunks: Vec<&(String, Vec<u8>)> =
        es[1..].iter().filter(|(n, _)| !n.contains('.')).collect();
    assert!(!chunks.is_empty());
    for w in es[1..].chunks(2) {
        assert_eq!(w[1].0, format!("{}.xxhash", w[0].0));
        assert_eq!(String::from_utf8_lossy(&w[1].1), xxhash_hex(&w[0].1));
        assert!(w[0].1.len() <= MIB);
    }
    let names: Vec<&str> = chunks.iter().map(|(n, _)| n.as_str()).collect();
    let prefix = names[0].split('/').next().unwrap();
    assert!(names.contains(&format!("{prefix}/00000000").as_str()));
    assert!(names.contains(&format!("{prefix}/00000040").as_str()));
    let last = format!("{prefix}/{:08}", (size - 1) / MIB as u64);
    assert!(
        names.contains(&last.as_str()),
        "last chunk {last} missing from {names:?}"
    );
    assert!(
        (names.len() as u64) < size / MIB as u64,
        "sparse chunks must be skipped"
    );

    // The system tar agrees, when there is one.
    if std::process::Command::new("tar")
        .arg("--version")
        .output()
        .is_ok()
    {
        let dir = std::env::temp_dir().join(format!("xva-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("export.xva");
        std::fs::write(&f, &r.body).unwrap();
        let out = std::process::Command::new("tar")
            .arg("tf")
            .arg(&f)
            .output()
            .unwrap();
        assert!(out.status.success());
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(listing.lines().next(), Some("ova.xml"));
        assert!(listing.contains(&last));
        let _ = std::fs::remove_dir_all(&dir);
    }

    // Re-import into another pool: same disk bytes.
    let b = P::new(0).await;
    let (vms0, vdis0) = (b.count("VM"), b.count("VDI"));
    let (resp, t) = import(&b, &r.body, "", None).await;
    assert_eq!(resp.status, 200);
    assert!(resp.headers.contains_key("task-id"));
    assert_eq!(t["status"], "success", "{t}");
    let result = t["result"].as_str().unwrap();
    assert!(
        result.starts_with("<value><array><data><value>OpaqueRef:"),
        "{result}"
    );
    let new_vm = imported_vm(&t);
    assert_eq!(b.count("VM"), vms0 + 1);
    assert!(b.count("VDI") > vdis0);
    let src = a.call("VM.get_record", vec![json!(vm)]);
    let dst = b.call("VM.get_record", vec![json!(new_vm)]);
    assert_eq!(dst["name_label"], src["name_label"]);
    assert_eq!(dst["power_state"], "Halted");
    assert_eq!(dst["memory_static_max"], src["memory_static_max"]);
    assert_eq!(
        dst["VIFs"].as_array().unwrap().len(),
        src["VIFs"].as_array().unwrap().len()
    );
    let (sa, sb) = (a.disks_of(&vm), b.disks_of(&new_vm));
    assert_eq!(sa.len(), sb.len());
    for (x, y) in sa.iter().zip(&sb) {
        assert_eq!(a.content(x), b.content(y), "disk content differs");
    }
    assert!(b
        .content(&sb[0])
        .1
        .iter()
        .any(|(i, d)| *i == 40 && d[7..26] == *b"written by the test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_export_reimports() {
    let a = P::new(2).await;
    let vm = a.halted_vm_with_disk();
    let r = export(&a, &vm, "&use_compression=true").await;
    assert_eq!(&r.body[..2], &[0x1f, 0x8b]);
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(r.body.as_slice())
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(entries(&plain)[0].0, "ova.xml");
    let b = P::new(0).await;
    let (_, t) = import(&b, &r.body, "", None).await;
    assert_eq!(t["status"], "success", "{t}");
    // restore=true keeps the VM's uuid (a second restore into the same pool cannot, and gets a new one).
    let uuid = a.call("VM.get_uuid", vec![json!(vm)]);
    assert_ne!(b.call("VM.get_uuid", vec![json!(imported_vm(&t))]), uuid);
    let (_, t) = import(&b, &r.body, "&restore=true", None).await;
    assert_eq!(b.call("VM.get_uuid", vec![json!(imported_vm(&t))]), uuid);
    let (_, t) = import(&b, &r.body, "&restore=true", None).await;
    assert_ne!(b.call("VM.get_uuid", vec![json!(imported_vm(&t))]), uuid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_chunk_is_rejected_and_rolled_back() {
    let a = P::new(2).await;
    let vm = a.halted_vm_with_disk();
    let r = export(&a, &vm, "").await;
    let mut es = entries(&r.body);
    let i = es
        .iter()
        .position(|(n, _)| n.ends_with("/00000001"))
        .expect("chunk 1");
    es[i].1[100] ^= 0xff;
    // Unknown networks (no bridge or name match) are created by the import, and rolled back with it.
    let ova = String::from_utf8(es[0].1.clone()).unwrap();
    es[0].1 = ova
        .replace("<name>bridge</name><value>", "<name>bridge</name><value>zz")
        .replace(
            "<name>name_label</name><value>",
            "<name>name_label</name><value>zz ",
        )
        .into_bytes();
    let bad = build_tar(&es);
    let b = P::new(0).await;
    let counts = |p: &P| {
        (
            p.count("VM"),
            p.count("VDI"),
            p.count("VBD"),
            p.count("VIF"),
            p.count("VM_metrics"),
            p.count("network"),
        )
    };
    let before = counts(&b);
    let (_, t) = import(&b, &bad, "", None).await;
    assert_eq!(t["status"], "failure");
    assert_eq!(t["error_info"][0], "IMPORT_ERROR", "{t}");
    assert!(
        t["error_info"][1].as_str().unwrap().contains("Checksum"),
        "{t}"
    );
    assert_eq!(counts(&b), before, "nothing left behind");
    // force=true accepts it.
    let (_, t) = import(&b, &bad, "&force=true", None).await;
    assert_eq!(t["status"], "success", "{t}");

    // A chunk whose checksum names another chunk, an unknown checksum kind, and no ova.xml are invalid too.
    let mut odd = entries(&r.body);
    let j = odd
        .iter()
        .position(|(n, _)| n.ends_with(".xxhash"))
        .unwrap();
    odd[j].0 = odd[j].0.replace(".xxhash", ".md5");
    let (_, t) = import(&b, &build_tar(&odd), "", None).await;
    assert_eq!(t["error_info"][0], "IMPORT_ERROR", "{t}");
    let (_, t) = import(&b, &build_tar(&entries(&r.body)[1..]), "", None).await;
    assert_eq!(t["error_info"][0], "IMPORT_ERROR", "{t}");
    assert_eq!(counts(&b).0, before.0 + 1, "only the forced import remains");
    assert!(
        counts(&b).5 > before.5,
        "the forced import created its network"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_snapshot_comes_back_as_a_template() {
    // export.ml's make_vm: a full export drops the snapshot metadata
    let a = P::new(2).await;
    let vm = a.halted_vm_with_disk();
    let snap = a.call("VM.snapshot", vec![json!(vm), json!("before upgrade")]);
    let snap = snap.as_str().unwrap().to_owned();
    let r = export(&a, &snap, "").await;
    let ova = String::from_utf8(entries(&r.body)[0].1.clone()).unwrap();
    assert!(ova.contains("<name>is_a_snapshot</name><value><boolean>0</boolean></value>"));
    assert!(ova.contains("<name>snapshot_of</name><value>OpaqueRef:NULL</value>"));
    let b = P::new(0).await;
    let (_, t) = import(&b, &r.body, "", None).await;
    assert_eq!(t["status"], "success", "{t}");
    let new = imported_vm(&t);
    assert_eq!(b.call("VM.get_is_a_snapshot", vec![json!(new)]), false);
    assert_eq!(b.call("VM.get_is_a_template", vec![json!(new)]), true);
    assert_eq!(
        b.call("VM.get_name_label", vec![json!(new)]),
        "before upgrade"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_rate_paces_disk_streams() {
    // 4 MiB/s: an XVA of a few MiB cannot come faster than its size allows (a lower bound only)
    let rate = 4 << 20;
    let a = P::with(Sim::builder().vms(2).export_rate(rate).build().unwrap()).await;
    let vm = a.halted_vm_with_disk();
    let t = std::time::Instant::now();
    let r = export(&a, &vm, "").await;
    let floor = (r.body.len() as u64 - 256 * 1024) as f64 / rate as f64;
    assert!(
        t.elapsed().as_secs_f64() >= floor,
        "{} bytes in {:?}",
        r.body.len(),
        t.elapsed()
    );
    // still a whole, valid archive
    assert_eq!(entries(&r.body)[0].0, "ova.xml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sha1_checksums_are_verified() {
    let a = P::new(2).await;
    let vm = a.halted_vm_with_disk();
    let r = export(&a, &vm, "").await;
    // the same archive as an older XAPI writes it: `.checksum` entries holding each chunk's SHA-1
    let mut legacy = entries(&r.body);
    for i in 1..legacy.len() {
        if let Some(stem) = legacy[i].0.strip_suffix(".xxhash").map(str::to_owned) {
            legacy[i] = (
                format!("{stem}.checksum"),
                sha1_hex(&legacy[i - 1].1).into_bytes(),
            );
        }
    }
    assert!(legacy.iter().any(|(n, _)| n.ends_with(".checksum")));
    let b = P::new(0).await;
    let before = b.count("VM");
    let (_, t) = import(&b, &build_tar(&legacy), "", None).await;
    assert_eq!(t["status"], "success", "{t}");
    assert_eq!(b.count("VM"), before + 1);
    // a chunk that does not match its SHA-1 fails the import, which leaves nothing behind
    let i = legacy
        .iter()
        .position(|(n, _)| n.ends_with("/00000001"))
        .expect("chunk 1");
    legacy[i].1[7] ^= 0x01;
    let (_, t) = import(&b, &build_tar(&legacy), "", None).await;
    assert_eq!(t["status"], "failure");
    assert_eq!(t["error_info"][0], "IMPORT_ERROR", "{t}");
    assert!(
        t["error_info"][1].as_str().unwrap().contains("Checksum"),
        "{t}"
    );
    assert_eq!(b.count("VM"), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_upload_fails_cleanly() {
    let a = P::new(2).await;
    let vm = a.halted_vm_with_disk();
    let r = export(&a, &vm, "").await;
    let b = P::new(0).await;
    let before = (b.count("VM"), b.count("VDI"));
    // Cut in the middle of the data, full length announced, then the client closes its side.
    let (_, t) = import(&b, &r.body, "", Some(r.body.len() / 2 + 100)).await;
    assert_eq!(t["status"], "failure");
    assert_eq!(t["error_info"][0], "IMPORT_ERROR", "{t}");
    assert_eq!((b.count("VM"), b.count("VDI")), before);
    // Cut exactly between entries: the archive ends early, disks incomplete.
    let es = entries(&r.body);
    let (_, t) = import(&b, &build_tar(&es[..3]), "", None).await;
    assert_eq!(t["error_info"][0], "IMPORT_ERROR", "{t}");
    assert_eq!((b.count("VM"), b.count("VDI")), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_over_the_content_cap_fails_with_sr_backend_failure() {
    let a = P::new(2).await;
    let vm = a.halted_vm_with_disk();
    let r = export(&a, &vm, "").await;
    let b = P::with(Sim::builder().vdi_content_cap(MIB as u64).build().unwrap()).await;
    let before = (b.count("VM"), b.count("VDI"));
    let (_, t) = import(&b, &r.body, "", None).await;
    assert_eq!(t["error_info"][0], "SR_BACKEND_FAILURE_44", "{t}");
    assert_eq!((b.count("VM"), b.count("VDI")), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_refusals() {
    let a = P::new(2).await;
    let running: String = {
        let all = a.call("VM.get_all_records", vec![]);
        let vm = all
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, v)| v["power_state"] == "Running" && v["is_control_domain"] == false)
            .map(|(r, _)| r.clone());
        match vm {
            Some(v) => v,
            None => {
                let v = a.halted_vm_with_disk();
                a.call("VM.start", vec![json!(v), json!(false), json!(true)]);
                v
            }
        }
    };
    let task = a.new_task();
    let r = http(
        &a.addr(),
        "GET",
        &format!("/export?session_id={}&task_id={task}&ref={running}", a.s),
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 500);
    let t = a.task_done(&task).await;
    assert_eq!(t["error_info"][0], "VM_BAD_POWER_STATE", "{t}");
    let r = http(
        &a.addr(),
        "GET",
        &format!("/export?session_id={}&uuid=nope", a.s),
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    let r = http(
        &a.addr(),
        "GET",
        &format!(
            "/export?session_id={}&ref={running}&use_compression=brotli",
            a.s
        ),
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    // Chunked uploads are refused.
    let mut s = TcpStream::connect(a.addr()).await.unwrap();
    let req = format!(
        "PUT /import?session_id={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        a.s
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    assert_eq!(parse(&raw).status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_session_is_401_and_fails_the_task() {
    let a = P::new(1).await;
    let task = a.new_task();
    for path in [
        "/export?ref=x",
        "/export_raw_vdi?vdi=x",
        "/rrd_updates?start=0",
        "/host_rrd?x",
    ] {
        let r = http(
            &a.addr(),
            "GET",
            &format!("{path}&session_id=OpaqueRef:bogus&task_id={task}"),
            &[],
            None,
            None,
        )
        .await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(
            r.headers.get("www-authenticate").map(String::as_str),
            Some("Basic realm=\"xapi\"")
        );
    }
    let t = a.task_done(&task).await;
    assert_eq!(t["error_info"][0], "SESSION_AUTHENTICATION_FAILED");
    let r = http(&a.addr(), "PUT", "/import", &[], Some(b"x"), None).await;
    assert_eq!(r.status, 401);
    // Cookie and Basic work; wrong Basic does not.
    let r = http(
        &a.addr(),
        "GET",
        "/host_rrd",
        &[("Cookie", &format!("session_id={}", a.s))],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let sessions = a.count("session");
    let r = http(
        &a.addr(),
        "GET",
        "/rrd_updates?start=-10",
        &[("Authorization", "Basic cm9vdDpyb290")],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        a.count("session"),
        sessions,
        "temporary Basic session logged out"
    );
    let r = http(
        &a.addr(),
        "GET",
        "/rrd_updates?start=-10",
        &[("Authorization", "Basic cm9vdDp3cm9uZw==")],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_vdi_round_trip() {
    let a = P::new(0).await;
    let sr = a.default_sr();
    let size = 5 * MIB + 4096;
    let vdi = a
        .call(
            "VDI.create",
            vec![json!({"name_label": "raw", "SR": sr, "virtual_size": size.to_string(), "type": "user",
                        "sharable": false, "read_only": false, "other_config": {}})],
        )
        .as_str()
        .unwrap()
        .to_owned();
    let mut data = vec![0u8; size];
    for (i, b) in data.iter_mut().enumerate() {
        // Block 2 stays zero (a hole); the tail is patterned.
        if !(2 * MIB..3 * MIB).contains(&i) {
            *b = (i % 251) as u8;
        }
    }
    let task = a.new_task();
    let r = http(
        &a.addr(),
        "PUT",
        &format!(
            "/import_raw_vdi?session_id={}&task_id={task}&vdi={vdi}&format=raw",
            a.s
        ),
        &[],
        Some(&data),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get("task-id"), Some(&task));
    let t = a.task_done(&task).await;
    assert_eq!(t["status"], "success", "{t}");
    assert_eq!(t["result"], format!("<value>{vdi}</value>"));
    let store = a.pool.state().read(|db| db.vdi_data.clone());
    let uuid = a
        .call("VDI.get_uuid", vec![json!(vdi)])
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !store
            .allocated(&Ref::from(vdi.as_str()), &uuid, size as u64)
            .contains(&2),
        "zero block kept sparse"
    );

    let r = http(
        &a.addr(),
        "GET",
        &format!("/export_raw_vdi?session_id={}&vdi={uuid}&format=raw", a.s),
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), size);
    assert!(r.body == data, "raw export differs from what was imported");

    // Into a new VDI from sr_id + Content-Length.
    let task = a.new_task();
    let small = b"just a few bytes".repeat(100);
    let r = http(
        &a.addr(),
        "PUT",
        &format!(
            "/import_raw_vdi/?session_id={}&task_id={task}&sr_id={sr}",
            a.s
        ),
        &[],
        Some(&small),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let t = a.task_done(&task).await;
    let res = t["result"].as_str().unwrap();
    let new = res
        .trim_start_matches("<value>")
        .trim_end_matches("</value>");
    assert_eq!(
        a.call("VDI.get_name_label", vec![json!(new)]),
        "Imported VDI"
    );
    assert_eq!(
        a.call("VDI.get_virtual_size", vec![json!(new)]),
        json!(small.len())
    );

    // Too much data, a short body, an unsupported format, no target.
    let task = a.new_task();
    let big = vec![1u8; size + 10];
    http(
        &a.addr(),
        "PUT",
        &format!(
            "/import_raw_vdi?session_id={}&task_id={task}&vdi={vdi}",
            a.s
        ),
        &[],
        Some(&big),
        None,
    )
    .await;
    assert_eq!(a.task_done(&task).await["error_info"][0], "VDI_IO_ERROR");
    let task = a.new_task();
    http(
        &a.addr(),
        "PUT",
        &format!(
            "/import_raw_vdi?session_id={}&task_id={task}&vdi={vdi}",
            a.s
        ),
        &[],
        Some(&data),
        Some(1000),
    )
    .await;
    assert_eq!(a.task_done(&task).await["error_info"][0], "VDI_IO_ERROR");
    let task = a.new_task();
    let r = http(
        &a.addr(),
        "GET",
        &format!(
            "/export_raw_vdi?session_id={}&task_id={task}&vdi={vdi}&format=qcow2",
            a.s
        ),
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(a.task_done(&task).await["error_info"][0], "INTERNAL_ERROR");
    let task = a.new_task();
    let r = http(
        &a.addr(),
        "PUT",
        &format!("/import_raw_vdi?session_id={}&task_id={task}", a.s),
        &[],
        Some(b"x"),
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(a.task_done(&task).await["error_info"][0], "VDI_MISSING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_clone_copy_snapshot_carry_content() {
    let a = P::new(2).await;
    let vm = a.halted_vm_with_disk();
    let disk = a.disks_of(&vm)[0].clone();
    let before = a.content(&disk);
    assert!(!before.1.is_empty(), "seeded disks have generated content");
    assert_eq!(&before.1[0].1[510..512], &[0x55, 0xAA], "boot sector");
    let clone = a
        .call("VM.clone", vec![json!(vm), json!("c")])
        .as_str()
        .unwrap()
        .to_owned();
    let snap = a
        .call("VM.snapshot", vec![json!(vm), json!("s")])
        .as_str()
        .unwrap()
        .to_owned();
    let sr = a.default_sr();
    let copy = a
        .call("VM.copy", vec![json!(vm), json!("k"), json!(sr)])
        .as_str()
        .unwrap()
        .to_owned();
    for other in [&clone, &snap, &copy] {
        assert_eq!(a.content(&a.disks_of(other)[0]), before);
    }
    let vdi_clone = a
        .call("VDI.clone", vec![json!(disk), json!({})])
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(a.content(&vdi_clone), before);
    // Growing a disk keeps its content.
    let new_size = before.0 + 100 * MIB as u64;
    a.call("VDI.resize", vec![json!(disk), json!(new_size.to_string())]);
    assert_eq!(a.content(&disk), (new_size, before.1.clone()));
    let used = a.pool.state().read(|db| db.vdi_data.used());
    a.call("VDI.destroy", vec![json!(vdi_clone)]);
    assert_eq!(a.pool.state().read(|db| db.vdi_data.used()), used);
}

fn xml_all<'a>(doc: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    doc.split(&open)
        .skip(1)
        .filter_map(|p| p.split(&close).next())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rrd_updates_xml_and_json_follow_power_state() {
    let a = P::new(4).await;
    let master = a.pool.state().master();
    let host_uuid = a
        .call("host.get_uuid", vec![json!(master.0)])
        .as_str()
        .unwrap()
        .to_owned();
    // A running VM on the master.
    let vm = a.halted_vm_with_disk();
    a.call(
        "VM.start_on",
        vec![json!(vm), json!(master.0), json!(false), json!(true)],
    );
    let uuid = a
        .call("VM.get_uuid", vec![json!(vm)])
        .as_str()
        .unwrap()
        .to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let q = format!(
        "/rrd_updates?session_id={}&start={}&cf=AVERAGE&interval=5&host=true",
        a.s,
        now - 60
    );
    let r = http(&a.addr(), "GET", &q, &[], None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("text/xml")
    );
    let doc = String::from_utf8(r.body).unwrap();
    assert!(doc.starts_with("<?xml"));
    assert_eq!(xml_all(&doc, "step"), vec!["5"]);
    let legend = xml_all(&doc, "entry");
    let cols: usize = xml_all(&doc, "columns")[0].parse().unwrap();
    assert_eq!(legend.len(), cols);
    for e in [
        format!("AVERAGE:vm:{uuid}:cpu0"),
        format!("AVERAGE:vm:{uuid}:memory"),
        format!("AVERAGE:vm:{uuid}:memory_internal_free"),
        format!("AVERAGE:host:{host_uuid}:cpu_avg"),
        format!("AVERAGE:host:{host_uuid}:memory_total_kib"),
        format!("AVERAGE:host:{host_uuid}:memory_free_kib"),
    ] {
        assert!(legend.contains(&e.as_str()), "{e} missing from {legend:?}");
    }
    assert!(legend
        .iter()
        .any(|e| e.starts_with(&format!("AVERAGE:vm:{uuid}:vbd_xvd"))));
    assert!(legend
        .iter()
        .any(|e| e.starts_with(&format!("AVERAGE:host:{host_uuid}:pif_"))));
    let rows = xml_all(&doc, "row");
    assert_eq!(
        rows.len(),
        xml_all(&doc, "rows")[0].parse::<usize>().unwrap()
    );
    assert!(!rows.is_empty());
    let ts: Vec<i64> = rows
        .iter()
        .map(|r| xml_all(&format!("<x>{r}</x>"), "t")[0].parse().unwrap())
        .collect();
    assert!(
        ts.windows(2).all(|w| w[0] - w[1] == 5),
        "newest first, 5 s apart: {ts:?}"
    );
    for row in &rows {
        let vals = xml_all(row, "v");
        assert_eq!(vals.len(), cols);
        assert!(vals.iter().all(|v| v.parse::<f64>().is_ok()));
    }

    // JSON: strings as values, same legend.
    let r = http(
        &a.addr(),
        "GET",
        &format!("{q}&json=true&vm_uuid={uuid}"),
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let j: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["meta"]["step"], 5);
    let legend: Vec<String> = j["meta"]["legend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(legend.contains(&format!("AVERAGE:vm:{uuid}:cpu0")));
    assert!(
        legend
            .iter()
            .filter(|e| e.contains(":vm:"))
            .all(|e| e.contains(&uuid)),
        "vm_uuid filters VMs"
    );
    let data = j["data"].as_array().unwrap();
    assert_eq!(data.len() as i64, j["meta"]["rows"].as_i64().unwrap());
    assert!(data[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v.is_string()));
    // Same time, same numbers (deterministic).
    let again: Value = serde_json::from_slice(
        &http(
            &a.addr(),
            "GET",
            &format!("{q}&json=true&vm_uuid={uuid}"),
            &[],
            None,
            None,
        )
        .await
        .body,
    )
    .unwrap();
    if again["meta"]["end"] == j["meta"]["end"] {
        assert_eq!(again["data"], j["data"]);
    }
    // Accept header picks the format too.
    let r = http(
        &a.addr(),
        "GET",
        &q,
        &[("Accept", "application/json")],
        None,
        None,
    )
    .await;
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );

    // Halted: the VM has no columns any more.
    a.call("VM.hard_shutdown", vec![json!(vm)]);
    let doc = String::from_utf8(http(&a.addr(), "GET", &q, &[], None, None).await.body).unwrap();
    assert!(!doc.contains(&uuid));
    assert!(doc.contains(&format!("AVERAGE:host:{host_uuid}:cpu_avg")));
    // Coarser archives.
    let r = http(
        &a.addr(),
        "GET",
        &format!(
            "/rrd_updates?session_id={}&start={}&interval=3600&json",
            a.s,
            now - 86400
        ),
        &[],
        None,
        None,
    )
    .await;
    let j: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["meta"]["step"], 3600);
    assert_eq!(j["meta"]["rows"], 24);
    // No start → 400.
    let r = http(
        &a.addr(),
        "GET",
        &format!("/rrd_updates?session_id={}", a.s),
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_rrd_and_vm_rrd_dumps() {
    let a = P::new(2).await;
    let r = http(
        &a.addr(),
        "GET",
        &format!("/host_rrd?session_id={}", a.s),
        &[],
        None,
        None,
    )
    .await;
    let doc = String::from_utf8(r.body).unwrap();
    assert!(doc.starts_with("<rrd><version>0003</version><step>5</step><lastupdate>"));
    assert_eq!(xml_all(&doc, "rra").len(), 4);
    assert!(xml_all(&doc, "name").contains(&"memory_total_kib"));
    let r = http(
        &a.addr(),
        "GET",
        &format!("/host_rrd?session_id={}&json=true", a.s),
        &[],
        None,
        None,
    )
    .await;
    let j: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["step"], 5);
    assert_eq!(j["rra"][0]["database"].as_array().unwrap().len(), 120);
    let r = http(
        &a.addr(),
        "GET",
        &format!("/vm_rrd?session_id={}&uuid=nope", a.s),
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhd_export_import_round_trip() {
    let a = P::new(2).await;
    let vm = a.halted_vm_with_disk();
    let disk = a.disks_of(&vm)[0].clone();
    let size = a.call("VDI.get_virtual_size", vec![json!(disk)]);
    let task = a.new_task();
    let r = http(
        &a.addr(),
        "GET",
        &format!(
            "/export_raw_vdi?session_id={}&task_id={task}&vdi={disk}&format=vhd",
            a.s
        ),
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/vhd")
    );
    assert_eq!(a.task_done(&task).await["status"], "success");
    assert_eq!(&r.body[..8], b"conectix");
    assert_eq!(&r.body[512..520], b"cxsparse");
    assert_eq!(
        &r.body[r.body.len() - 512..],
        &r.body[..512],
        "footer copy == footer"
    );
    let sr = a.default_sr();
    let target = a
        .call(
            "VDI.create",
            vec![
                json!({"name_label": "from vhd", "SR": sr, "virtual_size": size, "type": "user",
                        "sharable": false, "read_only": false, "other_config": {}}),
            ],
        )
        .as_str()
        .unwrap()
        .to_owned();
    let task = a.new_task();
    let r = http(
        &a.addr(),
        "PUT",
        &format!(
            "/import_raw_vdi?session_id={}&task_id={task}&vdi={target}&format=vhd",
            a.s
        ),
        &[],
        Some(&r.body),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let t = a.task_done(&task).await;
    assert_eq!(t["status"], "success", "{t}");
    assert_eq!(a.content(&target), a.content(&disk));
    // Garbage is not a VHD.
    let task = a.new_task();
    http(
        &a.addr(),
        "PUT",
        &format!(
            "/import_raw_vdi?session_id={}&task_id={task}&vdi={target}&format=vhd",
            a.s
        ),
        &[],
        Some(&[7u8; 2048]),
        None,
    )
    .await;
    assert_eq!(a.task_done(&task).await["error_info"][0], "INTERNAL_ERROR");
}

/// XO's upload: `Content-Length` of 1 PiB, the archive, then the client closes its side; it reads the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xo_style_upload_with_fake_length_succeeds() {
    let a = P::new(2).await;
    let vm = a.halted_vm_with_disk();
    let r = export(&a, &vm, "").await;
    let b = P::new(0).await;
    let task = b.new_task();
    let mut s = TcpStream::connect(b.addr()).await.unwrap();
    let head = format!(
        "PUT /import/?session_id={}&task_id={task} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        b.s,
        1u64 << 50
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&r.body).await.unwrap();
    let _ = s.shutdown().await;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let t = b.task_done(&task).await;
    assert_eq!(t["status"], "success", "{t}");
    // The answer (sent before the body was read) arrives in full.
    let resp = parse(&raw);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.headers.get("task-id"), Some(&task));
    // The CD drive (if any) comes back empty; disks come back with their data.
    let new_vm = imported_vm(&t);
    let vbds = b.call("VM.get_VBDs", vec![json!(new_vm)]);
    for vbd in vbds.as_array().unwrap() {
        let rec = b.call("VBD.get_record", vec![vbd.clone()]);
        if rec["type"] == "CD" {
            assert_eq!(rec["empty"], true);
        }
    }
    assert_eq!(b.disks_of(&new_vm).len(), a.disks_of(&vm).len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_metadata_is_ova_xml_alone_in_any_power_state() {
    let a = P::new(2).await;
    let vm = a.halted_vm_with_disk();
    a.call("VM.start", vec![json!(vm), json!(false), json!(true)]);
    let r = http(
        &a.addr(),
        "GET",
        &format!(
            "/export_metadata?session_id={}&uuid={}",
            a.s,
            a.call("VM.get_uuid", vec![json!(vm)]).as_str().unwrap()
        ),
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let es = entries(&r.body);
    assert_eq!(es.len(), 1);
    assert_eq!(es[0].0, "ova.xml");
    assert!(String::from_utf8_lossy(&es[0].1).contains("<value>VDI</value>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_over_https() {
    let sim = Sim::builder().vms(2).build().unwrap();
    let pool = sim
        .serve("127.0.0.1:0".parse().unwrap(), true)
        .await
        .unwrap();
    let a = P {
        s: pool
            .call(
                "session.login_with_password",
                vec![json!("root"), json!("root")],
            )
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned(),
        pool,
    };
    let vm = a.halted_vm_with_disk();
    let addr = a
        .pool
        .master_url()
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            a.pool.certificate_der().unwrap().to_vec(),
        ))
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let tls = connector
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let r = exchange(
        tls,
        &addr,
        "GET",
        &format!("/export/?session_id={}&ref={vm}", a.s),
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let es = entries(&r.body);
    assert_eq!(es[0].0, "ova.xml");
    let b = P::new(0).await;
    let (_, t) = import(&b, &r.body, "", None).await;
    assert_eq!(t["status"], "success", "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_export_reimports_and_system_zstd_reads_it() {
    let a = P::new(2).await;
    let vm = a.halted_vm_with_disk();
    let r = export(&a, &vm, "&use_compression=zstd").await;
    assert_eq!(&r.body[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    if std::process::Command::new("zstd")
        .arg("--version")
        .output()
        .is_ok()
    {
        let dir = std::env::temp_dir().join(format!("xva-zstd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("e.xva.zst");
        std::fs::write(&f, &r.body).unwrap();
        let out = std::process::Command::new("zstd")
            .args(["-d", "-c", "-q"])
            .arg(&f)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(entries(&out.stdout)[0].0, "ova.xml");
        // And a single-frame archive made by the zstd tool imports.
        let plain = dir.join("e.xva");
        std::fs::write(&plain, &out.stdout).unwrap();
        let z = std::process::Command::new("zstd")
            .args(["-c", "-q", "-3"])
            .arg(&plain)
            .output()
            .unwrap();
        assert!(z.status.success());
        let b = P::new(0).await;
        let (_, t) = import(&b, &z.stdout, "", None).await;
        assert_eq!(t["status"], "success", "{t}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    let b = P::new(0).await;
    let (_, t) = import(&b, &r.body, "", None).await;
    assert_eq!(t["status"], "success", "{t}");
}

/// XO's delta backup path: a VHD of what changed since a snapshot, applied onto a clone of that snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_vhd_against_a_snapshot() {
    let a = P::new(2).await;
    let vm = a.halted_vm_with_disk();
    let disk = a.disks_of(&vm)[0].clone();
    let snap = a
        .call("VM.snapshot", vec![json!(vm), json!("base")])
        .as_str()
        .unwrap()
        .to_owned();
    let base = a.disks_of(&snap)[0].clone();
    let (uuid, size) = {
        let r = a.call("VDI.get_record", vec![json!(disk)]);
        (
            r["uuid"].as_str().unwrap().to_owned(),
            r["virtual_size"].as_str().map_or_else(
                || r["virtual_size"].as_u64().unwrap(),
                |v| v.parse().unwrap(),
            ),
        )
    };
    let store = a.pool.state().read(|db| db.vdi_data.clone());
    store
        .write_at(
            &Ref::from(disk.as_str()),
            &uuid,
            size,
            33 * MIB as u64,
            b"after the snapshot",
        )
        .unwrap();
    let r = http(
        &a.addr(),
        "GET",
        &format!(
            "/export_raw_vdi?session_id={}&vdi={disk}&format=vhd&base={base}",
            a.s
        ),
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[60..64], &4u32.to_be_bytes(), "differencing VHD");
    // One 2 MiB block changed: footer copy + header + BAT + (bitmap + block) + footer.
    let bat = (size.div_ceil(2 * MIB as u64) * 4).div_ceil(512) * 512;
    assert_eq!(
        r.body.len() as u64,
        512 + 1024 + bat + 512 + 2 * MIB as u64 + 512
    );
    let target = a
        .call("VDI.clone", vec![json!(base), json!({})])
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(a.content(&target).1, a.content(&disk).1);
    let task = a.new_task();
    http(
        &a.addr(),
        "PUT",
        &format!(
            "/import_raw_vdi?session_id={}&task_id={task}&vdi={target}&format=vhd",
            a.s
        ),
        &[],
        Some(&r.body),
        None,
    )
    .await;
    assert_eq!(a.task_done(&task).await["status"], "success");
    assert_eq!(a.content(&target).1, a.content(&disk).1);
    // base with raw is refused.
    let r = http(
        &a.addr(),
        "GET",
        &format!("/export_raw_vdi?session_id={}&vdi={disk}&base={base}", a.s),
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
}
