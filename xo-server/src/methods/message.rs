//! `message.delete`: destroys an XAPI message.

use serde_json::{Map, Value};

use super::resolve::{r, resolve, schema, spec_of, Resolve, Xapi};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;

/// `resolve` entries of `message.delete`.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[(
    "message.delete",
    &[r("message", "id", &["message"], "administrate")],
)];

async fn delete(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "message.delete")).await?;
    let message = res.get("message")?;
    let x = Xapi::of(&res.pools, message)?;
    x.call("message.destroy", vec![message.xapi_ref().into()])
        .await?;
    Ok(Value::Bool(true))
}

pub(super) fn methods() -> Vec<Method> {
    vec![Method::new("message.delete", delete).params(schema(r#"{"id": {"type": "string"}}"#))]
}
