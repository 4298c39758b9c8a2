//! `sr.set`, `sr.scan`, and the SR's connections: `sr.connectAllPbds`, `sr.disconnectAllPbds`, `sr.forget`,
//! `sr.destroy` (`packages/xo-server/src/api/sr.mjs`, `xapi/mixins/storage.mjs`).

use serde_json::{Map, Value};

use super::opt_str;
use super::resolve::{r, resolve_one, schema, spec_of, Resolve, Xapi};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;

/// `resolve` entries of the `sr.*` methods of this file.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    (
        "sr.connectAllPbds",
        &[r("sr", "id", &["SR"], "administrate")],
    ),
    ("sr.destroy", &[r("sr", "id", &["SR"], "administrate")]),
    (
        "sr.disconnectAllPbds",
        &[r("sr", "id", &["SR"], "administrate")],
    ),
    ("sr.forget", &[r("sr", "id", &["SR"], "administrate")]),
    ("sr.scan", &[r("sr", "id", &["SR"], "operate")]),
    ("sr.set", &[r("sr", "id", &["SR"], "operate")]),
];

async fn set(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, sr) = resolve_one(&ctx, &p, spec_of(RESOLVES, "sr.set"), "sr").await?;
    for field in ["name_label", "name_description"] {
        if let Some(v) = opt_str(&p, field) {
            x.call(
                &format!("SR.set_{field}"),
                vec![sr.xapi_ref().into(), v.into()],
            )
            .await?;
        }
    }
    Ok(Value::Bool(true))
}

async fn scan(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, sr) = resolve_one(&ctx, &p, spec_of(RESOLVES, "sr.scan"), "sr").await?;
    x.call_async("SR.scan", vec![sr.xapi_ref().into()]).await?;
    Ok(Value::Bool(true))
}

/// The SR of `method` with its XAPI and its PBDs (as XAPI has them now).
async fn sr_and_pbds(
    ctx: &Ctx,
    p: &Map<String, Value>,
    method: &str,
) -> Result<(Xapi, String, Vec<String>), ApiError> {
    let (x, sr) = resolve_one(ctx, p, spec_of(RESOLVES, method), "sr").await?;
    let pbds = x.field_refs("SR", sr.xapi_ref(), "PBDs").await?;
    Ok((x, sr.xapi_ref().to_owned(), pbds))
}

/// `PBD.plug` (`plug`) or `PBD.unplug` of every PBD, all at once as XO does; the first failure is returned.
async fn plug_all(x: &Xapi, pbds: Vec<String>, plug: bool) -> Result<(), ApiError> {
    let method = if plug { "PBD.plug" } else { "PBD.unplug" };
    let calls = pbds
        .into_iter()
        .map(|pbd| x.call_async(method, vec![pbd.into()]));
    for r in futures::future::join_all(calls).await {
        r?;
    }
    Ok(())
}

async fn connect_all_pbds(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, _, pbds) = sr_and_pbds(&ctx, &p, "sr.connectAllPbds").await?;
    plug_all(&x, pbds, true).await?;
    Ok(Value::Bool(true))
}

async fn disconnect_all_pbds(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, _, pbds) = sr_and_pbds(&ctx, &p, "sr.disconnectAllPbds").await?;
    plug_all(&x, pbds, false).await?;
    Ok(Value::Bool(true))
}

/// XO's `forgetSr`: every PBD unplugged, then `SR.forget` (the SR's records go, its data stays).
async fn forget(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, sr, pbds) = sr_and_pbds(&ctx, &p, "sr.forget").await?;
    plug_all(&x, pbds, false).await?;
    x.call("SR.forget", vec![sr.into()]).await?;
    Ok(Value::Bool(true))
}

/// XO's `destroySr`: every PBD unplugged, then `SR.destroy` (XAPI refuses an SR that still holds disks).
async fn destroy(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, sr, pbds) = sr_and_pbds(&ctx, &p, "sr.destroy").await?;
    plug_all(&x, pbds, false).await?;
    x.call("SR.destroy", vec![sr.into()]).await?;
    Ok(Value::Bool(true))
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("sr.scan", scan)
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("sr.connectAllPbds", connect_all_pbds)
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("sr.disconnectAllPbds", disconnect_all_pbds)
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("sr.forget", forget).params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("sr.destroy", destroy).params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("sr.set", set)
            .params(schema(r#"{"id": {"type": "string"}, "name_label": {"type": "string", "optional": true}, "name_description": {"type": "string", "minLength": 0, "optional": true}}"#)),
    ]
}
