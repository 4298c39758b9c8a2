//! `VM` (+ `VM_metrics`, `VM_guest_metrics`, VBD→VDI→SR→PBD chain) → XO `VM`, `VM-template`,
//! `VM-snapshot`, `VM-controller`.

use serde_json::{json, Map, Value};

use super::vm_networks;
use crate::jsval::{
    get_arr, get_map, get_str, num, put, raw, str_to_number, to_timestamp, truthy, Record,
};
use crate::lookup::{Ctx, NULL_REF};
use crate::xml;

/// XO's `getVmDomainType`.
fn domain_type(rec: &Record) -> String {
    match get_str(rec, "domain_type") {
        Some(dt) if dt != "unspecified" => dt.to_owned(),
        _ => {
            if rec.get("HVM_boot_policy").is_some_and(|v| v == "") {
                "pv".into()
            } else {
                "hvm".into()
            }
        }
    }
}

fn is_running(rec: &Record) -> bool {
    matches!(get_str(rec, "power_state"), Some("Running" | "Paused"))
}

/// `isDefaultTemplate` from `@xen-orchestra/xapi`.
pub(crate) fn is_default_template(rec: &Record) -> bool {
    truthy(rec.get("is_default_template"))
        || get_map(rec, "other_config")
            .and_then(|m| m.get("default_template"))
            .is_some_and(|v| v == "true")
}

fn xen_tools(running: bool, metrics: Option<&Record>, gm: Option<&Record>) -> Option<Value> {
    if !running || metrics.is_none() {
        return None;
    }
    let Some(gm) = gm else {
        return Some(Value::Bool(false));
    };
    let pv = get_map(gm, "PV_drivers_version");
    let major = pv.and_then(|m| m.get("major"));
    let minor = pv.and_then(|m| m.get("minor"));
    match (major, minor) {
        (Some(ma), Some(mi)) => {
            let s = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            let version = str_to_number(&format!("{}.{}", s(ma), s(mi)));
            Some(json!({
                "major": num(Some(ma)),
                "minor": num(Some(mi)),
                "version": version.map_or(Value::Null, crate::jsval::number_value),
            }))
        }
        _ => Some(Value::Bool(false)),
    }
}

/// `getVmGuestToolsProps`.
fn guest_tools_props(o: &mut Record, running: bool, metrics: Option<&Record>, gm: Option<&Record>) {
    let (true, Some(_), Some(gm)) = (running, metrics, gm) else {
        return;
    };
    let pv = get_map(gm, "PV_drivers_version");
    let field = |k: &str| pv.and_then(|m| m.get(k));
    let js = |v: Option<&Value>| match v {
        None => "undefined".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let has_pv_version = field("major").is_some() && field("minor").is_some();
    let detected = match gm.get("PV_drivers_detected") {
        None | Some(Value::Null) => Value::Bool(has_pv_version),
        Some(v) => v.clone(),
    };
    let static_ip = get_map(gm, "other")
        .and_then(|m| m.get("feature-static-ip-setting"))
        .is_some_and(|v| v == "1");
    o.insert(
        "managementAgentDetected".into(),
        Value::Bool(has_pv_version || static_ip),
    );
    let detected_truthy = truthy(Some(&detected));
    o.insert("pvDriversDetected".into(), detected);
    if has_pv_version {
        o.insert(
            "pvDriversVersion".into(),
            Value::String(format!(
                "{}.{}.{}-{}",
                js(field("major")),
                js(field("minor")),
                js(field("micro")),
                js(field("build"))
            )),
        );
    }
    if detected_truthy {
        put(o, "pvDriversUpToDate", raw(gm, "PV_drivers_up_to_date"));
    }
}

fn memory(rec: &Record, running: bool, metrics: Option<&Record>, gm: Option<&Record>) -> Value {
    let dmax = num(rec.get("memory_dynamic_max"));
    let mut m = Map::new();
    m.insert(
        "dynamic".into(),
        json!([num(rec.get("memory_dynamic_min")), dmax]),
    );
    m.insert(
        "static".into(),
        json!([
            num(rec.get("memory_static_min")),
            num(rec.get("memory_static_max"))
        ]),
    );
    let gm_memory = gm.and_then(|g| get_map(g, "memory"));
    if !running {
        m.insert("size".into(), dmax);
    } else if let Some(gmm) = gm_memory.filter(|g| truthy(g.get("used"))) {
        m.insert("usage".into(), num(gmm.get("used")));
        m.insert("size".into(), num(gmm.get("total")));
    } else if let Some(metrics) = metrics {
        m.insert("size".into(), num(metrics.get("memory_actual")));
    } else {
        m.insert("size".into(), dmax);
    }
    Value::Object(m)
}

fn is_firmware_supported(rec: &Record) -> bool {
    let Some(parsed) = get_str(rec, "recommendations").and_then(xml::parse) else {
        return true;
    };
    let Some(restrictions) = parsed
        .get("restrictions")
        .and_then(|r| r.get("restriction"))
    else {
        return true;
    };
    let firmware = get_map(rec, "HVM_boot_params")
        .and_then(|m| m.get("firmware"))
        .and_then(Value::as_str)
        .unwrap_or("undefined");
    let field = format!("supports-{firmware}");
    let list = xml::ensure_array(Some(restrictions.clone()));
    match list
        .iter()
        .find(|r| r.get("field").is_some_and(|f| f == field.as_str()))
    {
        None => true,
        Some(r) => r.get("value").is_none_or(|v| v != "no"),
    }
}

fn docker(other: &Record) -> Option<Value> {
    let monitor = other
        .get("xscontainer-monitor")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())?;
    if monitor == "False" {
        return Some(json!({ "enabled": false }));
    }
    let parse = |key: &str, root: &str| -> Option<Value> {
        let text = other
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())?;
        xml::parse(text).and_then(|v| v.get(root).cloned())
    };
    let mut d = Map::new();
    d.insert("enabled".into(), Value::Bool(true));
    put(&mut d, "info", parse("docker_info", "docker_info"));
    let process = parse("docker_ps", "docker_ps");
    let containers = xml::ensure_array(process.as_ref().and_then(|p| p.get("item")).cloned());
    d.insert("containers".into(), Value::Array(containers));
    put(&mut d, "process", process);
    put(&mut d, "version", parse("docker_version", "docker_version"));
    Some(Value::Object(d))
}

fn template_disks(other: &Record) -> Value {
    let Some(text) = other
        .get("disks")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return json!([]);
    };
    let Some(provision) = xml::parse(text).and_then(|v| v.get("provision").cloned()) else {
        return json!([]);
    };
    if !truthy(Some(&provision)) {
        return json!([]);
    }
    let disks = xml::ensure_array(provision.get("disk").cloned());
    Value::Array(
        disks
            .into_iter()
            .map(|d| match d {
                Value::Object(mut m) => {
                    let bootable = m.get("bootable").is_some_and(|v| v == "true");
                    m.insert("bootable".into(), Value::Bool(bootable));
                    let size = num(m.get("size"));
                    m.insert("size".into(), size);
                    let sr = m.remove("sr");
                    put(&mut m, "SR", sr);
                    Value::Object(m)
                }
                other => other,
            })
            .collect(),
    )
}

fn container(rec: &Record, ctx: &Ctx<'_>, pool_uuid: &str) -> Option<Value> {
    let resident_on = rec.get("resident_on").and_then(Value::as_str);
    if resident_on != Some(NULL_REF) {
        return ctx.link(rec, "resident_on");
    }
    for vbd_ref in get_arr(rec, "VBDs").iter().filter_map(Value::as_str) {
        let Some(vbd) = ctx.rec("VBD", vbd_ref) else {
            continue;
        };
        let Some(vdi) = ctx.follow(vbd, "VDI", "VDI") else {
            continue;
        };
        let Some(sr) = ctx.follow(vdi, "SR", "SR") else {
            continue;
        };
        if truthy(sr.get("shared")) {
            continue;
        }
        let first_pbd = get_arr(sr, "PBDs").first().and_then(Value::as_str);
        let Some(pbd) = first_pbd.and_then(|r| ctx.rec("PBD", r)) else {
            continue;
        };
        if let Some(host) = ctx.link(pbd, "host") {
            return Some(host);
        }
    }
    Some(Value::String(pool_uuid.to_owned()))
}

pub(super) fn vm(rec: &Record, ctx: &Ctx<'_>, pool_uuid: &str) -> Record {
    let empty = Map::new();
    let gm = ctx.follow(rec, "guest_metrics", "VM_guest_metrics");
    let metrics = ctx.follow(rec, "metrics", "VM_metrics");
    let other = get_map(rec, "other_config").unwrap_or(&empty);
    let platform = get_map(rec, "platform").unwrap_or(&empty);
    let dt = domain_type(rec);
    let is_hvm = dt == "hvm";
    let running = is_running(rec);
    let xen_tools = xen_tools(running, metrics, gm);

    let resource_set = match other.get("xo:resource_set") {
        Some(Value::String(s)) if !s.is_empty() => serde_json::from_str::<Value>(s).ok(),
        v => v.cloned(),
    };

    let mut current_operations = Map::new();
    if let Some(ops) = get_map(rec, "current_operations") {
        for (task_ref, op) in ops {
            if let Some(id) = ctx.id_of(task_ref) {
                current_operations.insert(id, op.clone());
            }
        }
    }

    let uuid = get_str(rec, "uuid").unwrap_or("");
    let prefix: String = uuid.chars().take(8).collect();
    let creation = other
        .get(&format!("xo:{prefix}"))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| v.get("creation").cloned());

    let networks = gm.and_then(|g| get_map(g, "networks"));
    let mut o = Record::new();
    o.insert("type".into(), Value::String("VM".into()));
    o.insert(
        "addresses".into(),
        Value::Object(vm_networks::normalize(networks)),
    );
    put(&mut o, "affinityHost", ctx.link(rec, "affinity"));
    if let Some(pci) = other.get("pci").and_then(Value::as_str) {
        let list = pci
            .split(',')
            .map(|s| {
                s.split('/')
                    .nth(1)
                    .map_or(Value::Null, |x| Value::String(x.to_owned()))
            })
            .collect();
        o.insert("attachedPcis".into(), Value::Array(list));
    }
    o.insert(
        "auto_poweron".into(),
        Value::Bool(other.get("auto_poweron").is_some_and(|v| v == "true")),
    );
    put(&mut o, "bios_strings", raw(rec, "bios_strings"));
    put(&mut o, "blockedOperations", raw(rec, "blocked_operations"));
    put(&mut o, "boot", raw(rec, "HVM_boot_params"));
    let cpus_number =
        if running && metrics.is_some() && xen_tools.as_ref().is_some_and(Value::is_object) {
            num(metrics.and_then(|m| m.get("VCPUs_number")))
        } else {
            num(rec.get("VCPUs_at_startup"))
        };
    o.insert(
        "CPUs".into(),
        json!({ "max": num(rec.get("VCPUs_max")), "number": cpus_number }),
    );
    put(&mut o, "creation", creation);
    o.insert(
        "current_operations".into(),
        Value::Object(current_operations),
    );
    put(&mut o, "docker", docker(other));
    let pflag = |k: &str| platform.get(k).is_some_and(|v| v == "true");
    o.insert("expNestedHvm".into(), Value::Bool(pflag("exp-nested-hvm")));
    o.insert(
        "isNestedVirtEnabled".into(),
        Value::Bool(pflag("nested-virt") || pflag("exp-nested-hvm")),
    );
    o.insert("viridian".into(), Value::Bool(pflag("viridian")));
    put(&mut o, "mainIpAddress", vm_networks::main_ip(networks));
    put(&mut o, "high_availability", raw(rec, "ha_restart_priority"));
    o.insert(
        "isFirmwareSupported".into(),
        Value::Bool(is_firmware_supported(rec)),
    );
    o.insert("memory".into(), memory(rec, running, metrics, gm));
    if let Some(m) = metrics {
        o.insert("installTime".into(), to_timestamp(m.get("install_time")));
    }
    put(&mut o, "name_description", raw(rec, "name_description"));
    put(&mut o, "name_label", raw(rec, "name_label"));
    o.insert("needsVtpm".into(), Value::Bool(pflag("vtpm")));
    put(&mut o, "notes", other.get("xo:notes").cloned());
    put(&mut o, "other", raw(rec, "other_config"));
    let os_version = gm
        .and_then(|g| g.get("os_version"))
        .filter(|v| truthy(Some(v)))
        .cloned()
        .unwrap_or(Value::Null);
    o.insert("os_version".into(), os_version);
    put(&mut o, "parent", ctx.link(rec, "parent"));
    put(&mut o, "power_state", raw(rec, "power_state"));
    put(&mut o, "hasVendorDevice", raw(rec, "has_vendor_device"));
    put(&mut o, "resourceSet", resource_set);
    put(&mut o, "snapshots", ctx.link_set(rec, "snapshots"));
    o.insert("startDelay".into(), num(rec.get("start_delay")));
    if let Some(m) = metrics {
        o.insert("startTime".into(), to_timestamp(m.get("start_time")));
    }
    o.insert("secureBoot".into(), Value::Bool(pflag("secureboot")));
    put(&mut o, "suspendSr", ctx.link(rec, "suspend_SR"));
    put(&mut o, "tags", raw(rec, "tags"));
    put(&mut o, "VIFs", ctx.link_set(rec, "VIFs"));
    put(&mut o, "VTPMs", ctx.link_set(rec, "VTPMs"));
    o.insert("virtualizationMode".into(), Value::String(dt));
    put(&mut o, "xenTools", xen_tools);
    guest_tools_props(&mut o, running, metrics, gm);
    put(&mut o, "$container", container(rec, ctx, pool_uuid));
    put(&mut o, "$VBDs", ctx.link_set(rec, "VBDs"));
    let vgpus = ctx.link_set(rec, "VGPUs");
    put(&mut o, "VGPUs", vgpus.clone());
    put(&mut o, "$VGPUs", vgpus);
    put(&mut o, "nicType", platform.get("nic_type").cloned());
    put(&mut o, "xenStoreData", raw(rec, "xenstore_data"));

    if is_hvm {
        o.insert(
            "vga".into(),
            platform
                .get("vga")
                .cloned()
                .unwrap_or_else(|| json!("cirrus")),
        );
        o.insert(
            "videoram".into(),
            platform
                .get("videoram")
                .cloned()
                .unwrap_or_else(|| json!(4)),
        );
    }
    if let Some(cps) = platform.get("cores-per-socket") {
        o.insert("coresPerSocket".into(), num(Some(cps)));
    }

    if truthy(rec.get("is_control_domain")) {
        o.insert("type".into(), Value::String("VM-controller".into()));
    } else if truthy(rec.get("is_a_snapshot")) {
        o.insert("type".into(), Value::String("VM-snapshot".into()));
        o.insert(
            "snapshot_time".into(),
            to_timestamp(rec.get("snapshot_time")),
        );
        put(&mut o, "$snapshot_of", ctx.link(rec, "snapshot_of"));
        put(&mut o, "suspendVdi", ctx.link(rec, "suspend_VDI"));
    } else if truthy(rec.get("is_a_template")) {
        let default = is_default_template(rec);
        o.insert("type".into(), Value::String("VM-template".into()));
        if default {
            o.insert("id".into(), Value::String(format!("{pool_uuid}-{uuid}")));
        }
        if let Some(Value::Object(c)) = o.get_mut("CPUs") {
            c.insert("number".into(), num(rec.get("VCPUs_at_startup")));
        }
        o.insert("isDefaultTemplate".into(), Value::Bool(default));
        let mut ti = Map::new();
        put(&mut ti, "arch", other.get("install-arch").cloned());
        ti.insert("disks".into(), template_disks(other));
        let methods = match other.get("install-methods").and_then(Value::as_str) {
            Some(m) if !m.is_empty() => m.split(',').map(|s| Value::String(s.to_owned())).collect(),
            _ => Vec::new(),
        };
        ti.insert("install_methods".into(), Value::Array(methods));
        put(
            &mut ti,
            "install_repository",
            other.get("install-repository").cloned(),
        );
        o.insert("template_info".into(), Value::Object(ti));
    }

    if let Some(params) = get_map(rec, "VCPUs_params") {
        if truthy(params.get("cap")) {
            o.insert("cpuCap".into(), num(params.get("cap")));
        }
        if let Some(mask) = params
            .get("mask")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            let list = mask
                .split(',')
                .map(|x| {
                    crate::jsval::to_f64(Some(&Value::String(x.to_owned())))
                        .map_or(Value::Null, crate::jsval::number_value)
                })
                .collect();
            o.insert("cpuMask".into(), Value::Array(list));
        }
        if truthy(params.get("weight")) {
            o.insert("cpuWeight".into(), num(params.get("weight")));
        }
    }
    if !is_hvm {
        put(&mut o, "PV_args", raw(rec, "PV_args"));
    }
    o
}
