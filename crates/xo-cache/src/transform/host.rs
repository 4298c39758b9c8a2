//! `host` (+ its `host_metrics`, `pool_update`s, `Certificate`s) → XO `host`.

use serde_json::{json, Map, Value};

use crate::jsval::{
    get_arr, get_map, get_str, map_entry, num, put, raw, timestamp_f64, to_f64, to_timestamp,
    truthy, Record,
};
use crate::lookup::Ctx;

const ONE_GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// `semver.satisfies(version, '>=2.1.1')` for a strict `x.y.z` version.
fn platform_at_least_2_1_1(v: Option<&str>) -> bool {
    let Some(v) = v else { return false };
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() != 3 {
        return false;
    }
    let mut nums = [0u64; 3];
    for (n, p) in nums.iter_mut().zip(&parts) {
        if p.is_empty()
            || !p.bytes().all(|b| b.is_ascii_digit())
            || (p.len() > 1 && p.starts_with('0'))
        {
            return false;
        }
        match p.parse() {
            Ok(x) => *n = x,
            Err(_) => return false,
        }
    }
    nums >= [2, 1, 1]
}

pub(super) fn host(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = Record::new();
    let metrics = ctx.follow(rec, "metrics", "host_metrics");
    let empty = Map::new();
    let other = get_map(rec, "other_config").unwrap_or(&empty);
    let sv = get_map(rec, "software_version").unwrap_or(&empty);
    let is_running = metrics.is_some_and(|m| truthy(m.get("live")));

    let supplemental_packs =
        if platform_at_least_2_1_1(sv.get("platform_version").and_then(Value::as_str)) {
            let mut packs = Vec::new();
            for r in get_arr(rec, "updates").iter().filter_map(Value::as_str) {
                let Some(update) = ctx.rec("pool_update", r) else {
                    continue;
                };
                let name = get_str(update, "name_label").unwrap_or("");
                if name.starts_with("XS") {
                    continue;
                }
                let mut p = Map::new();
                put(&mut p, "name", raw(update, "name_label"));
                put(&mut p, "description", raw(update, "name_description"));
                put(
                    &mut p,
                    "author",
                    get_str(update, "key")
                        .and_then(|k| k.split('-').nth(3))
                        .map(|s| Value::String(s.to_owned())),
                );
                put(&mut p, "version", raw(update, "version"));
                put(&mut p, "guidance", raw(update, "after_apply_guidance"));
                put(&mut p, "hosts", ctx.link_set(update, "hosts"));
                put(&mut p, "vdi", ctx.link(update, "vdi"));
                put(&mut p, "size", raw(update, "installation_size"));
                packs.push(Value::Object(p));
            }
            packs
        } else {
            // Legacy: `author:name` keys of software_version → "description, version x".
            sv.iter()
                .filter_map(|(key, value)| {
                    let parts: Vec<&str> = key.split(':').collect();
                    if parts.len() != 2 {
                        return None;
                    }
                    let value = value.as_str().unwrap_or("");
                    let mut it = value.split(", ");
                    let description = it.next().unwrap_or("");
                    let version = it.next().and_then(|v| v.split(' ').nth(1));
                    let mut p = Map::new();
                    p.insert("name".into(), Value::String(parts[1].to_owned()));
                    p.insert("description".into(), Value::String(description.to_owned()));
                    p.insert("author".into(), Value::String(parts[0].to_owned()));
                    put(
                        &mut p,
                        "version",
                        version.map(|v| Value::String(v.to_owned())),
                    );
                    Some(Value::Object(p))
                })
                .collect()
        };

    let cpu_info = rec.get("cpu_info");
    put(&mut o, "CPUs", cpu_info.cloned());
    put(&mut o, "address", raw(rec, "address"));
    put(&mut o, "bios_strings", raw(rec, "bios_strings"));
    put(&mut o, "build", sv.get("build_number").cloned());
    let mut chipset = Map::new();
    if let Some(iommu) = map_entry(rec, "chipset_info", "iommu") {
        chipset.insert("iommu".into(), Value::Bool(iommu == "true"));
    }
    o.insert("chipset_info".into(), Value::Object(chipset));
    o.insert("enabled".into(), Value::Bool(truthy(rec.get("enabled"))));
    put(&mut o, "controlDomain", ctx.link(rec, "control_domain"));
    let cpus = match cpu_info {
        Some(Value::Object(ci)) => {
            json!({ "cores": num(ci.get("cpu_count")), "sockets": num(ci.get("socket_count")) })
        }
        _ => json!({}),
    };
    o.insert("cpus".into(), cpus);
    put(&mut o, "current_operations", raw(rec, "current_operations"));
    put(&mut o, "hostname", raw(rec, "hostname"));
    let iqn = rec
        .get("iscsi_iqn")
        .filter(|v| !v.is_null())
        .or_else(|| other.get("iscsi_iqn").filter(|v| !v.is_null()))
        .cloned()
        .unwrap_or_else(|| Value::String(String::new()));
    o.insert("iscsiIqn".into(), iqn);
    o.insert(
        "zstdSupported".into(),
        Value::Bool(
            map_entry(rec, "license_params", "restrict_zstd_export").is_some_and(|v| v == "false"),
        ),
    );
    put(&mut o, "license_params", raw(rec, "license_params"));
    put(&mut o, "license_server", raw(rec, "license_server"));
    o.insert(
        "license_expiry".into(),
        to_timestamp(map_entry(rec, "license_params", "expiry")),
    );
    put(&mut o, "logging", raw(rec, "logging"));
    put(&mut o, "name_description", raw(rec, "name_description"));
    put(&mut o, "name_label", raw(rec, "name_label"));
    let memory = match metrics {
        Some(m) => {
            let free = to_f64(m.get("memory_free")).unwrap_or(f64::NAN);
            let total =
                (to_f64(m.get("memory_total")).unwrap_or(f64::NAN) / ONE_GIB).ceil() * ONE_GIB;
            json!({ "usage": crate::jsval::number_value(total - free), "size": crate::jsval::number_value(total) })
        }
        None => json!({ "usage": 0, "size": 0, "total": 0 }),
    };
    o.insert("memory".into(), memory);
    o.insert(
        "multipathing".into(),
        Value::Bool(other.get("multipathing").is_some_and(|v| v == "true")),
    );
    put(&mut o, "otherConfig", raw(rec, "other_config"));
    put(&mut o, "patches", ctx.link_set(rec, "patches"));
    put(&mut o, "powerOnMode", raw(rec, "power_on_mode"));
    let power_state = match metrics {
        Some(_) if is_running => "Running",
        Some(_) => "Halted",
        None => "Unknown",
    };
    o.insert("power_state".into(), Value::String(power_state.into()));
    put(&mut o, "residentVms", ctx.link_set(rec, "resident_VMs"));
    o.insert("startTime".into(), to_timestamp(other.get("boot_time")));
    o.insert("supplementalPacks".into(), Value::Array(supplemental_packs));
    o.insert(
        "agentStartTime".into(),
        to_timestamp(other.get("agent_start_time")),
    );
    let reboot_required = if sv.get("product_brand").is_some_and(|b| b == "XCP-ng") {
        match to_f64(other.get("rpm_patch_installation_time")) {
            Some(t) => timestamp_f64(other.get("boot_time")) < t,
            None => false,
        }
    } else {
        match rec.get("updates_requiring_reboot") {
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(m)) => !m.is_empty(),
            Some(Value::String(s)) => !s.is_empty(),
            _ => false,
        }
    };
    o.insert("rebootRequired".into(), Value::Bool(reboot_required));
    put(&mut o, "tags", raw(rec, "tags"));
    put(&mut o, "version", sv.get("product_version").cloned());
    put(&mut o, "productBrand", sv.get("product_brand").cloned());
    o.insert(
        "hvmCapable".into(),
        Value::Bool(
            get_arr(rec, "capabilities")
                .iter()
                .any(|c| c.as_str().is_some_and(|c| c.starts_with("hvm"))),
        ),
    );
    if let Some(Value::Array(certs)) = rec.get("certificates") {
        let list: Vec<Value> = certs
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|r| ctx.rec("Certificate", r))
            .map(|c| {
                let mut m = Map::new();
                put(&mut m, "fingerprint", raw(c, "fingerprint"));
                m.insert("notAfter".into(), to_timestamp(c.get("not_after")));
                Value::Object(m)
            })
            .collect();
        o.insert("certificates".into(), Value::Array(list));
    }
    let pifs = ctx.link_set(rec, "PIFs");
    put(&mut o, "PIFs", pifs.clone());
    put(&mut o, "$PIFs", pifs);
    let pcis = ctx.link_set(rec, "PCIs");
    put(&mut o, "PCIs", pcis.clone());
    put(&mut o, "$PCIs", pcis);
    let pgpus = ctx.link_set(rec, "PGPUs");
    put(&mut o, "PGPUs", pgpus.clone());
    put(&mut o, "$PGPUs", pgpus);
    put(&mut o, "$PBDs", ctx.link_set(rec, "PBDs"));
    o
}

#[cfg(test)]
mod tests {
    use super::platform_at_least_2_1_1 as ok;

    #[test]
    fn platform_version_gate() {
        assert!(ok(Some("3.4.0")));
        assert!(ok(Some("2.1.1")));
        assert!(!ok(Some("2.1.0")));
        assert!(!ok(Some("3.4")));
        assert!(!ok(None));
    }
}
