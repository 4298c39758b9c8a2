//! `task.cancel` / `task.destroy` on XAPI tasks.

use serde_json::{Map, Value};

use super::resolve::{r, resolve, schema, spec_of, Resolve, Xapi};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;

/// `resolve` entries of the `task.*` methods.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    ("task.cancel", &[r("task", "id", &["task"], "administrate")]),
    (
        "task.destroy",
        &[r("task", "id", &["task"], "administrate")],
    ),
];

async fn run(ctx: Ctx, p: Map<String, Value>, method: &str, xapi: &str) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, method)).await?;
    let task = res.get("task")?;
    let x = Xapi::of(&res.pools, task)?;
    x.call(xapi, vec![task.xapi_ref().into()]).await?;
    Ok(Value::Bool(true))
}

async fn cancel(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    run(ctx, p, "task.cancel", "task.cancel").await
}

async fn destroy(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    run(ctx, p, "task.destroy", "task.destroy").await
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("task.cancel", cancel).params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("task.destroy", destroy).params(schema(r#"{"id": {"type": "string"}}"#)),
    ]
}
