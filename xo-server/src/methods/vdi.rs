//! `vdi.delete`, `vdi.set`, `vdi.migrate` and `disk.create` (XO's way of creating a VDI, optionally
//! attached to a VM) — `packages/xo-server/src/api/vdi.mjs`, `disk.mjs`.

use serde_json::{json, Map, Value};

use super::resolve::{
    check_permissions, parse_size, r, resolve, schema, spec_of, CallError, Resolve, Xapi,
};
use super::vm_disks::{vbd_create, vdi_create};
use super::{opt_bool, opt_str, req_str};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;

const VDIS: &[&str] = &["VDI", "VDI-snapshot"];

/// `resolve` entries of the methods of this file.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    (
        "disk.create",
        &[
            r("vm", "vm", &["VM"], "administrate"),
            r("sr", "sr", &["SR"], ""),
        ],
    ),
    ("vdi.delete", &[r("vdi", "id", VDIS, "administrate")]),
    (
        "vdi.migrate",
        &[
            r("vdi", "id", VDIS, "administrate"),
            r("sr", "sr_id", &["SR"], ""),
        ],
    ),
    ("vdi.set", &[r("vdi", "id", VDIS, "administrate")]),
];

fn spec(method: &str) -> &'static [Resolve] {
    spec_of(RESOLVES, method)
}

/// XO's `moveVdi`: `VDI.pool_migrate`, or a copy to the SR (VBDs recreated, old VDI destroyed) when the
/// pool cannot migrate it. The (possibly new) VDI ref.
pub(super) async fn move_vdi(x: &Xapi, vdi: &str, sr: &str) -> Result<String, ApiError> {
    if x.field("VDI", vdi, "SR").await?.as_str() == Some(sr) {
        return Ok(vdi.to_owned());
    }
    match x
        .try_call_async("VDI.pool_migrate", vec![vdi.into(), sr.into(), json!({})])
        .await
    {
        Ok(v) => Ok(v.as_str().unwrap_or(vdi).to_owned()),
        Err(CallError::Xapi(e))
            if matches!(
                e.code.as_str(),
                "NO_HOSTS_AVAILABLE" | "LICENCE_RESTRICTION" | "VDI_NEEDS_VM_FOR_MIGRATE"
            ) =>
        {
            let new_vdi = x
                .call_async("VDI.copy", vec![vdi.into(), sr.into()])
                .await?;
            let new_vdi = new_vdi
                .as_str()
                .ok_or_else(|| ApiError::internal("VDI.copy did not return a ref"))?
                .to_owned();
            let vbds = x.field("VDI", vdi, "VBDs").await?;
            for vbd in vbds.as_array().into_iter().flatten() {
                let Some(vbd) = vbd.as_str() else { continue };
                let rec = x.record("VBD", vbd).await?;
                x.call("VBD.destroy", vec![vbd.into()]).await?;
                let mut new_rec = Map::new();
                for k in [
                    "VM",
                    "userdevice",
                    "bootable",
                    "mode",
                    "type",
                    "unpluggable",
                    "empty",
                    "other_config",
                    "qos_algorithm_type",
                    "qos_algorithm_params",
                ] {
                    if let Some(v) = rec.get(k) {
                        new_rec.insert(k.into(), v.clone());
                    }
                }
                new_rec.insert("VDI".into(), new_vdi.clone().into());
                x.call("VBD.create", vec![Value::Object(new_rec)]).await?;
            }
            x.call_async("VDI.destroy", vec![vdi.into()]).await?;
            Ok(new_vdi)
        }
        Err(e) => Err(x.api(e)),
    }
}

async fn delete(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec("vdi.delete")).await?;
    let vdi = res.get("vdi")?;
    let x = Xapi::of(&res.pools, vdi)?;
    x.call_async("VDI.destroy", vec![vdi.xapi_ref().into()])
        .await?;
    Ok(Value::Bool(true))
}

async fn set(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec("vdi.set")).await?;
    let vdi = res.get("vdi")?;
    let x = Xapi::of(&res.pools, vdi)?;
    let vdi_ref = vdi.xapi_ref();
    if let Some(size) = p.get("size") {
        let size = parse_size(size)?;
        let current = vdi.get("size").and_then(Value::as_i64).unwrap_or(0);
        if size < current {
            return Err(ApiError::invalid_parameters_message(format!(
                "cannot set new size ({size}) below the current size ({current})"
            )));
        }
        let sr = vdi.get("$SR").and_then(Value::as_str).unwrap_or_default();
        check_permissions(&ctx, &[(sr.to_owned(), "operate".to_owned())])?;
        x.call_async("VDI.resize", vec![vdi_ref.into(), size.into()])
            .await?;
    }
    if let Some(cbt) = opt_bool(&p, "cbt") {
        let m = if cbt {
            "VDI.enable_cbt"
        } else {
            "VDI.disable_cbt"
        };
        x.call(m, vec![vdi_ref.into()]).await?;
    }
    for field in ["name_label", "name_description"] {
        if let Some(v) = opt_str(&p, field) {
            x.call(&format!("VDI.set_{field}"), vec![vdi_ref.into(), v.into()])
                .await?;
        }
    }
    Ok(Value::Bool(true))
}

async fn migrate(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec("vdi.migrate")).await?;
    let vdi = res.get("vdi")?;
    let sr = res.get("sr")?;
    if !ctx.is_admin() {
        if p.get("resourceSet").is_some() {
            // resource sets (self-service) are not part of this server yet
            return Err(ApiError::not_implemented());
        }
        check_permissions(&ctx, &[(sr.id().to_owned(), "administrate".to_owned())])?;
    }
    let x = Xapi::of(&res.pools, vdi)?;
    move_vdi(&x, vdi.xapi_ref(), sr.xapi_ref()).await?;
    Ok(Value::Bool(true))
}

async fn disk_create(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec("disk.create")).await?;
    let sr = res.get("sr")?;
    check_permissions(&ctx, &[(sr.id().to_owned(), "administrate".to_owned())])?;
    let vm = res.opt("vm");
    if vm.is_some_and(|vm| vm.pool() != sr.pool()) {
        return Err(ApiError::invalid_parameters_message(
            "the VM and the SR are in different pools",
        ));
    }
    let x = Xapi::of(&res.pools, sr)?;
    let size = parse_size(p.get("size").unwrap_or(&Value::Null))?;
    let vdi = vdi_create(&x, sr.xapi_ref(), size, req_str(&p, "name")?, "").await?;
    if let Some(vm) = vm {
        let attached = vbd_create(
            &x,
            vm.xapi_ref(),
            Some(&vdi),
            opt_bool(&p, "bootable").unwrap_or(false),
            opt_str(&p, "position").map(str::to_owned),
            opt_str(&p, "mode"),
            false,
        )
        .await;
        if let Err(e) = attached {
            let _ = x.call_async("VDI.destroy", vec![vdi.into()]).await;
            return Err(e);
        }
    }
    Ok(Value::String(x.wait_object_id("VDI", &vdi).await?))
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("disk.create", disk_create)
            .description("create a new disk on a SR")
            .params(schema(r#"{"name": {"type": "string"}, "size": {"type": ["integer", "string"]}, "sr": {"type": "string"}, "vm": {"type": "string", "optional": true}, "bootable": {"type": "boolean", "optional": true}, "mode": {"type": "string", "optional": true}, "position": {"type": "string", "optional": true}}"#)),
        Method::new("vdi.delete", delete)
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("vdi.set", set)
            .params(schema(r#"{"id": {"type": "string"}, "name_label": {"type": "string", "optional": true}, "name_description": {"type": "string", "minLength": 0, "optional": true}, "size": {"type": ["integer", "string"], "optional": true}, "cbt": {"type": "boolean", "optional": true}}"#)),
        Method::new("vdi.migrate", migrate)
            .params(schema(r#"{"id": {"type": "string"}, "resourceSet": {"type": "string", "optional": true}, "sr_id": {"type": "string"}}"#)),
    ]
}
