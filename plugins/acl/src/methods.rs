//! `acl.add`, `acl.remove`, `acl.get`, `acl.getCurrentPermissions` and `role.getAll`, with the real
//! server's descriptions, params and permissions.

use serde_json::{json, Map, Value};
use xo_plugin::{CallContext, MethodDef, MethodPermission, PluginError};

use crate::entries::roles;
use crate::visibility::AclState;

/// Names of the methods the plugin adds.
pub const NAMES: [&str; 7] = [
    "acl.add",
    "acl.remove",
    "acl.get",
    "acl.getCurrentPermissions",
    "role.getAll",
    "test.hasPermission",
    "test.getPermissionsForUser",
];

/// `{objectId: {permission: 1}}` of a user's direct grants (roles expanded).
fn grants_json(s: &AclState, user: &xo_plugin::UserInfo) -> Value {
    let mut out = Map::new();
    for (object, perms) in s.grants(user) {
        let mut perms: Vec<String> = perms.into_iter().collect();
        perms.sort();
        out.insert(
            object,
            Value::Object(perms.into_iter().map(|p| (p, json!(1))).collect()),
        );
    }
    Value::Object(out)
}

fn user_of(ctx: &CallContext, id: &str) -> Result<xo_plugin::UserInfo, PluginError> {
    ctx.host
        .user(id)?
        .ok_or_else(|| PluginError::no_such_object(id, "user"))
}

fn triple(p: &Map<String, Value>) -> Result<(&str, &str, &str), PluginError> {
    let f = |k: &str| {
        p.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| PluginError::invalid_parameters(format!("missing {k}")))
    };
    Ok((f("subject")?, f("object")?, f("action")?))
}

/// The method definitions, bound to `state`.
pub fn methods(state: AclState) -> Vec<MethodDef> {
    let params = || json!({"subject": {"type": "string"}, "object": {"type": "string"}, "action": {"type": "string"}});
    let (s1, s2, s3, s4) = (state.clone(), state.clone(), state.clone(), state.clone());
    let (s5, s6) = (state.clone(), state);
    vec![
        MethodDef::new("acl.add", move |_: CallContext, p: Map<String, Value>| {
            let s = s1.clone();
            async move {
                let (subject, object, action) = triple(&p)?;
                s.add(subject, object, action)?;
                Ok(Value::Bool(true))
            }
        })
        .description("add a new ACL entry")
        .params(params())
        .permission(MethodPermission::Admin),
        MethodDef::new(
            "acl.remove",
            move |_: CallContext, p: Map<String, Value>| {
                let s = s2.clone();
                async move {
                    let (subject, object, action) = triple(&p)?;
                    s.remove(subject, object, action)?;
                    Ok(Value::Bool(true))
                }
            },
        )
        .description("remove an existing ACL entry")
        .params(params())
        .permission(MethodPermission::Admin),
        MethodDef::new("acl.get", move |_: CallContext, _| {
            let s = s3.clone();
            async move { Ok(Value::Array(s.acls().iter().map(|a| a.to_json()).collect())) }
        })
        .description("get existing ACLs")
        .params(json!({}))
        .permission(MethodPermission::Admin),
        MethodDef::new("acl.getCurrentPermissions", move |ctx: CallContext, _| {
            let s = s4.clone();
            async move {
                let user = ctx
                    .user
                    .ok_or_else(|| PluginError::unauthorized(None, None))?;
                Ok(grants_json(&s, &user))
            }
        })
        .description("get (explicit) permissions by object for the current user")
        .params(json!({})),
        MethodDef::new("role.getAll", |_: CallContext, _| async { Ok(roles()) })
            .description("Returns the list of all existing roles")
            .params(json!({})),
        MethodDef::new(
            "test.hasPermission",
            move |ctx: CallContext, p: Map<String, Value>| {
                let s = s5.clone();
                async move {
                    let f = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
                    let user = user_of(&ctx, f("userId"))?;
                    Ok(Value::Bool(
                        user.is_admin() || s.has_permission(&user, f("objectId"), f("permission")),
                    ))
                }
            },
        )
        .params(json!({"userId": {"type": "string"}, "objectId": {"type": "string"}, "permission": {"type": "string"}}))
        .permission(MethodPermission::Admin),
        MethodDef::new(
            "test.getPermissionsForUser",
            move |ctx: CallContext, p: Map<String, Value>| {
                let s = s6.clone();
                async move {
                    let id = p.get("userId").and_then(Value::as_str).unwrap_or("");
                    Ok(grants_json(&s, &user_of(&ctx, id)?))
                }
            },
        )
        .params(json!({"userId": {"type": "string"}}))
        .permission(MethodPermission::Admin),
    ]
}
