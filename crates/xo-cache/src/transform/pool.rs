//! `pool` → XO `pool`.

use serde_json::{json, Value};

use crate::jsval::{get_arr, get_map, map_entry, num, put, raw, to_timestamp, truthy, Record};
use crate::lookup::Ctx;

pub(super) fn pool(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = Record::new();
    let other = get_map(rec, "other_config");
    let cpu_info = rec.get("cpu_info");
    let master = ctx.follow_fields(rec, "master", "host", &["name_label", "software_version"]);

    o.insert(
        "auto_poweron".into(),
        Value::Bool(map_entry(rec, "other_config", "auto_poweron").is_some_and(|v| v == "true")),
    );
    put(&mut o, "crashDumpSr", ctx.link(rec, "crash_dump_SR"));
    put(&mut o, "current_operations", raw(rec, "current_operations"));
    put(&mut o, "default_SR", ctx.link(rec, "default_SR"));
    o.insert(
        "HA_enabled".into(),
        Value::Bool(truthy(rec.get("ha_enabled"))),
    );
    // `$ha_statefiles` skips unknown VDIs, then links each VDI's SR.
    let ha_srs: Vec<Value> = get_arr(rec, "ha_statefiles")
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|r| ctx.rec_fields("VDI", r, &["SR"]))
        .map(|vdi| ctx.link(vdi, "SR").unwrap_or(Value::Null))
        .collect();
    o.insert("haSrs".into(), Value::Array(ha_srs));
    put(&mut o, "master", ctx.link(rec, "master"));
    put(&mut o, "tags", raw(rec, "tags"));
    put(&mut o, "name_description", raw(rec, "name_description"));
    let label = match rec.get("name_label") {
        Some(Value::String(s)) if !s.is_empty() => Some(Value::String(s.clone())),
        _ => master.and_then(|m| m.get("name_label").cloned()),
    };
    put(&mut o, "name_label", label);
    put(
        &mut o,
        "migrationCompression",
        raw(rec, "migration_compression"),
    );
    put(
        &mut o,
        "haRebootVmOnInternalShutdown",
        raw(rec, "ha_reboot_vm_on_internal_shutdown"),
    );
    o.insert(
        "xosanPackInstallationTime".into(),
        to_timestamp(other.and_then(|m| m.get("xosan_pack_installation_time"))),
    );
    put(&mut o, "otherConfig", raw(rec, "other_config"));
    let cpus = match cpu_info {
        Some(Value::Object(ci)) => {
            json!({ "cores": num(ci.get("cpu_count")), "sockets": num(ci.get("socket_count")) })
        }
        _ => json!({}),
    };
    o.insert("cpus".into(), cpus);
    put(&mut o, "suspendSr", ctx.link(rec, "suspend_image_SR"));
    o.insert(
        "zstdSupported".into(),
        Value::Bool(
            map_entry(rec, "restrictions", "restrict_zstd_export").is_some_and(|v| v == "false"),
        ),
    );
    o.insert(
        "vtpmSupported".into(),
        Value::Bool(map_entry(rec, "restrictions", "restrict_vtpm").is_some_and(|v| v == "false")),
    );
    // Newer XO: the master's platform version.
    put(
        &mut o,
        "platform_version",
        master
            .and_then(|m| get_map(m, "software_version"))
            .and_then(|sv| sv.get("platform_version"))
            .cloned(),
    );
    o
}
