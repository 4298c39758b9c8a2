//! `SR` → XO `SR`, `PBD` → XO `PBD` (with obfuscated `device_config`).

use serde_json::Value;

use crate::jsval::{get_arr, get_map, get_str, num, put, raw, truthy, Record};
use crate::lookup::Ctx;

/// Placeholder XO puts in place of PBD secrets.
pub const OBFUSCATED: &str = "* obfuscated *";

fn allocation_by_type(t: &str) -> Option<&'static str> {
    Some(match t {
        "ext" | "file" | "nfs" | "shm" | "smb" | "xosan" | "zfs" => "thin",
        "hba" | "iscsi" | "lvhd" | "lvhdofcoe" | "lvhdohba" | "lvhdoiscsi" | "lvm" | "lvmofcoe"
        | "lvmohba" | "lvmoiscsi" | "ocfs" | "ocfsohba" | "ocfsoiscsi" | "rawhba" | "rawiscsi"
        | "udev" => "thick",
        _ => return None,
    })
}

/// `@vates/obfuscate`'s sensitive keys: `token`, `passphrase`, `encryptionKey`, anything matching /password/i.
pub fn is_sensitive_key(key: &str) -> bool {
    key == "token"
        || key == "passphrase"
        || key == "encryptionKey"
        || key.to_ascii_lowercase().contains("password")
}

/// Deep copy of `value` with sensitive entries replaced by `replacement`.
pub fn obfuscate(value: &Value, replacement: &str) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if is_sensitive_key(k) {
                        Value::String(replacement.to_owned())
                    } else {
                        obfuscate(v, replacement)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| obfuscate(v, replacement)).collect()),
        other => other.clone(),
    }
}

pub(super) fn sr(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let sr_type = get_str(rec, "type").unwrap_or("");
    let first_pbd = get_arr(rec, "PBDs")
        .first()
        .and_then(Value::as_str)
        .and_then(|r| ctx.rec_fields("PBD", r, &["device_config", "host"]));
    let mut o = Record::new();
    o.insert("type".into(), Value::String("SR".into()));
    put(&mut o, "content_type", raw(rec, "content_type"));
    o.insert(
        "physical_usage".into(),
        num(rec.get("physical_utilisation")),
    );
    let allocation = if sr_type == "linstor" {
        Some(
            first_pbd
                .and_then(|p| get_map(p, "device_config"))
                .and_then(|dc| dc.get("provisioning"))
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or_else(|| Value::String("unknown".into())),
        )
    } else {
        allocation_by_type(sr_type).map(|s| Value::String(s.into()))
    };
    put(&mut o, "allocationStrategy", allocation);
    put(&mut o, "current_operations", raw(rec, "current_operations"));
    o.insert(
        "inMaintenanceMode".into(),
        Value::Bool(
            get_map(rec, "other_config").is_some_and(|m| m.contains_key("xo:maintenanceState")),
        ),
    );
    put(&mut o, "name_description", raw(rec, "name_description"));
    put(&mut o, "name_label", raw(rec, "name_label"));
    o.insert("size".into(), num(rec.get("physical_size")));
    o.insert("shared".into(), Value::Bool(truthy(rec.get("shared"))));
    put(&mut o, "SR_type", raw(rec, "type"));
    put(&mut o, "tags", raw(rec, "tags"));
    o.insert("usage".into(), num(rec.get("virtual_allocation")));
    put(&mut o, "VDIs", ctx.link_set(rec, "VDIs"));
    put(&mut o, "other_config", raw(rec, "other_config"));
    put(&mut o, "sm_config", raw(rec, "sm_config"));
    let container = match first_pbd {
        Some(pbd) if !truthy(rec.get("shared")) => ctx.link(pbd, "host"),
        _ => ctx.pool_uuid().map(|u| Value::String(u.to_owned())),
    };
    put(&mut o, "$container", container);
    put(&mut o, "$PBDs", ctx.link_set(rec, "PBDs"));
    o
}

pub(super) fn pbd(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = Record::new();
    o.insert("type".into(), Value::String("PBD".into()));
    o.insert(
        "attached".into(),
        Value::Bool(truthy(rec.get("currently_attached"))),
    );
    put(&mut o, "host", ctx.link(rec, "host"));
    put(&mut o, "SR", ctx.link(rec, "SR"));
    put(
        &mut o,
        "device_config",
        rec.get("device_config").map(|dc| obfuscate(dc, OBFUSCATED)),
    );
    put(&mut o, "otherConfig", raw(rec, "other_config"));
    o
}
