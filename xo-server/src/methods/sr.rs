//! `sr.set` and `sr.scan` (`packages/xo-server/src/api/sr.mjs`).

use serde_json::{Map, Value};

use super::opt_str;
use super::resolve::{r, resolve, schema, spec_of, Resolve, Xapi};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;

/// `resolve` entries of the `sr.*` methods of this file.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    ("sr.scan", &[r("sr", "id", &["SR"], "operate")]),
    ("sr.set", &[r("sr", "id", &["SR"], "operate")]),
];

async fn set(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "sr.set")).await?;
    let sr = res.get("sr")?;
    let x = Xapi::of(&res.pools, sr)?;
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
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "sr.scan")).await?;
    let sr = res.get("sr")?;
    let x = Xapi::of(&res.pools, sr)?;
    x.call_async("SR.scan", vec![sr.xapi_ref().into()]).await?;
    Ok(Value::Bool(true))
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("sr.scan", scan)
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("sr.set", set)
            .params(schema(r#"{"id": {"type": "string"}, "name_label": {"type": "string", "optional": true}, "name_description": {"type": "string", "minLength": 0, "optional": true}}"#)),
    ]
}
