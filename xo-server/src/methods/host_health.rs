//! What XO asks a host about its own state (`packages/xo-server/src/api/host.mjs`, `xapi/index.mjs`):
//! `host.isHostServerTimeConsistent` (its clock within 30 s of ours), `host.isHyperThreadingEnabled` (from
//! `cpu_info`, else the `hyperthreading.py` plugin), `host.getSmartctlHealth` / `getSmartctlInformation` (the
//! `smartctl.py` plugin), each `null` when the host lacks the plugin; and `host.managementReconfigure`.

use serde_json::{Map, Value};

use super::resolve::{r, resolve, resolve_one, schema, spec_of, CallError, Resolve, Xapi};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::{Method, Reply};
use crate::xapi::XoObject;

const HOST: &[&str] = &["host"];

/// `resolve` entries of the methods of this file.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    ("host.getSmartctlHealth", &[r("host", "id", HOST, "view")]),
    (
        "host.getSmartctlInformation",
        &[r("host", "id", HOST, "view")],
    ),
    (
        "host.isHostServerTimeConsistent",
        &[r("host", "host", HOST, "view")],
    ),
    (
        "host.isHyperThreadingEnabled",
        &[r("host", "id", HOST, "administrate")],
    ),
    (
        "host.managementReconfigure",
        &[
            r("host", "id", HOST, "administrate"),
            r("pif", "pif", &["PIF"], "administrate"),
        ],
    ),
];

/// Largest clock difference XO accepts between a host and itself, in milliseconds.
const MAX_TIME_SHIFT_MS: i64 = 30_000;

async fn host_of(
    ctx: &Ctx,
    p: &Map<String, Value>,
    method: &str,
) -> Result<(Xapi, std::sync::Arc<XoObject>), ApiError> {
    resolve_one(ctx, p, spec_of(RESOLVES, method), "host").await
}

async fn is_time_consistent(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, host) = host_of(&ctx, &p, "host.isHostServerTimeConsistent").await?;
    let time = x
        .call("host.get_servertime", vec![host.xapi_ref().into()])
        .await?;
    let host_ms = time
        .as_str()
        .and_then(xapi_types::datetime::parse_unix)
        .ok_or_else(|| ApiError::internal(format!("unreadable host time {time}")))?
        * 1000;
    let shift = (host_ms - crate::now_ms()).abs();
    Ok(Value::Bool(shift < MAX_TIME_SHIFT_MS))
}

/// A plugin call's answer, `None` when the host does not have the plugin or the function.
async fn plugin(
    x: &Xapi,
    host: &XoObject,
    plugin: &str,
    function: &str,
) -> Result<Option<String>, ApiError> {
    let params = vec![
        host.xapi_ref().into(),
        plugin.into(),
        function.into(),
        Value::Object(Map::new()),
    ];
    match x.try_call("host.call_plugin", params).await {
        Ok(v) => Ok(Some(v.as_str().unwrap_or_default().to_owned())),
        Err(CallError::Xapi(e))
            if e.code == "XENAPI_MISSING_PLUGIN" || e.code == "UNKNOWN_XENAPI_PLUGIN_FUNCTION" =>
        {
            Ok(None)
        }
        Err(e) => Err(x.api(e)),
    }
}

/// `null` is an answer here, not "nothing" (which the API would turn into `true`).
fn nullable(v: Value) -> Reply {
    if v.is_null() {
        Reply::Json("null".into())
    } else {
        Reply::Value(v)
    }
}

async fn is_hyper_threading_enabled(ctx: Ctx, p: Map<String, Value>) -> Result<Reply, ApiError> {
    let (x, host) = host_of(&ctx, &p, "host.isHyperThreadingEnabled").await?;
    // XCP-ng 8.3 and later say it in cpu_info
    let info = x.field("host", host.xapi_ref(), "cpu_info").await?;
    if let Some(t) = info.get("threads_per_core") {
        let threads = t
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .or_else(|| t.as_f64());
        return Ok(Reply::Value(Value::Bool(threads.is_some_and(|n| n > 1.0))));
    }
    let answer = plugin(&x, &host, "hyperthreading.py", "get_hyperthreading").await?;
    Ok(nullable(
        answer.map_or(Value::Null, |a| Value::Bool(a != "false")),
    ))
}

/// The JSON a `smartctl.py` function answers (`null` without the plugin).
async fn smartctl(x: &Xapi, host: &XoObject, function: &str) -> Result<Value, ApiError> {
    match plugin(x, host, "smartctl.py", function).await? {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| ApiError::internal(format!("smartctl.py {function}: {e}"))),
        None => Ok(Value::Null),
    }
}

async fn smartctl_health(ctx: Ctx, p: Map<String, Value>) -> Result<Reply, ApiError> {
    let (x, host) = host_of(&ctx, &p, "host.getSmartctlHealth").await?;
    smartctl(&x, &host, "health").await.map(nullable)
}

/// `smartctl.py information`, only for `deviceNames` when given.
async fn smartctl_information(ctx: Ctx, p: Map<String, Value>) -> Result<Reply, ApiError> {
    let names: Option<Vec<String>> = p.get("deviceNames").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    });
    let (x, host) = host_of(&ctx, &p, "host.getSmartctlInformation").await?;
    let info = smartctl(&x, &host, "information").await?;
    Ok(nullable(match (info, names) {
        (Value::Object(all), Some(names)) => {
            Value::Object(all.into_iter().filter(|(k, _)| names.contains(k)).collect())
        }
        (info, _) => info,
    }))
}

/// XO's `managementReconfigure`: the host's management traffic moves to `pif`.
async fn management_reconfigure(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "host.managementReconfigure")).await?;
    let (host, pif) = (res.get("host")?, res.get("pif")?);
    if pif.get("$host").and_then(Value::as_str) != Some(host.id()) {
        return Err(ApiError::invalid_parameters_message(
            "the PIF is not one of the host's",
        ));
    }
    let x = Xapi::of(&res.pools, host)?;
    x.call("host.management_reconfigure", vec![pif.xapi_ref().into()])
        .await?;
    Ok(Value::Bool(true))
}

pub(super) fn methods() -> Vec<Method> {
    let id = || schema(r#"{"id": {"type": "string"}}"#);
    vec![
        Method::new("host.isHostServerTimeConsistent", is_time_consistent)
            .params(schema(r#"{"host": {"type": "string"}}"#)),
        Method::new_reply("host.isHyperThreadingEnabled", is_hyper_threading_enabled)
            .description("get hyper-threading information")
            .params(id()),
        Method::new_reply("host.getSmartctlHealth", smartctl_health)
            .description("get smartctl health status")
            .params(id()),
        Method::new_reply("host.getSmartctlInformation", smartctl_information)
            .description("get smartctl information")
            .params(schema(r#"{"id": {"type": "string"}, "deviceNames": {"type": "array", "items": {"type": "string"}, "optional": true}}"#)),
        Method::new("host.managementReconfigure", management_reconfigure)
            .description("Reconfigure the management interface of the host to use the given PIF")
            .params(schema(r#"{"id": {"type": "string"}, "pif": {"type": "string"}}"#)),
    ]
}
