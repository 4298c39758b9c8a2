//! `vm.export` / `vm.import` through one-shot URLs (xo-api.md §2.2-2.3) and the cross-pool branch of `vm.copy`
//! (an XVA export of one pool piped into an import of the other). Bytes stream through xo-server with bounded
//! memory, never staged on disk: downloads are handed over in chunks of at most 256 KiB, and a pool-to-pool copy
//! moves the export's bytes into the import's connection with `splice(2)` when both are plain TCP (Linux). Every transfer runs inside an XAPI
//! task made for it (progress visible in the task objects); a download or upload broken by the client cancels the
//! task, and an import is answered only once XAPI has finished it (so a failed one has been rolled back). A running
//! VM is exported as XO does it, through a snapshot `[XO Export] <name>` taken when the download starts and
//! destroyed with its disks once the export's task is over.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use serde_json::{json, Map, Value};
use xapi_client::{task_outcome, Client, Ref};

use super::opt_str;
use super::resolve::{r, resolve, s, schema, spec_of, Resolve, Xapi};
use super::upload_body::upload_stream;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;
use crate::transfer::Transfers;
use crate::xapi::{Pools, XoObject};

/// `resolve` entries of the methods of this file.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    (
        "vm.export",
        &[r("vm", "vm", &["VM", "VM-snapshot"], "administrate")],
    ),
    ("vm.import", &[r("sr", "sr", &["SR"], "administrate")]),
];

/// The `use_compression` value of XO's `compress` param (`true`/`'gzip'` → gzip, `'zstd'`, else none).
fn compression(p: &Map<String, Value>) -> &'static str {
    match p.get("compress") {
        Some(Value::Bool(true)) => "true",
        Some(Value::String(s)) if s == "gzip" || s == "true" => "true",
        Some(Value::String(s)) if s == "zstd" => "zstd",
        _ => "false",
    }
}

/// Work to do once a transfer's XAPI task is over (e.g. destroying the snapshot it exported).
pub(super) type Then = BoxFuture<'static, ()>;

/// Cancel (when `cancel`) then wait for and destroy a transfer task, then run `then`, in the background.
fn finish_task(client: Arc<Client>, task: Ref, cancel: bool, then: Option<Then>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        if cancel {
            if let Err(e) = client.cancel_task(&task).await {
                tracing::debug!(%task, "task.cancel: {e}");
            }
        }
        let _ = client.wait_task(&task).await;
        if !cancel {
            // a cancelled transfer's task is left for XAPI to collect, so its outcome stays visible
            let _ = client
                .call("task.destroy", vec![task.0.clone().into()])
                .await;
        }
        if let Some(then) = then {
            then.await;
        }
    });
}

/// A download from XAPI handed to the client: when dropped before its end (client gone), the XAPI task is
/// cancelled; at its end the task is awaited and destroyed.
pub(super) struct GuardedDownload<S> {
    inner: S,
    client: Arc<Client>,
    task: Option<Ref>,
    then: Option<Then>,
}

impl<S> GuardedDownload<S> {
    pub(super) fn new(inner: S, client: Arc<Client>, task: Ref, then: Option<Then>) -> Self {
        GuardedDownload {
            inner,
            client,
            task: Some(task),
            then,
        }
    }

    /// Finish the task (cancelling it when `cancel`), then run `then`.
    fn finish(&mut self, cancel: bool) {
        if let Some(t) = self.task.take() {
            finish_task(self.client.clone(), t, cancel, self.then.take());
        }
    }
}

impl<S: Stream<Item = xapi_client::Result<Bytes>> + Unpin> Stream for GuardedDownload<S> {
    type Item = xapi_client::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.inner.poll_next_unpin(cx);
        match &next {
            Poll::Ready(None) => self.finish(false),
            Poll::Ready(Some(Err(_))) => self.finish(true),
            _ => {}
        }
        next
    }
}

impl<S> Drop for GuardedDownload<S> {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            tracing::debug!(task = %t, "download abandoned by the client: cancelling the XAPI task");
        }
        self.finish(true);
    }
}

/// `Content-Length` of a request.
pub(super) fn content_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// XO's answer to an upload: a JSON-RPC response string (`500` + JSON-RPC error on failure).
pub(super) fn rpc_answer(result: Result<Value, ApiError>, admin: bool) -> Response {
    match result {
        Ok(v) => (
            [(header::CONTENT_TYPE, "application/json")],
            json!({"id": 0, "jsonrpc": "2.0", "result": v}).to_string(),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"id": 0, "jsonrpc": "2.0", "error": e.to_json(admin)}).to_string(),
        )
            .into_response(),
    }
}

/// Streams a GET of `path` on the pool of `client` to the HTTP client, inside a task labelled `label`; `then`
/// runs once that task is over (the download ended, failed or was abandoned), or at once if it never started.
pub(super) async fn download_response(
    pools: Arc<Pools>,
    client: Arc<Client>,
    label: &'static str,
    path: &'static str,
    query: Vec<(&'static str, String)>,
    disposition: String,
    then: Option<Then>,
) -> Response {
    let task = match client.create_task(label, "").await {
        Ok(t) => t,
        Err(e) => {
            if let Some(then) = then {
                then.await;
            }
            return error_response(&pools, e);
        }
    };
    let mut q = query;
    q.push(("task_id", task.0.clone()));
    match client.get_resource(path, &q).await {
        Ok(d) => {
            let len = d.content_length;
            let stream = GuardedDownload::new(d.into_stream(), client, task, then);
            let mut resp = Body::from_stream(stream).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(v) = header::HeaderValue::from_str(&disposition) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            if let Some(l) = len {
                h.insert(header::CONTENT_LENGTH, l.into());
            }
            resp
        }
        Err(e) => {
            finish_task(client, task, true, then);
            error_response(&pools, e)
        }
    }
}

/// Whether XO exports `vm` through a snapshot (`isVmRunning`: running or paused).
fn exported_through_snapshot(vm: &XoObject) -> bool {
    matches!(s(vm, "power_state"), "Running" | "Paused")
}

/// What an export of the VM `vm_ref` reads, as XO's `VM_export`: the VM itself, or when `running` a fresh
/// snapshot `[XO Export] <name_label>` and the work that destroys it with its disks once the export's task is over
/// (ended, failed or abandoned by the client).
async fn export_source(
    x: Xapi,
    vm_ref: String,
    name_label: &str,
    running: bool,
) -> Result<(String, Option<Then>), ApiError> {
    if !running {
        return Ok((vm_ref, None));
    }
    let snap = x
        .call_async(
            "VM.snapshot",
            vec![
                vm_ref.into(),
                format!("[XO Export] {name_label}").into(),
                Value::Array(Vec::new()),
            ],
        )
        .await?;
    let snap = super::vm::as_ref(snap, "VM.snapshot")?;
    let destroy: Then = Box::pin({
        let snap = snap.clone();
        async move {
            if let Err(e) = super::vm::vm_destroy(&x, snap, super::vm::DestroyOpts::default()).await
            {
                tracing::warn!("export: destroying the exported snapshot failed: {e}");
            }
        }
    });
    Ok((snap, Some(destroy)))
}

fn error_response(pools: &Pools, e: xapi_client::Error) -> Response {
    tracing::debug!("transfer failed: {e}");
    let status = match &e {
        xapi_client::Error::Http { status, .. } if *status == 404 => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let _ = pools;
    (status, "unknown error\n").into_response()
}

/// Where an upload goes: task label, XAPI method typing the task result, path and query.
#[derive(Debug)]
pub(super) struct UploadTarget {
    pub label: &'static str,
    pub method: Option<&'static str>,
    pub path: &'static str,
    pub query: Vec<(&'static str, String)>,
}

/// Upload `body` to `target.path` inside a fresh task and return the task's outcome once XAPI finished it (`method`
/// types the result). A body broken by the client cancels the task.
pub(super) async fn upload_through_task<S, E>(
    pools: &Pools,
    client: &Arc<Client>,
    target: UploadTarget,
    length: Option<u64>,
    body: S,
    source_failed: &AtomicBool,
) -> Result<Value, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: std::fmt::Display,
{
    let path = target.path;
    upload_through_task_with(pools, client, target, source_failed, |q| async move {
        client.put_resource(path, &q, length, body).await.map(drop)
    })
    .await
}

/// [`upload_through_task`] with the upload done by `send` (given the query, `task_id` included).
pub(super) async fn upload_through_task_with<F, Fut>(
    pools: &Pools,
    client: &Arc<Client>,
    target: UploadTarget,
    source_failed: &AtomicBool,
    send: F,
) -> Result<Value, ApiError>
where
    F: FnOnce(Vec<(&'static str, String)>) -> Fut,
    Fut: std::future::Future<Output = xapi_client::Result<()>>,
{
    let UploadTarget {
        label,
        method,
        path: _,
        query,
    } = target;
    let task = client
        .create_task(label, "")
        .await
        .map_err(|e| pools.map_error(e))?;
    let mut q = query;
    q.push(("task_id", task.0.clone()));
    let sent = send(q).await;
    if let Err(e) = &sent {
        tracing::debug!(%task, "upload ended with {e}");
        if source_failed.load(Ordering::SeqCst) || !matches!(e, xapi_client::Error::Transport(_)) {
            // the source broke, or XAPI refused the request: make sure the operation stops
            let _ = client.cancel_task(&task).await;
        }
    }
    // XAPI finishes the task once the import ended (rolled back on failure)
    let rec = client.wait_task(&task).await;
    let _ = client
        .call("task.destroy", vec![task.0.clone().into()])
        .await;
    let out = rec
        .and_then(|rec| task_outcome(method, &rec))
        .map_err(|e| pools.map_error(e));
    match (sent, out) {
        (Err(e), Err(_)) if source_failed.load(Ordering::SeqCst) => Err(ApiError::internal(
            format!("upload interrupted by the client: {e}"),
        )),
        (_, out) => out,
    }
}

/// The first VM ref of an import's result, as a uuid.
async fn imported_vm_uuid(pools: &Pools, client: &Client, out: Value) -> Result<String, ApiError> {
    let vm = out
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .or_else(|| out.as_str())
        .ok_or_else(|| ApiError::internal(format!("unexpected import result {out}")))?
        .to_owned();
    match client
        .call("VM.get_uuid", vec![vm.into()])
        .await
        .map_err(|e| pools.map_error(e))?
    {
        Value::String(u) => Ok(u),
        other => Err(ApiError::internal(format!("bad uuid {other}"))),
    }
}

/// `2026-08-21T10_00_00Z` for file names.
fn file_date() -> String {
    let iso = super::vm::iso_date(crate::now_ms());
    format!("{}Z", &iso[..19]).replace(':', "_")
}

async fn export(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "vm.export")).await?;
    let vm = res.get("vm")?.clone();
    if opt_str(&p, "format") == Some("ova") {
        // OVA generation is not part of this server
        return Err(ApiError::not_implemented());
    }
    // a running VM is exported through a snapshot, which needs `operate` on its disks' SRs (as XO)
    let running = exported_through_snapshot(&vm);
    if running {
        super::vm::check_permission_on_srs(&ctx, &res.pools, &vm)?;
    }
    let x = Xapi::of(&res.pools, &vm)?;
    let name = format!("{} - {}.xva", file_date(), s(&vm, "name_label"));
    let disposition = format!("attachment; filename=\"{}\"", name.replace('"', "'"));
    let compression = compression(&p);
    let (vm_ref, name_label) = (vm.xapi_ref().to_owned(), s(&vm, "name_label").to_owned());
    let path = Transfers::of(&ctx.app).register(
        Some(&name),
        Box::new(move |_req| {
            Box::pin(async move {
                let (pools, client) = (x.pools.clone(), x.client.raw().clone());
                let (source, then) = match export_source(x, vm_ref, &name_label, running).await {
                    Ok(s) => s,
                    Err(e) => {
                        // as XO, the answer does not tell XAPI's details to whoever holds the URL
                        tracing::debug!("export: snapshotting the running VM failed: {e}");
                        return (StatusCode::INTERNAL_SERVER_ERROR, "unknown error\n")
                            .into_response();
                    }
                };
                let query = vec![("ref", source), ("use_compression", compression.to_owned())];
                download_response(
                    pools,
                    client,
                    "[XO] VM export",
                    "/export",
                    query,
                    disposition,
                    then,
                )
                .await
            })
        }),
    );
    Ok(json!({ "$getFrom": path }))
}

async fn import(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "vm.import")).await?;
    let sr = res.get("sr")?.clone();
    let kind = opt_str(&p, "type").unwrap_or("xva");
    let url = opt_str(&p, "url").map(str::to_owned);
    if url.is_some() && kind != "xva" {
        return Err(ApiError::invalid_parameters_message(
            "URL import is only compatible with XVA",
        ));
    }
    if kind != "xva" {
        // OVA/VMDK (multipart) imports are not part of this server
        return Err(ApiError::not_implemented());
    }
    if p.get("data").is_some_and(|d| !d.is_null()) {
        return Err(ApiError::invalid_parameters_message(
            "unsupported field data for the file type xva",
        ));
    }
    let x = Xapi::of(&res.pools, &sr)?;
    if x.client.is_read_only() {
        return Err(ApiError::internal(
            "cannot call VM.import() in read only mode",
        ));
    }
    let client = x.client.raw().clone();
    let pools = res.pools.clone();
    let admin = ctx.is_admin();
    let sr_ref = sr.xapi_ref().to_owned();
    if let Some(url) = url {
        return import_from_url(&pools, &client, &url, sr_ref).await;
    }
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
                        label: "[XO] VM import",
                        method: Some("VM.import"),
                        path: "/import",
                        query: vec![("sr_id", sr_ref)],
                    },
                    len,
                    body,
                    &failed,
                )
                .await;
                rest.drain().await;
                let out = match out {
                    Ok(v) => imported_vm_uuid(&pools, &client, v)
                        .await
                        .map(Value::String),
                    Err(e) => Err(e),
                };
                rpc_answer(out, admin)
            })
        }),
    );
    Ok(json!({ "$sendTo": path }))
}

/// `vm.import` with `url`: xo-server downloads the XVA and streams it into an import on `sr_ref` (spliced when
/// both connections are plain TCP), answering the new VM's uuid once XAPI finished (as XO's `VM_import(await
/// hrp(url), sr)`). A failed download fails the call before any import starts; a download cut short fails and
/// rolls back the import.
async fn import_from_url(
    pools: &Arc<Pools>,
    client: &Arc<Client>,
    url: &str,
    sr_ref: String,
) -> Result<Value, ApiError> {
    let download = xapi_client::fetch_url(url).await.map_err(|e| match e {
        xapi_client::Error::Config(m) => ApiError::invalid_parameters_message(m),
        e => ApiError::internal(format!("cannot download {url}: {e}")),
    })?;
    let length = download.content_length;
    let failed = AtomicBool::new(false);
    let out = upload_through_task_with(
        pools,
        client,
        UploadTarget {
            label: "[XO] VM import",
            method: Some("VM.import"),
            path: "/import",
            query: vec![("sr_id", sr_ref)],
        },
        &failed,
        |q| {
            let failed = &failed;
            async move {
                let piped = client.put_download("/import", &q, length, download).await;
                if let Err(xapi_client::Error::Transport(m)) = &piped {
                    // the download broke or was longer/shorter than announced: stop the import
                    if m.contains("transfer body") || m.contains("upload source") {
                        failed.store(true, Ordering::SeqCst);
                    }
                }
                piped.map(drop)
            }
        },
    )
    .await?;
    imported_vm_uuid(pools, client, out)
        .await
        .map(Value::String)
}

/// `vm.copy` to an SR of another pool: the source pool's `/export` piped into the target pool's `/import`, no
/// intermediate file (a running VM through an export snapshot, as XO's `remoteCopyVm`). Returns the new VM's id.
pub(super) async fn copy_across_pools(
    pools: &Arc<Pools>,
    vm: &XoObject,
    sr: &XoObject,
    name: &str,
    compress: &Map<String, Value>,
) -> Result<String, ApiError> {
    let dst = Xapi::of(pools, sr)?;
    let (source, then) = export_source(
        Xapi::of(pools, vm)?,
        vm.xapi_ref().to_owned(),
        s(vm, "name_label"),
        exported_through_snapshot(vm),
    )
    .await?;
    let vm_ref = stream_across_pools(
        pools,
        (vm, &source),
        sr,
        compress,
        ("[XO] VM copy (export)", "[XO] VM copy (import)"),
        then,
    )
    .await?;
    dst.call(
        "VM.set_name_label",
        vec![vm_ref.clone().into(), name.into()],
    )
    .await?;
    if vm.kind() != "VM-template" {
        dst.call(
            "VM.set_is_a_template",
            vec![vm_ref.clone().into(), false.into()],
        )
        .await?;
    }
    dst.wait_object_id("VM", &vm_ref).await
}

/// The source pool's `/export` of `vm` (of the VM whose ref is given with it: itself, or its export snapshot)
/// piped into the `/import` of the pool of `sr` (tasks labelled with the export and import `labels`); `then` runs
/// once the export's task is over. Returns the imported VM's ref; a failed import has been rolled back by XAPI.
pub(super) async fn stream_across_pools(
    pools: &Arc<Pools>,
    (vm, source): (&XoObject, &str),
    sr: &XoObject,
    compress: &Map<String, Value>,
    labels: (&'static str, &'static str),
    then: Option<Then>,
) -> Result<String, ApiError> {
    let ready = async {
        let src = Xapi::of(pools, vm)?;
        let dst = Xapi::of(pools, sr)?;
        if dst.client.is_read_only() {
            return Err(ApiError::internal(
                "cannot call VM.import() in read only mode",
            ));
        }
        let (sc, dc) = (src.client.raw().clone(), dst.client.raw().clone());
        let task = sc
            .create_task(labels.0, "")
            .await
            .map_err(|e| pools.map_error(e))?;
        Ok((sc, dc, task))
    };
    let (sc, dc, task) = match ready.await {
        Ok(r) => r,
        Err(e) => {
            if let Some(then) = then {
                then.await;
            }
            return Err(e);
        }
    };
    let query = vec![
        ("ref", source.to_owned()),
        ("use_compression", compression(compress).to_owned()),
        ("task_id", task.0.clone()),
    ];
    let download = match sc.get_resource("/export", &query).await {
        Ok(d) => d,
        Err(e) => {
            finish_task(sc, task, true, then);
            return Err(pools.map_error(e));
        }
    };
    // the export's body goes to the import socket to socket (spliced when both are plain TCP); the export task is
    // cancelled unless the import read it to its end
    let failed = AtomicBool::new(false);
    let export_ended = AtomicBool::new(false);
    let out = upload_through_task_with(
        pools,
        &dc,
        UploadTarget {
            label: labels.1,
            method: Some("VM.import"),
            path: "/import",
            query: vec![("sr_id", sr.xapi_ref().to_owned())],
        },
        &failed,
        |q| {
            let (dc, export_ended) = (&dc, &export_ended);
            async move {
                let piped = dc.put_download("/import", &q, None, download).await?;
                export_ended.store(piped.source_ended, Ordering::SeqCst);
                Ok(())
            }
        },
    )
    .await;
    finish_task(sc, task, !export_ended.load(Ordering::SeqCst), then);
    let out = out?;
    let vm_ref = out
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::internal(format!("unexpected import result {out}")))?
        .to_owned();
    Ok(vm_ref)
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("vm.export", export)
            .params(schema(
            r#"{"vm": {"type": "string"}, "compress": {"type": ["boolean", "string"], "optional": true}, "format": {"enum": ["xva", "ova"], "optional": true}}"#,
        )),
        Method::new("vm.import", import).params(schema(
            r#"{"data": {"type": "object", "optional": true, "properties": {"descriptionLabel": {"type": "string", "minLength": 0}, "disks": {"type": "array", "items": {"type": "object", "properties": {"capacity": {"type": "integer"}, "descriptionLabel": {"type": "string", "minLength": 0}, "nameLabel": {"type": "string"}, "path": {"type": "string"}, "position": {"type": "integer"}}}, "optional": true}, "memory": {"type": "integer"}, "nameLabel": {"type": "string"}, "nCpus": {"type": "integer"}, "networks": {"type": "array", "items": {"type": "string"}, "optional": true}}, "additionalProperties": true}, "type": {"type": "string", "optional": true}, "sr": {"type": "string"}, "url": {"type": "string", "optional": true}}"#,
        )),
    ]
}
