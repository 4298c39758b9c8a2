//! `user.*`: accounts (admin-managed), own password and preferences, own tokens.

use serde_json::{json, Map, Value};
use xo_store::{Permission, StoreError};

use super::{opt_str, req_str};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::{Access, Method};

fn parse_permission(s: &str) -> Result<Permission, ApiError> {
    Permission::parse(s)
        .ok_or_else(|| ApiError::invalid_parameters_message(format!("invalid permission {s:?}")))
}

fn is_synced(u: &xo_store::User) -> bool {
    u.auth_providers.as_ref().is_some_and(|p| !p.is_empty())
}

fn map_dup(e: StoreError) -> ApiError {
    match e {
        StoreError::DuplicateEmail(email) => ApiError::object_already_exists(&email, "user"),
        e => e.into(),
    }
}

async fn hash_in_background(ctx: &Ctx, id: String, password: String) -> Result<(), ApiError> {
    let store = ctx.app.store().clone();
    tokio::task::spawn_blocking(move || store.set_password(&id, &password))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map(|_| ())
        .map_err(Into::into)
}

async fn create(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let email = req_str(&p, "email")?.to_owned();
    let password = req_str(&p, "password")?.to_owned();
    let permission = opt_str(&p, "permission")
        .map(parse_permission)
        .transpose()?
        .unwrap_or_default();
    let store = ctx.app.store().clone();
    let user =
        tokio::task::spawn_blocking(move || store.create_user(&email, Some(&password), permission))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(map_dup)?;
    Ok(json!(user.id))
}

async fn delete(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let id = req_str(&p, "id")?;
    if ctx.user()?.id == id {
        return Err(ApiError::invalid_parameters_message(
            "a user cannot delete itself",
        ));
    }
    if !ctx.app.store().delete_user(id)? {
        return Err(ApiError::no_such_object(id, Some("user")));
    }
    ctx.app.close_user_connections(id);
    crate::plugins::subject_deleted(&ctx.app, id);
    Ok(Value::Bool(true))
}

async fn set(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let id = req_str(&p, "id")?.to_owned();
    let (email, password, permission) = (
        opt_str(&p, "email"),
        opt_str(&p, "password"),
        opt_str(&p, "permission"),
    );
    let me = ctx.user()?;
    if ctx.is_admin() {
        if permission.is_some() && me.id == id {
            return Err(ApiError::invalid_parameters_message(
                "a user cannot change its own permission",
            ));
        }
    } else if email.is_some() || password.is_some() || permission.is_some() {
        return Err(ApiError::invalid_parameters_message(
            "this properties can only changed by an administrator",
        ));
    }
    let mut user = ctx
        .app
        .store()
        .user(&id)?
        .ok_or_else(|| ApiError::no_such_object(&id, Some("user")))?;
    if is_synced(&user) && (email.is_some() || password.is_some()) {
        return Err(ApiError::forbidden_operation(
            "set",
            "cannot change the email or password of a synchronized user",
        ));
    }
    if let Some(e) = email {
        user.email = e.to_owned();
    }
    if let Some(perm) = permission {
        user.permission = parse_permission(perm)?;
    }
    if let Some(Value::Object(prefs)) = p.get("preferences") {
        for (k, v) in prefs {
            if v.is_null() {
                user.preferences.remove(k);
            } else {
                user.preferences.insert(k.clone(), v.clone());
            }
        }
    }
    ctx.app.store().update_user(&user).map_err(map_dup)?;
    if let Some(pw) = password {
        hash_in_background(&ctx, id, pw.to_owned()).await?;
    }
    Ok(Value::Bool(true))
}

async fn change_password(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let old = req_str(&p, "oldPassword")?.to_owned();
    let new = req_str(&p, "newPassword")?.to_owned();
    let user = ctx.user()?.clone();
    if is_synced(&user) {
        return Err(ApiError::forbidden_operation(
            "change password",
            "synchronized user",
        ));
    }
    let store = ctx.app.store().clone();
    let ok = tokio::task::spawn_blocking(move || store.verify_password(&user, &old))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if !ok {
        return Err(ApiError::invalid_credentials());
    }
    hash_in_background(&ctx, ctx.user()?.id.clone(), new).await?;
    Ok(Value::Bool(true))
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("user.create", create)
            .description("creates a new user")
            .params(
                json!({"email": {"type": "string"}, "password": {"type": "string"},
                "permission": {"type": "string", "optional": true}}),
            )
            .access(Access::Admin),
        Method::new("user.delete", delete)
            .description("deletes an existing user")
            .params(json!({"id": {"type": "string"}}))
            .access(Access::Admin),
        Method::new("user.getAll", |ctx: Ctx, _| async move {
            Ok(Value::Array(
                ctx.app
                    .store()
                    .users()?
                    .iter()
                    .map(|u| u.public())
                    .collect(),
            ))
        })
        .description("returns all the existing users")
        .params(json!({}))
        .access(Access::Admin),
        Method::new("user.set", set)
            .description("changes the properties of an existing user")
            .params(json!({
                "id": {"type": "string"},
                "email": {"type": "string", "optional": true},
                "password": {"type": "string", "optional": true},
                "permission": {"type": "string", "optional": true},
                "preferences": {"type": "object", "optional": true},
            })),
        Method::new("user.changePassword", change_password)
            .description("change password after checking old password (user function)")
            .params(json!({"oldPassword": {"type": "string"}, "newPassword": {"type": "string"}})),
        Method::new("user.getAuthenticationTokens", |ctx: Ctx, _| async move {
            let me = ctx.user()?.id.clone();
            let tokens = ctx.app.store().tokens_of_user(&me)?;
            Ok(Value::Array(
                tokens.iter().map(super::token::token_json).collect(),
            ))
        })
        .description("returns authentication tokens of the current user")
        .params(json!({})),
        Method::new(
            "user.removeAuthProvider",
            |ctx: Ctx, p: Map<String, Value>| async move {
                let id = req_str(&p, "id")?;
                let provider = req_str(&p, "authProvider")?;
                let mut user = ctx
                    .app
                    .store()
                    .user(id)?
                    .ok_or_else(|| ApiError::no_such_object(id, Some("user")))?;
                if let Some(ps) = &mut user.auth_providers {
                    ps.remove(provider);
                    if ps.is_empty() {
                        user.auth_providers = None;
                    }
                }
                ctx.app.store().update_user(&user)?;
                Ok(Value::Bool(true))
            },
        )
        .params(json!({"authProvider": {"type": "string"}, "id": {"type": "string"}}))
        .access(Access::Admin),
    ]
}
