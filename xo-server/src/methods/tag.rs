//! `tag.add` / `tag.remove` on any XAPI object with tags (`<class>.add_tags` / `remove_tags`).

use serde_json::{Map, Value};

use super::resolve::{r, resolve, schema, spec_of, xapi_class, Resolve, Xapi};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;

/// `resolve` entries of the `tag.*` methods of this file (any object type).
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    ("tag.add", &[r("object", "id", &[], "administrate")]),
    ("tag.remove", &[r("object", "id", &[], "administrate")]),
];

async fn edit(ctx: Ctx, p: Map<String, Value>, method: &str, op: &str) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, method)).await?;
    let object = res.get("object")?;
    let x = Xapi::of(&res.pools, object)?;
    let tag = p.get("tag").and_then(Value::as_str).unwrap_or_default();
    x.call(
        &format!("{}.{op}", xapi_class(object.kind())),
        vec![object.xapi_ref().into(), tag.into()],
    )
    .await?;
    Ok(Value::Bool(true))
}

async fn add(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    edit(ctx, p, "tag.add", "add_tags").await
}

async fn remove(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    edit(ctx, p, "tag.remove", "remove_tags").await
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("tag.add", add)
            .description("add a new tag to an object")
            .params(schema(
                r#"{"tag": {"type": "string"}, "id": {"type": "string"}}"#,
            )),
        Method::new("tag.remove", remove)
            .description("remove an existing tag from an object")
            .params(schema(
                r#"{"tag": {"type": "string", "minLength": 0}, "id": {"type": "string"}}"#,
            )),
    ]
}
