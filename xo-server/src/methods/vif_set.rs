//! `vif.set` (`packages/xo-server/src/api/vif.mjs`, `xapi/mixins/vif.mjs` `editVif`): a VIF's allowed
//! addresses, locking mode, rate limit and TX checksumming in place; a new network by `VIF.move` (same VIF);
//! a new MAC (or a failed move) by destroying the VIF and creating its replacement, whose id is returned.

use serde_json::{json, Map, Value};

use super::resolve::{check_permissions, r, resolve, schema, spec_of, Resolve, Xapi};
use super::vm_disks::vif_destroy;
use super::{opt_bool, opt_str};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;
use crate::xapi::XoObject;

/// `resolve` entries of `vif.set`.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[(
    "vif.set",
    &[
        r("vif", "id", &["VIF"], "operate"),
        r("network", "network", &["network"], ""),
    ],
)];

/// An optional list of strings param.
fn list(p: &Map<String, Value>, key: &str) -> Option<Vec<Value>> {
    p.get(key).and_then(Value::as_array).cloned()
}

/// The VIF's current list `field` (an XO property).
fn current(vif: &XoObject, field: &str) -> Vec<Value> {
    vif.get(field)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// What `editVif` changes in place (`None`: left alone).
struct Edit {
    ipv4: Option<Vec<Value>>,
    ipv6: Option<Vec<Value>>,
    locking_mode: Option<String>,
    /// `Some(None)`: the limit is removed.
    rate_limit: Option<Option<f64>>,
    tx_checksumming: Option<bool>,
}

/// XO's `editVif`: allowed addresses (a non-empty list locks the VIF), then the locking mode, the rate limit
/// (kB/s, `qos_algorithm_type` `ratelimit`) and TX checksumming (`other_config:ethtool-tx`).
async fn edit_vif(x: &Xapi, vif: &str, e: Edit) -> Result<(), ApiError> {
    let mut locked = x.field("VIF", vif, "locking_mode").await?.as_str() == Some("locked");
    for (field, value) in [("ipv4_allowed", e.ipv4), ("ipv6_allowed", e.ipv6)] {
        let Some(list) = value else { continue };
        let lock = !list.is_empty() && !locked;
        x.call(&format!("VIF.set_{field}"), vec![vif.into(), list.into()])
            .await?;
        if lock {
            x.call("VIF.set_locking_mode", vec![vif.into(), "locked".into()])
                .await?;
            locked = true;
        }
    }
    if let Some(mode) = e.locking_mode {
        x.call("VIF.set_locking_mode", vec![vif.into(), mode.into()])
            .await?;
    }
    if let Some(limit) = e.rate_limit {
        let kind = if limit.is_some() { "ratelimit" } else { "" };
        x.call("VIF.set_qos_algorithm_type", vec![vif.into(), kind.into()])
            .await?;
        let kbps = limit.map(|l| format!("{l}"));
        x.update_map("VIF", vif, "qos_algorithm_params", "kbps", kbps.as_deref())
            .await?;
    }
    if let Some(tx) = e.tx_checksumming {
        let v = tx.to_string();
        x.update_map("VIF", vif, "other_config", "ethtool-tx", Some(&v))
            .await?;
    }
    Ok(())
}

async fn set(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "vif.set")).await?;
    let vif = res.get("vif")?;
    let x = Xapi::of(&res.pools, vif)?;
    let network = res.opt("network");
    let current_network = vif.get("$network").and_then(Value::as_str).unwrap_or("");
    let changed = network.is_some_and(|n| n.id() != current_network);
    let target_network = network.map_or(current_network, |n| n.id()).to_owned();
    let mac = opt_str(&p, "mac");
    let locking_mode = opt_str(&p, "lockingMode").map(str::to_owned);
    let rate_limit = p.get("rateLimit").map(Value::as_f64);
    let tx_checksumming = opt_bool(&p, "txChecksumming");
    // explicit lists win; a new network drops the old ones
    let (ipv4, ipv6) = (
        list(&p, "allowedIpv4Addresses"),
        list(&p, "allowedIpv6Addresses"),
    );
    let new4 = ipv4.clone().unwrap_or_else(|| {
        if changed {
            Vec::new()
        } else {
            current(vif, "allowedIpv4Addresses")
        }
    });
    let new6 = ipv6.clone().unwrap_or_else(|| {
        if changed {
            Vec::new()
        } else {
            current(vif, "allowedIpv6Addresses")
        }
    });
    if locking_mode.is_some() {
        check_permissions(&ctx, &[(target_network.clone(), "operate".to_owned())])?;
    }
    if !(changed || mac.is_some()) {
        let e = Edit {
            ipv4,
            ipv6,
            locking_mode,
            rate_limit,
            tx_checksumming,
        };
        edit_vif(&x, vif.xapi_ref(), e).await?;
        return Ok(json!(vif.id()));
    }
    if !ctx.is_admin() {
        if mac.is_some() {
            check_permissions(&ctx, &[(target_network.clone(), "administrate".to_owned())])?;
        }
        if changed {
            if p.get("resourceSet").is_some() {
                // resource sets (self-service) are not part of this server yet
                return Err(ApiError::not_implemented());
            }
            check_permissions(&ctx, &[(target_network.clone(), "operate".to_owned())])?;
        }
    }
    let network_ref = match network {
        Some(n) => n.xapi_ref().to_owned(),
        None => x
            .field("VIF", vif.xapi_ref(), "network")
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    if changed && mac.is_none() {
        // VIF.move keeps the VIF (and its id) and the guest's connection
        match x
            .try_call(
                "VIF.move",
                vec![vif.xapi_ref().into(), network_ref.clone().into()],
            )
            .await
        {
            Ok(_) => {
                // the lists go with the old network, as XO means to (its own code leaves them on the VIF
                // when none are given, which its locking mode then ignores)
                let e = Edit {
                    ipv4: Some(new4),
                    ipv6: Some(new6),
                    locking_mode: Some(locking_mode.unwrap_or_else(|| "network_default".into())),
                    rate_limit,
                    tx_checksumming,
                };
                edit_vif(&x, vif.xapi_ref(), e).await?;
                return Ok(json!(vif.id()));
            }
            Err(e) => tracing::warn!(vif = vif.id(), "VIF.move failed, recreating the VIF: {e:?}"),
        }
    }
    // the VIF is replaced by a new one with the new settings
    let rec = x.record("VIF", vif.xapi_ref()).await?;
    let vm = rec
        .get("VM")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mac = mac
        .map(str::to_owned)
        .or_else(|| rec.get("MAC").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let attached = opt_bool(&p, "attached")
        .unwrap_or_else(|| rec.get("currently_attached").and_then(Value::as_bool) == Some(true));
    let locking_mode = locking_mode.unwrap_or_else(|| {
        if changed {
            "network_default".into()
        } else {
            rec.get("locking_mode")
                .and_then(Value::as_str)
                .unwrap_or("network_default")
                .into()
        }
    });
    let mut other_config = Map::new();
    if let Some(tx) = tx_checksumming {
        other_config.insert("ethtool-tx".into(), tx.to_string().into());
    }
    let (qos_type, qos_params) = match rate_limit.flatten() {
        Some(l) => ("ratelimit", json!({ "kbps": format!("{l}") })),
        None => ("", json!({})),
    };
    vif_destroy(&x, vif.xapi_ref()).await?;
    let device = x
        .call("VM.get_allowed_VIF_devices", vec![vm.clone().into()])
        .await?
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or_else(|| json!("0"));
    let mtu = x.field("network", &network_ref, "MTU").await?;
    let new = x
        .call(
            "VIF.create",
            vec![json!({
                "device": device,
                "network": network_ref,
                "VM": vm,
                "MAC": mac,
                "MTU": mtu,
                "other_config": other_config,
                "qos_algorithm_type": qos_type,
                "qos_algorithm_params": qos_params,
                "locking_mode": locking_mode,
                "ipv4_allowed": new4,
                "ipv6_allowed": new6,
            })],
        )
        .await?;
    let new = new.as_str().unwrap_or_default().to_owned();
    if attached && x.field("VM", &vm, "power_state").await?.as_str() == Some("Running") {
        x.call_async("VIF.plug", vec![new.clone().into()]).await?;
    }
    Ok(json!(x.wait_object_id("VIF", &new).await?))
}

pub(super) fn methods() -> Vec<Method> {
    vec![Method::new("vif.set", set)
        .description("Change properties of a VIF, its identifier is returned because it might change during the update")
        .params(schema(r#"{"id": {"type": "string"}, "network": {"type": "string", "optional": true}, "mac": {"type": "string", "optional": true}, "allowedIpv4Addresses": {"type": "array", "items": {"type": "string"}, "optional": true}, "allowedIpv6Addresses": {"type": "array", "items": {"type": "string"}, "optional": true}, "attached": {"type": "boolean", "optional": true}, "lockingMode": {"type": "string", "optional": true}, "rateLimit": {"description": "in kilobytes per seconds", "optional": true, "type": ["number", "null"]}, "resourceSet": {"type": "string", "optional": true}, "txChecksumming": {"type": "boolean", "optional": true}}"#))]
}
