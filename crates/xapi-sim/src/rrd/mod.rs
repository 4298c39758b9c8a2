//! RRD metrics over HTTP (spec §6.2): `/rrd_updates` (xport deltas, XML or JSON) and the full rrdtool-style
//! dumps `/host_rrd` and `/vm_rrd`, all computed from [`metrics`]' deterministic synthetic sources.

mod dump;
mod format;
pub(crate) mod metrics;

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::Value;
use xapi_types::Ref;

use crate::state::PoolState;
use crate::transfer::common::{status, unauthorised, Head};
use crate::transfer::{full, Body};
use metrics::Source;

/// Archives: (step seconds, rows kept).
pub(crate) const ARCHIVES: [(i64, i64); 4] = [(5, 120), (60, 120), (3600, 168), (86400, 366)];

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// JSON when `Accept` prefers it (or is `*/*`), XML when it names `text/xml`, else by the `json` query key.
fn wants_json(head: &Head) -> bool {
    if let Some(a) = head
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    {
        let a = a.to_ascii_lowercase();
        let j = a.find("application/json");
        let x = a.find("text/xml");
        match (j, x) {
            (Some(j), Some(x)) => return j < x,
            (Some(_), None) => return true,
            (None, Some(_)) => return false,
            _ if a.trim() == "*/*" => return true,
            _ => {}
        }
    }
    head.query.has("json")
}

fn answer(json: bool, body: String) -> Response<Body> {
    let mut r = Response::new(full(Full::new(Bytes::from(body))));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if json { "application/json" } else { "text/xml" }),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// `GET /rrd_updates?start=…[&cf][&interval][&host=true][&json][&vm_uuid=…]*`.
pub(crate) async fn rrd_updates(
    req: Request<Incoming>,
    pool: Arc<PoolState>,
    host: Ref,
) -> Response<Body> {
    let head = Head::of(&req);
    drop(req);
    let Some(caller) = head.authenticate(&pool, &host) else {
        return unauthorised(&pool, &head);
    };
    if caller.temporary {
        pool.destroy_session(&caller.session);
    }
    let Some(start) = head
        .query
        .get("start")
        .and_then(|s| s.trim().parse::<i64>().ok())
    else {
        return status(StatusCode::BAD_REQUEST, "Bad request");
    };
    let cf = match head.query.get("cf").unwrap_or("AVERAGE") {
        c @ ("AVERAGE" | "MIN" | "MAX" | "LAST") => c.to_owned(),
        _ => return status(StatusCode::BAD_REQUEST, "Bad request"),
    };
    let now = now();
    let start = if start < 0 { now + start } else { start };
    let interval = head
        .query
        .get("interval")
        .and_then(|s| s.parse::<i64>().ok());
    let (step, max_rows) = match interval {
        Some(i) => *ARCHIVES
            .iter()
            .find(|(s, _)| *s >= i)
            .unwrap_or(&ARCHIVES[3]),
        None => *ARCHIVES
            .iter()
            .find(|(s, rows)| now - start <= s * rows)
            .unwrap_or(&ARCHIVES[3]),
    };
    let want_host = head.query.flag("host");
    let vm_filter: Vec<String> = head
        .query
        .all("vm_uuid")
        .into_iter()
        .map(str::to_owned)
        .collect();
    let sources: Vec<Source> = pool.read(|db| {
        let mut out = Vec::new();
        if want_host {
            out.extend(metrics::host_sources(db, &host));
        }
        let mut vms: Vec<(String, Ref)> = db
            .all("VM")
            .filter(|(_, v)| v.get("resident_on").and_then(Value::as_str) == Some(host.as_str()))
            .map(|(r, v)| {
                (
                    v.get("uuid")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    r.clone(),
                )
            })
            .filter(|(u, _)| vm_filter.is_empty() || vm_filter.contains(u))
            .collect();
        vms.sort();
        for (_, vm) in vms {
            out.extend(metrics::vm_sources(db, &vm));
        }
        out
    });
    let end = now - now.rem_euclid(step);
    let mut times = Vec::new();
    let mut t = end;
    while t > start && (times.len() as i64) < max_rows {
        times.push(t);
        t -= step;
    }
    let doc = format::Xport {
        start: times.last().copied().unwrap_or(end),
        step,
        end,
        times,
        sources,
        cf,
    };
    let json = wants_json(&head);
    answer(json, if json { doc.json() } else { doc.xml() })
}

/// `GET /host_rrd[?json]`: the full RRD of the host answering.
pub(crate) async fn host_rrd(
    req: Request<Incoming>,
    pool: Arc<PoolState>,
    host: Ref,
) -> Response<Body> {
    let head = Head::of(&req);
    drop(req);
    let Some(caller) = head.authenticate(&pool, &host) else {
        return unauthorised(&pool, &head);
    };
    if caller.temporary {
        pool.destroy_session(&caller.session);
    }
    let sources = pool.read(|db| metrics::host_sources(db, &host));
    let json = wants_json(&head);
    answer(json, dump::render(&sources, now(), json))
}

/// `GET /vm_rrd?uuid=…[&json]`: the full RRD of a VM running here; 302 to its host when it runs elsewhere.
pub(crate) async fn vm_rrd(
    req: Request<Incoming>,
    pool: Arc<PoolState>,
    host: Ref,
) -> Response<Body> {
    let head = Head::of(&req);
    let path_q = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    drop(req);
    let Some(caller) = head.authenticate(&pool, &host) else {
        return unauthorised(&pool, &head);
    };
    if caller.temporary {
        pool.destroy_session(&caller.session);
    }
    let uuid = head.query.get("uuid").unwrap_or_default().to_owned();
    let found = pool.read(|db| {
        let vm = db.find_by_uuid("VM", &uuid)?;
        let resident = Ref::from(
            db.get("VM", &vm)?
                .get("resident_on")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        Some((vm, resident))
    });
    let Some((vm, resident)) = found else {
        return status(StatusCode::NOT_FOUND, "Not found");
    };
    if !resident.is_null() && resident != host {
        let addr = pool.host_address(&resident);
        let mut r = status(StatusCode::FOUND, "");
        if let Ok(v) = HeaderValue::from_str(&format!("https://{addr}{path_q}")) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return r;
    }
    let sources = pool.read(|db| metrics::vm_sources(db, &vm));
    if sources.is_empty() {
        return status(StatusCode::NOT_FOUND, "Not found");
    }
    let json = wants_json(&head);
    answer(json, dump::render(&sources, now(), json))
}
