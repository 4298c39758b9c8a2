//! A host's network interfaces (`packages/xo-server/src/api/pif.mjs`): `pif.connect`, `pif.disconnect`,
//! `pif.delete` (a tunnel's access PIF takes its tunnel with it; a physical one is forgotten), and
//! `pif.reconfigureIp` (IPv4 and IPv6 only when they change; a management interface is then reconfigured).

use serde_json::{Map, Value};

use super::opt_str;
use super::resolve::{r, resolve_one, schema, spec_of, Resolve, Xapi};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;
use crate::xapi::XoObject;

const PIF: &[Resolve] = &[r("pif", "id", &["PIF"], "administrate")];

/// `resolve` entries of the `pif.*` methods.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    ("pif.connect", PIF),
    ("pif.delete", PIF),
    ("pif.disconnect", PIF),
    ("pif.reconfigureIp", PIF),
];

async fn pif_of(
    ctx: &Ctx,
    p: &Map<String, Value>,
    method: &str,
) -> Result<(Xapi, std::sync::Arc<XoObject>), ApiError> {
    resolve_one(ctx, p, spec_of(RESOLVES, method), "pif").await
}

async fn connect(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, pif) = pif_of(&ctx, &p, "pif.connect").await?;
    x.call_async("PIF.plug", vec![pif.xapi_ref().into()])
        .await?;
    Ok(Value::Bool(true))
}

async fn disconnect(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, pif) = pif_of(&ctx, &p, "pif.disconnect").await?;
    x.call_async("PIF.unplug", vec![pif.xapi_ref().into()])
        .await?;
    Ok(Value::Bool(true))
}

async fn delete(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, pif) = pif_of(&ctx, &p, "pif.delete").await?;
    let r = pif.xapi_ref();
    let tunnels = x.field_refs("PIF", r, "tunnel_access_PIF_of").await?;
    if let Some(tunnel) = tunnels.first() {
        x.call_async("PIF.unplug", vec![r.into()]).await?;
        x.call_async("tunnel.destroy", vec![tunnel.as_str().into()])
            .await?;
    } else {
        x.call_async("PIF.forget", vec![r.into()]).await?;
    }
    Ok(Value::Bool(true))
}

/// XO's `reconfigureIp`: `PIF.reconfigure_ipv6` when the IPv6 address or mode changes, `PIF.reconfigure_ip`
/// when the IPv4 settings do (absent ones count as empty), then `host.management_reconfigure` for the
/// management interface.
async fn reconfigure_ip(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, pif) = pif_of(&ctx, &p, "pif.reconfigureIp").await?;
    let r = pif.xapi_ref();
    let cur = |k: &str| pif.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let arg = |k: &str| opt_str(&p, k).unwrap_or("").to_owned();
    let (ip, netmask, gateway, dns) = (arg("ip"), arg("netmask"), arg("gateway"), arg("dns"));
    let mode = opt_str(&p, "mode");
    let ipv6 = arg("ipv6");
    let ipv6_mode = opt_str(&p, "ipv6Mode");
    let first_ipv6 = pif
        .get("ipv6")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if (!ipv6.is_empty() && first_ipv6 != ipv6) || ipv6_mode.is_some_and(|m| m != cur("ipv6Mode")) {
        let m = ipv6_mode.map_or_else(|| cur("ipv6Mode"), str::to_owned);
        x.call(
            "PIF.reconfigure_ipv6",
            vec![
                r.into(),
                m.into(),
                ipv6.into(),
                gateway.clone().into(),
                dns.clone().into(),
            ],
        )
        .await?;
    }
    let changed = mode.is_some_and(|m| m != cur("mode"))
        || ip != cur("ip")
        || netmask != cur("netmask")
        || gateway != cur("gateway")
        || dns != cur("dns");
    if changed {
        let m = mode.map_or_else(|| cur("mode"), str::to_owned);
        x.call(
            "PIF.reconfigure_ip",
            vec![
                r.into(),
                m.into(),
                ip.into(),
                netmask.into(),
                gateway.into(),
                dns.into(),
            ],
        )
        .await?;
    }
    if pif.get("management").and_then(Value::as_bool) == Some(true) {
        x.call("host.management_reconfigure", vec![r.into()])
            .await?;
    }
    Ok(Value::Bool(true))
}

pub(super) fn methods() -> Vec<Method> {
    let id = || schema(r#"{"id": {"type": "string"}}"#);
    vec![
        Method::new("pif.connect", connect).params(id()),
        Method::new("pif.disconnect", disconnect).params(id()),
        Method::new("pif.delete", delete).params(id()),
        Method::new("pif.reconfigureIp", reconfigure_ip).params(schema(r#"{"id": {"type": "string", "optional": true}, "mode": {"type": "string", "optional": true}, "ip": {"type": "string", "minLength": 0, "optional": true}, "netmask": {"type": "string", "minLength": 0, "optional": true}, "gateway": {"type": "string", "minLength": 0, "optional": true}, "dns": {"type": "string", "minLength": 0, "optional": true}, "ipv6": {"type": "string", "minLength": 0, "default": ""}, "ipv6Mode": {"enum": ["None", "DHCP", "Static", "Autoconf"], "optional": true}}"#)),
    ]
}
