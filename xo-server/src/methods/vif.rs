//! `vif.delete`, `vif.connect`, `vif.disconnect` and `vm.createInterface` (XO's way of creating a VIF) —
//! `packages/xo-server/src/api/vif.mjs`, `vm.mjs`.

use serde_json::{Map, Value};

use super::opt_str;
use super::resolve::{check_permissions, r, resolve, resolve_one, schema, spec_of, Resolve, Xapi};
use super::vm_disks::{vif_create, vif_destroy};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;

/// `resolve` entries of the methods of this file.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    ("vif.connect", &[r("vif", "id", &["VIF"], "operate")]),
    ("vif.delete", &[r("vif", "id", &["VIF"], "administrate")]),
    ("vif.disconnect", &[r("vif", "id", &["VIF"], "operate")]),
    (
        "vm.createInterface",
        &[
            r("network", "network", &["network"], ""),
            r("vm", "vm", &["VM"], "administrate"),
        ],
    ),
];

async fn delete(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, vif) = resolve_one(&ctx, &p, spec_of(RESOLVES, "vif.delete"), "vif").await?;
    vif_destroy(&x, vif.xapi_ref()).await?;
    Ok(Value::Bool(true))
}

/// `VIF.plug` (`connect`) or XO's `VIF.unplug_force` of the VIF of `method`.
async fn plug(
    ctx: Ctx,
    p: Map<String, Value>,
    method: &str,
    connect: bool,
) -> Result<Value, ApiError> {
    let (x, vif) = resolve_one(&ctx, &p, spec_of(RESOLVES, method), "vif").await?;
    let call = if connect {
        "VIF.plug"
    } else {
        "VIF.unplug_force"
    };
    x.call_async(call, vec![vif.xapi_ref().into()]).await?;
    Ok(Value::Bool(true))
}

async fn connect(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    plug(ctx, p, "vif.connect", true).await
}

async fn disconnect(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    plug(ctx, p, "vif.disconnect", false).await
}

fn strings(p: &Map<String, Value>, key: &str) -> Vec<Value> {
    p.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

async fn create_interface(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "vm.createInterface")).await?;
    let vm = res.get("vm")?;
    let network = res.get("network")?;
    if vm.get("resourceSet").is_some_and(|v| !v.is_null()) && !ctx.is_admin() {
        // resource sets (self-service) are not part of this server yet
        return Err(ApiError::not_implemented());
    }
    check_permissions(&ctx, &[(network.id().to_owned(), "view".to_owned())])?;
    if vm.pool() != network.pool() {
        return Err(ApiError::invalid_parameters_message(
            "the VM and the network are in different pools",
        ));
    }
    let x = Xapi::of(&res.pools, vm)?;
    let device = match p.get("position") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let vif = vif_create(
        &x,
        vm.xapi_ref(),
        network.xapi_ref(),
        device,
        opt_str(&p, "mac").unwrap_or_default(),
        strings(&p, "allowedIpv4Addresses"),
        strings(&p, "allowedIpv6Addresses"),
    )
    .await?;
    Ok(Value::String(x.wait_object_id("VIF", &vif).await?))
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("vif.connect", connect).params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("vif.disconnect", disconnect).params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("vif.delete", delete)
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("vm.createInterface", create_interface)
            .params(schema(r#"{"vm": {"type": "string"}, "network": {"type": "string"}, "position": {"type": ["integer", "string"], "optional": true}, "mac": {"type": "string", "optional": true}, "allowedIpv4Addresses": {"type": "array", "items": {"type": "string"}, "optional": true}, "allowedIpv6Addresses": {"type": "array", "items": {"type": "string"}, "optional": true}}"#)),
    ]
}
