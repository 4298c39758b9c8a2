//! `disk.exportContent` / `disk.importContent` (xo-api.md §2.2, §3 disk rows): a VDI's content through one-shot
//! URLs, streamed from/to XAPI's `/export_raw_vdi` and `/import_raw_vdi` (VHD by default as in XO; vmdk and qcow2
//! are not generated here). Same task, cancellation and bounded-memory rules as `vm_transfer`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::opt_str;
use super::resolve::{r, resolve, schema, spec_of, Resolve, Xapi};
use super::vm_transfer::{
    content_length, download_response, rpc_answer, upload_stream, upload_through_task, UploadTarget,
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
                let body = upload_stream(req, failed.clone());
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
                rpc_answer(out.map(|_| Value::Bool(true)), admin)
            })
        }),
    );
    Ok(json!({ "$sendTo": path }))
}

pub(super) fn methods() -> Vec<Method> {
    vec![
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
