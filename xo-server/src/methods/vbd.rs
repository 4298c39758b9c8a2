//! `vbd.connect`, `vbd.disconnect`, `vbd.delete`, `vbd.set` (position), `vbd.setBootable`
//! (`packages/xo-server/src/api/vbd.mjs`), and `vm.attachDisk` (a VBD for an existing disk, `vm.mjs`).

use serde_json::{Map, Value};

use super::resolve::{r, resolve, resolve_one, schema, spec_of, Resolve, Xapi};
use super::vm_disks::vbd_create;
use super::{opt_bool, opt_str};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;

/// `resolve` entries of the `vbd.*` methods of this file.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    ("vbd.connect", &[r("vbd", "id", &["VBD"], "administrate")]),
    ("vbd.delete", &[r("vbd", "id", &["VBD"], "administrate")]),
    (
        "vbd.disconnect",
        &[r("vbd", "id", &["VBD"], "administrate")],
    ),
    ("vbd.set", &[r("vbd", "id", &["VBD"], "administrate")]),
    (
        "vbd.setBootable",
        &[r("vbd", "vbd", &["VBD"], "administrate")],
    ),
    (
        "vm.attachDisk",
        &[
            r("vm", "vm", &["VM"], "administrate"),
            r("vdi", "vdi", &["VDI"], "administrate"),
        ],
    ),
];

async fn vbd_of(
    ctx: &Ctx,
    p: &Map<String, Value>,
    method: &str,
) -> Result<(Xapi, String), ApiError> {
    let (x, vbd) = resolve_one(ctx, p, spec_of(RESOLVES, method), "vbd").await?;
    Ok((x, vbd.xapi_ref().to_owned()))
}

async fn connect(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, vbd) = vbd_of(&ctx, &p, "vbd.connect").await?;
    x.call_async("VBD.plug", vec![vbd.into()]).await?;
    Ok(Value::Bool(true))
}

async fn disconnect(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, vbd) = vbd_of(&ctx, &p, "vbd.disconnect").await?;
    x.call_async("VBD.unplug", vec![vbd.into()]).await?;
    Ok(Value::Bool(true))
}

async fn delete(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, vbd) = vbd_of(&ctx, &p, "vbd.delete").await?;
    // unplugged first when attached (errors ignored, as XO's VBD_destroy)
    if x.field("VBD", &vbd, "currently_attached").await?.as_bool() == Some(true) {
        if let Err(e) = x.call_async("VBD.unplug", vec![vbd.clone().into()]).await {
            tracing::debug!("VBD.unplug before destroy failed: {e}");
        }
    }
    x.call("VBD.destroy", vec![vbd.into()]).await?;
    Ok(Value::Bool(true))
}

/// XO's `vbd.set`: the device position (`userdevice`).
async fn set(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let position = match p.get("position") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let (x, vbd) = vbd_of(&ctx, &p, "vbd.set").await?;
    if let Some(position) = position {
        x.call("VBD.set_userdevice", vec![vbd.into(), position.into()])
            .await?;
    }
    Ok(Value::Bool(true))
}

/// XO's `vm.attachDisk`: a VBD for the disk `vdi` on the VM (`position`: its userdevice, else the first
/// free one; `mode` `RW` unless told `RO`).
async fn attach_disk(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "vm.attachDisk")).await?;
    let (vm, vdi) = (res.get("vm")?, res.get("vdi")?);
    if vm.pool() != vdi.pool() {
        return Err(ApiError::invalid_parameters_message(
            "the VM and the disk are in different pools",
        ));
    }
    let x = Xapi::of(&res.pools, vm)?;
    vbd_create(
        &x,
        vm.xapi_ref(),
        Some(vdi.xapi_ref()),
        opt_bool(&p, "bootable").unwrap_or(false),
        opt_str(&p, "position").map(str::to_owned),
        opt_str(&p, "mode"),
        false,
    )
    .await?;
    Ok(Value::Bool(true))
}

async fn set_bootable(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let bootable = p.get("bootable").and_then(Value::as_bool).unwrap_or(false);
    let (x, vbd) = vbd_of(&ctx, &p, "vbd.setBootable").await?;
    x.call("VBD.set_bootable", vec![vbd.into(), bootable.into()])
        .await?;
    Ok(Value::Bool(true))
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("vbd.connect", connect).params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("vbd.disconnect", disconnect).params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("vbd.delete", delete).params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("vbd.set", set).params(schema(
            r#"{"id": {"type": "string"}, "position": {"type": ["string", "number"], "optional": true}}"#,
        )),
        Method::new("vm.attachDisk", attach_disk).params(schema(
            r#"{"bootable": {"type": "boolean", "optional": true}, "mode": {"type": "string", "optional": true}, "position": {"type": "string", "optional": true}, "vdi": {"type": "string"}, "vm": {"type": "string"}}"#,
        )),
        Method::new("vbd.setBootable", set_bootable).params(schema(
            r#"{"vbd": {"type": "string"}, "bootable": {"type": "boolean"}}"#,
        )),
    ]
}
