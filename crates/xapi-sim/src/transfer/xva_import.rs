//! `PUT /import` (spec §6.3, format §7): read an XVA (plain, gzip or zstd) from the request body on a blocking thread,
//! create the VM, its VDIs (content written chunk by chunk, SHA-1 / XXH64 checksums verified unless `force`),
//! VBDs and VIFs; any failure rolls every created object back and fails the task with `IMPORT_ERROR`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use sha1::{Digest, Sha1};
use xapi_types::{Ref, Type, Value, XapiError};

use super::body::{channel, ChanReader};
use super::common::{
    fail_client_task, resolve, status, transfer_headers, unauthorised, Head, TaskCtx,
};
use super::ovaxml::{self, ParsedObj};
use super::xva_export::xxhash;
use super::Body;
use crate::db::{Db, Record};
use crate::state::PoolState;
use crate::vdi_data::{VdiStore, BLOCK};

/// Largest `ova.xml` accepted.
const MAX_OVA: u64 = 64 << 20;
/// Largest data chunk accepted.
const MAX_CHUNK: u64 = 64 << 20;

static VM_SET: Type = Type::Set(&Type::Ref("VM"));

pub(crate) fn import_error(msg: impl Into<String>) -> XapiError {
    XapiError::new("IMPORT_ERROR", [msg.into()])
}

/// Refuse chunked request bodies like XAPI (403, task failed `IMPORT_ERROR_CANNOT_HANDLE_CHUNKED`).
pub(crate) fn is_chunked(head: &Head) -> bool {
    head.headers
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

/// The target SR: `sr_id` (ref) or `sr_uuid`, else the pool's default SR.
pub(crate) fn target_sr(pool: &PoolState, head: &Head) -> Result<Ref, (StatusCode, XapiError)> {
    let given = head
        .query
        .get("sr_id")
        .or_else(|| head.query.get("sr_uuid"));
    let sr = match given {
        Some(s) => resolve(pool, "SR", s).ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                XapiError::new("HANDLE_INVALID", ["SR", s]),
            )
        })?,
        None => pool.read(|db| {
            let d = db
                .all("pool")
                .next()
                .and_then(|(_, p)| p.get("default_SR").and_then(Value::as_str).map(Ref::from))
                .unwrap_or_else(Ref::null);
            if db.exists("SR", &d) {
                Ok(d)
            } else {
                Err((
                    StatusCode::BAD_REQUEST,
                    XapiError::new("DEFAULT_SR_NOT_FOUND", [d.0]),
                ))
            }
        })?,
    };
    let iso = pool.read(|db| crate::state::str_field(db, "SR", &sr, "content_type") == "iso");
    if iso {
        return Err((
            StatusCode::BAD_REQUEST,
            XapiError::new("SR_OPERATION_NOT_SUPPORTED", [sr.0]),
        ));
    }
    Ok(sr)
}

pub(crate) async fn handle(
    req: Request<Incoming>,
    pool: Arc<PoolState>,
    host: Ref,
) -> Response<Body> {
    let head = Head::of(&req);
    let Some(caller) = head.authenticate(&pool, &host) else {
        return unauthorised(&pool, &head);
    };
    if is_chunked(&head) {
        fail_client_task(
            &pool,
            &head,
            &XapiError::code("IMPORT_ERROR_CANNOT_HANDLE_CHUNKED"),
        );
        return status(StatusCode::FORBIDDEN, "Forbidden");
    }
    let sr = match target_sr(&pool, &head) {
        Ok(s) => s,
        Err((code, e)) => {
            fail_client_task(&pool, &head, &e);
            return status(code, "Bad request");
        }
    };
    let force = head.query.flag("force");
    let restore = head.query.flag("restore");
    let ctx = TaskCtx::new(&pool, &head, &host, "VM import", caller);
    let task = ctx.task.clone();
    let reader = ChanReader::spawn(req.into_body());
    // The answer's body stays open until the import ends, then the connection closes (as XAPI does).
    let (tx, body) = channel(1);
    let p = pool.clone();
    tokio::task::spawn_blocking(move || {
        let out = import(&p, reader, &sr, Flags { force, restore }, &ctx.task);
        ctx.finish(&out.map(|vm| json!([vm.0])), &VM_SET);
        drop(tx);
    });
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    transfer_headers(&mut r, &task, "text/plain");
    r
}

/// Objects created so far (rolled back on failure).
#[derive(Debug, Default)]
struct Made {
    vdis: Vec<Ref>,
    networks: Vec<Ref>,
    vm: Option<Ref>,
}

fn rollback(pool: &PoolState, made: &Made) {
    pool.write(|db| {
        if let Some(vm) = &made.vm {
            if let Some(r) = db.get("VM", vm).cloned() {
                for f in ["VBDs", "VIFs"] {
                    let cls = if f == "VBDs" { "VBD" } else { "VIF" };
                    for x in r
                        .get(f)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                    {
                        let _ = db.destroy(cls, &Ref::from(x.as_str().unwrap_or_default()));
                    }
                }
                let m = Ref::from(r.get("metrics").and_then(Value::as_str).unwrap_or_default());
                if db.exists("VM_metrics", &m) {
                    let _ = db.destroy("VM_metrics", &m);
                }
                let _ = db.destroy("VM", vm);
            }
        }
        for v in &made.vdis {
            let _ = crate::ops::vdi::destroy_vdi(db, v);
        }
        for n in &made.networks {
            let _ = db.destroy("network", n);
        }
    });
}

/// Import options: `force` (accept checksum mismatches), `restore` (keep the VM's uuid when it is free).
#[derive(Debug, Clone, Copy)]
struct Flags {
    force: bool,
    restore: bool,
}

/// Run a whole import; on failure nothing it created remains.
fn import(
    pool: &PoolState,
    reader: ChanReader,
    sr: &Ref,
    flags: Flags,
    task: &Ref,
) -> Result<Ref, XapiError> {
    let mut made = Made::default();
    let out = import_inner(pool, reader, sr, flags, task, &mut made);
    if out.is_err() {
        rollback(pool, &made);
    }
    out
}

/// Gzip and zstd are detected from their magic.
fn open(reader: ChanReader) -> Result<Box<dyn Read>, XapiError> {
    let mut br = BufReader::with_capacity(64 * 1024, reader);
    let magic = br
        .fill_buf()
        .map_err(|e| import_error(format!("reading the body: {e}")))?
        .to_vec();
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::GzDecoder::new(br)))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(super::zstd::FramesReader::new(br)))
    } else {
        Ok(Box::new(br))
    }
}

/// Progress of one VDI's data.
#[derive(Debug)]
struct Recv {
    r: Ref,
    uuid: String,
    size: u64,
    last_index: Option<u64>,
    chunk_len: Option<u64>,
    /// End offset of the data written so far.
    end: u64,
    /// Name of the last data chunk, awaiting its checksum entry (its bytes stay in the read buffer).
    pending: Option<String>,
}

fn import_inner(
    pool: &PoolState,
    reader: ChanReader,
    sr: &Ref,
    flags: Flags,
    task: &Ref,
    made: &mut Made,
) -> Result<Ref, XapiError> {
    let bad = |e: std::io::Error| import_error(format!("Invalid XVA file: {e}"));
    let mut ar = tar::Archive::new(open(reader)?);
    let mut entries = ar.entries().map_err(bad)?;
    let first = entries
        .next()
        .ok_or_else(|| import_error("Invalid XVA file: empty archive"))?
        .map_err(bad)?;
    let name = first.path().map_err(bad)?.to_string_lossy().into_owned();
    if name != "ova.xml" || first.size() > MAX_OVA {
        return Err(import_error("Invalid XVA file: ova.xml must come first"));
    }
    let mut text = String::new();
    first.take(MAX_OVA).read_to_string(&mut text).map_err(bad)?;
    let objs = ovaxml::parse(&text)?;
    let (vm, vdis) = pool.write(|db| create_objects(db, &objs, sr, flags.restore, made))?;
    let store: Arc<VdiStore> = pool.read(|db| db.vdi_data.clone());
    let mut recv: HashMap<String, Recv> = vdis
        .into_iter()
        .map(|(id, r, uuid, size)| {
            (
                id,
                Recv {
                    r,
                    uuid,
                    size,
                    last_index: None,
                    chunk_len: None,
                    end: 0,
                    pending: None,
                },
            )
        })
        .collect();
    let total: u64 = recv.values().map(|r| r.size).sum::<u64>().max(1);
    let mut done: u64 = 0;
    // each data chunk is read into a buffer of its size that then becomes its disk's block as it is (no second
    // copy), once its checksum entry is checked (the entry's kind says which digest); the checksums' buffer is
    // reused
    let mut unwritten: Option<Unwritten> = None;
    let mut sum: Vec<u8> = Vec::new();
    for e in entries {
        let mut e = e.map_err(bad)?;
        let path = e.path().map_err(bad)?.to_string_lossy().into_owned();
        let Some((id, file)) = path.split_once('/') else {
            return Err(import_error(format!(
                "Invalid XVA file: unexpected entry {path}"
            )));
        };
        let d = recv
            .get_mut(id)
            .ok_or_else(|| import_error(format!("Invalid XVA file: unknown disk {id}")))?;
        if e.size() > MAX_CHUNK {
            return Err(import_error(format!(
                "Invalid XVA file: chunk {path} too large"
            )));
        }
        if let Some((stem, ext)) = file.split_once('.') {
            sum.clear();
            (&mut e)
                .take(MAX_CHUNK)
                .read_to_end(&mut sum)
                .map_err(bad)?;
            let Some(pname) = d.pending.take() else {
                return Err(import_error(format!(
                    "Invalid XVA file: checksum {path} without data"
                )));
            };
            let chunk = match unwritten.take() {
                Some(u)
                    if pname == stem
                        && u.path.strip_prefix(id).and_then(|h| h.strip_prefix('/'))
                            == Some(stem) =>
                {
                    u
                }
                _ => {
                    return Err(import_error(format!(
                        "Invalid XVA file: checksum {path} does not follow its chunk"
                    )))
                }
            };
            let expected = String::from_utf8_lossy(&sum).trim().to_owned();
            let ok = match ext {
                "checksum" => expected.eq_ignore_ascii_case(&sha1_hex(&chunk.bytes)),
                "xxhash" => expected.eq_ignore_ascii_case(&xxhash(&chunk.bytes)),
                other => {
                    return Err(import_error(format!(
                        "Invalid XVA file: unknown checksum type {other}"
                    )))
                }
            };
            if !ok && !flags.force {
                return Err(import_error(format!("Checksum failed on {path}")));
            }
            chunk.write(&store)?;
            continue;
        }
        // the previous chunk came without a checksum
        if let Some(u) = unwritten.take() {
            u.write(&store)?;
        }
        let mut data = Vec::with_capacity(e.size() as usize);
        (&mut e)
            .take(MAX_CHUNK)
            .read_to_end(&mut data)
            .map_err(bad)?;
        let idx: u64 = file
            .parse()
            .map_err(|_| import_error(format!("Invalid XVA file: bad chunk name {path}")))?;
        if d.last_index.is_some_and(|l| idx <= l) {
            return Err(import_error(
                "Invalid XVA file: chunk indices must increase",
            ));
        }
        if data.is_empty() {
            // xapi's keepalive entry: consumes an index, no disk offset.
            d.last_index = Some(idx);
            continue;
        }
        let chunk_len = *d.chunk_len.get_or_insert(data.len() as u64);
        let offset = idx.saturating_mul(chunk_len);
        if offset >= d.size {
            return Err(import_error(format!(
                "Invalid XVA file: chunk {path} past the end of the disk"
            )));
        }
        d.end = offset + data.len() as u64;
        d.last_index = Some(idx);
        d.pending = Some(file.to_owned());
        done += data.len() as u64;
        unwritten = Some(Unwritten {
            path,
            vdi: d.r.clone(),
            uuid: d.uuid.clone(),
            size: d.size,
            offset,
            bytes: data,
        });
        pool.set_task_progress(task, (done as f64 / total as f64).min(0.99));
    }
    if let Some(u) = unwritten.take() {
        u.write(&store)?;
    }
    for (id, d) in &recv {
        if d.end < d.size {
            return Err(import_error(format!(
                "Unexpected end of file: disk {id} is incomplete"
            )));
        }
    }
    Ok(vm)
}

/// The last data chunk read, not yet in its disk: it goes there once its checksum entry is checked, or when the
/// next chunk or the end of the archive comes without one.
struct Unwritten {
    /// Its entry's path.
    path: String,
    vdi: Ref,
    uuid: String,
    /// The disk's size.
    size: u64,
    offset: u64,
    bytes: Vec<u8>,
}

impl Unwritten {
    fn write(self, store: &VdiStore) -> Result<(), XapiError> {
        if self.offset % BLOCK == 0 {
            let idx = self.offset / BLOCK;
            store.write_block(&self.vdi, &self.uuid, self.size, idx, self.bytes)
        } else {
            store.write_at(&self.vdi, &self.uuid, self.size, self.offset, &self.bytes)
        }
    }
}

/// VDI fields carried over from an exported VDI.
const VDI_FIELDS: &[&str] = &[
    "name_label",
    "name_description",
    "virtual_size",
    "type",
    "sharable",
    "read_only",
    "other_config",
    "xenstore_data",
    "sm_config",
    "tags",
    "on_boot",
    "allow_caching",
];

/// Sets of a VM row the DB maintains (never copied).
const VM_DERIVED: &[&str] = &[
    "VBDs",
    "VIFs",
    "consoles",
    "snapshots",
    "children",
    "crash_dumps",
    "VUSBs",
    "VTPMs",
    "VGPUs",
    "attached_PCIs",
];

type NewDisk = (String, Ref, String, u64);

/// Create the VDIs, the VM, its VBDs and VIFs (networks matched by bridge, then name, else created).
fn create_objects(
    db: &mut Db,
    objs: &[ParsedObj],
    sr: &Ref,
    restore: bool,
    made: &mut Made,
) -> Result<(Ref, Vec<NewDisk>), XapiError> {
    let mut map: HashMap<String, Ref> = HashMap::new();
    let mut disks = Vec::new();
    for o in objs.iter().filter(|o| o.class == "VDI") {
        let mut rec = Record::new();
        for k in VDI_FIELDS {
            if let Some(v) = o.snapshot.get(*k) {
                rec.insert((*k).to_owned(), v.clone());
            }
        }
        if let Some(Value::Object(sm)) = rec.get_mut("sm_config") {
            sm.remove("vhd-parent");
        }
        rec.insert("SR".into(), json!(sr.0));
        let r = crate::ops::vdi::create_vdi(db, rec)?;
        made.vdis.push(r.clone());
        let uuid = crate::state::str_field(db, "VDI", &r, "uuid");
        let size = o
            .snapshot
            .get("virtual_size")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .max(0) as u64;
        disks.push((o.id.clone(), r.clone(), uuid, size));
        map.insert(o.id.clone(), r);
    }
    for o in objs.iter().filter(|o| o.class == "network") {
        let bridge = o
            .snapshot
            .get("bridge")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = o
            .snapshot
            .get("name_label")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let by_bridge = db.find("network", |n| {
            !bridge.is_empty() && n.get("bridge").and_then(Value::as_str) == Some(bridge)
        });
        let found = by_bridge.into_iter().next().or_else(|| {
            db.find("network", |n| {
                n.get("name_label").and_then(Value::as_str) == Some(name)
            })
            .into_iter()
            .next()
        });
        let r = match found {
            Some(r) => r,
            None => {
                let mut rec = Record::new();
                for k in [
                    "name_label",
                    "name_description",
                    "MTU",
                    "other_config",
                    "tags",
                    "bridge",
                ] {
                    if let Some(v) = o.snapshot.get(k) {
                        rec.insert(k.to_owned(), v.clone());
                    }
                }
                let n = db.insert("network", rec)?;
                made.networks.push(n.clone());
                n
            }
        };
        map.insert(o.id.clone(), r);
    }
    let vm_obj = objs
        .iter()
        .find(|o| o.class == "VM" && o.snapshot.get("is_a_snapshot") != Some(&Value::Bool(true)))
        .or_else(|| objs.iter().find(|o| o.class == "VM"))
        .ok_or_else(|| import_error("Invalid XVA file: no VM in ova.xml"))?;
    let mut vm = vm_obj.snapshot.clone();
    ovaxml::rename_refs("VM", &mut vm, |x| map.get(x.as_str()).map(|r| r.0.clone()));
    let keep_uuid = restore
        && vm
            .get("uuid")
            .and_then(Value::as_str)
            .is_some_and(|u| !u.is_empty() && db.find_by_uuid("VM", u).is_none());
    if !keep_uuid {
        vm.remove("uuid");
    }
    for f in VM_DERIVED {
        vm.insert((*f).to_owned(), json!([]));
    }
    for f in [
        "resident_on",
        "scheduled_to_be_resident_on",
        "affinity",
        "metrics",
        "guest_metrics",
        "snapshot_of",
        "parent",
    ] {
        vm.insert(f.to_owned(), json!(Ref::NULL_STR));
    }
    vm.insert("power_state".into(), json!("Halted"));
    vm.insert("suspend_VDI".into(), json!(Ref::NULL_STR));
    vm.insert("domid".into(), json!(-1));
    vm.insert("current_operations".into(), json!({}));
    vm.insert("allowed_operations".into(), json!([]));
    vm.insert("is_control_domain".into(), json!(false));
    let vm_ref = db.insert("VM", vm)?;
    made.vm = Some(vm_ref.clone());
    crate::ops::vm::ensure_metrics(db, &vm_ref)?;
    for o in objs.iter().filter(|o| o.class == "VBD" || o.class == "VIF") {
        let vm_of = o
            .snapshot
            .get("VM")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if vm_of != vm_obj.id {
            continue;
        }
        let mut rec = o.snapshot.clone();
        ovaxml::rename_refs(o.class, &mut rec, |x| {
            map.get(x.as_str()).map(|r| r.0.clone())
        });
        rec.remove("uuid");
        rec.insert("VM".into(), json!(vm_ref.0));
        rec.insert("currently_attached".into(), json!(false));
        rec.insert("current_operations".into(), json!({}));
        rec.insert("allowed_operations".into(), json!([]));
        rec.insert("metrics".into(), json!(Ref::NULL_STR));
        if o.class == "VBD" {
            let empty = rec
                .get("VDI")
                .and_then(Value::as_str)
                .is_none_or(|v| Ref::from(v).is_null());
            rec.insert("empty".into(), json!(empty));
        } else if rec
            .get("network")
            .and_then(Value::as_str)
            .is_none_or(|v| Ref::from(v).is_null())
        {
            continue;
        }
        db.insert(o.class, rec)?;
    }
    crate::ops::allowed::update_vm_tree(db, &vm_ref)?;
    Ok((vm_ref, disks))
}

/// The legacy `.checksum` entry of a chunk (older XAPIs wrote it; only read now): lower-case SHA-1 hex.
fn sha1_hex(data: &[u8]) -> String {
    Sha1::digest(data)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}
