//! `PUT /update?session_id&task_id[&sr_id|sr_uuid]` (spec §6.5): the body (a sim update ISO, see
//! [`crate::ops::pool_update`]) is streamed into a new VDI on the SR (default SR if none given), then introduced as a
//! `pool_update`; the task's result is the pool_update ref. The VDI is destroyed again when the introduction fails.
//! A one-call shortcut for XAPI's `/import_raw_vdi` + `pool_update.introduce` (what `xe update-upload` does).

use std::sync::Arc;

use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use xapi_types::{Ref, Type, Value, XapiError};

use super::common::{fail_client_task, status, transfer_headers, unauthorised, Head, TaskCtx};
use super::xva_import::{is_chunked, target_sr};
use super::Body;
use crate::state::{str_field, PoolState};
use crate::vdi_data::BLOCK;

static UPDATE_REF: Type = Type::Ref("pool_update");

pub(crate) async fn handle(
    req: Request<Incoming>,
    pool: Arc<PoolState>,
    host: Ref,
) -> Response<Body> {
    let head = Head::of(&req);
    let Some(caller) = head.authenticate(&pool, &host) else {
        return unauthorised(&pool, &head);
    };
    let length: Option<u64> = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let size = match length {
        Some(n) if n > 0 && !is_chunked(&head) => n,
        _ => {
            fail_client_task(
                &pool,
                &head,
                &XapiError::internal("a Content-Length is required"),
            );
            return status(StatusCode::BAD_REQUEST, "Bad request");
        }
    };
    let sr = match target_sr(&pool, &head) {
        Ok(s) => s,
        Err((code, e)) => {
            fail_client_task(&pool, &head, &e);
            return status(code, "Bad request");
        }
    };
    let rec = crate::db::rec([
        ("name_label", json!("Update upload")),
        ("SR", json!(sr.0)),
        ("virtual_size", json!(size)),
        ("type", json!("user")),
    ]);
    let vdi = match pool.write(|db| crate::ops::vdi::create_vdi(db, rec)) {
        Ok(r) => r,
        Err(e) => {
            fail_client_task(&pool, &head, &e);
            return status(StatusCode::INTERNAL_SERVER_ERROR, "Upload failed");
        }
    };
    let ctx = TaskCtx::new(&pool, &head, &host, "Update upload", caller);
    let task = ctx.task.clone();
    let out = receive(req.into_body(), &pool, &ctx.task, &vdi, size)
        .await
        .and_then(|()| {
            pool.write(|db| crate::ops::pool_update::introduce_vdi(db, &vdi))
                .map(|r| json!(r.0))
        });
    if out.is_err() {
        let _ = pool.write(|db| crate::ops::vdi::destroy_vdi(db, &vdi));
    }
    let code = match &out {
        Ok(_) => StatusCode::OK,
        Err(e) if e.code == "VDI_IO_ERROR" => StatusCode::BAD_REQUEST,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let text = match &out {
        Ok(Value::String(r)) => r.clone(),
        _ => String::new(),
    };
    ctx.finish(&out, &UPDATE_REF);
    let mut r = Response::new(super::full(http_body_util::Full::new(bytes::Bytes::from(
        text,
    ))));
    *r.status_mut() = code;
    transfer_headers(&mut r, &task, "text/plain");
    r
}

/// Stream the body into the VDI, a block at a time; the body must be exactly `size` bytes.
async fn receive(
    mut body: Incoming,
    pool: &PoolState,
    task: &Ref,
    vdi: &Ref,
    size: u64,
) -> Result<(), XapiError> {
    let io = || XapiError::new("VDI_IO_ERROR", ["Device I/O errors"]);
    let store = pool.read(|db| db.vdi_data.clone());
    let uuid = pool.read(|db| str_field(db, "VDI", vdi, "uuid"));
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK as usize);
    let mut offset = 0u64;
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                tracing::debug!("update upload body: {e}");
                return Err(io());
            }
        };
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        while !data.is_empty() {
            let n = data.len().min(BLOCK as usize - buf.len());
            buf.extend_from_slice(&data.split_to(n));
            if buf.len() == BLOCK as usize {
                if offset + BLOCK > size {
                    return Err(io());
                }
                store.write_at(vdi, &uuid, size, offset, &buf)?;
                offset += BLOCK;
                buf.clear();
                pool.set_task_progress(task, (offset as f64 / size as f64).min(0.99));
            }
        }
    }
    if offset + buf.len() as u64 != size {
        return Err(io());
    }
    if !buf.is_empty() {
        store.write_at(vdi, &uuid, size, offset, &buf)?;
    }
    Ok(())
}
