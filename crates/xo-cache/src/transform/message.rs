//! `message` → XO `message`.

use crate::jsval::{put, raw, to_timestamp, Record};

pub(super) fn message(rec: &Record) -> Record {
    let mut o = Record::new();
    put(&mut o, "body", raw(rec, "body"));
    put(&mut o, "name", raw(rec, "name"));
    o.insert("time".into(), to_timestamp(rec.get("timestamp")));
    // Already a uuid (not a ref): copied as is.
    put(&mut o, "$object", raw(rec, "obj_uuid"));
    o
}
