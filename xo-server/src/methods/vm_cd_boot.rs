//! A VM's CD drive and boot: `vm.insertCd`, `vm.ejectCd`, `vm.setBootOrder`, `vm.recoveryStart` (boot once
//! from the CD), and `vm.convertToTemplate` (alias `vm.convert`) — `packages/xo-server/src/api/vm.mjs`,
//! `xapi/index.mjs` (`_insertCdIntoVm`, `_ejectCdFromVm`, `startVmOnCd`).

use serde_json::{Map, Value};

use super::opt_bool;
use super::resolve::{check_permissions, r, resolve, schema, spec_of, Resolve, Xapi};
use super::vm::start_vm;
use super::vm_disks::{cd_drive, insert_cd};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;

/// `resolve` entries of the methods of this file.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    (
        "vm.convert",
        &[r("vm", "id", &["VM", "VM-snapshot"], "administrate")],
    ),
    (
        "vm.convertToTemplate",
        &[r("vm", "id", &["VM", "VM-snapshot"], "administrate")],
    ),
    ("vm.ejectCd", &[r("vm", "id", &["VM"], "operate")]),
    ("vm.recoveryStart", &[r("vm", "id", &["VM"], "operate")]),
    (
        "vm.insertCd",
        &[
            r("vm", "id", &["VM"], "operate"),
            r("vdi", "cd_id", &["VDI"], ""),
        ],
    ),
    (
        "vm.setBootOrder",
        &[r("vm", "vm", &["VM", "VM-template"], "operate")],
    ),
];

/// XO's `insertCd`: the ISO `cd_id` goes into the VM's CD drive (created when missing); a drive that is not
/// empty is emptied first unless `force` is false.
async fn insert(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let force = opt_bool(&p, "force").unwrap_or(true);
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "vm.insertCd")).await?;
    let (vm, cd) = (res.get("vm")?, res.get("vdi")?);
    if vm.pool() != cd.pool() {
        return Err(ApiError::invalid_parameters_message(
            "the VM and the CD are in different pools",
        ));
    }
    let x = Xapi::of(&res.pools, vm)?;
    insert_cd(&x, vm.xapi_ref(), cd.xapi_ref(), false, force).await?;
    Ok(Value::Bool(true))
}

/// XO's `ejectCd`: empties the VM's CD drive (nothing to do without one; an empty drive is XAPI's
/// `VBD_IS_EMPTY`).
async fn eject(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "vm.ejectCd")).await?;
    let vm = res.get("vm")?;
    let x = Xapi::of(&res.pools, vm)?;
    if let Some((vbd, _)) = cd_drive(&x, vm.xapi_ref()).await? {
        x.call_async("VBD.eject", vec![vbd.into()]).await?;
    }
    Ok(Value::Bool(true))
}

/// XO's `setBootOrder`: the `order` key of `HVM_boot_params` (e.g. `cdn`: disk, CD, network); only for HVM
/// guests (`invalid parameters` otherwise).
async fn set_boot_order(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let order = p
        .get("order")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "vm.setBootOrder")).await?;
    let vm = res.get("vm")?;
    if vm.get("virtualizationMode").and_then(Value::as_str) != Some("hvm") {
        return Err(ApiError::invalid_parameters_message(
            "You can only set the boot order on a HVM guest",
        ));
    }
    let x = Xapi::of(&res.pools, vm)?;
    x.update_map(
        "VM",
        vm.xapi_ref(),
        "HVM_boot_params",
        "order",
        Some(&order),
    )
    .await?;
    Ok(Value::Bool(true))
}

/// XO's `startVmOnCd`: the VM starts once from its CD. HVM: the boot order is `d` for the start, then back
/// to what it was. PV: the CD drive alone is bootable and the `eliloader` bootloader installs from `cdrom` (the
/// distribution of the VM's original template), then the bootloader and the drives' flags are restored.
async fn recovery_start(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, "vm.recoveryStart")).await?;
    let vm = res.get("vm")?;
    let x = Xapi::of(&res.pools, vm)?;
    let r = vm.xapi_ref();
    let rec = x.record("VM", r).await?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let hvm = text(rec.get("HVM_boot_policy")).is_some_and(|p| !p.is_empty());
    if hvm {
        let order = text(rec.get("HVM_boot_params").and_then(|m| m.get("order")));
        x.update_map("VM", r, "HVM_boot_params", "order", Some("d"))
            .await?;
        let started = start_vm(&x, vm, false, false, None).await;
        x.update_map("VM", r, "HVM_boot_params", "order", order.as_deref())
            .await?;
        started?;
        return Ok(Value::Bool(true));
    }
    let other = rec.get("other_config");
    let distro = match text(other.and_then(|o| o.get("base_template_name"))) {
        Some(name) => template_distro(&x, &name).await?,
        None => None,
    };
    let bootloader = text(rec.get("PV_bootloader")).unwrap_or_default();
    let cd = cd_drive(&x, r).await?.map(|(vbd, _)| vbd);
    let mut bootables = Vec::new();
    for vbd in x.field_refs("VM", r, "VBDs").await? {
        let was = x.field("VBD", &vbd, "bootable").await?.as_bool() == Some(true);
        let now = cd.as_deref() == Some(vbd.as_str());
        x.call("VBD.set_bootable", vec![vbd.clone().into(), now.into()])
            .await?;
        bootables.push((vbd, was));
    }
    let prepared = async {
        x.call("VM.set_PV_bootloader", vec![r.into(), "eliloader".into()])
            .await?;
        x.update_map("VM", r, "other_config", "install-distro", distro.as_deref())
            .await?;
        x.update_map("VM", r, "other_config", "install-repository", Some("cdrom"))
            .await
    };
    let started = match prepared.await {
        Ok(()) => start_vm(&x, vm, false, false, None).await,
        Err(e) => Err(e),
    };
    if let Err(e) = x
        .call("VM.set_PV_bootloader", vec![r.into(), bootloader.into()])
        .await
    {
        tracing::warn!(vm = vm.id(), "restoring the bootloader failed: {e}");
    }
    for (vbd, was) in bootables {
        if let Err(e) = x
            .call("VBD.set_bootable", vec![vbd.into(), was.into()])
            .await
        {
            tracing::warn!(
                vm = vm.id(),
                "restoring a drive's bootable flag failed: {e}"
            );
        }
    }
    started?;
    Ok(Value::Bool(true))
}

/// The `install-distro` of the template named `name`, if there is one.
async fn template_distro(x: &Xapi, name: &str) -> Result<Option<String>, ApiError> {
    for t in x
        .call("VM.get_by_name_label", vec![name.into()])
        .await?
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(t) = t.as_str() else { continue };
        let rec = x.record("VM", t).await?;
        if rec.get("is_a_template").and_then(Value::as_bool) == Some(true) {
            let distro = rec
                .get("other_config")
                .and_then(|o| o.get("install-distro"))
                .and_then(Value::as_str);
            return Ok(distro.map(str::to_owned));
        }
    }
    Ok(None)
}

async fn convert_to_template_of(
    ctx: Ctx,
    p: Map<String, Value>,
    method: &str,
) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, method)).await?;
    let vm = res.get("vm")?;
    // making a template needs the right to administrate the pool
    let pool = vm.pool().unwrap_or_default().to_owned();
    check_permissions(&ctx, &[(pool, "administrate".to_owned())])
        .map_err(|_| ApiError::unauthorized(None, None, None))?;
    let x = Xapi::of(&res.pools, vm)?;
    x.call(
        "VM.set_is_a_template",
        vec![vm.xapi_ref().into(), true.into()],
    )
    .await?;
    Ok(Value::Bool(true))
}

/// XO's `convertToTemplate`: `VM.set_is_a_template(true)`.
async fn convert_to_template(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    convert_to_template_of(ctx, p, "vm.convertToTemplate").await
}

/// `vm.convert`, XO's alias of `vm.convertToTemplate`.
async fn convert(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    convert_to_template_of(ctx, p, "vm.convert").await
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("vm.insertCd", insert).params(schema(
            r#"{"id": {"type": "string"}, "cd_id": {"type": "string"}, "force": {"type": "boolean", "optional": true}}"#,
        )),
        Method::new("vm.ejectCd", eject).params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("vm.recoveryStart", recovery_start)
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("vm.setBootOrder", set_boot_order).params(schema(
            r#"{"vm": {"type": "string"}, "order": {"type": "string"}}"#,
        )),
        Method::new("vm.convertToTemplate", convert_to_template)
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("vm.convert", convert).params(schema(r#"{"id": {"type": "string"}}"#)),
    ]
}
