//! `vm.stats`, `host.stats`, `sr.stats` (XO's `xapi-stats.mjs`): XAPI `/rrd_updates` (JSON) fetched per pool and
//! granularity (`seconds`/`minutes`/`hours`/`days` → steps 5/60/3600/86400 s), kept server-side in compact form
//! (per object uuid, metric name → `f32` column) for one step (at most a minute), and shaped like XO:
//! `{endTimestamp, interval, stats: {cpus: {<n>: […]}, memory, memoryFree, vifs: {rx: {<n>}, tx}, xvds: {r:
//! {<letter>}, w}, iops, …}}`. Values follow XO's scaling (CPU ×100, KiB → bytes, throughput MiB → bytes,
//! latency ms → s, iowait ×100); NaN becomes `null`. `sr.stats` merges the stats of every host with a PBD of
//! the SR.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use xapi_client::Client;

use super::opt_str;
use super::resolve::{r, resolve, s, schema, spec_of, strs, Resolve, Xapi};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;
use crate::xapi::Pools;

/// `resolve` entries of the methods of this file.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    ("host.stats", &[r("host", "host", &["host"], "view")]),
    ("sr.stats", &[r("sr", "id", &["SR"], "view")]),
    ("vm.stats", &[r("vm", "id", &["VM", "VM-snapshot"], "view")]),
];

/// Step (s) and rows asked for of a granularity.
fn step_of(granularity: Option<&str>) -> Result<(i64, i64), ApiError> {
    match granularity.unwrap_or("seconds") {
        "seconds" => Ok((5, 120)),
        "minutes" => Ok((60, 120)),
        "hours" => Ok((3600, 168)),
        "days" => Ok((86400, 366)),
        other => Err(ApiError::invalid_parameters_message(format!(
            "unknown granularity {other}"
        ))),
    }
}

/// One parsed `/rrd_updates` answer: per object uuid, metric name → column (oldest first).
#[derive(Debug, Default)]
pub struct RrdTable {
    /// `meta.end`.
    pub end: i64,
    /// `meta.step`.
    pub step: i64,
    /// `vm`/`host` uuid → metric → values.
    pub objects: HashMap<String, HashMap<String, Vec<f32>>>,
}

/// Cache entries: (server id, host address (empty: the pool URL's host), step) → (fetched at, table).
type Entries = HashMap<(String, String, i64), (Instant, Arc<RrdTable>)>;

/// Cached tables by (server id, host address, step), fetched at most once per step (capped at a minute). XAPI
/// serves each host's RRDs (its own metrics and those of the VMs resident on it) on that host.
#[derive(Debug, Default)]
pub struct StatsCache {
    entries: Mutex<Entries>,
}

fn num(v: &Value) -> f32 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN) as f32,
        Value::String(s) => s.trim().parse::<f64>().unwrap_or(f64::NAN) as f32,
        _ => f32::NAN,
    }
}

/// Parse the JSON form of `/rrd_updates` (legend `AVERAGE:vm:<uuid>:<name>`; rows newest first, as XAPI sends).
pub fn parse_rrd_updates(text: &str) -> Result<RrdTable, ApiError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::internal(format!("bad rrd_updates answer: {e}")))?;
    let meta = v
        .get("meta")
        .ok_or_else(|| ApiError::internal("rrd_updates answer without meta"))?;
    let legend: Vec<&str> = meta
        .get("legend")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut rows: Vec<(i64, &Vec<Value>)> = v
        .get("data")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| Some((r.get("t")?.as_i64()?, r.get("values")?.as_array()?)))
                .collect()
        })
        .unwrap_or_default();
    rows.sort_by_key(|(t, _)| *t);
    let mut t = RrdTable {
        end: meta.get("end").and_then(Value::as_i64).unwrap_or(0),
        step: meta.get("step").and_then(Value::as_i64).unwrap_or(0),
        objects: HashMap::new(),
    };
    for (i, l) in legend.iter().enumerate() {
        let mut parts = l.splitn(4, ':');
        let (Some(_cf), Some(_owner), Some(uuid), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let col: Vec<f32> = rows
            .iter()
            .map(|(_, vals)| vals.get(i).map_or(f32::NAN, num))
            .collect();
        t.objects
            .entry(uuid.to_owned())
            .or_default()
            .insert(name.to_owned(), col);
    }
    Ok(t)
}

impl StatsCache {
    fn of(app: &crate::app::App) -> Arc<StatsCache> {
        if let Some(c) = app.extension::<StatsCache>() {
            return c;
        }
        let c = Arc::new(StatsCache::default());
        app.set_extension(c.clone());
        app.extension::<StatsCache>().unwrap_or(c)
    }

    async fn table(
        &self,
        pools: &Pools,
        server: &str,
        client: &Client,
        address: Option<&str>,
        step: i64,
        rows: i64,
    ) -> Result<Arc<RrdTable>, ApiError> {
        let ttl = Duration::from_secs(step.clamp(5, 60) as u64);
        let key = (
            server.to_owned(),
            address.unwrap_or_default().to_owned(),
            step,
        );
        if let Some((at, t)) = self.entries.lock().get(&key) {
            if at.elapsed() < ttl {
                return Ok(t.clone());
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let query = vec![
            ("start", (now - step * rows).to_string()),
            ("cf", "AVERAGE".to_owned()),
            ("interval", step.to_string()),
            ("host", "true".to_owned()),
            ("json", "true".to_owned()),
        ];
        let d = client
            .get_resource_on(address, "/rrd_updates", &query)
            .await
            .map_err(|e| pools.map_error(e))?;
        let body = http_body_util_collect(d).await?;
        let table = Arc::new(parse_rrd_updates(&body)?);
        self.entries
            .lock()
            .insert(key, (Instant::now(), table.clone()));
        Ok(table)
    }
}

/// Read a (small) RRD answer (capped at 64 MiB).
async fn http_body_util_collect(d: xapi_client::Download) -> Result<String, ApiError> {
    use futures::StreamExt;
    let mut s = d.into_stream();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        let c = c.map_err(|e| ApiError::internal(format!("reading rrd_updates: {e}")))?;
        if out.len() + c.len() > 64 << 20 {
            return Err(ApiError::internal("rrd_updates answer too large"));
        }
        out.extend_from_slice(&c);
    }
    String::from_utf8(out).map_err(|_| ApiError::internal("rrd_updates answer is not UTF-8"))
}

/// A column as JSON (NaN → null), scaled.
fn col(v: &[f32], scale: f64) -> Value {
    Value::Array(
        v.iter()
            .map(|x| {
                if x.is_finite() {
                    json!(f64::from(*x) * scale)
                } else {
                    Value::Null
                }
            })
            .collect(),
    )
}

/// Insert `value` at `path` (objects created on the way).
fn put(stats: &mut Map<String, Value>, path: &[&str], value: Value) {
    let (last, init) = path.split_last().expect("non-empty path");
    let mut cur = stats;
    for k in init {
        cur = cur
            .entry((*k).to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("stats nodes are objects");
    }
    cur.insert((*last).to_owned(), value);
}

/// XO's VM stats from a VM's metrics.
pub fn vm_stats(m: &HashMap<String, Vec<f32>>) -> Map<String, Value> {
    let mut st = Map::new();
    for (name, v) in m {
        let n = name.as_str();
        if let Some(i) = n.strip_prefix("cpu").filter(|i| i.parse::<u32>().is_ok()) {
            put(&mut st, &["cpus", i], col(v, 100.0));
        } else if n == "memory" {
            put(&mut st, &["memory"], col(v, 1.0));
        } else if n == "memory_internal_free" {
            put(&mut st, &["memoryFree"], col(v, 1024.0));
        } else if let Some(rest) = n.strip_prefix("vif_") {
            if let Some(i) = rest.strip_suffix("_rx") {
                put(&mut st, &["vifs", "rx", i], col(v, 1.0));
            } else if let Some(i) = rest.strip_suffix("_tx") {
                put(&mut st, &["vifs", "tx", i], col(v, 1.0));
            }
        } else if let Some(rest) = n.strip_prefix("vbd_xvd") {
            let (letter, metric) = rest.split_at(rest.len().min(1));
            let target: Option<(&str, &str, f64)> = match metric {
                "_read" => Some(("xvds", "r", 1.0)),
                "_write" => Some(("xvds", "w", 1.0)),
                "_iops_read" => Some(("iops", "r", 1.0)),
                "_iops_write" => Some(("iops", "w", 1.0)),
                "_iops_total" => Some(("iops", "total", 1.0)),
                "_read_latency" => Some(("latency", "r", 1e-3)),
                "_write_latency" => Some(("latency", "w", 1e-3)),
                _ => None,
            };
            if let Some((a, b, k)) = target {
                put(&mut st, &[a, b, letter], col(v, k));
            }
        }
    }
    st
}

/// XO's host stats from a host's metrics.
pub fn host_stats(m: &HashMap<String, Vec<f32>>) -> Map<String, Value> {
    let mut st = Map::new();
    for (name, v) in m {
        let n = name.as_str();
        if let Some(i) = n.strip_prefix("cpu").filter(|i| i.parse::<u32>().is_ok()) {
            put(&mut st, &["cpus", i], col(v, 100.0));
        } else if n == "loadavg" {
            put(&mut st, &["load"], col(v, 1.0));
        } else if n == "memory_total_kib" {
            put(&mut st, &["memory"], col(v, 1024.0));
        } else if n == "memory_free_kib" {
            put(&mut st, &["memoryFree"], col(v, 1024.0));
        } else if let Some(rest) = n.strip_prefix("pif_") {
            if rest.starts_with("aggr") {
                continue;
            }
            if let Some(d) = rest.strip_suffix("_rx") {
                put(
                    &mut st,
                    &["pifs", "rx", d.trim_start_matches("eth")],
                    col(v, 1.0),
                );
            } else if let Some(d) = rest.strip_suffix("_tx") {
                put(
                    &mut st,
                    &["pifs", "tx", d.trim_start_matches("eth")],
                    col(v, 1.0),
                );
            }
        } else {
            let per_sr: &[(&str, &str, &str, f64)] = &[
                ("iops_read_", "iops", "r", 1.0),
                ("iops_write_", "iops", "w", 1.0),
                ("io_throughput_read_", "ioThroughput", "r", 1_048_576.0),
                ("io_throughput_write_", "ioThroughput", "w", 1_048_576.0),
                ("read_latency_", "latency", "r", 1e-3),
                ("write_latency_", "latency", "w", 1e-3),
            ];
            if let Some((sr, a, b, k)) = per_sr
                .iter()
                .find_map(|(p, a, b, k)| n.strip_prefix(p).map(|sr| (sr, *a, *b, *k)))
            {
                put(&mut st, &[a, b, sr], col(v, k));
            } else if let Some(sr) = n.strip_prefix("iowait_") {
                put(&mut st, &["iowait", sr], col(v, 100.0));
            }
        }
    }
    st
}

fn answer(t: &RrdTable, stats: Map<String, Value>) -> Value {
    json!({"endTimestamp": t.end, "interval": t.step, "stats": stats})
}

async fn fetch(
    ctx: &Ctx,
    pools: &Arc<Pools>,
    obj: &crate::xapi::XoObject,
    host: Option<&crate::xapi::XoObject>,
    granularity: Option<&str>,
) -> Result<Arc<RrdTable>, ApiError> {
    let (step, rows) = step_of(granularity)?;
    let x = Xapi::of(pools, obj)?;
    let address = host.map(|h| s(h, "address")).filter(|a| !a.is_empty());
    StatsCache::of(&ctx.app)
        .table(
            pools,
            x.client.server_id(),
            x.client.raw(),
            address,
            step,
            rows,
        )
        .await
}

/// The host a VM runs on (its `$container` when that is a host), whose RRDs hold the VM's metrics.
fn resident_host(pools: &Pools, vm: &crate::xapi::XoObject) -> Option<Arc<crate::xapi::XoObject>> {
    pools
        .object(s(vm, "$container"))
        .filter(|h| h.kind() == "host")
}

async fn vm_stats_method(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "vm.stats")).await?;
    let vm = res.get("vm")?.clone();
    let host = resident_host(&res.pools, &vm);
    let t = fetch(
        &ctx,
        &res.pools,
        &vm,
        host.as_deref(),
        opt_str(&p, "granularity"),
    )
    .await?;
    let uuid = s(&vm, "uuid");
    let uuid = if uuid.is_empty() { vm.id() } else { uuid };
    let stats = t.objects.get(uuid).map(vm_stats).unwrap_or_default();
    Ok(answer(&t, stats))
}

async fn host_stats_method(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "host.stats")).await?;
    let host = res.get("host")?.clone();
    let t = fetch(
        &ctx,
        &res.pools,
        &host,
        Some(&host),
        opt_str(&p, "granularity"),
    )
    .await?;
    let uuid = s(&host, "uuid");
    let uuid = if uuid.is_empty() { host.id() } else { uuid };
    let stats = t.objects.get(uuid).map(host_stats).unwrap_or_default();
    Ok(answer(&t, stats))
}

/// Sum (iops, throughput) or mean (latency) of per-host columns.
fn combine(cols: &[&Value], mean: bool) -> Value {
    let arrays: Vec<&Vec<Value>> = cols.iter().filter_map(|c| c.as_array()).collect();
    let len = arrays.iter().map(|a| a.len()).max().unwrap_or(0);
    let out: Vec<Value> = (0..len)
        .map(|i| {
            let vals: Vec<f64> = arrays
                .iter()
                .filter_map(|a| a.get(i).and_then(Value::as_f64))
                .collect();
            if vals.is_empty() {
                Value::Null
            } else {
                let sum: f64 = vals.iter().sum();
                json!(if mean { sum / vals.len() as f64 } else { sum })
            }
        })
        .collect();
    Value::Array(out)
}

/// The hosts of an SR's PBDs, each once, in PBD order (XO's `uniq(map(sr.$PBDs, 'host'))`).
fn sr_hosts(pools: &Pools, sr: &crate::xapi::XoObject) -> Vec<Arc<crate::xapi::XoObject>> {
    let mut hosts: Vec<Arc<crate::xapi::XoObject>> = Vec::new();
    for pbd in strs(sr, "$PBDs") {
        let Some(host) = pools
            .object(&pbd)
            .and_then(|pbd| pools.object(s(&pbd, "host")))
            .filter(|h| h.kind() == "host")
        else {
            continue;
        };
        if !hosts.iter().any(|h| h.id() == host.id()) {
            hosts.push(host);
        }
    }
    hosts
}

/// `sr.stats` as XO's `getSrStats`: the stats of every host with a PBD of the SR (each host's own
/// `/rrd_updates`, fetched concurrently and cached per host), then per SR metric (`<name>_<first 8 chars of the
/// uuid>`) the hosts' columns summed (iops, throughput) or averaged (latency), and iowait per host name.
async fn sr_stats_method(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "sr.stats")).await?;
    let sr = res.get("sr")?.clone();
    let granularity = opt_str(&p, "granularity");
    let (step, _) = step_of(granularity)?;
    let hosts = sr_hosts(&res.pools, &sr);
    let tables = futures::future::try_join_all(
        hosts
            .iter()
            .map(|h| fetch(&ctx, &res.pools, &sr, Some(h.as_ref()), granularity)),
    )
    .await?;
    let short: String = s(&sr, "uuid").chars().take(8).collect();
    // (host name, host stats) of the hosts whose RRDs the answer covers
    let per_host: Vec<(String, Map<String, Value>)> = hosts
        .iter()
        .zip(&tables)
        .map(|(h, t)| {
            let stats = t.objects.get(s(h, "uuid")).map(host_stats);
            (s(h, "name_label").to_owned(), stats.unwrap_or_default())
        })
        .collect();
    let pick = |a: &str, b: &str| -> Vec<&Value> {
        per_host
            .iter()
            .filter_map(|(_, st)| st.get(a)?.get(b)?.get(&short))
            .collect()
    };
    let mut stats = Map::new();
    for (a, mean) in [("iops", false), ("ioThroughput", false), ("latency", true)] {
        put(&mut stats, &[a, "r"], combine(&pick(a, "r"), mean));
        put(&mut stats, &[a, "w"], combine(&pick(a, "w"), mean));
    }
    let iowait: Map<String, Value> = per_host
        .iter()
        .filter_map(|(h, st)| Some((h.clone(), st.get("iowait")?.get(&short)?.clone())))
        .collect();
    stats.insert("iowait".into(), Value::Object(iowait));
    let now = crate::now_ms() / 1000;
    let ends = tables.iter().map(|t| t.end);
    Ok(json!({
        "endTimestamp": ends.clone().max().unwrap_or(now),
        "interval": tables.first().map_or(step, |t| t.step),
        "localTimestamp": ends.min().unwrap_or(now),
        "stats": stats,
    }))
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("vm.stats", vm_stats_method)
            .description("returns statistics about the VM")
            .params(schema(
                r#"{"id": {"type": "string"}, "granularity": {"type": "string", "optional": true}}"#,
            )),
        Method::new("host.stats", host_stats_method)
            .description("returns statistic of the host")
            .params(schema(
                r#"{"host": {"type": "string"}, "granularity": {"type": "string", "optional": true}}"#,
            )),
        Method::new("sr.stats", sr_stats_method)
            .description("returns statistic of the sr")
            .params(schema(
                r#"{"id": {"type": "string"}, "granularity": {"type": "string", "optional": true}}"#,
            )),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_shapes_vm_metrics() {
        let text = r#"{"meta":{"start":0,"step":5,"end":10,"rows":2,"columns":4,
            "legend":["AVERAGE:vm:u1:cpu0","AVERAGE:vm:u1:memory_internal_free","AVERAGE:vm:u1:vif_0_rx","AVERAGE:vm:u1:vbd_xvda_read"]},
            "data":[{"t":10,"values":["0.5","2","3","NaN"]},{"t":5,"values":[0.25,1,1,4]}]}"#;
        let t = parse_rrd_updates(text).unwrap();
        let st = vm_stats(&t.objects["u1"]);
        assert_eq!(st["cpus"]["0"], json!([25.0, 50.0]));
        assert_eq!(st["memoryFree"], json!([1024.0, 2048.0]));
        assert_eq!(st["vifs"]["rx"]["0"], json!([1.0, 3.0]));
        assert_eq!(st["xvds"]["r"]["a"], json!([4.0, null]));
        assert!(parse_rrd_updates("nope").is_err());
        assert!(step_of(Some("weeks")).is_err());
    }
}
