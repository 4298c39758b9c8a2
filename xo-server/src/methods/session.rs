//! `session.*`: sign in (password, token or plugin providers), sign out, current user.

use serde_json::{json, Map, Value};

use crate::auth;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::{Access, Method};

async fn sign_in(ctx: Ctx, credentials: Map<String, Value>) -> Result<Value, ApiError> {
    let (user, expiration) =
        auth::authenticate(&ctx.app, credentials, ctx.connection.user_ip()).await?;
    ctx.connection.sign_in(user.id.clone(), expiration);
    tracing::info!(user = %user.email, connection = ctx.connection.id(), "signed in");
    Ok(user.public())
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("session.signIn", sign_in)
            .description("sign in")
            .access(Access::Anonymous),
        Method::new("session.signInWithPassword", sign_in)
            .description("sign in")
            .params(json!({"email": {"type": "string"}, "password": {"type": "string"}}))
            .access(Access::Anonymous),
        Method::new("session.signInWithToken", sign_in)
            .description("sign in")
            .params(json!({"token": {"type": "string"}}))
            .access(Access::Anonymous),
        Method::new("session.signOut", |ctx: Ctx, _| async move {
            ctx.connection.sign_out();
            Ok(Value::Bool(true))
        })
        .description("sign out the user from the current session")
        .params(json!({})),
        Method::new("session.getUser", |ctx: Ctx, _| async move {
            match &ctx.user {
                Some(u) => Ok(u.public()),
                None => Err(ApiError::internal("not signed in")),
            }
        })
        .description("return the currently connected user")
        .params(json!({}))
        .access(Access::Anonymous),
    ]
}
