//! `disk.exportContent` / `disk.importContent` (xo-api.md §2.2, §3 disk rows): a VDI's content through one-shot
//! URLs, streamed from/to XAPI's `/export_raw_vdi` and `/import_raw_vdi` (VHD by default as in XO; vmdk and qcow2
//! are not generated here). Same task, cancellation and bounded-memory rules as `vm_transfer`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{json, Map, Value};

use super::multipart;
use super::opt_str;
use super::resolve::{r, resolve, schema, spec_of, Resolve, Xapi};
use super::upload_body::upload_stream;
use super::vm_transfer::{
    content_length, download_response, rpc_answer, upload_through_task, UploadTarget,
};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;
use crate::transfer::Transfers;

const VDIS: &[&str] = &["VDI", "VDI-snapshot"];

/// `resolve` entries of the methods of this file.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    ("disk.exportContent", &[r("vdi", "id", VDIS, "view")]),
    ("disk.importContent", &[r("vdi", "id", &["VDI"], "operate")]),
    ("disk.import", &[r("sr", "sr", &["SR"], "administrate")]),
];

/// The XAPI `format` of XO's (`vhd` default; `raw` accepted as an extension of this server).
fn xapi_format(p: &Map<String, Value>) -> Result<&'static str, ApiError> {
    match opt_str(p, "format").unwrap_or("vhd") {
        "vhd" => Ok("vhd"),
        "raw" => Ok("raw"),
        // vmdk / qcow2 conversions are not part of this server
        _ => Err(ApiError::not_implemented()),
    }
}

async fn export_content(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "disk.exportContent")).await?;
    let vdi = res.get("vdi")?.clone();
    let format = xapi_format(&p)?;
    let x = Xapi::of(&res.pools, &vdi)?;
    let client = x.client.raw().clone();
    let name = format!("{}.{format}", vdi.id());
    let disposition = format!("attachment; filename=\"{name}\"");
    let query = vec![
        ("vdi", vdi.xapi_ref().to_owned()),
        ("format", format.to_owned()),
    ];
    let pools = res.pools.clone();
    let path = Transfers::of(&ctx.app).register(
        Some(&name),
        Box::new(move |_req| {
            Box::pin(download_response(
                pools,
                client,
                "[XO] VDI export",
                "/export_raw_vdi",
                query,
                disposition,
                None,
            ))
        }),
    );
    Ok(json!({ "$getFrom": path }))
}

async fn import_content(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "disk.importContent")).await?;
    let vdi = res.get("vdi")?.clone();
    let format = xapi_format(&p)?;
    let x = Xapi::of(&res.pools, &vdi)?;
    if x.client.is_read_only() {
        return Err(ApiError::internal(
            "cannot call VDI.import() in read only mode",
        ));
    }
    let client = x.client.raw().clone();
    let pools = res.pools.clone();
    let admin = ctx.is_admin();
    let vdi_ref = vdi.xapi_ref().to_owned();
    let path = Transfers::of(&ctx.app).register(
        None,
        Box::new(move |req| {
            Box::pin(async move {
                let len = content_length(&req);
                let failed = Arc::new(AtomicBool::new(false));
                let (body, rest) = upload_stream(req, failed.clone());
                let out = upload_through_task(
                    &pools,
                    &client,
                    UploadTarget {
                        label: "[XO] VDI import",
                        method: None,
                        path: "/import_raw_vdi",
                        query: vec![("vdi", vdi_ref), ("format", format.to_owned())],
                    },
                    len,
                    body,
                    &failed,
                )
                .await;
                rest.drain().await;
                rpc_answer(out.map(|_| Value::Bool(true)), admin)
            })
        }),
    );
    Ok(json!({ "$sendTo": path }))
}

/// The first `n` bytes of `body` (fewer if it ends sooner) and the whole body again as a stream.
async fn peek<S, E>(
    mut body: S,
    n: usize,
) -> (Vec<u8>, impl Stream<Item = Result<Bytes, E>> + Send + Unpin)
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: Send,
{
    let mut head: Vec<Result<Bytes, E>> = Vec::new();
    let mut buf = Vec::new();
    while buf.len() < n {
        match body.next().await {
            Some(Ok(b)) => {
                buf.extend_from_slice(&b[..b.len().min(n.saturating_sub(buf.len()))]);
                head.push(Ok(b));
            }
            Some(Err(e)) => {
                head.push(Err(e));
                break;
            }
            None => break,
        }
    }
    (buf, futures::stream::iter(head).chain(body))
}

/// The virtual size of a VHD: from the footer copy heading a dynamic/differencing VHD, else (fixed VHD) the upload
/// length minus its 512-byte footer.
fn vhd_size(head: &[u8], len: Option<u64>) -> Result<u64, ApiError> {
    let bad = || ApiError::invalid_parameters_message("not a VHD file");
    if head.len() < 512 || &head[..8] != b"conectix" {
        // a fixed VHD only has its footer at the end
        return len.filter(|l| *l >= 512).map(|l| l - 512).ok_or_else(bad);
    }
    let size = u64::from_be_bytes(head[48..56].try_into().map_err(|_| bad())?);
    Ok(size)
}

/// `disk.import`: a new VDI on `sr` filled by the upload (raw body, or the `file` part of a multipart form as in XO) of a raw, ISO or VHD image; answers its uuid.
async fn import(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "disk.import")).await?;
    let sr = res.get("sr")?.clone();
    let format = match opt_str(&p, "type").unwrap_or("") {
        "raw" | "iso" => "raw",
        "vhd" => "vhd",
        // vmdk / qcow2 conversions and URL imports are not part of this server
        _ => return Err(ApiError::not_implemented()),
    };
    if p.get("url").is_some_and(|u| !u.is_null()) {
        return Err(ApiError::not_implemented());
    }
    let x = Xapi::of(&res.pools, &sr)?;
    if x.client.is_read_only() {
        return Err(ApiError::internal(
            "cannot call VDI.create() in read only mode",
        ));
    }
    let client = x.client.raw().clone();
    let pools = res.pools.clone();
    let admin = ctx.is_admin();
    let sr_ref = sr.xapi_ref().to_owned();
    let name = opt_str(&p, "name").unwrap_or("").to_owned();
    let description = opt_str(&p, "description").unwrap_or("").to_owned();
    let path = Transfers::of(&ctx.app).register(
        None,
        Box::new(move |req| {
            Box::pin(async move {
                let len = content_length(&req);
                let parts = req
                    .headers()
                    .get(axum::http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(multipart::boundary);
                let failed = Arc::new(AtomicBool::new(false));
                let (body, rest) = upload_stream(req, failed.clone());
                let out = async {
                    let (len, body) = match parts {
                        Some(b) => {
                            let (len, part) = multipart::file_part(body, &b, len).await?;
                            (len, part.boxed())
                        }
                        None => (len, body.map(|r| r.map_err(std::io::Error::other)).boxed()),
                    };
                    let flag = failed.clone();
                    let body = body.inspect(move |r| {
                        if r.is_err() {
                            flag.store(true, Ordering::SeqCst);
                        }
                    });
                    let (head, body) = peek(body, 512).await;
                    let size = if format == "vhd" {
                        vhd_size(&head, len)?
                    } else {
                        len.ok_or_else(|| {
                            ApiError::invalid_parameters_message("missing Content-Length")
                        })?
                    };
                    let rec = json!({
                        "name_label": name, "name_description": description, "SR": sr_ref,
                        "virtual_size": size, "type": "user", "sharable": false, "read_only": false,
                        "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": [],
                    });
                    let vdi = client
                        .call("VDI.create", vec![rec])
                        .await
                        .map_err(|e| pools.map_error(e))?;
                    let vdi = vdi
                        .as_str()
                        .ok_or_else(|| ApiError::internal(format!("expected a ref, got {vdi}")))?
                        .to_owned();
                    let sent = upload_through_task(
                        &pools,
                        &client,
                        UploadTarget {
                            label: "[XO] VDI import",
                            method: None,
                            path: "/import_raw_vdi",
                            query: vec![("vdi", vdi.clone()), ("format", format.to_owned())],
                        },
                        len,
                        body,
                        &failed,
                    )
                    .await;
                    let uuid = match sent {
                        Ok(_) => client
                            .call("VDI.get_uuid", vec![vdi.clone().into()])
                            .await
                            .map_err(|e| pools.map_error(e)),
                        Err(e) => Err(e),
                    };
                    if uuid.is_err() {
                        // no leftover on failure
                        let _ = client.call("VDI.destroy", vec![vdi.into()]).await;
                    }
                    uuid
                }
                .await;
                rest.drain().await;
                rpc_answer(out, admin)
            })
        }),
    );
    Ok(json!({ "$sendTo": path }))
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("disk.import", import).params(schema(
                r#"{"description": {"type": "string", "minLength": 0, "optional": true}, "name": {"type": "string"}, "sr": {"type": "string"}, "url": {"type": "string", "optional": true}, "type": {"type": "string"}, "vmdkData": {"type": "object", "optional": true, "properties": {"capacity": {"type": "integer"}}}}"#,
            )),
        Method::new("disk.exportContent", export_content)
            .description("export the content of a VDI")
            .params(schema(
                r#"{"id": {"type": "string"}, "format": {"enum": ["vmdk", "vhd", "qcow2"], "optional": true}, "preferNbd": {"type": "boolean", "optional": true}, "nbdConcurrency": {"type": "number", "optional": true}}"#,
            )),
        Method::new("disk.importContent", import_content)
            .description("import contents into a VDI")
            .params(schema(
                r#"{"id": {"type": "string"}, "format": {"type": "string", "optional": true, "default": "vhd"}}"#,
            )),
    ]
}
