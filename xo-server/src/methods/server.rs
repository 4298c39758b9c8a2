//! `server.*`: registered XAPI servers (stored in xo-store; connections go through the
//! [`crate::PoolConnector`]).

use serde_json::{json, Map, Value};
use xo_store::{NewServer, Server, StoreError};

use super::{opt_bool, opt_str, req_str};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::{Access, Method};

const TYPE: &str = "xenServer";

fn get(ctx: &Ctx, id: &str) -> Result<Server, ApiError> {
    ctx.app
        .store()
        .server(id)?
        .ok_or_else(|| ApiError::no_such_object(id, Some(TYPE)))
}

fn map_dup(ctx: &Ctx, e: StoreError) -> ApiError {
    match e {
        StoreError::DuplicateHost(host) => {
            let id = ctx
                .app
                .store()
                .servers()
                .ok()
                .and_then(|all| all.into_iter().find(|s| s.host == host).map(|s| s.id))
                .unwrap_or(host);
            ApiError::object_already_exists(&id, "server")
        }
        e => e.into(),
    }
}

/// The wire form of a server (never the password).
fn server_json(ctx: &Ctx, s: &Server) -> Value {
    let status = ctx.app.connector().status(&s.id);
    let mut v = json!({
        "id": s.id,
        "host": s.host,
        "username": s.username,
        "allowUnauthorized": s.allow_unauthorized,
        "enabled": s.enabled,
        "readOnly": s.read_only,
        "status": status.state.as_str(),
    });
    for (k, x) in status.extra {
        v[k] = x;
    }
    match &s.label {
        Some(l) => v["label"] = l.clone().into(),
        None => {
            if let Some(l) = v.get("poolNameLabel").cloned() {
                v["label"] = l;
            }
        }
    }
    if let Some(p) = &s.http_proxy {
        v["httpProxy"] = p.clone().into();
    }
    if let Some(e) = &s.error {
        v["error"] = e.clone();
    }
    v
}

async fn add(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let enabled = opt_bool(&p, "autoConnect").unwrap_or(true);
    let s = ctx
        .app
        .store()
        .add_server(NewServer {
            host: req_str(&p, "host")?.to_owned(),
            username: req_str(&p, "username")?.to_owned(),
            password: req_str(&p, "password")?.to_owned(),
            label: opt_str(&p, "label").map(str::to_owned),
            allow_unauthorized: opt_bool(&p, "allowUnauthorized").unwrap_or(false),
            enabled,
            http_proxy: opt_str(&p, "httpProxy").map(str::to_owned),
        })
        .map_err(|e| map_dup(&ctx, e))?;
    let id = s.id.clone();
    if enabled {
        ctx.app.spawn_connect(s);
    }
    Ok(json!(id))
}

async fn enable(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let mut s = get(&ctx, req_str(&p, "id")?)?;
    if !s.enabled {
        s.enabled = true;
        ctx.app.store().update_server(&s)?;
    }
    let result = ctx
        .app
        .connector()
        .connect(ctx.app.clone(), s.clone())
        .await;
    ctx.app.record_connect_result(&s.id, result.as_ref().err());
    result.map_err(|e| connect_error_to_api(&s.id, e))?;
    Ok(Value::Bool(true))
}

/// XO's error for a failed connection: wrong credentials → `authenticationFailed`, unreachable host →
/// `serverUnreachable`, anything else a plain error with the XAPI/OS message.
fn connect_error_to_api(id: &str, e: crate::pool::ConnectError) -> ApiError {
    match e.code.as_deref() {
        Some("SESSION_AUTHENTICATION_FAILED") => crate::xapi::authentication_failed(),
        Some("ECONNREFUSED" | "EHOSTUNREACH" | "ETIMEDOUT") => crate::xapi::server_unreachable(id),
        _ => match e.data {
            // shown to admins as XO serialises its own errors: the properties, the message, the name
            Some(mut data) => {
                data.insert("message".into(), json!(e.message));
                ApiError::Internal {
                    message: e.message,
                    data: Some(Value::Object(data)),
                }
            }
            None => ApiError::internal(e.message),
        },
    }
}

async fn disable(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let mut s = get(&ctx, req_str(&p, "id")?)?;
    if s.enabled {
        s.enabled = false;
        ctx.app.store().update_server(&s)?;
    }
    ctx.app.connector().disconnect(ctx.app.clone(), s.id).await;
    Ok(Value::Bool(true))
}

async fn remove(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let s = get(&ctx, req_str(&p, "id")?)?;
    ctx.app
        .connector()
        .disconnect(ctx.app.clone(), s.id.clone())
        .await;
    ctx.app.store().remove_server(&s.id)?;
    Ok(Value::Bool(true))
}

/// The `server.set` params that change how the server is reached: XO refuses them while the server is
/// connected or connecting (`xen-servers.mjs` `updateXenServer`).
const CONNECTION_PARAMS: [&str; 5] = [
    "allowUnauthorized",
    "host",
    "httpProxy",
    "password",
    "username",
];

/// Whether the server has a live connection (connected, connecting, or lost and retrying).
fn is_attached(ctx: &Ctx, id: &str) -> bool {
    ctx.app.connector().status(id).state != crate::pool::ConnectionState::Disconnected
        || crate::xapi::Pools::of(&ctx.app).is_ok_and(|p| p.server_ids().iter().any(|s| s == id))
}

/// XO's `server.set`: `label` and `readOnly` apply at once (read-only is checked at every call);
/// connection settings can only change on a disconnected server (`server.disable` first, then
/// `server.enable` connects with the new settings).
async fn set(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let mut s = get(&ctx, req_str(&p, "id")?)?;
    if CONNECTION_PARAMS.iter().any(|k| p.contains_key(*k)) && is_attached(&ctx, &s.id) {
        return Err(ApiError::internal(
            "this entry require disconnecting the server to update it",
        ));
    }
    match p.get("label") {
        Some(Value::String(l)) => s.label = Some(l.clone()),
        Some(Value::Null) => s.label = None,
        _ => {}
    }
    if let Some(h) = opt_str(&p, "host") {
        s.host = h.to_owned();
    }
    if let Some(u) = opt_str(&p, "username") {
        s.username = u.to_owned();
    }
    if let Some(pw) = opt_str(&p, "password") {
        s.password = pw.to_owned();
    }
    if let Some(b) = opt_bool(&p, "allowUnauthorized") {
        s.allow_unauthorized = b;
    }
    if let Some(b) = opt_bool(&p, "readOnly") {
        s.read_only = b;
    }
    match p.get("httpProxy") {
        Some(Value::String(x)) => s.http_proxy = Some(x.clone()),
        Some(Value::Null) => s.http_proxy = None,
        _ => {}
    }
    ctx.app
        .store()
        .update_server(&s)
        .map_err(|e| map_dup(&ctx, e))?;
    Ok(Value::Bool(true))
}

pub(super) fn methods() -> Vec<Method> {
    let id = || json!({"id": {"type": "string"}});
    vec![
        Method::new("server.add", add)
            .description("register a new Xen server")
            .params(json!({
                "label": {"optional": true, "type": "string"},
                "host": {"type": "string"},
                "username": {"type": "string"},
                "password": {"type": "string"},
                "autoConnect": {"optional": true, "type": "boolean"},
                "allowUnauthorized": {"optional": true, "type": "boolean"},
                "httpProxy": {"optional": true, "type": "string"},
            }))
            .access(Access::Admin),
        Method::new("server.remove", remove)
            .description("unregister a Xen server")
            .params(id())
            .access(Access::Admin),
        Method::new("server.enable", enable)
            .description("enable a Xen server")
            .params(id())
            .access(Access::Admin),
        Method::new("server.disable", disable)
            .description("disable a Xen server")
            .params(id())
            .access(Access::Admin),
        Method::new("server.getAll", |ctx: Ctx, _| async move {
            let all = ctx.app.store().servers()?;
            Ok(Value::Array(
                all.iter().map(|s| server_json(&ctx, s)).collect(),
            ))
        })
        .description("returns all the registered Xen server")
        .params(json!({}))
        .access(Access::Admin),
        Method::new("server.set", set)
            .description("changes the properties of a Xen server")
            .params(json!({
                "id": {"type": "string"},
                "label": {"type": ["null", "string"], "optional": true},
                "host": {"type": "string", "optional": true},
                "username": {"type": "string", "optional": true},
                "password": {"type": "string", "optional": true},
                "allowUnauthorized": {"optional": true, "type": "boolean"},
                "readOnly": {"optional": true, "type": "boolean"},
                "httpProxy": {"optional": true, "type": ["string", "null"]},
            }))
            .access(Access::Admin),
    ]
}
