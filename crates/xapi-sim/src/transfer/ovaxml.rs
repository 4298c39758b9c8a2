//! `ova.xml` of an XVA (spec §7): building it from the DB (refs of exported objects renamed `Ref:N`, other single
//! refs `OpaqueRef:NULL`, other ref-set members dropped) and parsing it back into typed snapshots.

use std::collections::HashMap;

use serde_json::Value;
use xapi_types::schema::{self, Type};
use xapi_types::{xmlrpc, Ref, XapiError};

use crate::db::{Db, Record};
use crate::state::now_xapi;

/// One exported object.
#[derive(Debug, Clone)]
pub(crate) struct Obj {
    pub class: &'static str,
    /// `Ref:N`.
    pub id: String,
    /// The object's ref in the exporting pool (not written).
    pub r: Ref,
    pub snapshot: Record,
}

/// The objects an export of `vm` writes: the VM, its VBDs, the VDIs of its disks (not CD images), its VIFs, their networks and the
/// SRs of the VDIs. Ids are `Ref:0…` in that order. Without `snapshot_metadata` (a full export), the VM is written
/// as XAPI's `export.ml` `make_vm` does: not a snapshot, no snapshot links or time (an exported snapshot comes back
/// as a template of its own).
pub(crate) fn collect(db: &Db, vm: &Ref, snapshot_metadata: bool) -> Result<Vec<Obj>, XapiError> {
    let vmr = db.record("VM", vm)?;
    let mut list: Vec<(&'static str, Ref)> = vec![("VM", vm.clone())];
    let refs = |rec: &Record, f: &str| -> Vec<Ref> {
        rec.get(f)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(Ref::from).collect())
            .unwrap_or_default()
    };
    let one = |rec: &Record, f: &str| {
        Ref::from(rec.get(f).and_then(Value::as_str).unwrap_or(Ref::NULL_STR))
    };
    let mut vdis = Vec::new();
    let mut srs = Vec::new();
    for vbd in refs(vmr, "VBDs") {
        let Some(b) = db.get("VBD", &vbd) else {
            continue;
        };
        list.push(("VBD", vbd.clone()));
        // Only disks carry data; a CD's ISO stays behind (its VBD comes back empty).
        if b.get("type").and_then(Value::as_str) != Some("Disk") {
            continue;
        }
        let vdi = one(b, "VDI");
        if let Some(v) = db.get("VDI", &vdi) {
            if !vdis.contains(&vdi) {
                vdis.push(vdi.clone());
                let sr = one(v, "SR");
                if db.exists("SR", &sr) && !srs.contains(&sr) {
                    srs.push(sr);
                }
            }
        }
    }
    let mut nets = Vec::new();
    for vif in refs(vmr, "VIFs") {
        let Some(v) = db.get("VIF", &vif) else {
            continue;
        };
        list.push(("VIF", vif.clone()));
        let n = one(v, "network");
        if db.exists("network", &n) && !nets.contains(&n) {
            nets.push(n);
        }
    }
    list.extend(vdis.into_iter().map(|r| ("VDI", r)));
    list.extend(nets.into_iter().map(|r| ("network", r)));
    list.extend(srs.into_iter().map(|r| ("SR", r)));
    let ids: HashMap<Ref, String> = list
        .iter()
        .enumerate()
        .map(|(i, (_, r))| (r.clone(), format!("Ref:{i}")))
        .collect();
    let mut out = Vec::with_capacity(list.len());
    for (class, r) in list {
        let mut snap = db.record(class, &r)?.clone();
        rename_refs(class, &mut snap, |x| ids.get(x).cloned());
        if class == "VM" && !snapshot_metadata {
            snap.insert("is_a_snapshot".into(), Value::Bool(false));
            snap.insert("snapshot_of".into(), Ref::NULL_STR.into());
            snap.insert("snapshots".into(), Value::Array(Vec::new()));
            snap.insert("snapshot_time".into(), xapi_types::datetime::EPOCH.into());
            snap.insert("transportable_snapshot_id".into(), "".into());
            snap.insert("parent".into(), Ref::NULL_STR.into());
        }
        out.push(Obj {
            class,
            id: ids[&r].clone(),
            r,
            snapshot: snap,
        });
    }
    Ok(out)
}

/// Rewrite every ref-typed field of `rec` (a `class` record) with `map`: single refs with no image become
/// `OpaqueRef:NULL`, set members with no image are dropped.
pub(crate) fn rename_refs(class: &str, rec: &mut Record, map: impl Fn(&Ref) -> Option<String>) {
    let Some(spec) = schema::class(class) else {
        return;
    };
    for f in spec.fields {
        let Some(v) = rec.get_mut(f.name) else {
            continue;
        };
        match f.ty {
            Type::Ref(_) => {
                if let Some(s) = v.as_str() {
                    let r = Ref::from(s);
                    *v = Value::String(if r.is_null() {
                        Ref::NULL_STR.to_owned()
                    } else {
                        map(&r).unwrap_or_else(|| Ref::NULL_STR.to_owned())
                    });
                }
            }
            Type::Set(Type::Ref(_)) => {
                if let Some(a) = v.as_array() {
                    *v = Value::Array(
                        a.iter()
                            .filter_map(Value::as_str)
                            .filter_map(|s| map(&Ref::from(s)))
                            .map(Value::String)
                            .collect(),
                    );
                }
            }
            _ => {}
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn member(name: &str, value: &str) -> String {
    format!("<member><name>{}</name>{value}</member>", esc(name))
}

/// The `ova.xml` text: `{version: {...}, objects: [{class, id, snapshot}]}` as an XML-RPC value.
pub(crate) fn render(hostname: &str, objs: &[Obj]) -> String {
    let s = |v: &str| format!("<value>{}</value>", esc(v));
    let int = |v: i64| format!("<value><i4>{v}</i4></value>");
    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<value><struct>");
    let version = [
        member("hostname", &s(hostname)),
        member("date", &s(&now_xapi()[..8])),
        member("product_version", &s("8.3.0")),
        member("product_brand", &s("XCP-ng")),
        member("build_number", &s("release/yangtze/master/58")),
        member("xapi_major", &int(25)),
        member("xapi_minor", &int(6)),
        member("export_vsn", &int(2)),
    ]
    .concat();
    out.push_str(&member(
        "version",
        &format!("<value><struct>{version}</struct></value>"),
    ));
    out.push_str("<member><name>objects</name><value><array><data>");
    for o in objs {
        let snap = xmlrpc::encode_value(&Value::Object(o.snapshot.clone()), &Type::Record(o.class));
        out.push_str("<value><struct>");
        out.push_str(&member("class", &s(o.class)));
        out.push_str(&member("id", &s(&o.id)));
        out.push_str(&member("snapshot", &snap));
        out.push_str("</struct></value>");
    }
    out.push_str("</data></array></value></member></struct></value>");
    out
}

/// An object read back from `ova.xml` (snapshot coerced to the class's types).
#[derive(Debug, Clone)]
pub(crate) struct ParsedObj {
    pub class: &'static str,
    pub id: String,
    pub snapshot: Record,
}

fn import_error(msg: impl Into<String>) -> XapiError {
    XapiError::new("IMPORT_ERROR", [msg.into()])
}

/// Parse `ova.xml`; classes this sim does not know are skipped.
pub(crate) fn parse(text: &str) -> Result<Vec<ParsedObj>, XapiError> {
    let v = xmlrpc::decode_value(text)
        .map_err(|e| import_error(format!("Failed to parse ova.xml: {e}")))?;
    let objs = v
        .get("objects")
        .and_then(Value::as_array)
        .ok_or_else(|| import_error("ova.xml has no objects"))?;
    let mut out = Vec::new();
    for o in objs {
        let class = o.get("class").and_then(Value::as_str).unwrap_or_default();
        let id = o.get("id").and_then(Value::as_str).unwrap_or_default();
        let Some(spec) = schema::class(class) else {
            continue;
        };
        let snap = o.get("snapshot").cloned().unwrap_or(Value::Null);
        let snap = schema::canonicalise(&Type::Record(spec.name), snap)
            .map_err(|e| import_error(format!("bad {class} snapshot {id}: {e}")))?;
        let Value::Object(snapshot) = snap else {
            return Err(import_error(format!("bad {class} snapshot {id}")));
        };
        out.push(ParsedObj {
            class: spec.name,
            id: id.to_owned(),
            snapshot,
        });
    }
    Ok(out)
}
