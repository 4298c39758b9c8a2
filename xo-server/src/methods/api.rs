//! `api.*`: the open API connections.

use serde_json::{json, Value};

use crate::context::Ctx;
use crate::registry::{Access, Method};

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("api.getConnections", |ctx: Ctx, _| async move {
            Ok(Value::Array(
                ctx.app.connections().iter().map(|c| c.describe()).collect(),
            ))
        })
        .description("Get a list of all current connections to this API")
        .params(json!({}))
        .access(Access::Admin),
        Method::new("api.closeAllConnections", |ctx: Ctx, _| async move {
            for c in ctx.app.connections() {
                if c.id() != ctx.connection.id() {
                    c.close(1000, "closed by an administrator");
                }
            }
            Ok(Value::Bool(true))
        })
        .description("Close all connections to this API except the current one")
        .params(json!({}))
        .access(Access::Admin),
    ]
}
