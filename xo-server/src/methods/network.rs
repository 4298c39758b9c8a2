//! `network.create` (optionally a VLAN on a PIF), `network.createBonded` (a bond per host), `network.set` and
//! `network.delete` (VLANs and bonds first)
//! — `packages/xo-server/src/api/network.mjs`, `xapi/index.mjs` `createNetwork` / `deleteNetwork`.

use serde_json::{json, Map, Value};

use super::resolve::{r, resolve, schema, spec_of, str_list, strs, Resolve, Xapi, NULL_REF};
use super::{opt_bool, opt_str, req_str};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;

/// `resolve` entries of the `network.*` methods of this file.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    (
        "network.create",
        &[r("pool", "pool", &["pool"], "administrate")],
    ),
    (
        "network.createBonded",
        &[r("pool", "pool", &["pool"], "administrate")],
    ),
    (
        "network.delete",
        &[r("network", "id", &["network"], "administrate")],
    ),
    (
        "network.set",
        &[r("network", "id", &["network"], "administrate")],
    ),
];

/// XO's `network.set`: names, MTU, `automatic` (other_config), the default locking mode (`defaultIsLocked`:
/// `disabled` or `unlocked`), and NBD (the `nbd` purpose; `insecure_nbd` goes either way).
async fn set(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "network.set")).await?;
    let network = res.get("network")?;
    let x = Xapi::of(&res.pools, network)?;
    let n = network.xapi_ref();
    for field in ["name_label", "name_description"] {
        if let Some(v) = opt_str(&p, field) {
            x.call(&format!("network.set_{field}"), vec![n.into(), v.into()])
                .await?;
        }
    }
    if let Some(mtu) = p.get("mtu").and_then(Value::as_i64) {
        x.call("network.set_MTU", vec![n.into(), mtu.into()])
            .await?;
    }
    if let Some(on) = opt_bool(&p, "automatic") {
        let v = on.then_some("true");
        x.update_map("network", n, "other_config", "automatic", v)
            .await?;
    }
    if let Some(locked) = opt_bool(&p, "defaultIsLocked") {
        let mode = if locked { "disabled" } else { "unlocked" };
        x.call(
            "network.set_default_locking_mode",
            vec![n.into(), mode.into()],
        )
        .await?;
    }
    if let Some(nbd) = opt_bool(&p, "nbd") {
        x.call(
            "network.remove_purpose",
            vec![n.into(), "insecure_nbd".into()],
        )
        .await?;
        let method = if nbd {
            "network.add_purpose"
        } else {
            "network.remove_purpose"
        };
        x.call(method, vec![n.into(), "nbd".into()]).await?;
    }
    Ok(Value::Bool(true))
}

/// XO's `createNetwork`: a network named `name` (`description`, `mtu` 1500 unless given), not automatic so that
/// XenCenter does not get confused; its ref.
async fn new_network(x: &Xapi, p: &Map<String, Value>) -> Result<String, ApiError> {
    let mtu = p.get("mtu").and_then(Value::as_i64).unwrap_or(1500);
    let rec = json!({
        "name_label": req_str(p, "name")?,
        "name_description": opt_str(p, "description").unwrap_or("Created with Xen Orchestra"),
        "MTU": mtu,
        "other_config": {"automatic": "false"},
    });
    let net = x.call("network.create", vec![rec]).await?;
    net.as_str()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::internal("network.create did not return a ref"))
}

/// XO's `createBondedNetwork`: a new network, then on every host a bond of the PIFs that share a network with
/// the given `pifs` (all bonds are tried; the first failure is returned). Answers the network's XAPI record, as
/// XO does.
async fn create_bonded(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "network.createBonded")).await?;
    let pool = res.get("pool")?;
    let x = Xapi::of(&res.pools, pool)?;
    let mode = req_str(&p, "bondMode")?.to_owned();
    let mut by_host: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for id in str_list(p.get("pifs")) {
        let pif = res.pools.object_of_type(&id, &["PIF"])?;
        let network = pif.get("$network").and_then(Value::as_str).unwrap_or("");
        let network = res.pools.object_of_type(network, &["network"])?;
        let members = network.get("PIFs").and_then(Value::as_array).cloned();
        for m in members.into_iter().flatten() {
            let Some(m) = m.as_str().and_then(|m| res.pools.object(m)) else {
                continue;
            };
            let host = m
                .get("$host")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            by_host.entry(host).or_default().push(m.xapi_ref().into());
        }
    }
    let net = new_network(&x, &p).await?;
    let bonds = by_host.into_values().map(|pifs| {
        let params = vec![
            net.clone().into(),
            Value::Array(pifs),
            "".into(),
            mode.clone().into(),
        ];
        x.call("Bond.create", params)
    });
    for r in futures::future::join_all(bonds).await {
        r?;
    }
    Ok(Value::Object(x.record("network", &net).await?))
}

async fn create(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "network.create")).await?;
    let pool = res.get("pool")?;
    let pif = match opt_str(&p, "pif") {
        Some(id) => Some(res.pools.object_of_type(id, &["PIF"])?),
        None => None,
    };
    let x = Xapi::of(&res.pools, pool)?;
    let vlan = p.get("vlan").and_then(Value::as_i64).unwrap_or(0);
    let net = new_network(&x, &p).await?;
    let finish = async {
        if let Some(pif) = &pif {
            x.call(
                "pool.create_VLAN_from_PIF",
                vec![pif.xapi_ref().into(), net.clone().into(), vlan.into()],
            )
            .await?;
        }
        if opt_bool(&p, "nbd") == Some(true) {
            x.call(
                "network.add_purpose",
                vec![net.clone().into(), "nbd".into()],
            )
            .await?;
        }
        x.wait_object_id("network", &net).await
    };
    match finish.await {
        Ok(id) => Ok(Value::String(id)),
        Err(e) => {
            if let Err(e2) = x.call_async("network.destroy", vec![net.into()]).await {
                tracing::warn!("destroying the network being created failed: {e2}");
            }
            Err(e)
        }
    }
}

async fn delete(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "network.delete")).await?;
    let network = res.get("network")?;
    let x = Xapi::of(&res.pools, network)?;
    let mut vlans = Vec::new();
    let mut bonds = Vec::new();
    for pif in strs(network, "PIFs")
        .iter()
        .filter_map(|id| res.pools.object(id))
    {
        let rec = x.record("PIF", pif.xapi_ref()).await?;
        if let Some(v) = rec.get("VLAN_master_of").and_then(Value::as_str) {
            if v != NULL_REF && !vlans.iter().any(|x: &String| x == v) {
                vlans.push(v.to_owned());
            }
        }
        for b in rec
            .get("bond_master_of")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(b) = b.as_str() {
                if !bonds.iter().any(|x: &String| x == b) {
                    bonds.push(b.to_owned());
                }
            }
        }
    }
    for v in vlans {
        x.call_async("VLAN.destroy", vec![v.into()]).await?;
    }
    for b in bonds {
        x.call("Bond.destroy", vec![b.into()]).await?;
    }
    x.call_async("network.destroy", vec![network.xapi_ref().into()])
        .await?;
    Ok(Value::Bool(true))
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("network.create", create)
            .params(schema(r#"{"pool": {"type": "string"}, "name": {"type": "string"}, "nbd": {"type": "boolean", "optional": true}, "description": {"type": "string", "minLength": 0, "optional": true}, "pif": {"type": "string", "optional": true}, "mtu": {"type": "integer", "optional": true, "minimum": 68}, "vlan": {"type": "integer", "optional": true}}"#)),
        Method::new("network.createBonded", create_bonded)
            .description("Create a bonded network. bondMode can be balance-slb, active-backup or lacp")
            .params(schema(r#"{"pool": {"type": "string"}, "name": {"type": "string"}, "description": {"type": "string", "minLength": 0, "optional": true}, "pifs": {"type": "array", "items": {"type": "string"}}, "mtu": {"type": "integer", "optional": true, "minimum": 68}, "bondMode": {"enum": ["balance-slb", "active-backup", "lacp"]}}"#)),
        Method::new("network.delete", delete)
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("network.set", set)
            .params(schema(r#"{"automatic": {"type": "boolean", "optional": true}, "defaultIsLocked": {"type": "boolean", "optional": true}, "id": {"type": "string"}, "mtu": {"type": "integer", "minimum": 68, "optional": true}, "name_description": {"type": "string", "minLength": 0, "optional": true}, "name_label": {"type": "string", "optional": true}, "nbd": {"type": "boolean", "optional": true}}"#)),
    ]
}
