//! `VDI` → XO `VDI`, `VDI-snapshot`, `VDI-unmanaged`.

use serde_json::Value;

use crate::jsval::{get_map, num, number_value, put, raw, to_f64, to_timestamp, truthy, Record};
use crate::lookup::Ctx;

pub(super) fn vdi(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = Record::new();
    o.insert("type".into(), Value::String("VDI".into()));
    put(&mut o, "cbt_enabled", raw(rec, "cbt_enabled"));
    put(&mut o, "missing", raw(rec, "missing"));
    put(&mut o, "name_description", raw(rec, "name_description"));
    put(&mut o, "name_label", raw(rec, "name_label"));
    let sm_config = get_map(rec, "sm_config");
    put(
        &mut o,
        "parent",
        sm_config.and_then(|m| m.get("vhd-parent")).cloned(),
    );
    put(
        &mut o,
        "image_format",
        sm_config.and_then(|m| m.get("image-format")).cloned(),
    );
    o.insert("size".into(), num(rec.get("virtual_size")));
    put(&mut o, "snapshots", ctx.link_set(rec, "snapshots"));
    put(&mut o, "tags", raw(rec, "tags"));
    o.insert("usage".into(), num(rec.get("physical_utilisation")));
    put(&mut o, "VDI_type", raw(rec, "type"));
    put(&mut o, "current_operations", raw(rec, "current_operations"));
    put(&mut o, "other_config", raw(rec, "other_config"));
    put(&mut o, "$SR", ctx.link(rec, "SR"));
    put(&mut o, "$VBDs", ctx.link_set(rec, "VBDs"));
    let is_snapshot = truthy(rec.get("is_a_snapshot"));
    if !is_snapshot && truthy(rec.get("managed")) {
        o.insert("chainPhysicalUsage".into(), chain_physical_usage(rec, ctx));
    }
    if is_snapshot {
        o.insert("type".into(), Value::String("VDI-snapshot".into()));
        o.insert(
            "snapshot_time".into(),
            to_timestamp(rec.get("snapshot_time")),
        );
        put(&mut o, "$snapshot_of", ctx.link(rec, "snapshot_of"));
    } else if !truthy(rec.get("managed")) {
        o.insert("type".into(), Value::String("VDI-unmanaged".into()));
    }
    o
}

/// Physical usage of the VDI plus its VHD parents (`sm_config['vhd-parent']` uuids), as newer XO computes.
fn chain_physical_usage(rec: &Record, ctx: &Ctx<'_>) -> Value {
    let parent_of = |r: &Record| {
        get_map(r, "sm_config")
            .and_then(|m| m.get("vhd-parent"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut total = to_f64(rec.get("physical_utilisation")).unwrap_or(0.0);
    let mut seen: Vec<String> = Vec::new();
    let mut parent = parent_of(rec);
    while let Some(uuid) = parent {
        if seen.contains(&uuid) || seen.len() > 1000 {
            break;
        }
        let Some(p) = ctx.rec_by_uuid("VDI", &uuid) else {
            break;
        };
        total += to_f64(p.get("physical_utilisation")).unwrap_or(0.0);
        parent = parent_of(p);
        seen.push(uuid);
    }
    number_value(total)
}
