//! `GET /export` (spec §6.3, format §7): the VM's XVA generated on the fly — `ova.xml`, then each VDI as 1 MiB
//! chunks `Ref:N/00000000`… each followed by its `.xxhash` (XXH64, as XAPI's `stream_vdi.ml` writes them; the legacy
//! SHA-1 `.checksum` is only read, by the import), all-zero chunks skipped except the first and the last — optionally gzip- or zstd-wrapped (`use_compression=true|gzip|zstd`).

use std::io::Write;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use xapi_types::{Ref, Type, Value, XapiError};

use super::body::{channel, ChanWriter, Pace};
use super::common::{
    fail_client_task, resolve, status, transfer_headers, unauthorised, Head, TaskCtx,
};
use super::ovaxml;
use super::Body;
use crate::state::{str_field, PoolState};
use crate::vdi_data::{VdiStore, BLOCK};

/// One disk to stream.
#[derive(Debug, Clone)]
pub(crate) struct DiskPlan {
    pub id: String,
    pub r: Ref,
    pub uuid: String,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

/// `metadata_only`: `/export_metadata` (a tar with `ova.xml` alone; any power state).
pub(crate) async fn handle(
    req: Request<Incoming>,
    pool: Arc<PoolState>,
    host: Ref,
    metadata_only: bool,
) -> Response<Body> {
    let head = Head::of(&req);
    drop(req);
    let Some(caller) = head.authenticate(&pool, &host) else {
        return unauthorised(&pool, &head);
    };
    let compression = match head
        .query
        .get("use_compression")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("false") | Some("") => Compression::None,
        Some("true") | Some("gzip") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        Some(other) => {
            let e = XapiError::internal(format!("unsupported compression {other}"));
            fail_client_task(&pool, &head, &e);
            return status(StatusCode::BAD_REQUEST, "Unsupported compression");
        }
    };
    let wanted = head
        .query
        .get("ref")
        .or_else(|| head.query.get("uuid"))
        .unwrap_or_default()
        .to_owned();
    let vm = resolve(&pool, "VM", &wanted);
    let ctx = TaskCtx::new(&pool, &head, &host, "Export of VM", caller);
    let Some(vm) = vm else {
        ctx.finish(
            &Err(XapiError::new("HANDLE_INVALID", ["VM", wanted.as_str()])),
            &Type::Void,
        );
        return status(StatusCode::NOT_FOUND, "Not found");
    };
    let task = ctx.task.clone();
    let planned = pool.write(|db| plan(db, &vm, &task, metadata_only));
    let (objs, disks, hostname, store) = match planned {
        Ok(p) => p,
        Err(e) => {
            ctx.finish(&Err(e), &Type::Void);
            return status(StatusCode::INTERNAL_SERVER_ERROR, "Export failed");
        }
    };
    let (tx, body) = channel(4);
    let p = pool.clone();
    let vm2 = vm.clone();
    let pace = Pace::new(pool.config.export_rate);
    tokio::task::spawn_blocking(move || {
        let w = ChanWriter::new(tx, pace);
        let res = match compression {
            Compression::None => {
                write_xva(w, &hostname, &objs, &disks, &store, &p, &ctx.task).map(|w| (w, ()))
            }
            Compression::Gzip => {
                let gz = flate2::write::GzEncoder::new(w, flate2::Compression::fast());
                write_xva(gz, &hostname, &objs, &disks, &store, &p, &ctx.task)
                    .and_then(|gz| gz.finish())
                    .map(|w| (w, ()))
            }
            Compression::Zstd => {
                let gz = super::zstd::FramesWriter::new(w);
                write_xva(gz, &hostname, &objs, &disks, &store, &p, &ctx.task)
                    .and_then(|gz| gz.finish())
                    .map(|w| (w, ()))
            }
        };
        end_export(&p, &vm2, &ctx.task);
        match res {
            Ok((mut w, ())) => {
                let flushed = w.flush();
                ctx.finish(
                    &flushed
                        .map(|_| Value::from(""))
                        .map_err(|e| XapiError::internal(e.to_string())),
                    &Type::Void,
                );
            }
            Err(e) => {
                tracing::debug!("export stream failed: {e}");
                ctx.finish(
                    &Err(XapiError::new("VDI_IO_ERROR", ["Device I/O errors"])),
                    &Type::Void,
                );
            }
        }
    });
    let mut r = Response::new(body);
    transfer_headers(&mut r, &task, "application/octet-stream");
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"export.xva\""),
    );
    r
}

type Plan = (Vec<ovaxml::Obj>, Vec<DiskPlan>, String, Arc<VdiStore>);

/// Check the VM can be exported, mark it busy, snapshot what to write.
fn plan(
    db: &mut crate::db::Db,
    vm: &Ref,
    task: &Ref,
    metadata_only: bool,
) -> Result<Plan, XapiError> {
    let power = str_field(db, "VM", vm, "power_state");
    if !metadata_only && power != "Halted" && power != "Suspended" {
        return Err(XapiError::new(
            "VM_BAD_POWER_STATE",
            [vm.as_str(), "halted", &power.to_ascii_lowercase()],
        ));
    }
    let objs = ovaxml::collect(db, vm, metadata_only)?;
    let mut disks: Vec<DiskPlan> = objs
        .iter()
        .filter(|o| o.class == "VDI")
        .map(|o| DiskPlan {
            id: o.id.clone(),
            r: o.r.clone(),
            uuid: o
                .snapshot
                .get("uuid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            size: o
                .snapshot
                .get("virtual_size")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .max(0) as u64,
        })
        .collect();
    disks.sort_by(|a, b| a.id.cmp(&b.id));
    if metadata_only {
        disks.clear();
    }
    let master = crate::state::master_of(db);
    let hostname = str_field(db, "host", &master, "hostname");
    db.update("VM", vm, |r| {
        if let Some(Value::Object(ops)) = r.get_mut("current_operations") {
            ops.insert(task.0.clone(), json!("export"));
        }
    })?;
    crate::ops::allowed::update_vm(db, vm)?;
    Ok((objs, disks, hostname, db.vdi_data.clone()))
}

fn end_export(pool: &PoolState, vm: &Ref, task: &Ref) {
    pool.write(|db| {
        let _ = db.update("VM", vm, |r| {
            if let Some(Value::Object(ops)) = r.get_mut("current_operations") {
                ops.remove(task.as_str());
            }
        });
        let _ = crate::ops::allowed::update_vm(db, vm);
    });
}

fn entry<W: Write>(t: &mut tar::Builder<W>, path: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    t.append(&h, data)
}

/// Chunk indices written for a disk: allocated ones plus the first and the last.
pub(crate) fn chunk_plan(store: &VdiStore, d: &DiskPlan) -> Vec<u64> {
    let mut idx = store.allocated(&d.r, &d.uuid, d.size);
    if d.size > 0 {
        idx.push(0);
        idx.push((d.size - 1) / BLOCK);
    }
    idx.sort_unstable();
    idx.dedup();
    idx
}

fn write_xva<W: Write>(
    w: W,
    hostname: &str,
    objs: &[ovaxml::Obj],
    disks: &[DiskPlan],
    store: &VdiStore,
    pool: &PoolState,
    task: &Ref,
) -> std::io::Result<W> {
    let mut t = tar::Builder::new(w);
    entry(&mut t, "ova.xml", ovaxml::render(hostname, objs).as_bytes())?;
    let total: usize = disks.len().max(1);
    for (n, d) in disks.iter().enumerate() {
        let idx = chunk_plan(store, d);
        let last = idx.last().copied();
        for i in idx {
            let data = store.read_block(&d.r, &d.uuid, i, d.size);
            if i != 0 && Some(i) != last && data.iter().all(|b| *b == 0) {
                continue;
            }
            let name = format!("{}/{:08}", d.id, i);
            entry(&mut t, &name, &data)?;
            entry(&mut t, &format!("{name}.xxhash"), xxhash(&data).as_bytes())?;
        }
        pool.set_task_progress(task, (n + 1) as f64 / total as f64 * 0.99);
    }
    t.into_inner()
}

/// The `.xxhash` entry of a chunk: XXH64 (seed 0) as 16 upper-case hex digits (XAPI's `%016LX`).
pub(crate) fn xxhash(data: &[u8]) -> String {
    format!("{:016X}", twox_hash::XxHash64::oneshot(0, data))
}

#[cfg(test)]
mod tests {
    #[test]
    fn xxhash_matches_known_vectors() {
        assert_eq!(super::xxhash(b""), "EF46DB3751D8E999");
        assert_eq!(super::xxhash(b"a"), "D24EC4F1A98C6E5B");
        assert_eq!(super::xxhash(b"abc"), "44BC2CF5AD770999");
    }
}
