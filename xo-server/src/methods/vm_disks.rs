//! Devices of VMs: `VDI_create` / `VBD_create` / `VIF_create` as `@xen-orchestra/xapi` does them, CD
//! insertion, and the disks/VIFs/boot steps of `vm.create` (`xapi/mixins/vm.mjs` `createVm`).

use serde_json::{json, Map, Value};

use super::resolve::{parse_size, plain_error, ri, rs, CallError, Xapi, NULL_REF};
use super::vdi::move_vdi;
use crate::error::ApiError;
use crate::xapi::Pools;

/// A disk to create.
pub(super) struct NewVdi {
    size: i64,
    sr_ref: String,
    name_label: String,
    name_description: String,
}

/// A template disk to update (`existingDisks`).
pub(super) struct ExistingVdi {
    userdevice: String,
    size: Option<i64>,
    sr_ref: Option<String>,
    name_label: Option<Value>,
    name_description: Option<Value>,
}

/// A VIF to create.
pub(super) struct NewVif {
    network_ref: String,
    mac: String,
    ipv4: Vec<Value>,
    ipv6: Vec<Value>,
}

/// How the guest gets installed.
pub(super) enum Install {
    None,
    /// From an ISO VDI (its ref).
    Cd(String),
    /// From a network repository (its URL).
    Network(String),
}

/// The device params of `vm.create`, resolved before anything is created.
pub(super) struct CreateDisks {
    vdis: Vec<NewVdi>,
    existing: Vec<ExistingVdi>,
    vifs: Option<Vec<NewVif>>,
    install: Install,
}

fn string_list(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array).cloned().unwrap_or_default()
}

impl CreateDisks {
    /// Reads `VDIs`, `existingDisks`, `VIFs` and `installation` (unknown objects: `noSuchObject`).
    pub fn from_params(pools: &Pools, p: &Map<String, Value>) -> Result<Self, ApiError> {
        let mut vdis = Vec::new();
        for v in p
            .get("VDIs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let sr_id = v.get("SR").and_then(Value::as_str).unwrap_or_default();
            let sr = pools.object_of_type(sr_id, &["SR"])?;
            vdis.push(NewVdi {
                size: parse_size(v.get("size").unwrap_or(&Value::Null))?,
                sr_ref: sr.xapi_ref().to_owned(),
                name_label: v
                    .get("name_label")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                name_description: v
                    .get("name_description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        let mut existing = Vec::new();
        if let Some(Value::Object(m)) = p.get("existingDisks") {
            for (userdevice, v) in m {
                let size = match v.get("size") {
                    None | Some(Value::Null) => None,
                    Some(s) => Some(parse_size(s)?),
                };
                let sr_ref = match v.get("$SR").and_then(Value::as_str) {
                    Some(id) => Some(pools.object_of_type(id, &["SR"])?.xapi_ref().to_owned()),
                    None => None,
                };
                existing.push(ExistingVdi {
                    userdevice: userdevice.clone(),
                    size,
                    sr_ref,
                    name_label: v.get("name_label").cloned(),
                    name_description: v.get("name_description").cloned(),
                });
            }
        }
        let vifs = match p.get("VIFs").and_then(Value::as_array) {
            None => None,
            Some(list) => {
                let mut out = Vec::new();
                for v in list {
                    let id = v.get("network").and_then(Value::as_str).unwrap_or_default();
                    let net = pools.object_of_type(id, &["network"])?;
                    out.push(NewVif {
                        network_ref: net.xapi_ref().to_owned(),
                        mac: v
                            .get("mac")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        ipv4: string_list(v.get("allowedIpv4Addresses")),
                        ipv6: string_list(v.get("allowedIpv6Addresses")),
                    });
                }
                Some(out)
            }
        };
        let install = match p
            .get("installation")
            .and_then(|i| i.get("repository"))
            .and_then(Value::as_str)
        {
            None => Install::None,
            Some(repo) => match pools.object(repo) {
                Some(o) => Install::Cd(o.xapi_ref().to_owned()),
                None => Install::Network(repo.to_owned()),
            },
        };
        Ok(Self {
            vdis,
            existing,
            vifs,
            install,
        })
    }
}

/// `VDI.create` of a user disk; its ref.
pub(super) async fn vdi_create(
    x: &Xapi,
    sr_ref: &str,
    size: i64,
    name_label: &str,
    name_description: &str,
) -> Result<String, ApiError> {
    let rec = json!({
        "name_label": name_label,
        "name_description": name_description,
        "SR": sr_ref,
        "virtual_size": size,
        "type": "user",
        "sharable": false,
        "read_only": false,
        "other_config": {},
        "xenstore_data": {},
        "sm_config": {},
        "tags": [],
    });
    ref_of(x.call("VDI.create", vec![rec]).await?)
}

fn ref_of(v: Value) -> Result<String, ApiError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::internal(format!("expected a ref, got {v}")))
}

/// A new VBD (`userdevice` picked among the allowed ones when absent; plugged when the VM runs).
pub(super) async fn vbd_create(
    x: &Xapi,
    vm_ref: &str,
    vdi_ref: Option<&str>,
    bootable: bool,
    userdevice: Option<String>,
    mode: Option<&str>,
    cd: bool,
) -> Result<String, ApiError> {
    let userdevice = match userdevice {
        Some(u) => u,
        None => {
            let allowed: Vec<String> = x
                .call("VM.get_allowed_VBD_devices", vec![vm_ref.into()])
                .await?
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            let pick = if cd && allowed.iter().any(|d| d == "3") {
                Some("3".to_owned())
            } else if !cd && allowed.first().map(String::as_str) == Some("3") && allowed.len() > 1 {
                allowed.get(1).cloned()
            } else {
                allowed.first().cloned()
            };
            pick.ok_or_else(|| plain_error("no allowed VBD devices"))?
        }
    };
    let mode = mode.unwrap_or(if cd { "RO" } else { "RW" });
    let rec = json!({
        "VM": vm_ref,
        "VDI": vdi_ref.unwrap_or(NULL_REF),
        "userdevice": userdevice,
        "bootable": bootable,
        "mode": mode,
        "type": if cd { "CD" } else { "Disk" },
        "empty": vdi_ref.is_none(),
        // XO's VBDs are unpluggable (hot-unplug allowed)
        "unpluggable": true,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    });
    let vbd = ref_of(x.call("VBD.create", vec![rec]).await?)?;
    if x.field("VM", vm_ref, "power_state").await?.as_str() == Some("Running") {
        x.call_async("VBD.plug", vec![vbd.clone().into()]).await?;
    }
    Ok(vbd)
}

/// A new VIF (device picked when absent, MTU of the network, plugged when the VM runs).
#[allow(clippy::too_many_arguments)]
pub(super) async fn vif_create(
    x: &Xapi,
    vm_ref: &str,
    network_ref: &str,
    device: Option<String>,
    mac: &str,
    ipv4: Vec<Value>,
    ipv6: Vec<Value>,
) -> Result<String, ApiError> {
    let device = match device {
        Some(d) => d,
        None => x
            .call("VM.get_allowed_VIF_devices", vec![vm_ref.into()])
            .await?
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| plain_error("no allowed VIF devices"))?,
    };
    let mtu = x.field("network", network_ref, "MTU").await?;
    let locking = if ipv4.is_empty() && ipv6.is_empty() {
        "network_default"
    } else {
        "locked"
    };
    let rec = json!({
        "device": device,
        "network": network_ref,
        "VM": vm_ref,
        "MAC": mac,
        "MTU": mtu,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
        "locking_mode": locking,
        "ipv4_allowed": ipv4,
        "ipv6_allowed": ipv6,
    });
    let vif = ref_of(x.call("VIF.create", vec![rec]).await?)?;
    if x.field("VM", vm_ref, "power_state").await?.as_str() == Some("Running") {
        x.call_async("VIF.plug", vec![vif.clone().into()]).await?;
    }
    Ok(vif)
}

/// `VIF.destroy` (unplugged first when attached).
pub(super) async fn vif_destroy(x: &Xapi, vif_ref: &str) -> Result<(), ApiError> {
    if x.field("VIF", vif_ref, "currently_attached")
        .await?
        .as_bool()
        == Some(true)
    {
        if let Err(e) = x.call("VIF.unplug_force", vec![vif_ref.into()]).await {
            tracing::debug!("VIF.unplug_force failed: {e}");
        }
    }
    x.call("VIF.destroy", vec![vif_ref.into()]).await.map(drop)
}

async fn vbds_of(x: &Xapi, vm_ref: &str) -> Result<Vec<(String, Map<String, Value>)>, ApiError> {
    let list = x.field("VM", vm_ref, "VBDs").await?;
    let mut out = Vec::new();
    for r in list.as_array().into_iter().flatten() {
        if let Some(r) = r.as_str() {
            out.push((r.to_owned(), x.record("VBD", r).await?));
        }
    }
    Ok(out)
}

/// The VM's CD drive (its first CD VBD) and its record.
pub(super) async fn cd_drive(
    x: &Xapi,
    vm_ref: &str,
) -> Result<Option<(String, Map<String, Value>)>, ApiError> {
    Ok(vbds_of(x, vm_ref)
        .await?
        .into_iter()
        .find(|(_, rec)| rs(rec, "type") == "CD"))
}

/// XO's `_insertCdIntoVm`: inserts a CD into the VM's CD drive (created when missing); with `force`, a drive
/// that is not empty is emptied first. The drive is made `bootable` or not.
pub(super) async fn insert_cd(
    x: &Xapi,
    vm_ref: &str,
    cd_ref: &str,
    bootable: bool,
    force: bool,
) -> Result<(), ApiError> {
    match cd_drive(x, vm_ref).await? {
        Some((vbd, rec)) => {
            let insert = vec![vbd.clone().into(), cd_ref.into()];
            match x.try_call_async("VBD.insert", insert.clone()).await {
                Err(CallError::Xapi(e)) if force && e.code == "VBD_NOT_EMPTY" => {
                    if let Err(e) = x.call_async("VBD.eject", vec![vbd.clone().into()]).await {
                        tracing::debug!("VBD.eject before a forced insert failed: {e}");
                    }
                    x.call_async("VBD.insert", insert).await?;
                }
                other => {
                    other.map_err(|e| x.api(e))?;
                }
            }
            if rec.get("bootable").and_then(Value::as_bool) != Some(bootable) {
                x.call("VBD.set_bootable", vec![vbd.into(), bootable.into()])
                    .await?;
            }
        }
        None => {
            vbd_create(x, vm_ref, Some(cd_ref), bootable, None, None, true).await?;
        }
    }
    Ok(())
}

/// The boot, disk and VIF steps of `createVm` on the freshly provisioned VM.
pub(super) async fn provision_disks_and_vifs(
    x: &Xapi,
    vm_ref: &str,
    d: &CreateDisks,
) -> Result<(), ApiError> {
    let rec = x.record("VM", vm_ref).await?;
    let hvm = match rs(&rec, "domain_type") {
        "hvm" => true,
        "pv" | "pv_in_pvh" | "pvh" => false,
        _ => !rs(&rec, "HVM_boot_policy").is_empty(),
    };
    if hvm {
        if (d.vdis.is_empty() && d.existing.is_empty()) || matches!(d.install, Install::Network(_))
        {
            let order = rec
                .get("HVM_boot_params")
                .and_then(|m| m.get("order"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let order = if order.is_empty() {
                "ncd".to_owned()
            } else {
                format!("n{}", order.replacen('n', "", 1))
            };
            x.update_map("VM", vm_ref, "HVM_boot_params", "order", Some(&order))
                .await?;
        }
    } else if rs(&rec, "PV_bootloader") == "eliloader" {
        let repo = match &d.install {
            Install::Network(url) => Some(url.as_str()),
            Install::Cd(_) => Some("cdrom"),
            Install::None => None,
        };
        if let Some(repo) = repo {
            x.update_map(
                "VM",
                vm_ref,
                "other_config",
                "install-repository",
                Some(repo),
            )
            .await?;
        }
    }
    let mut has_bootable = false;
    if let Install::Cd(cd) = &d.install {
        insert_cd(x, vm_ref, cd, true, false).await?;
        has_bootable = true;
    }
    let vbds = vbds_of(x, vm_ref).await?;
    let updates: Vec<(&ExistingVdi, String)> = d
        .existing
        .iter()
        .filter_map(|e| {
            vbds.iter()
                .find(|(_, r)| rs(r, "userdevice") == e.userdevice)
                .map(|(_, r)| (e, rs(r, "VDI").to_owned()))
        })
        .collect();
    if !d.vdis.is_empty() || !updates.is_empty() {
        if let Some((e, _)) = updates.iter().find(|(_, vdi)| vdi == NULL_REF) {
            return Err(plain_error(format!(
                "VBD with userdevice: {} exist but has no VDI",
                e.userdevice
            )));
        }
        has_bootable = has_bootable
            || vbds
                .iter()
                .any(|(_, r)| r.get("bootable").and_then(Value::as_bool) == Some(true));
        for (i, v) in d.vdis.iter().enumerate() {
            let vdi = vdi_create(x, &v.sr_ref, v.size, &v.name_label, &v.name_description).await?;
            let bootable = !has_bootable && i == 0;
            if let Err(e) = vbd_create(x, vm_ref, Some(&vdi), bootable, None, None, false).await {
                let _ = x.call_async("VDI.destroy", vec![vdi.into()]).await;
                return Err(e);
            }
        }
        for (e, vdi) in updates {
            if let Some(v) = &e.name_label {
                x.call("VDI.set_name_label", vec![vdi.clone().into(), v.clone()])
                    .await?;
            }
            if let Some(v) = &e.name_description {
                x.call(
                    "VDI.set_name_description",
                    vec![vdi.clone().into(), v.clone()],
                )
                .await?;
            }
            let vdi = match &e.sr_ref {
                Some(sr) => move_vdi(x, &vdi, sr).await?,
                None => vdi,
            };
            if let Some(size) = e.size {
                let current = ri(&x.record("VDI", &vdi).await?, "virtual_size");
                if size < current {
                    return Err(plain_error(format!(
                        "Unable to update to a smaller VDI size for VDI with PBD userdevice: {}. Current size: {current}, new size: {size}",
                        e.userdevice
                    )));
                }
                if size > current {
                    x.call_async("VDI.resize", vec![vdi.into(), size.into()])
                        .await?;
                }
            }
        }
    }
    // the template's VIFs are replaced by the requested ones
    for vif in rec
        .get("VIFs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(vif) = vif.as_str() {
            vif_destroy(x, vif).await?;
        }
    }
    if let Some(vifs) = &d.vifs {
        let mut devices: Vec<String> = x
            .call("VM.get_allowed_VIF_devices", vec![vm_ref.into()])
            .await?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        for v in vifs {
            let device = (!devices.is_empty()).then(|| devices.remove(0));
            vif_create(
                x,
                vm_ref,
                &v.network_ref,
                device,
                &v.mac,
                v.ipv4.clone(),
                v.ipv6.clone(),
            )
            .await?;
        }
    }
    Ok(())
}
