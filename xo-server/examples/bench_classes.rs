//! Size of a simulated pool's full load per XAPI class (JSON bytes and record count), to see where a
//! 10,000-VM pool's memory goes. `cargo run --release -p xo-server --example bench_classes [-- VMS]`

use serde_json::{json, Value};

fn main() -> anyhow::Result<()> {
    let vms: usize = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let sim = xapi_sim::Sim::builder().hosts(3).vms(vms).build()?;
    let s = sim
        .call(
            "session.login_with_password",
            vec![json!("root"), json!("root"), json!("1.0"), json!("bench")],
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let methods = sim
        .call("system.listMethods", vec![])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rows = Vec::new();
    for m in methods
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let Some(class) = m.strip_suffix(".get_all_records") else {
            continue;
        };
        if class.contains('.') {
            continue;
        }
        if let Ok(v) = sim.call(m, vec![s.clone()]) {
            let n = v.as_object().map_or(0, |o| o.len());
            rows.push((v.to_string().len(), n, class.to_owned()));
        }
    }
    rows.sort();
    let total: usize = rows.iter().map(|r| r.0).sum();
    for (bytes, n, class) in rows.iter().rev().take(25) {
        println!(
            "{class:24} {n:8} records {:10.1} MiB",
            *bytes as f64 / 1048576.0
        );
    }
    println!("total {:.1} MiB of JSON", total as f64 / 1048576.0);
    Ok(())
}
