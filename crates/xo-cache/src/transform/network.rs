//! `network` → XO `network`, `PIF` (+ `PIF_metrics`) → XO `PIF`, `VIF` → XO `VIF`.

use serde_json::Value;

use crate::jsval::{get_arr, get_map, get_str, map_entry, num, put, raw, truthy, Record};
use crate::lookup::{Ctx, NULL_REF};

fn purpose_includes(rec: &Record, what: &str) -> Option<Value> {
    match rec.get("purpose") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(Value::Bool(a.iter().any(|p| p == what))),
        Some(Value::String(s)) => Some(Value::Bool(s.contains(what))),
        Some(_) => Some(Value::Bool(false)),
    }
}

pub(super) fn network(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = Record::new();
    o.insert(
        "automatic".into(),
        Value::Bool(map_entry(rec, "other_config", "automatic").is_some_and(|v| v == "true")),
    );
    put(&mut o, "bridge", raw(rec, "bridge"));
    put(&mut o, "current_operations", raw(rec, "current_operations"));
    o.insert(
        "defaultIsLocked".into(),
        Value::Bool(get_str(rec, "default_locking_mode") == Some("disabled")),
    );
    o.insert("MTU".into(), num(rec.get("MTU")));
    put(&mut o, "name_description", raw(rec, "name_description"));
    put(&mut o, "name_label", raw(rec, "name_label"));
    put(&mut o, "other_config", raw(rec, "other_config"));
    put(&mut o, "tags", raw(rec, "tags"));
    put(&mut o, "PIFs", ctx.link_set(rec, "PIFs"));
    put(&mut o, "VIFs", ctx.link_set(rec, "VIFs"));
    // Newer XO (spec §4): whether one of its PIFs is a bond master (inferred from the field name).
    let bonded = get_arr(rec, "PIFs")
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|r| ctx.rec_fields("PIF", r, &["bond_master_of"]))
        .any(|pif| matches!(pif.get("bond_master_of"), Some(Value::Array(a)) if !a.is_empty()));
    o.insert("isBonded".into(), Value::Bool(bonded));
    put(&mut o, "nbd", purpose_includes(rec, "nbd"));
    put(&mut o, "insecureNbd", purpose_includes(rec, "insecure_nbd"));
    o
}

pub(super) fn pif(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let metrics = ctx.follow(rec, "metrics", "PIF_metrics");
    let mut o = Record::new();
    o.insert("type".into(), Value::String("PIF".into()));
    o.insert(
        "attached".into(),
        Value::Bool(truthy(rec.get("currently_attached"))),
    );
    let bond_master = match rec.get("bond_master_of") {
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        _ => false,
    };
    o.insert("isBondMaster".into(), Value::Bool(bond_master));
    o.insert(
        "isBondSlave".into(),
        Value::Bool(get_str(rec, "bond_slave_of") != Some(NULL_REF)),
    );
    // Newer XO (spec §4, inferred): a slave names its bond's master PIF, a master lists its slaves.
    if let Some(bond) = ctx.follow_fields(rec, "bond_slave_of", "Bond", &["master"]) {
        put(&mut o, "bondMaster", ctx.link(bond, "master"));
    }
    if let Some(bond) = get_arr(rec, "bond_master_of")
        .first()
        .and_then(Value::as_str)
        .and_then(|r| ctx.rec_fields("Bond", r, &["slaves"]))
    {
        put(&mut o, "bondSlaves", ctx.link_set(bond, "slaves"));
    }
    put(&mut o, "device", raw(rec, "device"));
    if let Some(m) = metrics {
        put(&mut o, "deviceName", raw(m, "device_name"));
    }
    put(&mut o, "dns", raw(rec, "DNS"));
    o.insert(
        "disallowUnplug".into(),
        Value::Bool(truthy(rec.get("disallow_unplug"))),
    );
    put(&mut o, "gateway", raw(rec, "gateway"));
    put(&mut o, "ip", raw(rec, "IP"));
    put(&mut o, "ipv6", raw(rec, "IPv6"));
    put(&mut o, "mac", raw(rec, "MAC"));
    o.insert(
        "management".into(),
        Value::Bool(truthy(rec.get("management"))),
    );
    o.insert(
        "carrier".into(),
        Value::Bool(metrics.is_some_and(|m| truthy(m.get("carrier")))),
    );
    put(&mut o, "mode", raw(rec, "ip_configuration_mode"));
    put(&mut o, "ipv6Mode", raw(rec, "ipv6_configuration_mode"));
    o.insert("mtu".into(), num(rec.get("MTU")));
    put(&mut o, "netmask", raw(rec, "netmask"));
    o.insert("physical".into(), Value::Bool(truthy(rec.get("physical"))));
    put(
        &mut o,
        "primaryAddressType",
        raw(rec, "primary_address_type"),
    );
    o.insert("vlan".into(), num(rec.get("VLAN")));
    if let Some(m) = metrics {
        o.insert("speed".into(), num(m.get("speed")));
    }
    put(&mut o, "$host", ctx.link(rec, "host"));
    put(&mut o, "$network", ctx.link(rec, "network"));
    o
}

pub(super) fn vif(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let tx = map_entry(rec, "other_config", "ethtool-tx").and_then(Value::as_str);
    let mut o = Record::new();
    o.insert("type".into(), Value::String("VIF".into()));
    put(&mut o, "allowedIpv4Addresses", raw(rec, "ipv4_allowed"));
    put(&mut o, "allowedIpv6Addresses", raw(rec, "ipv6_allowed"));
    o.insert(
        "attached".into(),
        Value::Bool(truthy(rec.get("currently_attached"))),
    );
    put(&mut o, "device", raw(rec, "device"));
    put(&mut o, "lockingMode", raw(rec, "locking_mode"));
    put(&mut o, "MAC", raw(rec, "MAC"));
    o.insert("MTU".into(), num(rec.get("MTU")));
    put(&mut o, "other_config", raw(rec, "other_config"));
    o.insert(
        "txChecksumming".into(),
        Value::Bool(!matches!(tx, Some("false" | "off"))),
    );
    if get_str(rec, "qos_algorithm_type") == Some("ratelimit") {
        if let Some(kbps) = get_map(rec, "qos_algorithm_params").and_then(|m| m.get("kbps")) {
            o.insert("rateLimit".into(), num(Some(kbps)));
        }
    }
    put(&mut o, "$network", ctx.link(rec, "network"));
    put(&mut o, "$VM", ctx.link(rec, "VM"));
    o
}
