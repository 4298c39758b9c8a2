//! Synthetic, deterministic metrics: the data sources of a host and of each running VM resident on it, and their
//! values at any time (pseudo-random variation seeded by object uuid, data-source name and timestamp).

use serde_json::Value;
use xapi_types::Ref;

use crate::db::Db;
use crate::state::str_field;

/// What a data source measures (drives its value range).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    /// A fraction 0..1 around a per-object base load.
    Cpu,
    /// A constant (or almost) quantity.
    Const(f64),
    /// Free memory: a fraction of `total`.
    Free(f64),
    /// A rate in units per second, up to the given maximum.
    Rate(f64),
    /// Load average.
    Load,
    /// Latency in ms.
    Latency,
}

/// One data source of one object.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// `host` or `vm` (or `sr`).
    pub owner: &'static str,
    pub uuid: String,
    pub name: String,
    pub kind: Kind,
}

impl Source {
    /// The legend entry `CF:<owner>:<uuid>:<name>`.
    pub(crate) fn legend(&self, cf: &str) -> String {
        format!("{cf}:{}:{}:{}", self.owner, self.uuid, self.name)
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A deterministic number in [0, 1) for (object, source, time).
fn noise(uuid: &str, name: &str, t: i64) -> f64 {
    let h = mix(hash_str(uuid)
        ^ hash_str(name).rotate_left(17)
        ^ (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl Source {
    /// The value at time `t` (averaged over `step` seconds: coarser steps vary less).
    pub(crate) fn value(&self, t: i64, step: i64) -> f64 {
        let base = noise(&self.uuid, &self.name, 0);
        let n = noise(&self.uuid, &self.name, t / step.max(1));
        let damp = match step {
            s if s <= 5 => 1.0,
            s if s <= 60 => 0.6,
            s if s <= 3600 => 0.35,
            _ => 0.2,
        };
        match self.kind {
            Kind::Cpu => (0.02 + base * 0.3 + (n - 0.5) * 0.2 * damp).clamp(0.0, 1.0),
            Kind::Const(v) => v,
            Kind::Free(total) => (total * (0.3 + base * 0.3 + (n - 0.5) * 0.05 * damp))
                .max(0.0)
                .round(),
            Kind::Rate(max) => (max * (base * 0.5 + n * 0.5 * damp)).round(),
            Kind::Load => (base * 1.5 + n * 0.5 * damp).max(0.0),
            Kind::Latency => 0.2 + base * 2.0 + n * damp,
        }
    }
}

fn int(rec: &serde_json::Map<String, Value>, f: &str) -> i64 {
    match rec.get(f) {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn arr(rec: &serde_json::Map<String, Value>, f: &str) -> Vec<Ref> {
    rec.get(f)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(Ref::from).collect())
        .unwrap_or_default()
}

/// Data sources of a host: per-CPU and average load, memory, PIFs, the SRs it has plugged.
pub(crate) fn host_sources(db: &Db, host: &Ref) -> Vec<Source> {
    let Some(h) = db.get("host", host) else {
        return Vec::new();
    };
    let uuid = str_field(db, "host", host, "uuid");
    let mut out = Vec::new();
    let mut add = |name: String, kind: Kind| {
        out.push(Source {
            owner: "host",
            uuid: uuid.clone(),
            name,
            kind,
        })
    };
    let cpus = arr(h, "host_CPUs").len().max(
        h.get("cpu_info")
            .and_then(|c| c.get("cpu_count"))
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    );
    for i in 0..cpus.max(1) {
        add(format!("cpu{i}"), Kind::Cpu);
    }
    add("cpu_avg".into(), Kind::Cpu);
    add("loadavg".into(), Kind::Load);
    let metrics = Ref::from(h.get("metrics").and_then(Value::as_str).unwrap_or_default());
    let total = db
        .get("host_metrics", &metrics)
        .map(|m| int(m, "memory_total"))
        .unwrap_or(0)
        .max(0) as f64
        / 1024.0;
    add("memory_total_kib".into(), Kind::Const(total.round()));
    add("memory_free_kib".into(), Kind::Free(total));
    let mut pifs: Vec<String> = arr(h, "PIFs")
        .iter()
        .filter_map(|p| db.get("PIF", p))
        .map(|p| {
            p.get("device")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        })
        .filter(|d| !d.is_empty())
        .collect();
    pifs.sort();
    pifs.dedup();
    for d in pifs {
        add(format!("pif_{d}_rx"), Kind::Rate(2.0e6));
        add(format!("pif_{d}_tx"), Kind::Rate(2.0e6));
    }
    add("pif_aggr_rx".into(), Kind::Rate(4.0e6));
    add("pif_aggr_tx".into(), Kind::Rate(4.0e6));
    for pbd in arr(h, "PBDs") {
        let Some(p) = db.get("PBD", &pbd) else {
            continue;
        };
        let sr = Ref::from(p.get("SR").and_then(Value::as_str).unwrap_or_default());
        let sr_uuid = str_field(db, "SR", &sr, "uuid");
        if sr_uuid.len() < 8 || str_field(db, "SR", &sr, "content_type") == "iso" {
            continue;
        }
        let s8 = &sr_uuid[..8];
        for (n, k) in [
            ("iops_read", Kind::Rate(300.0)),
            ("iops_write", Kind::Rate(300.0)),
            ("iops_total", Kind::Rate(600.0)),
            ("io_throughput_read", Kind::Rate(20.0)),
            ("io_throughput_write", Kind::Rate(20.0)),
            ("io_throughput_total", Kind::Rate(40.0)),
            ("read_latency", Kind::Latency),
            ("write_latency", Kind::Latency),
            ("latency", Kind::Latency),
            ("iowait", Kind::Cpu),
        ] {
            add(format!("{n}_{s8}"), k);
        }
    }
    out
}

/// Disk letter of a VBD (`xvda`, …) from its `device`, else its `userdevice`.
fn vbd_device(v: &serde_json::Map<String, Value>) -> String {
    let dev = v.get("device").and_then(Value::as_str).unwrap_or_default();
    if !dev.is_empty() {
        return dev.to_owned();
    }
    let n: u32 = v
        .get("userdevice")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    format!("xvd{}", char::from(b'a' + (n.min(25) as u8)))
}

/// Data sources of a running VM (none when it is not running: XAPI has no RRD for it then).
pub(crate) fn vm_sources(db: &Db, vm: &Ref) -> Vec<Source> {
    let Some(v) = db.get("VM", vm) else {
        return Vec::new();
    };
    if v.get("power_state").and_then(Value::as_str) != Some("Running") {
        return Vec::new();
    }
    let uuid = str_field(db, "VM", vm, "uuid");
    let mut out = Vec::new();
    let mut add = |name: String, kind: Kind| {
        out.push(Source {
            owner: "vm",
            uuid: uuid.clone(),
            name,
            kind,
        })
    };
    let vcpus = int(v, "VCPUs_at_startup").clamp(1, 64);
    for i in 0..vcpus {
        add(format!("cpu{i}"), Kind::Cpu);
    }
    add("cpu_usage".into(), Kind::Cpu);
    let mem = int(v, "memory_dynamic_max").max(0) as f64;
    add("memory".into(), Kind::Const(mem));
    add("memory_target".into(), Kind::Const(mem));
    add("memory_internal_free".into(), Kind::Free(mem / 1024.0));
    let mut vifs: Vec<String> = arr(v, "VIFs")
        .iter()
        .filter_map(|x| db.get("VIF", x))
        .filter_map(|x| x.get("device").and_then(Value::as_str).map(str::to_owned))
        .collect();
    vifs.sort();
    for d in vifs {
        add(format!("vif_{d}_rx"), Kind::Rate(1.0e6));
        add(format!("vif_{d}_tx"), Kind::Rate(1.0e6));
        add(format!("vif_{d}_rx_errors"), Kind::Const(0.0));
        add(format!("vif_{d}_tx_errors"), Kind::Const(0.0));
    }
    let mut vbds: Vec<String> = arr(v, "VBDs")
        .iter()
        .filter_map(|x| db.get("VBD", x))
        .filter(|x| x.get("type").and_then(Value::as_str) == Some("Disk"))
        .map(vbd_device)
        .collect();
    vbds.sort();
    for d in vbds {
        add(format!("vbd_{d}_read"), Kind::Rate(5.0e6));
        add(format!("vbd_{d}_write"), Kind::Rate(5.0e6));
        add(format!("vbd_{d}_iops_read"), Kind::Rate(200.0));
        add(format!("vbd_{d}_iops_write"), Kind::Rate(200.0));
        add(format!("vbd_{d}_iops_total"), Kind::Rate(400.0));
        add(format!("vbd_{d}_read_latency"), Kind::Latency);
        add(format!("vbd_{d}_write_latency"), Kind::Latency);
    }
    out
}
