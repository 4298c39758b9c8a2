//! `VM.provision`: create the disks a template describes in `other_config.disks`
//! (`<provision><disk device="0" size="…" sr="<uuid or empty>" bootable="true" type="system"/></provision>`).

use serde_json::json;
use xapi_types::{Ref, Value, XapiError};

use super::allowed::{assert_vm_op, update_vm_tree};
use super::helpers::{get, jr, pool_ref, rf, s, valid, void, Params};
use super::vbd::create_vbd;
use super::vdi::create_vdi;
use super::vm_ops_check::VmOp;
use crate::db::{rec, Db};
use crate::rpc::{Ctx, Registry};

pub fn register(reg: &mut Registry) {
    reg.register("VM.provision", provision);
}

/// One `<disk …/>` element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskSpec {
    pub device: String,
    pub size: i64,
    pub sr: String,
    pub bootable: bool,
    pub kind: String,
}

/// The value of `name="…"` inside an element's text.
fn attr(elem: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=");
    let mut rest = elem;
    while let Some(pos) = rest.find(&needle) {
        let before_ok = pos == 0 || rest.as_bytes()[pos - 1].is_ascii_whitespace();
        let after = &rest[pos + needle.len()..];
        if before_ok {
            let quote = after.chars().next()?;
            if quote == '"' || quote == '\'' {
                let body = &after[1..];
                let end = body.find(quote)?;
                return Some(body[..end].replace("&quot;", "\"").replace("&amp;", "&"));
            }
            return None;
        }
        rest = after;
    }
    None
}

/// Parse the `disks` XML; `INVALID_VALUE ["other_config:disks", xml]` when malformed.
pub fn parse_disks(xml: &str) -> Result<Vec<DiskSpec>, XapiError> {
    let bad = || XapiError::new("INVALID_VALUE", ["other_config:disks", xml]);
    if !xml.contains("<provision") {
        return Err(bad());
    }
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<disk") {
        let after = &rest[start + 5..];
        let end = after.find('>').ok_or_else(bad)?;
        let elem = &after[..end];
        let size = attr(elem, "size")
            .and_then(|v| v.parse().ok())
            .ok_or_else(bad)?;
        out.push(DiskSpec {
            device: attr(elem, "device").ok_or_else(bad)?,
            size,
            sr: attr(elem, "sr").unwrap_or_default(),
            bootable: attr(elem, "bootable").is_some_and(|b| b == "true"),
            kind: attr(elem, "type").unwrap_or_else(|| "system".into()),
        });
        rest = &after[end..];
    }
    Ok(out)
}

/// Provision a template's disks, then drop `other_config.disks`.
pub fn provision_vm(db: &mut Db, vm: &Ref) -> Result<(), XapiError> {
    assert_vm_op(db, vm, VmOp::provision)?;
    let r = get(db, "VM", vm)?;
    let Some(xml) = r
        .get("other_config")
        .and_then(|o| o.get("disks"))
        .and_then(Value::as_str)
    else {
        return Ok(());
    };
    let disks = parse_disks(xml)?;
    let default_sr = db
        .get("pool", &pool_ref(db))
        .map(|p| rf(p, "default_SR"))
        .unwrap_or_else(Ref::null);
    // Resolve every SR before creating anything.
    let mut plan = Vec::new();
    for d in &disks {
        let sr = if d.sr.is_empty() {
            default_sr.clone()
        } else {
            db.find_by_uuid("SR", &d.sr).unwrap_or_else(Ref::null)
        };
        if !valid(db, "SR", &sr) {
            return Err(XapiError::new(
                "DEFAULT_SR_NOT_FOUND",
                [if d.sr.is_empty() {
                    sr.0.clone()
                } else {
                    d.sr.clone()
                }],
            ));
        }
        plan.push((d.clone(), sr));
    }
    for (d, sr) in plan {
        let vdi = create_vdi(
            db,
            rec([
                ("SR", jr(&sr)),
                (
                    "name_label",
                    json!(format!("{} {}", s(&r, "name_label"), d.device)),
                ),
                ("name_description", json!("Created by template provisioner")),
                ("virtual_size", json!(d.size)),
                (
                    "type",
                    json!(if d.kind == "system" || d.kind.is_empty() {
                        "system"
                    } else {
                        "user"
                    }),
                ),
                ("sharable", json!(false)),
                ("read_only", json!(false)),
                ("other_config", json!({})),
            ]),
        )?;
        create_vbd(
            db,
            rec([
                ("VM", jr(vm)),
                ("VDI", jr(&vdi)),
                ("userdevice", json!(d.device)),
                ("bootable", json!(d.bootable)),
                ("mode", json!("RW")),
                ("type", json!("Disk")),
                ("empty", json!(false)),
                ("other_config", json!({"owner": ""})),
                ("qos_algorithm_type", json!("")),
                ("qos_algorithm_params", json!({})),
            ]),
        )?;
    }
    let mut oc = r
        .get("other_config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    oc.remove("disks");
    db.set_field("VM", vm, "other_config", Value::Object(oc))?;
    update_vm_tree(db, vm)
}

fn provision(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let vm = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.write(|db| provision_vm(db, &vm)).map(|_| void())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_template_disks() {
        let xml = r#"<provision><disk device="0" size="10737418240" sr="" bootable="true" type="system"/><disk device="1" size="1024" sr="abc" bootable="false" type="user"/></provision>"#;
        let d = parse_disks(xml).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0],
            DiskSpec {
                device: "0".into(),
                size: 10737418240,
                sr: "".into(),
                bootable: true,
                kind: "system".into()
            }
        );
        assert_eq!(d[1].sr, "abc");
        assert!(!d[1].bootable);
        assert_eq!(parse_disks("nope").unwrap_err().code, "INVALID_VALUE");
        assert_eq!(
            parse_disks(r#"<provision><disk device="0" size="x"/></provision>"#)
                .unwrap_err()
                .code,
            "INVALID_VALUE"
        );
        assert!(parse_disks("<provision/>").unwrap().is_empty());
    }
}
