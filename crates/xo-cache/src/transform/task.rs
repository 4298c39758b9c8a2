//! `task` → XO `task`.

use serde_json::Value;

use crate::jsval::{get_map, num, put, raw, to_timestamp, truthy, Record};
use crate::lookup::Ctx;

pub(super) fn task(rec: &Record, r: &str, ctx: &Ctx<'_>) -> Record {
    let mut o = Record::new();
    let applies_to = get_map(rec, "other_config")
        .and_then(|m| m.get("applies_to"))
        .filter(|v| truthy(Some(v)))
        .and_then(Value::as_str)
        .and_then(|target| ctx.rec_any(target))
        .and_then(|(_, target)| target.get("uuid").cloned());
    put(&mut o, "allowedOperations", raw(rec, "allowed_operations"));
    o.insert("created".into(), to_timestamp(rec.get("created")));
    put(&mut o, "current_operations", raw(rec, "current_operations"));
    o.insert("finished".into(), to_timestamp(rec.get("finished")));
    put(&mut o, "name_description", raw(rec, "name_description"));
    put(&mut o, "name_label", raw(rec, "name_label"));
    o.insert("progress".into(), num(rec.get("progress")));
    put(&mut o, "result", raw(rec, "result"));
    put(&mut o, "status", raw(rec, "status"));
    o.insert("xapiRef".into(), Value::String(r.to_owned()));
    put(&mut o, "applies_to", applies_to);
    put(&mut o, "$host", ctx.link(rec, "resident_on"));
    o
}
