//! Migration with storage motion (`xapi/index.mjs` `_migrateVmWithStorageMotion`): `host.migrate_receive`
//! on the destination, then `VM.assert_can_migrate` and `VM.migrate_send` with the VDI→SR and VIF→network
//! maps XO computes. Across pools the VM is streamed instead (`xapi.exportVm` piped into `importVm` as XO's
//! non-live path does): export of the source into an import on the destination SR, VIFs moved to their networks,
//! then the source VM and its disks destroyed once the import succeeded.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::resolve::{plain_error, rs, s, strs, CallError, Xapi};
use super::vm::{vm_destroy, DestroyOpts};
use crate::error::ApiError;
use crate::xapi::{vm_bad_power_state, XoObject};

/// Options of a storage-motion migration.
#[derive(Default)]
pub(super) struct Motion {
    /// Default destination SR (ref).
    pub sr: Option<String>,
    /// VDI id → SR ref.
    pub map_vdis: HashMap<String, String>,
    /// VIF id → network ref.
    pub map_vifs: HashMap<String, String>,
    /// Migration network (default: the destination host's management network).
    pub migration_network: Option<Arc<XoObject>>,
    pub force: bool,
    pub bypass_assert: bool,
}

fn management_network(x: &Xapi, host: &XoObject) -> Option<Arc<XoObject>> {
    strs(host, "PIFs")
        .iter()
        .filter_map(|id| x.pools.object(id))
        .find(|pif| pif.get("management").and_then(Value::as_bool) == Some(true))
        .and_then(|pif| x.pools.object(s(&pif, "$network")))
}

/// Runs the migration of `vm` (connection `x`) to `host` (connection `host_x`).
pub(super) async fn with_storage_motion(
    x: &Xapi,
    vm: &XoObject,
    host_x: &Xapi,
    host: &XoObject,
    m: &Motion,
) -> Result<(), ApiError> {
    if vm.pool() != host.pool() {
        return across_pools(x, vm, host_x, host, m).await;
    }
    let pools = &x.pools;
    let network = match &m.migration_network {
        Some(n) => n.clone(),
        None => management_network(host_x, host)
            .ok_or_else(|| plain_error("no management network on the destination host"))?,
    };
    let host_pbds: std::collections::HashSet<String> = strs(host, "$PBDs").into_iter().collect();
    let default_sr = || -> Result<String, ApiError> {
        let pool = pools.object_of_type(host.pool().unwrap_or_default(), &["pool"])?;
        pools
            .object(s(&pool, "default_SR"))
            .map(|sr| sr.xapi_ref().to_owned())
            .ok_or_else(|| {
                plain_error(format!(
                    "This operation requires a default SR to be set on the pool {}",
                    s(&pool, "name_label")
                ))
            })
    };
    // VDIs of the VM and of its snapshots (snapshot VDIs follow their parent)
    let mut vbd_ids = strs(vm, "$VBDs");
    for snap in strs(vm, "snapshots") {
        if let Some(snap) = pools.object(&snap) {
            vbd_ids.extend(strs(&snap, "$VBDs"));
        }
    }
    let mut vdis = Map::new();
    for vbd in vbd_ids.iter().filter_map(|id| pools.object(id)) {
        if vbd.get("is_cd_drive").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let Some(vdi) = vbd
            .get("VDI")
            .and_then(Value::as_str)
            .and_then(|id| pools.object(id))
        else {
            continue;
        };
        if vdi.get("$snapshot_of").and_then(Value::as_str).is_some() {
            continue;
        }
        let sr_ref = if let Some(sr) = m.map_vdis.get(vdi.id()) {
            sr.clone()
        } else if let Some(sr) = &m.sr {
            sr.clone()
        } else {
            let sr = pools.object(s(&vdi, "$SR"));
            let connected = sr
                .as_ref()
                .is_some_and(|sr| strs(sr, "$PBDs").iter().any(|p| host_pbds.contains(p)));
            match sr {
                Some(sr) if connected => sr.xapi_ref().to_owned(),
                _ => default_sr()?,
            }
        };
        vdis.insert(vdi.xapi_ref().to_owned(), sr_ref.into());
    }
    let mut vifs = Map::new();
    if vm.pool() != host.pool() {
        let default_net = management_network(host_x, host)
            .map(|n| n.xapi_ref().to_owned())
            .ok_or_else(|| plain_error("no management network on the destination host"))?;
        let mut vif_ids = strs(vm, "VIFs");
        let devices: std::collections::HashSet<String> = vif_ids
            .iter()
            .filter_map(|id| pools.object(id))
            .map(|v| s(&v, "device").to_owned())
            .collect();
        for snap in strs(vm, "snapshots") {
            if let Some(snap) = pools.object(&snap) {
                for id in strs(&snap, "VIFs") {
                    if let Some(v) = pools.object(&id) {
                        if !devices.contains(s(&v, "device")) {
                            vif_ids.push(id);
                        }
                    }
                }
            }
        }
        for vif in vif_ids.iter().filter_map(|id| pools.object(id)) {
            let net = m
                .map_vifs
                .get(vif.id())
                .cloned()
                .unwrap_or_else(|| default_net.clone());
            vifs.insert(vif.xapi_ref().to_owned(), net.into());
        }
    }
    let token = host_x
        .call(
            "host.migrate_receive",
            vec![host.xapi_ref().into(), network.xapi_ref().into(), json!({})],
        )
        .await?;
    let params = vec![
        vm.xapi_ref().into(),
        token,
        true.into(),
        Value::Object(vdis),
        Value::Object(vifs),
        json!({"force": if m.force { "true" } else { "false" }}),
    ];
    if !m.bypass_assert {
        match x
            .try_call_async("VM.assert_can_migrate", params.clone())
            .await
        {
            Ok(_) => {}
            Err(CallError::Xapi(e)) if e.code == "VDI_CBT_ENABLED" => {}
            Err(e) => return Err(x.api(e)),
        }
    }
    x.call_async("VM.migrate_send", params).await.map(drop)
}

/// The destination SR of a streamed migration: `sr` and the `mapVdisSrs` targets (one import lands on one SR),
/// else the destination pool's default SR.
fn destination_sr(x: &Xapi, host: &XoObject, m: &Motion) -> Result<Arc<XoObject>, ApiError> {
    let mut wanted: Vec<&String> = m.sr.iter().chain(m.map_vdis.values()).collect();
    wanted.sort();
    wanted.dedup();
    let sr = match wanted.as_slice() {
        [] => {
            let pool = x
                .pools
                .object_of_type(host.pool().unwrap_or_default(), &["pool"])?;
            x.pools.object(s(&pool, "default_SR")).ok_or_else(|| {
                plain_error(format!(
                    "This operation requires a default SR to be set on the pool {}",
                    s(&pool, "name_label")
                ))
            })?
        }
        [one] => x.pools.object_of_type(one, &["SR"])?,
        // an XVA import puts every disk on the SR it is sent to
        _ => return Err(ApiError::not_implemented()),
    };
    if sr.pool() != host.pool() {
        return Err(ApiError::invalid_parameters_message(
            "the destination SR is not in the pool of the destination host",
        ));
    }
    Ok(sr)
}

/// Migration to a host of another pool by streaming: the source's XVA export piped into an import on the
/// destination, the imported VIFs moved to their networks (`mapVifsNetworks`, else the destination host's
/// management network), then the source destroyed with its disks. Any failure leaves the source intact and
/// removes what was imported.
async fn across_pools(
    x: &Xapi,
    vm: &XoObject,
    host_x: &Xapi,
    host: &XoObject,
    m: &Motion,
) -> Result<(), ApiError> {
    let power = s(vm, "power_state");
    if power != "Halted" {
        // XO's non-live cross-pool path (export + import) needs a halted VM; xo-server refuses with XAPI's
        // VM_BAD_POWER_STATE mapped (code 13) rather than shutting the VM down behind the user's back.
        return Err(vm_bad_power_state(vm.id(), "Halted", power));
    }
    if host_x.client.is_read_only() || x.client.is_read_only() {
        return Err(ApiError::internal("cannot migrate a VM in read only mode"));
    }
    let sr = destination_sr(host_x, host, m)?;
    let pools = &x.pools;
    // target network of each source VIF, by device
    let default_net = management_network(host_x, host).map(|n| n.xapi_ref().to_owned());
    let mut nets: HashMap<String, String> = HashMap::new();
    for vif in strs(vm, "VIFs").iter().filter_map(|id| pools.object(id)) {
        let net = match m.map_vifs.get(vif.id()) {
            Some(n) => n.clone(),
            None => default_net
                .clone()
                .ok_or_else(|| plain_error("no management network on the destination host"))?,
        };
        nets.insert(s(&vif, "device").to_owned(), net);
    }
    let imported = super::vm_transfer::stream_across_pools(
        pools,
        (vm, vm.xapi_ref()),
        &sr,
        &Map::new(),
        ("[XO] VM migrate (export)", "[XO] VM migrate (import)"),
        None,
    )
    .await?;
    if let Err(e) = fix_vifs(host_x, &imported, &nets).await {
        tracing::debug!("migration across pools: VIF fix-up failed, removing the imported VM: {e}");
        if let Err(e) = vm_destroy(host_x, imported, DestroyOpts::default()).await {
            tracing::warn!("removing the imported VM failed: {e}");
        }
        return Err(e);
    }
    if let Err(e) = host_x.wait_object_id("VM", &imported).await {
        tracing::debug!("imported VM not seen in the cache yet: {e}");
    }
    vm_destroy(x, vm.xapi_ref().to_owned(), DestroyOpts::default()).await
}

/// Moves each VIF of the imported `vm` to the network of its device in `nets`.
async fn fix_vifs(x: &Xapi, vm: &str, nets: &HashMap<String, String>) -> Result<(), ApiError> {
    let vifs = x.field("VM", vm, "VIFs").await?;
    for vif in vifs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let rec = x.record("VIF", vif).await?;
        let Some(net) = nets.get(rs(&rec, "device")) else {
            continue;
        };
        if rs(&rec, "network") != net {
            x.call("VIF.move", vec![vif.into(), net.clone().into()])
                .await?;
        }
    }
    Ok(())
}
