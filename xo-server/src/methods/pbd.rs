//! `pbd.connect`, `pbd.disconnect`, `pbd.delete`: one host's connection to an SR (`packages/xo-server/src/api/
//! pbd.mjs`, `xapi/mixins/storage.mjs`).

use serde_json::{Map, Value};

use super::resolve::{r, resolve_one, schema, spec_of, Resolve};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;

/// `resolve` entries of the `pbd.*` methods.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    ("pbd.connect", &[r("pbd", "id", &["PBD"], "administrate")]),
    ("pbd.delete", &[r("pbd", "id", &["PBD"], "administrate")]),
    (
        "pbd.disconnect",
        &[r("pbd", "id", &["PBD"], "administrate")],
    ),
];

/// Calls `xapi_method` on the PBD of `method` (asynchronously when `r#async`).
async fn on_pbd(
    ctx: Ctx,
    p: Map<String, Value>,
    method: &str,
    xapi_method: &str,
    r#async: bool,
) -> Result<Value, ApiError> {
    let (x, pbd) = resolve_one(&ctx, &p, spec_of(RESOLVES, method), "pbd").await?;
    let params = vec![pbd.xapi_ref().into()];
    if r#async {
        x.call_async(xapi_method, params).await?;
    } else {
        x.call(xapi_method, params).await?;
    }
    Ok(Value::Bool(true))
}

async fn connect(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    on_pbd(ctx, p, "pbd.connect", "PBD.plug", true).await
}

async fn disconnect(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    on_pbd(ctx, p, "pbd.disconnect", "PBD.unplug", true).await
}

async fn delete(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    on_pbd(ctx, p, "pbd.delete", "PBD.destroy", false).await
}

pub(super) fn methods() -> Vec<Method> {
    let id = || schema(r#"{"id": {"type": "string"}}"#);
    vec![
        Method::new("pbd.connect", connect).params(id()),
        Method::new("pbd.disconnect", disconnect).params(id()),
        Method::new("pbd.delete", delete).params(id()),
    ]
}
