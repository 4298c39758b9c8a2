//! XAPI's non-RPC transfer handlers (spec §6): `/export`, `/export_metadata` and `/import` (XVA, §6.3 and §7),
//! `/export_raw_vdi` and `/import_raw_vdi` (§6.4), and the RRD endpoints (`/rrd_updates`, `/host_rrd`, §6.2, served by [`crate::rrd`]).
//!
//! Every handler authenticates like XAPI (`session_id` cookie, then query, then HTTP Basic; 401 otherwise), runs
//! inside the client's `task_id` task (or an internal one) and completes it, and answers with a `task-id` header.
//! Bodies stream both ways with bounded memory: archives are generated / parsed on blocking threads talking to
//! the connection through small channels.

mod body;
pub(crate) mod common;
mod ovaxml;
mod raw;
pub(crate) mod update_upload;
mod vhd;
mod xva_export;
mod xva_import;
mod zstd;

use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use xapi_types::Ref;

use crate::state::PoolState;

pub(crate) use body::{full, Body};

/// Paths served here (with XO's trailing-slash spellings).
const PATHS: &[&str] = &[
    "/export",
    "/export/",
    "/export_metadata",
    "/export_metadata/",
    "/import",
    "/import/",
    "/export_raw_vdi",
    "/export_raw_vdi/",
    "/import_raw_vdi",
    "/import_raw_vdi/",
    "/rrd_updates",
    "/host_rrd",
    "/host_rrds",
    "/vm_rrd",
    "/vm_rrds",
];

/// Whether the request belongs to a transfer handler (POST and OPTIONS stay with the RPC front end).
pub(crate) fn handles(method: &Method, path: &str) -> bool {
    *method != Method::POST && *method != Method::OPTIONS && PATHS.contains(&path)
}

/// Serve one transfer request on `host`.
pub(crate) async fn handle(
    req: Request<Incoming>,
    pool: Arc<PoolState>,
    host: Ref,
) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/export_metadata") => xva_export::handle(req, pool, host, true).await,
        (Method::GET, "/export") => xva_export::handle(req, pool, host, false).await,
        (Method::PUT, "/import") => xva_import::handle(req, pool, host).await,
        (Method::GET, "/export_raw_vdi") => raw::export(req, pool, host).await,
        (Method::PUT, "/import_raw_vdi") => raw::import(req, pool, host).await,
        (Method::GET, "/rrd_updates") => crate::rrd::rrd_updates(req, pool, host).await,
        (Method::GET, "/host_rrd" | "/host_rrds") => crate::rrd::host_rrd(req, pool, host).await,
        (Method::GET, "/vm_rrd" | "/vm_rrds") => crate::rrd::vm_rrd(req, pool, host).await,
        _ => common::status(http::StatusCode::NOT_FOUND, "Not found"),
    }
}
