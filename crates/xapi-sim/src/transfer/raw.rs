//! Raw VDI transfer (spec §6.4): `GET /export_raw_vdi` streams the whole disk (`format=raw`, or a dynamic VHD
//! with `format=vhd`) and
//! `PUT /import_raw_vdi` writes the body onto a VDI from offset 0 (or into a new "Imported VDI" sized from
//! Content-Length when only an SR is given, raw only). tar / qcow2 formats are refused (`INTERNAL_ERROR`).

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use xapi_types::{Ref, Type, Value, XapiError};

use super::body::{channel, ChanReader};
use super::common::{
    fail_client_task, resolve, status, transfer_headers, unauthorised, Caller, Head, TaskCtx,
};
use super::xva_import::{is_chunked, target_sr};
use super::Body;
use crate::state::{str_field, PoolState};
use crate::vdi_data::BLOCK;

static VDI_REF: Type = Type::Ref("VDI");

/// Disk image formats served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Raw,
    Vhd,
}

/// `format` must be raw (the default) or vhd.
fn check_format(pool: &PoolState, head: &Head) -> Result<Format, Box<Response<Body>>> {
    match head.query.get("format").unwrap_or("raw") {
        "raw" => Ok(Format::Raw),
        "vhd" => Ok(Format::Vhd),
        other => {
            let e =
                XapiError::internal(format!("format {other} is not supported by the simulator"));
            fail_client_task(pool, head, &e);
            Err(Box::new(status(StatusCode::NOT_FOUND, "Not found")))
        }
    }
}

/// The VDI named by `vdi=` (ref or uuid): its ref, uuid and size.
fn vdi_of(pool: &PoolState, s: &str) -> Option<(Ref, String, u64)> {
    let r = resolve(pool, "VDI", s)?;
    pool.read(|db| {
        let rec = db.get("VDI", &r)?;
        let size = rec
            .get("virtual_size")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .max(0) as u64;
        Some((r.clone(), str_field(db, "VDI", &r, "uuid"), size))
    })
}

fn authed(pool: &PoolState, head: &Head, host: &Ref) -> Result<Caller, Box<Response<Body>>> {
    head.authenticate(pool, host)
        .ok_or_else(|| Box::new(unauthorised(pool, head)))
}

pub(crate) async fn export(
    req: Request<Incoming>,
    pool: Arc<PoolState>,
    host: Ref,
) -> Response<Body> {
    let head = Head::of(&req);
    drop(req);
    let caller = match authed(&pool, &head, &host) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let format = match check_format(&pool, &head) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let wanted = head.query.get("vdi").unwrap_or_default().to_owned();
    let found = vdi_of(&pool, &wanted);
    let ctx = TaskCtx::new(&pool, &head, &host, "VDI export", caller);
    let Some((vdi, uuid, size)) = found else {
        ctx.finish(
            &Err(XapiError::new("HANDLE_INVALID", ["VDI", wanted.as_str()])),
            &Type::Void,
        );
        return status(StatusCode::NOT_FOUND, "Not found");
    };
    // `base=`: a VHD of the blocks that differ from that VDI (a differencing disk naming it as parent).
    let base = match head.query.get("base").filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => match vdi_of(&pool, b) {
            Some((r, uuid, size)) if format == Format::Vhd => {
                Some(super::vhd::Base { r, uuid, size })
            }
            Some(_) => {
                let e = XapiError::internal("base is only supported with format=vhd");
                ctx.finish(&Err(e), &Type::Void);
                return status(StatusCode::BAD_REQUEST, "Bad request");
            }
            None => {
                ctx.finish(
                    &Err(XapiError::new("HANDLE_INVALID", ["VDI", b])),
                    &Type::Void,
                );
                return status(StatusCode::NOT_FOUND, "Not found");
            }
        },
    };
    let store = pool.read(|db| db.vdi_data.clone());
    let ext = if format == Format::Vhd { "vhd" } else { "raw" };
    let disposition = format!("attachment; filename=\"{uuid}.{ext}\"");
    let (tx, body) = channel(4);
    let task = ctx.task.clone();
    let mut pace = super::body::Pace::new(pool.config.export_rate);
    if format == Format::Vhd {
        tokio::task::spawn_blocking(move || {
            let mut w = super::body::ChanWriter::new(tx, pace);
            let out = super::vhd::write(&mut w, &store, &vdi, &uuid, size, base.as_ref())
                .map(|_| Value::from(""))
                .map_err(|e| {
                    tracing::debug!("VHD export: {e}");
                    XapiError::new("VDI_IO_ERROR", ["Device I/O errors"])
                });
            ctx.finish(&out, &Type::Void);
        });
        let mut r = Response::new(body);
        transfer_headers(&mut r, &task, "application/vhd");
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
        return r;
    }
    let p = pool.clone();
    tokio::task::spawn_blocking(move || {
        let zero = Bytes::from(vec![0u8; BLOCK as usize]);
        let allocated = store.allocated(&vdi, &uuid, size);
        let blocks = size.div_ceil(BLOCK);
        let mut ok = true;
        for i in 0..blocks {
            let piece = if allocated.binary_search(&i).is_ok() {
                Bytes::from(store.read_block(&vdi, &uuid, i, size))
            } else {
                let len = (size - i * BLOCK).min(BLOCK) as usize;
                zero.slice(..len)
            };
            let n = piece.len();
            if tx.blocking_send(Ok(piece)).is_err() {
                ok = false;
                break;
            }
            pace.after(n);
            if i % 64 == 0 {
                p.set_task_progress(&ctx.task, (i as f64 / blocks.max(1) as f64).min(0.99));
            }
        }
        let out = if ok {
            Ok(Value::from(""))
        } else {
            Err(XapiError::new("VDI_IO_ERROR", ["Device I/O errors"]))
        };
        ctx.finish(&out, &Type::Void);
    });
    let mut r = Response::new(body);
    transfer_headers(&mut r, &task, "application/octet-stream");
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

pub(crate) async fn import(
    req: Request<Incoming>,
    pool: Arc<PoolState>,
    host: Ref,
) -> Response<Body> {
    let head = Head::of(&req);
    let caller = match authed(&pool, &head, &host) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let format = match check_format(&pool, &head) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if is_chunked(&head) {
        fail_client_task(
            &pool,
            &head,
            &XapiError::internal("chunked transfer encoding is not supported"),
        );
        return status(StatusCode::BAD_REQUEST, "Bad request");
    }
    let length: Option<u64> = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let target = match head.query.get("vdi") {
        Some(v) => match vdi_of(&pool, v) {
            Some(t) => t,
            None => {
                fail_client_task(&pool, &head, &XapiError::new("HANDLE_INVALID", ["VDI", v]));
                return status(StatusCode::NOT_FOUND, "Not found");
            }
        },
        None if format == Format::Raw && (head.query.has("sr_id") || head.query.has("sr_uuid")) => {
            let sr = match target_sr(&pool, &head) {
                Ok(s) => s,
                Err((code, e)) => {
                    fail_client_task(&pool, &head, &e);
                    return status(code, "Bad request");
                }
            };
            let size = length.unwrap_or(0);
            let rec = crate::db::rec([
                ("name_label", json!("Imported VDI")),
                ("SR", json!(sr.0)),
                ("virtual_size", json!(size)),
                ("type", json!("user")),
            ]);
            match pool.write(|db| crate::ops::vdi::create_vdi(db, rec)) {
                Ok(r) => {
                    let uuid = pool.read(|db| str_field(db, "VDI", &r, "uuid"));
                    (r, uuid, size)
                }
                Err(e) => {
                    fail_client_task(&pool, &head, &e);
                    return status(StatusCode::INTERNAL_SERVER_ERROR, "Import failed");
                }
            }
        }
        None => {
            fail_client_task(&pool, &head, &XapiError::code("VDI_MISSING"));
            return status(StatusCode::BAD_REQUEST, "Bad request");
        }
    };
    let ctx = TaskCtx::new(&pool, &head, &host, "VDI import", caller);
    let task = ctx.task.clone();
    let mut reader = ChanReader::spawn(req.into_body());
    let (tx, body) = channel(1);
    let p = pool.clone();
    tokio::task::spawn_blocking(move || {
        let (vdi, uuid, size) = target;
        let store = p.read(|db| db.vdi_data.clone());
        if format == Format::Vhd {
            let out =
                super::vhd::read(&mut reader, &store, &vdi, &uuid, size).map(|_| json!(vdi.0));
            ctx.finish(&out, &VDI_REF);
            drop(tx);
            return;
        }
        let mut buf = vec![0u8; BLOCK as usize];
        let mut offset = 0u64;
        let out = loop {
            let mut filled = 0;
            let mut eof = false;
            while filled < buf.len() {
                match reader.read(&mut buf[filled..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) => {
                        tracing::debug!("raw import body: {e}");
                        break;
                    }
                }
            }
            let short = !eof && filled < buf.len();
            if filled > 0 {
                if offset.saturating_add(filled as u64) > size {
                    break Err(XapiError::new("VDI_IO_ERROR", ["Device I/O errors"]));
                }
                if let Err(e) = store.write_at(&vdi, &uuid, size, offset, &buf[..filled]) {
                    break Err(e);
                }
                offset += filled as u64;
                p.set_task_progress(&ctx.task, (offset as f64 / size.max(1) as f64).min(0.99));
            }
            if short {
                break Err(XapiError::new("VDI_IO_ERROR", ["Device I/O errors"]));
            }
            if eof {
                break Ok(json!(vdi.0));
            }
        };
        ctx.finish(&out, &VDI_REF);
        drop(tx);
    });
    let mut r = Response::new(body);
    transfer_headers(&mut r, &task, "text/plain");
    r
}
