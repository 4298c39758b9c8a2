//! `group.*`: user groups (admin only).

use serde_json::{json, Map, Value};
use xo_store::{Group, StoreError};

use super::{opt_str, req_str};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::{Access, Method};

fn get(ctx: &Ctx, id: &str) -> Result<Group, ApiError> {
    ctx.app
        .store()
        .group(id)?
        .ok_or_else(|| ApiError::no_such_object(id, Some("group")))
}

fn map_err(e: StoreError) -> ApiError {
    match e {
        StoreError::DuplicateGroupName(n) => ApiError::object_already_exists(&n, "group"),
        StoreError::NotFound {
            collection: "users",
            id,
        } => ApiError::no_such_object(&id, Some("user")),
        e => e.into(),
    }
}

fn refuse_synced(g: &Group, op: &str) -> Result<(), ApiError> {
    if g.provider.is_some() {
        return Err(ApiError::forbidden_operation(op, "synchronized group"));
    }
    Ok(())
}

fn group_json(g: &Group) -> Value {
    let mut v = json!({ "id": g.id, "name": g.name, "users": g.users, "aclRoleIds": [] });
    if let Some(p) = &g.provider {
        v["provider"] = p.clone().into();
    }
    if let Some(p) = &g.provider_group_id {
        v["providerGroupId"] = p.clone().into();
    }
    v
}

async fn set_users(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let g = get(&ctx, req_str(&p, "id")?)?;
    refuse_synced(&g, "set users")?;
    let ids: Vec<String> = match p.get("userIds") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => {
            return Err(ApiError::invalid_parameters_message(
                "userIds must be an array of user ids",
            ))
        }
    };
    ctx.app
        .store()
        .set_group_users(&g.id, &ids)
        .map_err(map_err)?;
    Ok(Value::Bool(true))
}

pub(super) fn methods() -> Vec<Method> {
    let id_user = || json!({"id": {"type": "string"}, "userId": {"type": "string"}});
    vec![
        Method::new(
            "group.create",
            |ctx: Ctx, p: Map<String, Value>| async move {
                let g = ctx
                    .app
                    .store()
                    .create_group(req_str(&p, "name")?)
                    .map_err(map_err)?;
                Ok(json!(g.id))
            },
        )
        .description("creates a new group")
        .params(json!({"name": {"type": "string"}}))
        .access(Access::Admin),
        Method::new(
            "group.delete",
            |ctx: Ctx, p: Map<String, Value>| async move {
                let g = get(&ctx, req_str(&p, "id")?)?;
                ctx.app.store().delete_group(&g.id)?;
                crate::plugins::subject_deleted(&ctx.app, &g.id);
                Ok(Value::Bool(true))
            },
        )
        .description("deletes an existing group")
        .params(json!({"id": {"type": "string"}}))
        .access(Access::Admin),
        Method::new("group.getAll", |ctx: Ctx, _| async move {
            Ok(Value::Array(
                ctx.app.store().groups()?.iter().map(group_json).collect(),
            ))
        })
        .description("returns all the existing group")
        .params(json!({}))
        .access(Access::Admin),
        Method::new("group.set", |ctx: Ctx, p: Map<String, Value>| async move {
            let mut g = get(&ctx, req_str(&p, "id")?)?;
            if let Some(name) = opt_str(&p, "name") {
                refuse_synced(&g, "rename")?;
                g.name = name.to_owned();
                ctx.app.store().update_group(&g).map_err(map_err)?;
            }
            Ok(Value::Bool(true))
        })
        .description("changes the properties of an existing group")
        .params(json!({"id": {"type": "string"}, "name": {"type": "string", "optional": true}}))
        .access(Access::Admin),
        Method::new("group.setUsers", set_users)
            .description("sets the users belonging to a group")
            .params(json!({"id": {"type": "string"}, "userIds": {}}))
            .access(Access::Admin),
        Method::new(
            "group.addUser",
            |ctx: Ctx, p: Map<String, Value>| async move {
                let g = get(&ctx, req_str(&p, "id")?)?;
                refuse_synced(&g, "add user")?;
                ctx.app
                    .store()
                    .add_user_to_group(&g.id, req_str(&p, "userId")?)
                    .map_err(map_err)?;
                Ok(Value::Bool(true))
            },
        )
        .description("adds a user to a group")
        .params(id_user())
        .access(Access::Admin),
        Method::new(
            "group.removeUser",
            |ctx: Ctx, p: Map<String, Value>| async move {
                let g = get(&ctx, req_str(&p, "id")?)?;
                refuse_synced(&g, "remove user")?;
                ctx.app
                    .store()
                    .remove_user_from_group(&g.id, req_str(&p, "userId")?)
                    .map_err(map_err)?;
                Ok(Value::Bool(true))
            },
        )
        .description("removes a user from a group")
        .params(id_user())
        .access(Access::Admin),
    ]
}
