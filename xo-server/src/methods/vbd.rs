//! `vbd.connect`, `vbd.disconnect`, `vbd.delete`, `vbd.setBootable` (`packages/xo-server/src/api/vbd.mjs`).

use serde_json::{Map, Value};

use super::resolve::{r, resolve, schema, spec_of, Resolve, Xapi};
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
    (
        "vbd.setBootable",
        &[r("vbd", "vbd", &["VBD"], "administrate")],
    ),
];

async fn vbd_of(
    ctx: &Ctx,
    p: &Map<String, Value>,
    method: &str,
) -> Result<(Xapi, String), ApiError> {
    let res = resolve(ctx, p, spec_of(RESOLVES, method)).await?;
    let vbd = res.get("vbd")?;
    Ok((Xapi::of(&res.pools, vbd)?, vbd.xapi_ref().to_owned()))
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
        Method::new("vbd.setBootable", set_bootable).params(schema(
            r#"{"vbd": {"type": "string"}, "bootable": {"type": "boolean"}}"#,
        )),
    ]
}
