//! `VBD` → XO `VBD`.

use serde_json::Value;

use crate::jsval::{get_str, put, raw, truthy, Record};
use crate::lookup::Ctx;

pub(super) fn vbd(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = Record::new();
    o.insert("type".into(), Value::String("VBD".into()));
    o.insert(
        "attached".into(),
        Value::Bool(truthy(rec.get("currently_attached"))),
    );
    o.insert("bootable".into(), Value::Bool(truthy(rec.get("bootable"))));
    let device = rec
        .get("device")
        .filter(|d| truthy(Some(d)))
        .cloned()
        .unwrap_or(Value::Null);
    o.insert("device".into(), device);
    o.insert(
        "is_cd_drive".into(),
        Value::Bool(get_str(rec, "type") == Some("CD")),
    );
    put(&mut o, "position", raw(rec, "userdevice"));
    o.insert(
        "read_only".into(),
        Value::Bool(get_str(rec, "mode") == Some("RO")),
    );
    put(&mut o, "VDI", ctx.link(rec, "VDI"));
    put(&mut o, "VM", ctx.link(rec, "VM"));
    o
}
