//! Host memory accounting and VM placement (`assert_can_boot_here`, host choice for `VM.start`).

use serde_json::json;
use xapi_types::{Ref, XapiError};

use super::helpers::{b, get, i, refs, rf, s, set_if_changed, valid};
use crate::db::Db;

/// Memory a VM uses once running: its memory_actual when live, else what starting would give it
/// (`memory_dynamic_max`), plus `memory_overhead`.
pub fn vm_memory_footprint(db: &Db, vm: &Ref) -> i64 {
    let Some(r) = db.get("VM", vm) else { return 0 };
    let actual = db
        .get("VM_metrics", &rf(r, "metrics"))
        .map(|m| i(m, "memory_actual"))
        .unwrap_or(0);
    let live = matches!(s(r, "power_state"), "Running" | "Paused");
    let base = if live && actual > 0 {
        actual
    } else {
        i(r, "memory_dynamic_max")
    };
    base.saturating_add(i(r, "memory_overhead"))
}

/// Memory needed to start (or resume, or receive) a VM.
pub fn vm_start_memory(db: &Db, vm: &Ref) -> i64 {
    db.get("VM", vm)
        .map(|r| i(r, "memory_dynamic_max").saturating_add(i(r, "memory_overhead")))
        .unwrap_or(0)
}

/// Free memory of a host: total − host overhead − every resident VM's footprint (dom0 included).
pub fn host_free_memory(db: &Db, host: &Ref) -> i64 {
    let Some(h) = db.get("host", host) else {
        return 0;
    };
    let total = db
        .get("host_metrics", &rf(h, "metrics"))
        .map(|m| i(m, "memory_total"))
        .unwrap_or(0);
    let used = refs(h, "resident_VMs").iter().fold(0i64, |acc, vm| {
        acc.saturating_add(vm_memory_footprint(db, vm))
    });
    total
        .saturating_sub(i(h, "memory_overhead"))
        .saturating_sub(used)
        .max(0)
}

/// Refresh `host_metrics.memory_free` of a host.
pub fn update_host_memory(db: &mut Db, host: &Ref) -> Result<(), XapiError> {
    let metrics = rf(db.record("host", host)?, "metrics");
    if valid(db, "host_metrics", &metrics) {
        let free = host_free_memory(db, host);
        set_if_changed(db, "host_metrics", &metrics, "memory_free", json!(free))?;
    }
    Ok(())
}

/// Whether the host is up (`host_metrics.live`, true when there are no metrics).
pub fn host_live(db: &Db, host: &Ref) -> bool {
    db.get("host", host).is_some_and(|h| {
        db.get("host_metrics", &rf(h, "metrics"))
            .is_none_or(|m| b(m, "live"))
    })
}

/// Whether the SR is plugged on the host.
pub fn sr_visible_from(db: &Db, sr: &Ref, host: &Ref) -> bool {
    db.get("SR", sr).is_some_and(|r| {
        refs(r, "PBDs").iter().any(|pbd| {
            db.get("PBD", pbd)
                .is_some_and(|p| rf(p, "host") == *host && b(p, "currently_attached"))
        })
    })
}

/// Whether the network is reachable from the host (a PIF there, or a host-internal network without PIFs).
pub fn network_visible_from(db: &Db, net: &Ref, host: &Ref) -> bool {
    db.get("network", net).is_some_and(|n| {
        let pifs = refs(n, "PIFs");
        pifs.is_empty()
            || pifs
                .iter()
                .any(|p| db.get("PIF", p).is_some_and(|p| rf(p, "host") == *host))
    })
}

/// The SRs a VM needs (those of its non-empty VBDs' VDIs, plus its suspend VDI's).
pub fn vm_srs(db: &Db, vm: &Ref) -> Vec<Ref> {
    let Some(r) = db.get("VM", vm) else {
        return Vec::new();
    };
    let mut vdis: Vec<Ref> = refs(r, "VBDs")
        .iter()
        .filter_map(|v| db.get("VBD", v).map(|v| rf(v, "VDI")))
        .collect();
    vdis.push(rf(r, "suspend_VDI"));
    let mut out: Vec<Ref> = Vec::new();
    for vdi in vdis {
        if let Some(d) = db.get("VDI", &vdi) {
            let sr = rf(d, "SR");
            if !out.contains(&sr) {
                out.push(sr);
            }
        }
    }
    out
}

/// `assert_can_boot_here`: host live (`HOST_OFFLINE`), enabled (`HOST_DISABLED`), sees the VM's SRs
/// (`VM_REQUIRES_SR`) and networks (`VM_REQUIRES_NETWORK`), has enough free memory (`HOST_NOT_ENOUGH_FREE_MEMORY`).
pub fn assert_can_boot_here(db: &Db, vm: &Ref, host: &Ref) -> Result<(), XapiError> {
    let h = get(db, "host", host)?;
    let v = get(db, "VM", vm)?;
    if !host_live(db, host) {
        return Err(XapiError::new("HOST_OFFLINE", [host.0.clone()]));
    }
    if !b(&h, "enabled") {
        return Err(XapiError::new("HOST_DISABLED", [host.0.clone()]));
    }
    for sr in vm_srs(db, vm) {
        if !sr_visible_from(db, &sr, host) {
            return Err(XapiError::new(
                "VM_REQUIRES_SR",
                [vm.0.clone(), sr.0.clone()],
            ));
        }
    }
    for vif in refs(&v, "VIFs") {
        let Some(vif) = db.get("VIF", &vif) else {
            continue;
        };
        let net = rf(vif, "network");
        if valid(db, "network", &net) && !network_visible_from(db, &net, host) {
            return Err(XapiError::new(
                "VM_REQUIRES_NETWORK",
                [vm.0.clone(), net.0.clone()],
            ));
        }
    }
    let needed = vm_start_memory(db, vm);
    let available = host_free_memory(db, host);
    if needed > available {
        return Err(XapiError::new(
            "HOST_NOT_ENOUGH_FREE_MEMORY",
            [needed.to_string(), available.to_string()],
        ));
    }
    Ok(())
}

/// Hosts the VM could start on now.
pub fn possible_hosts(db: &Db, vm: &Ref) -> Vec<Ref> {
    let mut hosts = db.refs("host");
    hosts.sort_by_key(|h| {
        db.get("host", h)
            .map(|r| s(r, "address").to_owned())
            .unwrap_or_default()
    });
    hosts
        .into_iter()
        .filter(|h| assert_can_boot_here(db, vm, h).is_ok())
        .collect()
}

/// Choose a host for the VM: its affinity if suitable, else the suitable host with the most free memory;
/// `NO_HOSTS_AVAILABLE []` if none.
pub fn choose_host(db: &Db, vm: &Ref) -> Result<Ref, XapiError> {
    let affinity = rf(db.record("VM", vm)?, "affinity");
    if valid(db, "host", &affinity) && assert_can_boot_here(db, vm, &affinity).is_ok() {
        return Ok(affinity);
    }
    possible_hosts(db, vm)
        .into_iter()
        .enumerate()
        .max_by_key(|(n, h)| (host_free_memory(db, h), -(*n as i64)))
        .map(|(_, h)| h)
        .ok_or_else(|| XapiError::code("NO_HOSTS_AVAILABLE"))
}
