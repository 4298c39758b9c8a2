//! Transfers through xo-server against two in-process simulated pools: `vm.export` downloads (a valid tar),
//! `vm.import` uploads into another pool (byte-identical disks), corrupt and truncated uploads (clean errors, no
//! leftovers), an upload refused from its first bytes (the answer still reaches the client), a running VM's export
//! (through a snapshot, destroyed afterwards; rights on its SRs), cross-pool `vm.copy` streaming, a download abandoned mid-way (XAPI task stopped, VM unlocked, a running VM's export snapshot removed),
//! `disk.exportContent`/`disk.importContent` round trip, `disk.import` (raw, VHD, multipart, truncated, unsupported), `vm.migrate` across pools by streaming (source removed
//! only after the import; a running source refused; a failed import or VIF fix-up leaves the source intact and
//! nothing behind), and the shapes of `vm.stats`/`host.stats`/`sr.stats`.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xapi_sim::RunningPool;
use xapi_types::Ref;

use super::pools::{add_params, sim};
use super::{config, start_with, Client, TIMEOUT};

struct Env {
    _dir: tempfile::TempDir,
    server: xo_server::RunningServer,
    a: RunningPool,
    b: RunningPool,
    c: Client,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let a = sim(1, 4).await;
    let b = sim(1, 1).await;
    let server = start_with(config(dir.path()), |b| b).await;
    let mut c = Client::admin(&server).await;
    c.ok("server.add", add_params(&a)).await;
    c.ok("server.add", add_params(&b)).await;
    Env {
        _dir: dir,
        server,
        a,
        b,
        c,
    }
}

fn session(p: &RunningPool) -> String {
    p.call(
        "session.login_with_password",
        vec![json!("root"), json!("root"), json!("1.0"), json!("t")],
    )
    .unwrap()
    .as_str()
    .unwrap()
    .to_owned()
}

fn call(p: &RunningPool, method: &str, args: Vec<Value>) -> Value {
    let mut v = vec![json!(session(p))];
    v.extend(args);
    p.call(method, v)
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

fn uuid_of(p: &RunningPool, class: &str, r: &str) -> String {
    call(p, &format!("{class}.get_uuid"), vec![json!(r)])
        .as_str()
        .unwrap()
        .to_owned()
}

fn default_sr(p: &RunningPool) -> String {
    let pool = call(p, "pool.get_all", vec![])[0]
        .as_str()
        .unwrap()
        .to_owned();
    call(p, "pool.get_default_SR", vec![json!(pool)])
        .as_str()
        .unwrap()
        .to_owned()
}

/// A halted guest VM with a disk (shut down if needed).
fn halted_vm_with_disk(p: &RunningPool) -> String {
    let all = call(p, "VM.get_all_records", vec![]);
    let mut c: Vec<(String, String)> = all
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["is_a_template"] == false && v["is_control_domain"] == false)
        .filter(|(_, v)| !disks_of_rec(p, v).is_empty())
        .map(|(r, v)| (r.clone(), v["power_state"].as_str().unwrap().to_owned()))
        .collect();
    c.sort();
    c.sort_by_key(|(_, s)| s != "Halted");
    let (vm, power) = c.into_iter().next().expect("a VM with a disk");
    if power != "Halted" {
        call(p, "VM.hard_shutdown", vec![json!(vm)]);
    }
    vm
}

fn disks_of_rec(p: &RunningPool, rec: &Value) -> Vec<String> {
    let mut out: Vec<(String, String)> = rec["VBDs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| call(p, "VBD.get_record", vec![b.clone()]))
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

fn disks_of(p: &RunningPool, vm: &str) -> Vec<String> {
    disks_of_rec(p, &call(p, "VM.get_record", vec![json!(vm)]))
}

/// A VDI's content: size and non-zero blocks.
fn content(p: &RunningPool, vdi: &str) -> (u64, Vec<(u64, Vec<u8>)>) {
    let r = Ref::from(vdi);
    let (uuid, size) = p.state().read(|db| {
        let v = db.get("VDI", &r).expect("vdi");
        (
            v["uuid"].as_str().unwrap().to_owned(),
            v["virtual_size"].as_i64().unwrap() as u64,
        )
    });
    let store = p.state().read(|db| db.vdi_data.clone());
    let blocks = store
        .allocated(&r, &uuid, size)
        .into_iter()
        .map(|i| (i, store.read_block(&r, &uuid, i, size)))
        .filter(|(_, b)| b.iter().any(|x| *x != 0))
        .collect();
    (size, blocks)
}

/// Fill the first 48 MiB of a VDI with non-zero data (distinct per block).
fn fill(p: &RunningPool, vdi: &str) {
    let r = Ref::from(vdi);
    let (uuid, size) = p.state().read(|db| {
        let v = db.get("VDI", &r).unwrap();
        (
            v["uuid"].as_str().unwrap().to_owned(),
            v["virtual_size"].as_i64().unwrap() as u64,
        )
    });
    let store = p.state().read(|db| db.vdi_data.clone());
    let mut off = 0;
    let end = size.min(48 << 20);
    while off < end {
        let n = (end - off).min(1 << 20);
        let block: Vec<u8> = (0..n)
            .map(|i| ((i * 7 + off / 4096) % 251 + 1) as u8)
            .collect();
        store.write_at(&r, &uuid, size, off, &block).unwrap();
        off += n;
    }
}

/// What the import tests start from: a halted VM with a disk on pool a, exported through XO.
struct ToImport {
    /// The exported VM (on pool a).
    vm: String,
    /// Its XVA.
    xva: Vec<u8>,
    /// Pool b's default SR (uuid), where it is to be imported.
    sr_b: String,
    /// Pool b's guest VM and VDI counts before.
    vms: usize,
    vdis: usize,
}

async fn xva_to_import(e: &mut Env) -> ToImport {
    let vm = halted_vm_with_disk(&e.a);
    let url =
        e.c.ok("vm.export", json!({ "vm": uuid_of(&e.a, "VM", &vm) }))
            .await;
    let (_, _, xva) = download(&e.server, &path_of(&url, "$getFrom")).await;
    ToImport {
        xva,
        sr_b: uuid_of(&e.b, "SR", &default_sr(&e.b)),
        vms: guest_vm_count(&e.b),
        vdis: count(&e.b, "VDI"),
        vm,
    }
}

fn guest_vm_count(p: &RunningPool) -> usize {
    p.state().read(|db| {
        db.find("VM", |r| {
            r["is_a_template"] != json!(true) && r["is_control_domain"] != json!(true)
        })
        .len()
    })
}

fn count(p: &RunningPool, class: &str) -> usize {
    p.state().read(|db| db.count(class))
}

/// Tasks not finished yet.
fn pending_tasks(p: &RunningPool) -> usize {
    p.state()
        .read(|db| db.find("task", |r| r["status"] == "pending").len())
}

async fn wait_for(mut pred: impl FnMut() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !pred() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `GET path` (HTTP/1.0, body until close): status and body.
async fn download(server: &xo_server::RunningServer, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    split(out)
}

fn split(out: Vec<u8>) -> (u16, String, Vec<u8>) {
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, out[end + 4..].to_vec())
}

/// `POST path` announcing `announce` bytes and sending `body` (fewer bytes then a write shutdown simulate a
/// client that disconnects mid-upload). `None` when the server closed without an answer.
async fn upload(
    server: &xo_server::RunningServer,
    path: &str,
    body: &[u8],
    announce: usize,
) -> Option<(u16, Value)> {
    upload_as(server, path, "application/octet-stream", body, announce).await
}

/// [`upload`] with a given `Content-Type`.
async fn upload_as(
    server: &xo_server::RunningServer,
    path: &str,
    content_type: &str,
    body: &[u8],
    announce: usize,
) -> Option<(u16, Value)> {
    let mut s = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    s.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {announce}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let _ = s.write_all(body).await;
    if body.len() < announce {
        let _ = s.shutdown().await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, s.read_to_end(&mut out))
        .await
        .expect("answer in time");
    if out.is_empty() {
        return None;
    }
    let (status, _, body) = split(out);
    Some((
        status,
        serde_json::from_slice(&body).expect("a JSON-RPC answer"),
    ))
}

/// Entries of a tar archive (name, size).
fn tar_entries(bytes: &[u8]) -> Vec<(String, u64)> {
    let mut ar = tar::Archive::new(bytes);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), e.size())
        })
        .collect()
}

fn path_of(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .to_owned()
}

#[tokio::test]
async fn transfers_export_then_import_into_another_pool_byte_identical() {
    let mut e = env().await;
    let vm = halted_vm_with_disk(&e.a);
    let vm_uuid = uuid_of(&e.a, "VM", &vm);
    let name = call(&e.a, "VM.get_name_label", vec![json!(vm)]);
    let url = e.c.ok("vm.export", json!({ "vm": vm_uuid })).await;
    let get = path_of(&url, "$getFrom");
    assert!(get.ends_with(".xva"), "{get}");
    let (status, head, xva) = download(&e.server, &get).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-disposition: attachment"), "{head}");
    let entries = tar_entries(&xva);
    assert_eq!(entries[0].0, "ova.xml");
    assert!(
        entries.iter().any(|(n, _)| n.ends_with(".xxhash")),
        "{entries:?}"
    );
    // one-shot: a second GET is a 404
    assert_eq!(download(&e.server, &get).await.0, 404);
    wait_for(|| pending_tasks(&e.a) == 0, "export task finished").await;

    // import into pool B
    let sr_b = uuid_of(&e.b, "SR", &default_sr(&e.b));
    let before = guest_vm_count(&e.b);
    let url = e.c.ok("vm.import", json!({ "sr": sr_b })).await;
    let put = path_of(&url, "$sendTo");
    let (status, answer) = upload(&e.server, &put, &xva, xva.len()).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    let new_uuid = answer["result"].as_str().expect("a uuid").to_owned();
    assert_eq!(guest_vm_count(&e.b), before + 1);
    let new_vm = call(&e.b, "VM.get_by_uuid", vec![json!(new_uuid)]);
    let new_vm = new_vm.as_str().unwrap();
    assert_eq!(call(&e.b, "VM.get_name_label", vec![json!(new_vm)]), name);
    let (src, dst) = (disks_of(&e.a, &vm), disks_of(&e.b, new_vm));
    assert_eq!(src.len(), dst.len());
    for (s, d) in src.iter().zip(&dst) {
        let (cs, cd) = (content(&e.a, s), content(&e.b, d));
        assert!(!cs.1.is_empty(), "source disk has content");
        assert_eq!(cs, cd, "disk content differs");
    }

    // gzip export is a gzip stream that imports too
    let url =
        e.c.ok("vm.export", json!({ "vm": vm_uuid, "compress": true }))
            .await;
    let (status, _, gz) = download(&e.server, &path_of(&url, "$getFrom")).await;
    assert_eq!((status, &gz[..2]), (200, &[0x1f, 0x8b][..]));
    // OVA and non-XVA imports are refused
    assert_eq!(
        e.c.err("vm.export", json!({ "vm": vm_uuid, "format": "ova" }))
            .await["code"],
        0
    );
    assert_eq!(
        e.c.err("vm.import", json!({ "sr": sr_b, "type": "ova" }))
            .await["code"],
        0
    );
    assert_eq!(
        e.c.err("vm.import", json!({ "sr": vm_uuid })).await["code"],
        1
    );
}

#[tokio::test]
async fn transfers_corrupt_and_truncated_uploads_leave_nothing() {
    let mut e = env().await;
    let ToImport {
        xva,
        sr_b,
        vms,
        vdis,
        ..
    } = xva_to_import(&mut e).await;

    // a flipped byte inside the first data chunk: checksum failure
    let ova_len = tar_entries(&xva)[0].1 as usize;
    let data_at = 512 + ova_len.div_ceil(512) * 512 + 512 + 100;
    let mut bad = xva.clone();
    bad[data_at] ^= 0xff;
    let url = e.c.ok("vm.import", json!({ "sr": sr_b })).await;
    let (status, answer) = upload(&e.server, &path_of(&url, "$sendTo"), &bad, bad.len())
        .await
        .expect("an answer");
    assert_eq!(status, 500);
    assert_eq!(answer["id"], 0);
    assert!(answer["error"].is_object(), "{answer}");
    assert_eq!((guest_vm_count(&e.b), count(&e.b, "VDI")), (vms, vdis));

    // garbage
    let url = e.c.ok("vm.import", json!({ "sr": sr_b })).await;
    let (status, _) = upload(&e.server, &path_of(&url, "$sendTo"), b"not an xva", 10)
        .await
        .expect("an answer");
    assert_eq!(status, 500);

    // truncated: the full length announced, half sent, then the client goes away
    let url = e.c.ok("vm.import", json!({ "sr": sr_b })).await;
    let half = &xva[..xva.len() / 2];
    if let Some((status, answer)) =
        upload(&e.server, &path_of(&url, "$sendTo"), half, xva.len()).await
    {
        assert_eq!(status, 500, "{answer}");
    }
    wait_for(|| pending_tasks(&e.b) == 0, "import tasks finished").await;
    assert_eq!((guest_vm_count(&e.b), count(&e.b, "VDI")), (vms, vdis));
}

#[tokio::test]
async fn transfers_export_of_a_running_vm_goes_through_a_snapshot() {
    let mut e = env().await;
    let vm = running_vm_with_disk(&e.a);
    let name = call(&e.a, "VM.get_name_label", vec![json!(vm)]);

    // rights (as XO): administrate on a running VM is not enough, its disks' SRs need operate
    let uid =
        e.c.ok("user.create", json!({"email": "ops@x", "password": "pw"}))
            .await;
    let mut u = Client::connect(&e.server).await;
    u.ok(
        "session.signIn",
        json!({"email": "ops@x", "password": "pw"}),
    )
    .await;
    let vm_id = uuid_of(&e.a, "VM", &vm);
    e.c.ok(
        "acl.add",
        json!({"subject": uid, "object": vm_id, "action": "admin"}),
    )
    .await;
    assert_eq!(
        u.err("vm.export", json!({ "vm": vm_id })).await["code"],
        2,
        "no right on the disks' SRs"
    );
    for vdi in disks_of(&e.a, &vm) {
        let sr = call(&e.a, "VDI.get_SR", vec![json!(vdi)]);
        let sr = uuid_of(&e.a, "SR", sr.as_str().unwrap());
        e.c.ok(
            "acl.add",
            json!({"subject": uid, "object": sr, "action": "operator"}),
        )
        .await;
    }
    let granted = u.ok("vm.export", json!({ "vm": vm_id })).await;
    assert!(granted["$getFrom"].is_string(), "{granted}");

    let (vms_before, vdis_before) = (count(&e.a, "VM"), count(&e.a, "VDI"));
    let url =
        e.c.ok("vm.export", json!({ "vm": uuid_of(&e.a, "VM", &vm) }))
            .await;
    // XAPI refuses to export a running VM: XO exports a snapshot of it, made when the download starts
    assert_eq!(count(&e.a, "VM"), vms_before);
    let (status, head, xva) = download(&e.server, &path_of(&url, "$getFrom")).await;
    assert_eq!(status, 200, "{head}");
    let entries = tar_entries(&xva);
    assert_eq!(entries[0].0, "ova.xml");
    let ova = {
        let mut ar = tar::Archive::new(&xva[..]);
        let mut first = ar.entries().unwrap().next().unwrap().unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut first, &mut text).unwrap();
        text
    };
    let label = format!("[XO Export] {}", name.as_str().unwrap());
    assert!(ova.contains(&label), "the snapshot is what was exported");
    // once the export's task is over, the snapshot and its disks are gone; the VM runs on
    wait_for(
        || count(&e.a, "VM") == vms_before && count(&e.a, "VDI") == vdis_before,
        "the export snapshot destroyed",
    )
    .await;
    wait_for(|| pending_tasks(&e.a) == 0, "export task finished").await;
    assert_eq!(call(&e.a, "VM.get_power_state", vec![json!(vm)]), "Running");

    // a snapshot that cannot be taken fails the download as any failed export (XO's 'unknown error')
    e.a.faults().fail_next(
        "VM.snapshot",
        xapi_types::XapiError::new("SR_FULL", ["0", "0"]),
    );
    let url = e.c.ok("vm.export", json!({ "vm": vm_id })).await;
    let (status, _, body) = download(&e.server, &path_of(&url, "$getFrom")).await;
    assert_eq!((status, &body[..]), (500, &b"unknown error\n"[..]));
    assert_eq!(count(&e.a, "VM"), vms_before);
}

#[tokio::test]
async fn transfers_upload_failing_early_still_answers_why() {
    // XAPI rejects the archive from its first bytes while the client still sends 48 MiB: the answer must reach
    // the client (the rest of the body is read and dropped, as node's http server does), not a connection reset
    let mut e = env().await;
    let ToImport { sr_b, vms, .. } = xva_to_import(&mut e).await;
    let mut body = b"not an xva archive".to_vec();
    body.resize(48 << 20, 0);
    let url = e.c.ok("vm.import", json!({ "sr": sr_b })).await;
    let mut s = tokio::net::TcpStream::connect(e.server.local_addr())
        .await
        .unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        path_of(&url, "$sendTo"),
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // like hyper's client or a browser: a body that cannot be sent whole is a failed request
    s.write_all(&body)
        .await
        .expect("the whole body is read by xo-server");
    // the answer, on a connection left open: read until its JSON-RPC text is whole
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::time::timeout(TIMEOUT, s.read(&mut buf))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(n > 0, "closed without a whole answer: {out:?}");
        out.extend_from_slice(&buf[..n]);
        let end = out.windows(4).position(|w| w == b"\r\n\r\n");
        if end.is_some_and(|end| serde_json::from_slice::<Value>(&out[end + 4..]).is_ok()) {
            break;
        }
    }
    let (status, _, answer) = split(out);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(status, 500);
    assert_eq!(answer["error"]["data"]["code"], "IMPORT_ERROR", "{answer}");
    assert_eq!(guest_vm_count(&e.b), vms);
}

#[tokio::test]
async fn transfers_cross_pool_copy_streams_identical_disks() {
    let mut e = env().await;
    let vm = halted_vm_with_disk(&e.a);
    let sr_b = uuid_of(&e.b, "SR", &default_sr(&e.b));
    let before = guest_vm_count(&e.b);
    let id =
        e.c.ok(
            "vm.copy",
            json!({ "vm": uuid_of(&e.a, "VM", &vm), "sr": sr_b, "name": "over there" }),
        )
        .await;
    let id = id.as_str().unwrap();
    assert_eq!(guest_vm_count(&e.b), before + 1);
    let new_vm = call(&e.b, "VM.get_by_uuid", vec![json!(id)]);
    let new_vm = new_vm.as_str().unwrap();
    assert_copied(&e, &vm, new_vm, "over there");
    // both pools' transfer tasks are done
    wait_for(
        || pending_tasks(&e.a) == 0 && pending_tasks(&e.b) == 0,
        "tasks finished",
    )
    .await;
    // unknown SR: XO's no such object
    assert_eq!(
        e.c.err(
            "vm.copy",
            json!({ "vm": uuid_of(&e.a, "VM", &vm), "sr": "nope" })
        )
        .await["code"],
        1
    );

    // a running VM is copied through an export snapshot (XO's remoteCopyVm), destroyed afterwards
    let running = running_vm_with_disk(&e.a);
    let (vms_a, vdis_a) = (count(&e.a, "VM"), count(&e.a, "VDI"));
    let id =
        e.c.ok(
            "vm.copy",
            json!({ "vm": uuid_of(&e.a, "VM", &running), "sr": sr_b, "name": "live copy" }),
        )
        .await;
    let new_vm = call(&e.b, "VM.get_by_uuid", vec![id]);
    let new_vm = new_vm.as_str().unwrap();
    assert_copied(&e, &running, new_vm, "live copy");
    wait_for(
        || count(&e.a, "VM") == vms_a && count(&e.a, "VDI") == vdis_a,
        "the export snapshot destroyed",
    )
    .await;
    assert_eq!(
        call(&e.a, "VM.get_power_state", vec![json!(running)]),
        "Running"
    );
}

/// `new_vm` (pool b) is a plain VM named `name` whose disks hold what those of `vm` (pool a) hold.
fn assert_copied(e: &Env, vm: &str, new_vm: &str, name: &str) {
    assert_eq!(call(&e.b, "VM.get_name_label", vec![json!(new_vm)]), name);
    for flag in ["VM.get_is_a_template", "VM.get_is_a_snapshot"] {
        assert_eq!(call(&e.b, flag, vec![json!(new_vm)]), false, "{flag}");
    }
    let (src, dst) = (disks_of(&e.a, vm), disks_of(&e.b, new_vm));
    assert_eq!(src.len(), dst.len());
    for (s, d) in src.iter().zip(&dst) {
        assert_eq!(content(&e.a, s), content(&e.b, d));
    }
}

/// A running guest VM with a disk.
fn running_vm_with_disk(p: &RunningPool) -> String {
    let all = call(p, "VM.get_all_records", vec![]);
    let mut c: Vec<&String> = all
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["is_a_template"] == false && v["is_control_domain"] == false)
        .filter(|(_, v)| v["power_state"] == "Running" && !disks_of_rec(p, v).is_empty())
        .map(|(r, _)| r)
        .collect();
    c.sort();
    c.first()
        .map(|r| r.to_string())
        .expect("a running VM with a disk")
}

#[tokio::test]
async fn transfers_client_disconnect_mid_download_stops_the_xapi_task() {
    let mut e = env().await;
    let vm = halted_vm_with_disk(&e.a);
    abandon_export(&mut e, &vm).await;
    // the VM is not left locked by the export
    wait_for(
        || call(&e.a, "VM.get_current_operations", vec![json!(vm)]) == json!({}),
        "VM unlocked",
    )
    .await;
    // a running VM's export snapshot goes too when its download is abandoned
    let running = running_vm_with_disk(&e.a);
    let (vms, vdis) = (count(&e.a, "VM"), count(&e.a, "VDI"));
    abandon_export(&mut e, &running).await;
    wait_for(
        || count(&e.a, "VM") == vms && count(&e.a, "VDI") == vdis,
        "the export snapshot destroyed",
    )
    .await;
}

/// Starts `vm.export` of `vm` (its disks filled first), reads the first bytes, then goes away: the XAPI export task
/// ends cancelled or failed.
async fn abandon_export(e: &mut Env, vm: &str) {
    for d in disks_of(&e.a, vm) {
        fill(&e.a, &d);
    }
    let url =
        e.c.ok("vm.export", json!({ "vm": uuid_of(&e.a, "VM", vm) }))
            .await;
    let mut s = tokio::net::TcpStream::connect(e.server.local_addr())
        .await
        .unwrap();
    s.write_all(
        format!(
            "GET {} HTTP/1.0\r\nHost: localhost\r\n\r\n",
            path_of(&url, "$getFrom")
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(n > 0);
    // the export is under way
    let task = e.a.state().read(|db| {
        db.find("task", |r| {
            r["name_label"] == "[XO] VM export" && r["status"] == "pending"
        })
        .into_iter()
        .map(|r| r.0)
        .next()
    });
    let task = task.expect("the XO export task in XAPI");
    drop(s);
    let status = || {
        e.a.state().read(|db| {
            db.get("task", &Ref::from(task.as_str()))
                .map(|t| t["status"].clone())
        })
    };
    wait_for(
        || matches!(status(), Some(s) if s != "pending"),
        "export task ended",
    )
    .await;
    let st = status().unwrap();
    assert!(st == "cancelled" || st == "failure", "{st}");
}

#[tokio::test]
async fn transfers_disk_content_round_trip() {
    let mut e = env().await;
    let vm = halted_vm_with_disk(&e.a);
    let vdi = disks_of(&e.a, &vm)[0].clone();
    let url =
        e.c.ok(
            "disk.exportContent",
            json!({ "id": uuid_of(&e.a, "VDI", &vdi), "format": "vhd" }),
        )
        .await;
    let (status, head, vhd) = download(&e.server, &path_of(&url, "$getFrom")).await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(&vhd[vhd.len() - 512..vhd.len() - 504], b"conectix");
    // into a fresh VDI of the same size in pool B
    let size = call(&e.a, "VDI.get_virtual_size", vec![json!(vdi)]);
    let target = call(
        &e.b,
        "VDI.create",
        vec![json!({
            "name_label": "target", "name_description": "", "SR": default_sr(&e.b),
            "virtual_size": size, "type": "user", "sharable": false, "read_only": false,
            "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": []
        })],
    );
    let target = target.as_str().unwrap().to_owned();
    let target_uuid = uuid_of(&e.b, "VDI", &target);
    let mut url = Value::Null;
    for _ in 0..200 {
        let v =
            e.c.call("disk.importContent", json!({ "id": target_uuid }))
                .await;
        if v.get("result").is_some() {
            url = v["result"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, answer) = upload(&e.server, &path_of(&url, "$sendTo"), &vhd, vhd.len())
        .await
        .unwrap();
    assert_eq!(
        (status, answer["result"].clone()),
        (200, json!(true)),
        "{answer}"
    );
    assert_eq!(content(&e.a, &vdi), content(&e.b, &target));
    assert_eq!(
        e.c.err(
            "disk.exportContent",
            json!({ "id": uuid_of(&e.a, "VDI", &vdi), "format": "vmdk" })
        )
        .await["code"],
        0
    );
}

#[tokio::test]
async fn transfers_stats_shapes_for_each_granularity() {
    let mut e = env().await;
    // a running VM with a VIF and a disk
    let all = call(&e.a, "VM.get_all_records", vec![]);
    let running = all
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, v)| {
            v["power_state"] == "Running"
                && v["is_control_domain"] == false
                && !v["VIFs"].as_array().unwrap().is_empty()
                && !disks_of_rec(&e.a, v).is_empty()
        })
        .map(|(r, _)| r.clone())
        .expect("a running VM with VIF and disk");
    let vm = uuid_of(&e.a, "VM", &running);
    let host = uuid_of(&e.a, "host", &e.a.host_refs()[0].0);
    let sr = uuid_of(&e.a, "SR", &default_sr(&e.a));
    for (g, step) in [
        ("seconds", 5),
        ("minutes", 60),
        ("hours", 3600),
        ("days", 86400),
    ] {
        let v =
            e.c.ok("vm.stats", json!({ "id": vm, "granularity": g }))
                .await;
        assert_eq!(v["interval"], step, "{g}: {v}");
        assert!(v["endTimestamp"].as_i64().unwrap() > 0);
        let st = &v["stats"];
        let cpu0 = st["cpus"]["0"].as_array().expect("cpus.0");
        assert!(!cpu0.is_empty());
        assert!(cpu0
            .iter()
            .all(|x| x.as_f64().is_some_and(|x| (0.0..=100.0).contains(&x))));
        for k in ["memory", "memoryFree"] {
            assert_eq!(
                st[k].as_array().map(Vec::len),
                Some(cpu0.len()),
                "{k}: {st}"
            );
        }
        assert!(
            st["vifs"]["rx"]["0"].is_array() && st["vifs"]["tx"]["0"].is_array(),
            "{st}"
        );
        assert!(
            st["xvds"]["r"]["a"].is_array() && st["xvds"]["w"]["a"].is_array(),
            "{st}"
        );
        assert!(st["iops"]["r"]["a"].is_array(), "{st}");

        let h =
            e.c.ok("host.stats", json!({ "host": host, "granularity": g }))
                .await;
        assert_eq!(h["interval"], step);
        let hs = &h["stats"];
        for k in ["load", "memory", "memoryFree"] {
            assert!(hs[k].is_array(), "{k}: {hs}");
        }
        assert!(
            hs["cpus"]["0"].is_array() && hs["pifs"]["rx"].is_object(),
            "{hs}"
        );

        let s =
            e.c.ok("sr.stats", json!({ "id": sr, "granularity": g }))
                .await;
        assert_eq!(s["interval"], step);
        let ss = &s["stats"];
        for k in ["iops", "ioThroughput", "latency"] {
            assert!(ss[k]["r"].is_array() && ss[k]["w"].is_array(), "{k}: {ss}");
        }
        assert!(
            ss["iops"]["r"].as_array().is_some_and(|a| !a.is_empty()),
            "{ss}"
        );
        assert!(ss["iowait"].is_object());
    }
    // default granularity is seconds; unknown ones are invalid parameters
    let v = e.c.ok("vm.stats", json!({ "id": vm })).await;
    assert_eq!(v["interval"], 5);
    assert_eq!(
        e.c.err("vm.stats", json!({ "id": vm, "granularity": "weeks" }))
            .await["code"],
        10
    );
    assert_eq!(
        e.c.err("host.stats", json!({ "host": vm })).await["code"],
        1
    );
}

#[tokio::test]
async fn transfers_stats_of_a_vm_and_host_that_are_not_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let p = sim(2, 3).await;
    let server = start_with(config(dir.path()), |b| b).await;
    let mut c = Client::admin(&server).await;
    c.ok("server.add", add_params(&p)).await;
    let pools = call(&p, "pool.get_all_records", vec![]);
    let master = pools.as_object().unwrap().values().next().unwrap()["master"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = p
        .host_refs()
        .into_iter()
        .map(|h| h.0)
        .find(|h| *h != master)
        .expect("a second host");
    // a running VM resident on the other host (started there when none is)
    let all = call(&p, "VM.get_all_records", vec![]);
    let guests: Vec<(String, Value)> = all
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["is_control_domain"] == false && v["is_a_template"] == false)
        .map(|(r, v)| (r.clone(), v.clone()))
        .collect();
    let vm_ref = match guests
        .iter()
        .find(|(_, v)| v["power_state"] == "Running" && v["resident_on"] == other.as_str())
    {
        Some((r, _)) => r.clone(),
        None => {
            let (r, v) = guests.first().expect("a guest VM");
            if v["power_state"] != "Halted" {
                call(&p, "VM.hard_shutdown", vec![json!(r)]);
            }
            call(
                &p,
                "VM.start_on",
                vec![json!(r), json!(other), json!(false), json!(false)],
            );
            r.clone()
        }
    };
    assert_eq!(
        call(&p, "VM.get_resident_on", vec![json!(vm_ref)]),
        json!(other)
    );
    let vm = uuid_of(&p, "VM", &vm_ref);
    let host = uuid_of(&p, "host", &other);
    let mut st = Value::Null;
    for _ in 0..100 {
        let v = c.ok("vm.stats", json!({ "id": vm })).await;
        st = v["stats"].clone();
        if st["cpus"]["0"].is_array() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        st["cpus"]["0"].as_array().is_some_and(|a| !a.is_empty()),
        "stats of a VM on a non-master host: {st}"
    );
    assert!(st["memory"].is_array(), "{st}");
    let h = c.ok("host.stats", json!({ "host": host })).await;
    let hs = &h["stats"];
    assert!(
        hs["cpus"]["0"].as_array().is_some_and(|a| !a.is_empty()) && hs["load"].is_array(),
        "stats of a non-master host: {hs}"
    );
}

/// Refs of the VMs of `p` whose `uuid` is `uuid` (sim DB).
fn vms_with_uuid(p: &RunningPool, uuid: &str) -> usize {
    p.state()
        .read(|db| db.find("VM", |r| r["uuid"] == uuid).len())
}

/// Number of VDIs of `p` among `uuids` (sim DB).
fn vdis_with_uuids(p: &RunningPool, uuids: &[String]) -> usize {
    p.state().read(|db| {
        db.find("VDI", |r| uuids.iter().any(|u| r["uuid"] == u.as_str()))
            .len()
    })
}

/// The host of a one-host pool (ref, uuid).
fn only_host(p: &RunningPool) -> (String, String) {
    let h = call(p, "host.get_all", vec![])[0]
        .as_str()
        .unwrap()
        .to_owned();
    let u = uuid_of(p, "host", &h);
    (h, u)
}

/// The network of a host's management PIF.
fn management_network(p: &RunningPool, host: &str) -> String {
    call(p, "host.get_PIFs", vec![json!(host)])
        .as_array()
        .unwrap()
        .iter()
        .map(|pif| call(p, "PIF.get_record", vec![pif.clone()]))
        .find(|r| r["management"] == true)
        .expect("a management PIF")["network"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Whether XO still lists the object `id`.
async fn xo_has(c: &mut Client, id: &str) -> bool {
    let all = c
        .ok("xo.getAllObjects", json!({ "filter": { "id": id } }))
        .await;
    all.as_object().is_some_and(|m| !m.is_empty())
}

#[tokio::test]
async fn transfers_migrate_across_pools_streams_then_removes_the_source() {
    let mut e = env().await;
    let vm = halted_vm_with_disk(&e.a);
    let disks = disks_of(&e.a, &vm);
    for d in &disks {
        fill(&e.a, d);
    }
    let contents: Vec<_> = disks.iter().map(|d| content(&e.a, d)).collect();
    let vdi_uuids: Vec<String> = disks.iter().map(|d| uuid_of(&e.a, "VDI", d)).collect();
    let uuid = uuid_of(&e.a, "VM", &vm);
    let name = "migrated across";
    call(&e.a, "VM.set_name_label", vec![json!(vm), json!(name)]);
    call(&e.a, "VM.add_tags", vec![json!(vm), json!("moving")]);
    call(
        &e.a,
        "VM.add_to_other_config",
        vec![json!(vm), json!("xo-test"), json!("kept")],
    );
    let src_vifs = call(&e.a, "VM.get_VIFs", vec![json!(vm)])
        .as_array()
        .unwrap()
        .len();
    let (host_b, host_b_uuid) = only_host(&e.b);
    let before = guest_vm_count(&e.b);
    // the XO cache knows the VM before it moves
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !xo_has(&mut e.c, &uuid).await {
        assert!(tokio::time::Instant::now() < deadline, "VM never in XO");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    assert_eq!(
        e.c.ok(
            "vm.migrate",
            json!({ "vm": uuid, "targetHost": host_b_uuid })
        )
        .await,
        true
    );

    // gone from the source pool, disks included
    assert_eq!(vms_with_uuid(&e.a, &uuid), 0);
    assert_eq!(vdis_with_uuids(&e.a, &vdi_uuids), 0);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while xo_has(&mut e.c, &uuid).await {
        assert!(tokio::time::Instant::now() < deadline, "VM never left XO");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // present on the destination: same name, tags, other_config, disks byte-identical, VIFs on the
    // destination host's management network
    assert_eq!(guest_vm_count(&e.b), before + 1);
    let found = call(&e.b, "VM.get_by_name_label", vec![json!(name)]);
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), 1);
    let new_vm = found[0].as_str().unwrap();
    let rec = call(&e.b, "VM.get_record", vec![json!(new_vm)]);
    assert_eq!(rec["is_a_template"], false);
    assert!(rec["tags"].as_array().unwrap().contains(&json!("moving")));
    assert_eq!(rec["other_config"]["xo-test"], "kept");
    let dst = disks_of(&e.b, new_vm);
    assert_eq!(dst.len(), contents.len());
    for (want, d) in contents.iter().zip(&dst) {
        assert_eq!(want, &content(&e.b, d));
    }
    let mgmt = management_network(&e.b, &host_b);
    let vifs = rec["VIFs"].as_array().unwrap();
    assert_eq!(vifs.len(), src_vifs);
    for vif in vifs {
        assert_eq!(
            call(&e.b, "VIF.get_network", vec![vif.clone()]),
            json!(mgmt)
        );
    }
    wait_for(
        || pending_tasks(&e.a) == 0 && pending_tasks(&e.b) == 0,
        "tasks finished",
    )
    .await;
}

#[tokio::test]
async fn transfers_migrate_across_pools_refuses_a_running_vm() {
    let mut e = env().await;
    let all = call(&e.a, "VM.get_all_records", vec![]);
    let mut vms: Vec<String> = all
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["is_a_template"] == false && v["is_control_domain"] == false)
        .map(|(r, _)| r.clone())
        .collect();
    vms.sort();
    let vm = vms[0].clone();
    if call(&e.a, "VM.get_power_state", vec![json!(vm)]) != "Running" {
        call(
            &e.a,
            "VM.start",
            vec![json!(vm), json!(false), json!(false)],
        );
    }
    let uuid = uuid_of(&e.a, "VM", &vm);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let o =
            e.c.ok("xo.getAllObjects", json!({ "filter": { "id": uuid } }))
                .await;
        if o[&uuid]["power_state"] == "Running" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "VM never running in XO"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, host_b_uuid) = only_host(&e.b);
    let (vms_b, vdis_b) = (guest_vm_count(&e.b), count(&e.b, "VDI"));
    let err =
        e.c.err(
            "vm.migrate",
            json!({ "vm": uuid, "targetHost": host_b_uuid }),
        )
        .await;
    assert_eq!(err["code"], 13, "{err}");
    assert_eq!(err["data"]["expected"], "Halted", "{err}");
    assert_eq!(call(&e.a, "VM.get_power_state", vec![json!(vm)]), "Running");
    assert_eq!(vms_with_uuid(&e.a, &uuid), 1);
    assert_eq!((guest_vm_count(&e.b), count(&e.b, "VDI")), (vms_b, vdis_b));
}

#[tokio::test]
async fn transfers_migrate_across_pools_failed_import_keeps_the_source() {
    let mut e = env().await;
    let vm = halted_vm_with_disk(&e.a);
    let disks = disks_of(&e.a, &vm);
    for d in &disks {
        fill(&e.a, d);
    }
    let contents: Vec<_> = disks.iter().map(|d| content(&e.a, d)).collect();
    let uuid = uuid_of(&e.a, "VM", &vm);
    let (_, host_b_uuid) = only_host(&e.b);
    let (vms_b, vdis_b, vbds_b, vifs_b) = (
        guest_vm_count(&e.b),
        count(&e.b, "VDI"),
        count(&e.b, "VBD"),
        count(&e.b, "VIF"),
    );
    // the destination cannot store the disks: its import fails (SR_BACKEND_FAILURE_44) and rolls back
    e.b.state().read(|db| db.vdi_data.set_cap(1 << 20));
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !xo_has(&mut e.c, &uuid).await {
        assert!(tokio::time::Instant::now() < deadline, "VM never in XO");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err =
        e.c.err(
            "vm.migrate",
            json!({ "vm": uuid, "targetHost": host_b_uuid }),
        )
        .await;
    assert_eq!(err["data"]["code"], "SR_BACKEND_FAILURE_44", "{err}");
    wait_for(
        || pending_tasks(&e.a) == 0 && pending_tasks(&e.b) == 0,
        "tasks finished",
    )
    .await;
    // the source is intact
    assert_eq!(vms_with_uuid(&e.a, &uuid), 1);
    assert_eq!(disks_of(&e.a, &vm), disks);
    for (want, d) in contents.iter().zip(&disks) {
        assert_eq!(want, &content(&e.a, d));
    }
    // nothing left on the destination
    assert_eq!(
        (
            guest_vm_count(&e.b),
            count(&e.b, "VDI"),
            count(&e.b, "VBD"),
            count(&e.b, "VIF")
        ),
        (vms_b, vdis_b, vbds_b, vifs_b)
    );
}

#[tokio::test]
async fn transfers_migrate_across_pools_maps_vifs_and_rolls_back_a_failed_fixup() {
    let mut e = env().await;
    let vm = halted_vm_with_disk(&e.a);
    let uuid = uuid_of(&e.a, "VM", &vm);
    let vdi_uuids: Vec<String> = disks_of(&e.a, &vm)
        .iter()
        .map(|d| uuid_of(&e.a, "VDI", d))
        .collect();
    let vifs: Vec<String> = call(&e.a, "VM.get_VIFs", vec![json!(vm)])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| uuid_of(&e.a, "VIF", v.as_str().unwrap()))
        .collect();
    assert!(!vifs.is_empty(), "the source VM has VIFs");
    let (_, host_b_uuid) = only_host(&e.b);
    let net = call(
        &e.b,
        "network.get_by_name_label",
        vec![json!("Host internal management network")],
    )[0]
    .as_str()
    .unwrap()
    .to_owned();
    let net_uuid = uuid_of(&e.b, "network", &net);
    let map: serde_json::Map<String, Value> =
        vifs.iter().map(|v| (v.clone(), json!(net_uuid))).collect();
    let params = json!({ "vm": uuid, "targetHost": host_b_uuid, "mapVifsNetworks": map });
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !xo_has(&mut e.c, &vifs[0]).await || !xo_has(&mut e.c, &net_uuid).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "objects never in XO"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let counts = |p: &RunningPool| {
        (
            guest_vm_count(p),
            count(p, "VDI"),
            count(p, "VBD"),
            count(p, "VIF"),
        )
    };
    let before_b = counts(&e.b);

    // the VIF fix-up fails on the destination: the imported VM goes away, the source stays
    e.b.faults().fail_next(
        "VIF.move",
        xapi_types::XapiError::new("INTERNAL_ERROR", ["injected"]),
    );
    let err = e.c.err("vm.migrate", params.clone()).await;
    assert_eq!(err["data"]["params"], json!(["injected"]), "{err}");
    assert_eq!(vms_with_uuid(&e.a, &uuid), 1);
    assert_eq!(vdis_with_uuids(&e.a, &vdi_uuids), vdi_uuids.len());
    wait_for(
        || pending_tasks(&e.a) == 0 && pending_tasks(&e.b) == 0,
        "tasks finished",
    )
    .await;
    assert_eq!(counts(&e.b), before_b);

    // without the fault: the VIFs end up on the mapped network
    assert_eq!(e.c.ok("vm.migrate", params).await, true);
    assert_eq!(vms_with_uuid(&e.a, &uuid), 0);
    assert_eq!(guest_vm_count(&e.b), before_b.0 + 1);
    let imported: Vec<String> = e.b.state().read(|db| {
        db.find("VIF", |r| r["network"] == net.as_str())
            .into_iter()
            .map(|r| r.to_string())
            .collect()
    });
    assert_eq!(imported.len(), vifs.len());
}

/// A fresh `size`-byte VDI on the default SR of `p`, filled with non-zero data.
fn filled_vdi(p: &RunningPool, size: u64) -> String {
    let v = call(
        p,
        "VDI.create",
        vec![json!({
            "name_label": "source", "name_description": "", "SR": default_sr(p),
            "virtual_size": size, "type": "user", "sharable": false, "read_only": false,
            "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": []
        })],
    );
    let v = v.as_str().unwrap().to_owned();
    fill(p, &v);
    v
}

/// The whole content of a VDI of the simulator.
fn raw_bytes(p: &RunningPool, vdi: &str) -> Vec<u8> {
    let r = Ref::from(vdi);
    let (uuid, size) = p.state().read(|db| {
        let v = db.get("VDI", &r).expect("vdi");
        (
            v["uuid"].as_str().unwrap().to_owned(),
            v["virtual_size"].as_i64().unwrap() as u64,
        )
    });
    let store = p.state().read(|db| db.vdi_data.clone());
    let mut out = Vec::new();
    let mut i = 0;
    while (out.len() as u64) < size {
        out.extend(store.read_block(&r, &uuid, i, size));
        i += 1;
    }
    out.truncate(size as usize);
    out
}

/// `method` once XO knows the objects of the pools (retried while they are being fetched).
async fn ok_when_known(c: &mut Client, method: &str, params: Value) -> Value {
    for _ in 0..500 {
        let v = c.call(method, params.clone()).await;
        if let Some(r) = v.get("result") {
            return r.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{method} never succeeded");
}

/// The VDI ref of `answer`'s uuid result in `p`.
fn imported_vdi(p: &RunningPool, answer: &Value) -> String {
    let uuid = answer["result"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    call(p, "VDI.get_by_uuid", vec![json!(uuid)])
        .as_str()
        .unwrap()
        .to_owned()
}

async fn export_content(e: &mut Env, vdi: &str, format: &str) -> Vec<u8> {
    let url =
        e.c.ok(
            "disk.exportContent",
            json!({ "id": uuid_of(&e.a, "VDI", vdi), "format": format }),
        )
        .await;
    let (status, head, bytes) = download(&e.server, &path_of(&url, "$getFrom")).await;
    assert_eq!(status, 200, "{head}");
    bytes
}

#[tokio::test]
async fn transfers_disk_import_raw_vhd_and_multipart_give_identical_disks() {
    let mut e = env().await;
    let size = 8 << 20;
    let vdi = filled_vdi(&e.a, size);
    let sr_b = uuid_of(&e.b, "SR", &default_sr(&e.b));
    ok_when_known(
        &mut e.c,
        "disk.exportContent",
        json!({ "id": uuid_of(&e.a, "VDI", &vdi) }),
    )
    .await;
    let raw = raw_bytes(&e.a, &vdi);
    assert_eq!(raw.len() as u64, size);
    let vhd = export_content(&mut e, &vdi, "vhd").await;

    // raw body, raw type
    let url = ok_when_known(
        &mut e.c,
        "disk.import",
        json!({ "sr": sr_b, "name": "imported raw", "description": "d", "type": "raw" }),
    )
    .await;
    let (status, answer) = upload(&e.server, &path_of(&url, "$sendTo"), &raw, raw.len())
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    let got = imported_vdi(&e.b, &answer);
    assert_eq!(content(&e.a, &vdi), content(&e.b, &got));
    let rec = call(&e.b, "VDI.get_record", vec![json!(got)]);
    assert_eq!(
        (rec["name_label"].as_str(), rec["name_description"].as_str()),
        (Some("imported raw"), Some("d"))
    );
    assert_eq!(rec["SR"], json!(default_sr(&e.b)));

    // raw body, VHD type: the size comes from the VHD footer
    let url =
        e.c.ok(
            "disk.import",
            json!({ "sr": sr_b, "name": "imported vhd", "type": "vhd" }),
        )
        .await;
    let (status, answer) = upload(&e.server, &path_of(&url, "$sendTo"), &vhd, vhd.len())
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    let got = imported_vdi(&e.b, &answer);
    assert_eq!(content(&e.a, &vdi), content(&e.b, &got));

    // a multipart form with a `file` part, as XO's web UI sends it
    for (kind, data) in [("raw", &raw), ("vhd", &vhd)] {
        let mut form = b"--bNd\r\nContent-Disposition: form-data; name=\"file\"; filename=\"disk\"\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
        form.extend_from_slice(data);
        form.extend_from_slice(b"\r\n--bNd--\r\n");
        let url =
            e.c.ok(
                "disk.import",
                json!({ "sr": sr_b, "name": "form", "type": kind }),
            )
            .await;
        let (status, answer) = upload_as(
            &e.server,
            &path_of(&url, "$sendTo"),
            "multipart/form-data; boundary=bNd",
            &form,
            form.len(),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{kind}: {answer}");
        let got = imported_vdi(&e.b, &answer);
        assert_eq!(content(&e.a, &vdi), content(&e.b, &got), "{kind}");
    }
}

#[tokio::test]
async fn transfers_disk_import_failures_leave_no_vdi() {
    let mut e = env().await;
    let vdi = filled_vdi(&e.a, 4 << 20);
    let sr_b = uuid_of(&e.b, "SR", &default_sr(&e.b));
    ok_when_known(
        &mut e.c,
        "disk.exportContent",
        json!({ "id": uuid_of(&e.a, "VDI", &vdi) }),
    )
    .await;
    let raw = raw_bytes(&e.a, &vdi);
    let vhd = export_content(&mut e, &vdi, "vhd").await;
    let vdis = count(&e.b, "VDI");

    // truncated raw and VHD uploads: the client goes away mid-way
    for (kind, data) in [("raw", &raw), ("vhd", &vhd)] {
        let url = ok_when_known(
            &mut e.c,
            "disk.import",
            json!({ "sr": sr_b, "name": "cut", "type": kind }),
        )
        .await;
        if let Some((status, answer)) = upload(
            &e.server,
            &path_of(&url, "$sendTo"),
            &data[..data.len() / 2],
            data.len(),
        )
        .await
        {
            assert_eq!(status, 500, "{kind}: {answer}");
        }
        wait_for(|| pending_tasks(&e.b) == 0, "import tasks finished").await;
        wait_for(|| count(&e.b, "VDI") == vdis, "no leftover VDI").await;
    }

    // a multipart body cut before its closing boundary
    let mut form = b"--q\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n".to_vec();
    form.extend_from_slice(&raw[..1 << 20]);
    let url =
        e.c.ok(
            "disk.import",
            json!({ "sr": sr_b, "name": "cut", "type": "raw" }),
        )
        .await;
    let (status, answer) = upload_as(
        &e.server,
        &path_of(&url, "$sendTo"),
        "multipart/form-data; boundary=q",
        &form,
        form.len(),
    )
    .await
    .unwrap();
    assert_eq!(status, 500, "{answer}");
    wait_for(|| count(&e.b, "VDI") == vdis, "no leftover VDI").await;

    // not a VHD
    let url =
        e.c.ok(
            "disk.import",
            json!({ "sr": sr_b, "name": "bad", "type": "vhd" }),
        )
        .await;
    let (status, answer) = upload(&e.server, &path_of(&url, "$sendTo"), b"garbage", 7)
        .await
        .unwrap();
    assert_eq!(status, 500, "{answer}");
    assert_eq!(count(&e.b, "VDI"), vdis);

    // types and sources this server does not convert
    for params in [
        json!({ "sr": sr_b, "name": "x", "type": "vmdk" }),
        json!({ "sr": sr_b, "name": "x", "type": "qcow2" }),
        json!({ "sr": sr_b, "name": "x", "type": "raw", "url": "http://127.0.0.1:1/d.raw" }),
    ] {
        assert_eq!(e.c.err("disk.import", params).await["code"], 0);
    }
    assert_eq!(count(&e.b, "VDI"), vdis);
}

/// Refs of the distinct hosts of the PBDs of SR `sr` (sim DB).
fn pbd_hosts(p: &RunningPool, sr: &str) -> Vec<String> {
    let mut hosts: Vec<String> = call(p, "SR.get_PBDs", vec![json!(sr)])
        .as_array()
        .unwrap()
        .iter()
        .map(|pbd| {
            call(p, "PBD.get_host", vec![pbd.clone()])
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Waits until xo-server knows the PBDs of SR `sr` and their hosts.
async fn wait_for_pbd_hosts(c: &mut Client, sr: &str) {
    for _ in 0..200 {
        let all = c.ok("xo.getAllObjects", json!({})).await;
        let pbds = all[sr]["$PBDs"].as_array().cloned().unwrap_or_default();
        if !pbds.is_empty()
            && pbds.iter().all(|p| {
                let host = &all[p.as_str().unwrap_or_default()]["host"];
                all[host.as_str().unwrap_or_default()].is_object()
            })
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the PBDs of {sr} never showed up");
}

#[tokio::test]
async fn transfers_sr_stats_merge_the_rrds_of_every_host_with_a_pbd() {
    let dir = tempfile::tempdir().unwrap();
    let p = sim(2, 1).await;
    let server = start_with(config(dir.path()), |b| b).await;
    let mut c = Client::admin(&server).await;
    c.ok("server.add", add_params(&p)).await;
    let srs = call(&p, "SR.get_all_records", vec![]);
    let srs = srs.as_object().unwrap();
    let shared = srs
        .iter()
        .find(|(r, v)| {
            v["shared"] == true && v["content_type"] != "iso" && pbd_hosts(&p, r).len() == 2
        })
        .map(|(r, _)| r.clone())
        .expect("an SR shared by both hosts");
    let master = call(&p, "pool.get_all_records", vec![])
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()["master"]
        .as_str()
        .unwrap()
        .to_owned();
    let local = srs
        .iter()
        .find(|(r, v)| {
            v["shared"] == false
                && v["content_type"] != "iso"
                && pbd_hosts(&p, r).iter().all(|h| *h != master)
        })
        .map(|(r, _)| r.clone())
        .expect("a local SR of the other host");

    // the shared SR: iops/throughput summed, latency averaged over both hosts' own RRDs, iowait per host name
    let sr = uuid_of(&p, "SR", &shared);
    let short = &sr[..8];
    let hosts = pbd_hosts(&p, &shared);
    for sr in [uuid_of(&p, "SR", &shared), uuid_of(&p, "SR", &local)] {
        wait_for_pbd_hosts(&mut c, &sr).await;
    }
    let s = c
        .ok("sr.stats", json!({ "id": sr, "granularity": "hours" }))
        .await;
    assert_eq!(s["interval"], 3600, "{s}");
    let mut names: Vec<String> = s["stats"]["iowait"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    names.sort();
    let mut expected: Vec<String> = hosts
        .iter()
        .map(|h| {
            call(&p, "host.get_name_label", vec![json!(h)])
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    expected.sort();
    assert_eq!(names, expected, "{s}");
    // per-host stats of the same step come from the same cached tables
    let mut per_host = Vec::new();
    for h in &hosts {
        let hs = c
            .ok(
                "host.stats",
                json!({ "host": uuid_of(&p, "host", h), "granularity": "hours" }),
            )
            .await;
        per_host.push(hs["stats"].clone());
    }
    for (a, b, mean) in [
        ("iops", "r", false),
        ("iops", "w", false),
        ("ioThroughput", "r", false),
        ("latency", "w", true),
    ] {
        let cols: Vec<Vec<f64>> = per_host
            .iter()
            .map(|st| {
                st[a][b][short]
                    .as_array()
                    .unwrap_or_else(|| panic!("{a}.{b}.{short} of a host: {st}"))
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .collect();
        let want: Vec<f64> = (0..cols[0].len())
            .map(|i| {
                let sum = cols[0][i] + cols[1][i];
                if mean {
                    sum / 2.0
                } else {
                    sum
                }
            })
            .collect();
        let got: Vec<f64> = s["stats"][a][b]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert!(!got.is_empty(), "{a}.{b}: {s}");
        assert_eq!(got.len(), want.len(), "{a}.{b}");
        assert!(
            got.iter()
                .zip(&want)
                .all(|(g, w)| (g - w).abs() <= 1e-9 * w.abs().max(1.0)),
            "{a}.{b}: {got:?} vs {want:?}"
        );
    }

    // a local SR of the host that is not the master: its IO stats come from that host
    let sr = uuid_of(&p, "SR", &local);
    let s = c
        .ok("sr.stats", json!({ "id": sr, "granularity": "minutes" }))
        .await;
    let owner = call(
        &p,
        "host.get_name_label",
        vec![json!(pbd_hosts(&p, &local)[0])],
    );
    let iowait = s["stats"]["iowait"].as_object().unwrap();
    assert_eq!(
        iowait.keys().collect::<Vec<_>>(),
        vec![owner.as_str().unwrap()],
        "{s}"
    );
    assert!(
        s["stats"]["iops"]["r"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{s}"
    );
}

/// A loopback HTTP server answering every GET with `status`, a `Content-Length` of `announced` and `body` (then
/// closing); its base URL.
async fn http_file(status: u16, body: Vec<u8>, announced: usize) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let h = format!("HTTP/1.1 {status} X\r\nContent-Length: {announced}\r\n\r\n");
                let _ = s.write_all(h.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    base
}

#[tokio::test]
async fn transfers_vm_import_from_a_url_streams_the_xva_into_the_sr() {
    let mut e = env().await;
    let ToImport {
        vm,
        xva,
        sr_b,
        vms,
        vdis,
    } = xva_to_import(&mut e).await;

    // the archive, served over plain HTTP: the answer is the new VM's uuid, its disks byte-identical
    let base = http_file(200, xva.clone(), xva.len()).await;
    let uuid =
        e.c.ok(
            "vm.import",
            json!({ "sr": sr_b, "url": format!("{base}/vm.xva") }),
        )
        .await;
    let uuid = uuid.as_str().expect("a uuid").to_owned();
    assert_eq!(vms_with_uuid(&e.b, &uuid), 1);
    let new_vm = call(&e.b, "VM.get_by_uuid", vec![json!(uuid)]);
    let (src, dst) = (
        disks_of(&e.a, &vm),
        disks_of(&e.b, new_vm.as_str().unwrap()),
    );
    assert_eq!(src.len(), dst.len());
    for (s, d) in src.iter().zip(&dst) {
        assert_eq!(content(&e.a, s), content(&e.b, d), "disk content differs");
    }
    let after = (guest_vm_count(&e.b), count(&e.b, "VDI"));

    // a 404, a download cut short, garbage: errors, nothing left behind
    let missing = http_file(404, b"no".to_vec(), 2).await;
    e.c.err(
        "vm.import",
        json!({ "sr": sr_b, "url": format!("{missing}/x.xva") }),
    )
    .await;
    let short = http_file(200, xva[..xva.len() / 2].to_vec(), xva.len()).await;
    e.c.err(
        "vm.import",
        json!({ "sr": sr_b, "url": format!("{short}/x.xva") }),
    )
    .await;
    let junk = http_file(200, b"not an xva".to_vec(), 10).await;
    e.c.err(
        "vm.import",
        json!({ "sr": sr_b, "url": format!("{junk}/x.xva") }),
    )
    .await;
    wait_for(|| pending_tasks(&e.b) == 0, "import tasks finished").await;
    assert_eq!((guest_vm_count(&e.b), count(&e.b, "VDI")), after);
    assert_eq!(after, (vms + 1, vdis + src.len()));

    // only XVA from a URL, and only http(s) URLs
    let e1 =
        e.c.err(
            "vm.import",
            json!({ "sr": sr_b, "type": "ova", "url": format!("{base}/x") }),
        )
        .await;
    assert_eq!(e1["code"], 10, "{e1}");
    let e2 =
        e.c.err(
            "vm.import",
            json!({ "sr": sr_b, "url": "file:///etc/passwd" }),
        )
        .await;
    assert_eq!(e2["code"], 10, "{e2}");
}

/// A simulated pool served over plain HTTP (so that xo-server's pool-to-pool streaming splices), with its disks'
/// stored content capped at `cap` bytes.
async fn plain_sim(vms: usize, cap: u64) -> RunningPool {
    xapi_sim::Sim::builder()
        .vms(vms)
        .vdi_content_cap(cap)
        .event_batching(Duration::from_millis(5))
        .build()
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap()
}

#[tokio::test]
async fn transfers_cross_pool_copy_over_plain_http_is_spliced_and_a_failed_import_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = plain_sim(3, 1 << 30).await;
    let b = plain_sim(1, 1 << 30).await;
    let small = plain_sim(1, 8 << 20).await;
    let server = start_with(config(dir.path()), |b| b).await;
    let mut c = Client::admin(&server).await;
    for p in [&a, &b, &small] {
        c.ok("server.add", add_params(p)).await;
    }
    let vm = halted_vm_with_disk(&a);
    for d in disks_of(&a, &vm) {
        fill(&a, &d);
    }
    let vm_uuid = uuid_of(&a, "VM", &vm);

    // the export moves socket to socket into the import: byte-identical disks
    let sr_b = uuid_of(&b, "SR", &default_sr(&b));
    let id = c
        .ok(
            "vm.copy",
            json!({ "vm": vm_uuid, "sr": sr_b, "name": "spliced" }),
        )
        .await;
    let new_vm = call(&b, "VM.get_by_uuid", vec![json!(id)]);
    let (src, dst) = (disks_of(&a, &vm), disks_of(&b, new_vm.as_str().unwrap()));
    assert_eq!(src.len(), dst.len());
    for (s, d) in src.iter().zip(&dst) {
        let (cs, cd) = (content(&a, s), content(&b, d));
        assert!(cs.1.len() >= 48, "source disk has content");
        assert_eq!(cs, cd, "disk content differs");
    }

    // an SR too small for the disks: the import fails mid-stream, is rolled back, the export task ends
    let sr_small = uuid_of(&small, "SR", &default_sr(&small));
    let (vms, vdis) = (guest_vm_count(&small), count(&small, "VDI"));
    c.err(
        "vm.copy",
        json!({ "vm": vm_uuid, "sr": sr_small, "name": "too big" }),
    )
    .await;
    wait_for(
        || pending_tasks(&a) == 0 && pending_tasks(&small) == 0,
        "export and import tasks finished",
    )
    .await;
    assert_eq!((guest_vm_count(&small), count(&small, "VDI")), (vms, vdis));
}

/// Waits until xo-server shows host `uuid` with `address`.
async fn wait_for_host_address(c: &mut Client, uuid: &str, address: &str) {
    for _ in 0..400 {
        let all = c.ok("xo.getAllObjects", json!({})).await;
        if all[uuid]["address"] == address {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("host {uuid} never showed address {address}");
}

#[tokio::test]
async fn transfers_sr_stats_fails_as_xo_when_one_hosts_rrds_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = sim(2, 0).await;
    let server = start_with(config(dir.path()), |b| b).await;
    let mut c = Client::admin(&server).await;
    c.ok("server.add", add_params(&p)).await;
    let shared = call(&p, "SR.get_all_records", vec![])
        .as_object()
        .unwrap()
        .iter()
        .find(|(r, v)| {
            v["shared"] == true && v["content_type"] != "iso" && pbd_hosts(&p, r).len() == 2
        })
        .map(|(r, _)| r.clone())
        .expect("an SR shared by both hosts");
    let sr = uuid_of(&p, "SR", &shared);
    wait_for_pbd_hosts(&mut c, &sr).await;
    let master = call(&p, "pool.get_all", vec![])[0].clone();
    let master = call(&p, "pool.get_master", vec![master]);
    let other = pbd_hosts(&p, &shared)
        .into_iter()
        .find(|h| *h != master)
        .expect("a host that is not the master");
    let (other_uuid, master_uuid) = (
        uuid_of(&p, "host", &other),
        uuid_of(&p, "host", master.as_str().unwrap()),
    );
    let address = p.state().host_address(&Ref::from(other.as_str()));

    // the other host's RRD endpoint cannot be reached (nothing listens at its new address)
    let set = |a: &str| {
        p.state().write(|db| {
            db.set_field("host", &Ref::from(other.as_str()), "address", json!(a))
                .unwrap()
        })
    };
    set("127.0.0.250");
    wait_for_host_address(&mut c, &other_uuid, "127.0.0.250").await;
    // XO's getSrStats awaits every host's stats together (Promise.all): one failure fails the call, with the
    // error's message for an admin
    let e = c
        .err("sr.stats", json!({ "id": sr, "granularity": "minutes" }))
        .await;
    assert_eq!(e["code"], -32000, "{e}");
    assert_ne!(e["message"], "unknown error from the peer", "{e}");
    // the host that answers still has its own stats, and the failure is not cached
    let h = c
        .ok(
            "host.stats",
            json!({ "host": master_uuid, "granularity": "minutes" }),
        )
        .await;
    assert!(h["stats"]["cpus"].is_object(), "{h}");
    set(&address);
    wait_for_host_address(&mut c, &other_uuid, &address).await;
    let s = c
        .ok("sr.stats", json!({ "id": sr, "granularity": "minutes" }))
        .await;
    assert_eq!(
        s["stats"]["iowait"].as_object().map(|m| m.len()),
        Some(2),
        "{s}"
    );
}
