//! `vm.*` acting on XAPI: power cycle (start/stop/restart/suspend/resume/pause), clone/copy/snapshot/
//! revert/delete, set, create (from a template), migrate — with XO's fallbacks (`packages/xo-server/src/
//! api/vm.mjs`, `xapi/index.mjs`, `xapi/mixins/vm.mjs`, `@xen-orchestra/xapi` `VM_destroy`).

use std::collections::HashMap;

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::resolve::{
    check_permissions, checker, grant_creator, operation_failed, r, resolve, s, schema, spec_of,
    strs, CallError, Resolve, Xapi, NULL_REF,
};
use super::vm_disks::{provision_disks_and_vifs, CreateDisks};
use super::vm_edit::{edit_vm, xo_data_set, EditTarget, EDITABLE};
use super::{opt_bool, opt_str, req_str};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::now_ms;
use crate::registry::Method;
use crate::xapi::XoObject;

const ALL_VMS: &[&str] = &["VM", "VM-snapshot", "VM-template"];
const RESTART_OPERATIONS: &[&str] = &["reboot", "clean_reboot", "hard_reboot"];
const SHUTDOWN_OPERATIONS: &[&str] = &["shutdown", "clean_shutdown", "hard_shutdown"];

/// `resolve` entries of the `vm.*` methods (XO's `method.resolve`).
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    ("vm.clone", &[r("vm", "id", ALL_VMS, "administrate")]),
    (
        "vm.copy",
        &[
            r("vm", "vm", ALL_VMS, "administrate"),
            r("sr", "sr", &["SR"], "operate"),
        ],
    ),
    (
        "vm.create",
        &[
            r("template", "template", &["VM-template"], ""),
            r("vgpuType", "vgpuType", &["vgpuType"], ""),
            r("gpuGroup", "gpuGroup", &["gpuGroup"], ""),
        ],
    ),
    ("vm.delete", &[r("vm", "id", ALL_VMS, "administrate")]),
    (
        "vm.migrate",
        &[
            r("vm", "vm", &["VM"], "administrate"),
            r("host", "targetHost", &["host"], "administrate"),
            r(
                "migrationNetwork",
                "migrationNetwork",
                &["network"],
                "administrate",
            ),
        ],
    ),
    ("vm.pause", &[r("vm", "id", &["VM"], "operate")]),
    ("vm.restart", &[r("vm", "id", &["VM"], "operate")]),
    ("vm.resume", &[r("vm", "id", &["VM"], "operate")]),
    (
        "vm.revert",
        &[r("snapshot", "snapshot", &["VM-snapshot"], "view")],
    ),
    (
        "vm.setAndRestart",
        &[
            r("VM", "id", ALL_VMS, "administrate"),
            r("suspendSr", "suspendSr", &["SR"], "administrate"),
        ],
    ),
    (
        "vm.set",
        &[
            r("VM", "id", ALL_VMS, "administrate"),
            r("suspendSr", "suspendSr", &["SR"], "administrate"),
        ],
    ),
    ("vm.snapshot", &[r("vm", "id", &["VM"], "operate")]),
    (
        "vm.start",
        &[
            r("host", "host", &["host"], "operate"),
            r("vm", "id", &["VM"], "operate"),
        ],
    ),
    ("vm.stop", &[r("vm", "id", &["VM"], "operate")]),
    ("vm.suspend", &[r("vm", "id", &["VM"], "operate")]),
];

fn spec(method: &str) -> &'static [Resolve] {
    spec_of(RESOLVES, method)
}

/// `[[SR, permission]]` of every disk of the VM (XO's `checkPermissionOnSrs`).
pub(super) fn check_permission_on_srs(
    ctx: &Ctx,
    pools: &crate::xapi::Pools,
    vm: &XoObject,
) -> Result<(), ApiError> {
    let mut pairs = Vec::new();
    for vbd_id in strs(vm, "$VBDs") {
        let Some(vbd) = pools.object(&vbd_id) else {
            continue;
        };
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
        pairs.push((s(&vdi, "$SR").to_owned(), "operate".to_owned()));
    }
    check_permissions(ctx, &pairs)
}

// ------------------------------------------------------------------ power

/// XO's `startVm`: MAC address check, blocked operations lifted on `force`, `VM.start` / `VM.start_on`, a
/// suspended or paused VM is resumed / unpaused instead, a blocked start is `forbiddenOperation`.
pub(super) async fn start_vm(
    x: &Xapi,
    vm: &XoObject,
    force: bool,
    bypass_mac: bool,
    host: Option<&XoObject>,
) -> Result<(), ApiError> {
    match start_inner(x, vm, force, bypass_mac, host).await {
        Ok(()) => Ok(()),
        Err(CallError::Xapi(e)) if e.code == "OPERATION_BLOCKED" => Err(
            ApiError::forbidden_operation("Start", e.params.get(1).map_or("", String::as_str)),
        ),
        Err(CallError::Xapi(e)) if e.code == "VM_BAD_POWER_STATE" => {
            if e.params.get(2).map(String::as_str) == Some("paused") {
                unpause_vm(x, vm.xapi_ref()).await
            } else {
                resume_vm(x, vm.xapi_ref()).await
            }
        }
        Err(e) => Err(x.api(e)),
    }
}

async fn start_inner(
    x: &Xapi,
    vm: &XoObject,
    force: bool,
    bypass_mac: bool,
    host: Option<&XoObject>,
) -> Result<(), CallError> {
    if !bypass_mac {
        check_mac_addresses(x, vm).map_err(CallError::Api)?;
    }
    let vm_ref = vm.xapi_ref();
    if force {
        for op in ["start", "start_on"] {
            x.try_call(
                "VM.remove_from_blocked_operations",
                vec![vm_ref.into(), op.into()],
            )
            .await?;
        }
    }
    match host {
        None => {
            x.try_call("VM.start", vec![vm_ref.into(), false.into(), false.into()])
                .await?;
        }
        Some(h) => {
            // something may change between the calls: retried a few times, as XO loops
            let mut attempts = 0;
            loop {
                let params = vec![
                    vm_ref.into(),
                    h.xapi_ref().into(),
                    false.into(),
                    false.into(),
                ];
                match x.try_call_async("VM.start_on", params).await {
                    Err(CallError::Xapi(e)) if e.code == "NO_HOSTS_AVAILABLE" && attempts < 3 => {
                        x.try_call(
                            "VM.assert_can_boot_here",
                            vec![vm_ref.into(), h.xapi_ref().into()],
                        )
                        .await?;
                        attempts += 1;
                    }
                    other => {
                        other?;
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

/// `DUPLICATED_MAC_ADDRESS` when the VM's MACs repeat or are used by a running VM of the pool.
fn check_mac_addresses(x: &Xapi, vm: &XoObject) -> Result<(), ApiError> {
    let pools = &x.pools;
    let macs_of = |o: &XoObject| -> Vec<String> {
        strs(o, "VIFs")
            .iter()
            .filter_map(|id| pools.object(id))
            .map(|vif| s(&vif, "MAC").to_owned())
            .collect()
    };
    let mine = macs_of(vm);
    let unique: std::collections::HashSet<&String> = mine.iter().collect();
    if unique.len() != mine.len() {
        return Err(operation_failed(vm.id(), "DUPLICATED_MAC_ADDRESS"));
    }
    let running = pools.cache().find(
        |o| {
            o.kind() == "VM"
                && o.id() != vm.id()
                && o.pool() == vm.pool()
                && s(o, "power_state") == "Running"
        },
        None,
    );
    for other in running {
        if macs_of(&other).iter().any(|m| unique.contains(m)) {
            return Err(operation_failed(vm.id(), "DUPLICATED_MAC_ADDRESS"));
        }
    }
    Ok(())
}

/// `VM.resume(vm, false, true)` (XO always forces).
pub(super) async fn resume_vm(x: &Xapi, vm_ref: &str) -> Result<(), ApiError> {
    x.call_async("VM.resume", vec![vm_ref.into(), false.into(), true.into()])
        .await
        .map(drop)
}

async fn unpause_vm(x: &Xapi, vm_ref: &str) -> Result<(), ApiError> {
    x.call_async("VM.unpause", vec![vm_ref.into()])
        .await
        .map(drop)
}

async fn start(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec("vm.start")).await?;
    let vm = res.get("vm")?;
    let x = Xapi::of(&res.pools, vm)?;
    let force = opt_bool(&p, "force").unwrap_or(false);
    let bypass_mac = opt_bool(&p, "bypassMacAddressesCheck").unwrap_or(force);
    start_vm(&x, vm, force, bypass_mac, res.opt("host").map(|h| &**h)).await?;
    Ok(Value::Bool(true))
}

/// Lifts the blocked `ops` of the VM, returning what to restore.
pub(super) async fn unblock(
    x: &Xapi,
    vm: &XoObject,
    ops: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let blocked = vm.get("blockedOperations").and_then(Value::as_object);
    let mut restore = Vec::new();
    for op in ops {
        if let Some(reason) = blocked.and_then(|b| b.get(*op)) {
            let reason = reason.as_str().unwrap_or("true").to_owned();
            x.call(
                "VM.remove_from_blocked_operations",
                vec![vm.xapi_ref().into(), (*op).into()],
            )
            .await?;
            restore.push(((*op).to_owned(), reason));
        }
    }
    Ok(restore)
}

pub(super) async fn reblock(x: &Xapi, vm: &XoObject, restore: Vec<(String, String)>) {
    for (op, reason) in restore {
        if let Err(e) = x
            .call(
                "VM.add_to_blocked_operations",
                vec![vm.xapi_ref().into(), op.into(), reason.into()],
            )
            .await
        {
            tracing::warn!(vm = vm.id(), "restoring a blocked operation failed: {e}");
        }
    }
}

async fn stop(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec("vm.stop")).await?;
    let vm = res.get("vm")?;
    let x = Xapi::of(&res.pools, vm)?;
    let force = opt_bool(&p, "force").unwrap_or(false);
    let bypass = opt_bool(&p, "bypassBlockedOperation").unwrap_or(force);
    let restore = if bypass {
        unblock(&x, vm, SHUTDOWN_OPERATIONS).await?
    } else {
        Vec::new()
    };
    let delay = p
        .get("forceShutdownDelay")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let result = shutdown(&x, vm.xapi_ref(), force, delay).await;
    reblock(&x, vm, restore).await;
    result.map(|()| Value::Bool(true))
}

async fn shutdown(x: &Xapi, vm_ref: &str, force: bool, delay_ms: f64) -> Result<(), ApiError> {
    let hard = || x.call_async("VM.hard_shutdown", vec![vm_ref.into()]);
    if force {
        return hard().await.map(drop);
    }
    let clean = x.try_call_async("VM.clean_shutdown", vec![vm_ref.into()]);
    let outcome = if delay_ms > 0.0 && delay_ms.is_finite() {
        let d = std::time::Duration::from_millis(delay_ms.min(1e12) as u64);
        match tokio::time::timeout(d, clean).await {
            Ok(r) => r,
            Err(_) => return hard().await.map(drop),
        }
    } else {
        clean.await
    };
    match outcome {
        Ok(_) => Ok(()),
        Err(CallError::Xapi(e))
            if e.code == "VM_MISSING_PV_DRIVERS" || e.code == "VM_LACKS_FEATURE_SHUTDOWN" =>
        {
            Err(ApiError::invalid_parameters_message(
                "clean shutdown requires PV drivers",
            ))
        }
        Err(e) => Err(x.api(e)),
    }
}

async fn restart(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec("vm.restart")).await?;
    let vm = res.get("vm")?;
    let x = Xapi::of(&res.pools, vm)?;
    let force = opt_bool(&p, "force").unwrap_or(false);
    let bypass = opt_bool(&p, "bypassBlockedOperation").unwrap_or(force);
    let restore = if bypass {
        unblock(&x, vm, RESTART_OPERATIONS).await?
    } else {
        Vec::new()
    };
    let method = if force {
        "VM.hard_reboot"
    } else {
        "VM.clean_reboot"
    };
    let result = x.call_async(method, vec![vm.xapi_ref().into()]).await;
    reblock(&x, vm, restore).await;
    result.map(|_| Value::Bool(true))
}

async fn simple_power(
    ctx: Ctx,
    p: Map<String, Value>,
    method: &'static str,
    xapi_method: &'static str,
) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec(method)).await?;
    let vm = res.get("vm")?;
    let x = Xapi::of(&res.pools, vm)?;
    x.call_async(xapi_method, vec![vm.xapi_ref().into()])
        .await?;
    Ok(Value::Bool(true))
}

async fn suspend(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    simple_power(ctx, p, "vm.suspend", "VM.suspend").await
}

async fn pause(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    simple_power(ctx, p, "vm.pause", "VM.pause").await
}

async fn resume(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec("vm.resume")).await?;
    let vm = res.get("vm")?;
    let x = Xapi::of(&res.pools, vm)?;
    resume_vm(&x, vm.xapi_ref()).await?;
    Ok(Value::Bool(true))
}

// ------------------------------------------------------------ clone/copy

pub(super) fn as_ref(v: Value, what: &str) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(ApiError::internal(format!(
            "{what} returned {other} instead of a ref"
        ))),
    }
}

/// XO's `_copyVm`: a running VM is snapshotted first; the copy goes to `sr` (or the disks' own SRs).
pub(super) async fn copy_vm(
    x: &Xapi,
    vm_ref: &str,
    name: &str,
    sr: Option<&str>,
) -> Result<String, ApiError> {
    let power = x.field("VM", vm_ref, "power_state").await?;
    let snapshot = if power.as_str() == Some("Running") {
        let label = x.field("VM", vm_ref, "name_label").await?;
        Some(as_ref(
            x.call_async(
                "VM.snapshot",
                vec![vm_ref.into(), label, Value::Array(Vec::new())],
            )
            .await?,
            "VM.snapshot",
        )?)
    } else {
        None
    };
    let source = snapshot.as_deref().unwrap_or(vm_ref);
    let copied = x
        .call_async(
            "VM.copy",
            vec![source.into(), name.into(), sr.unwrap_or(NULL_REF).into()],
        )
        .await
        .and_then(|v| as_ref(v, "VM.copy"));
    if let Some(snap) = snapshot {
        if let Err(e) = vm_destroy(x, snap, DestroyOpts::default()).await {
            tracing::warn!("destroying the temporary snapshot failed: {e}");
        }
    }
    copied
}

async fn clone(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec("vm.clone")).await?;
    let vm = res.get("vm")?;
    check_permission_on_srs(&ctx, &res.pools, vm)?;
    let x = Xapi::of(&res.pools, vm)?;
    let name = req_str(&p, "name")?;
    let new_ref = if opt_bool(&p, "full_copy") == Some(true) {
        copy_vm(&x, vm.xapi_ref(), name, None).await?
    } else {
        as_ref(
            x.call_async("VM.clone", vec![vm.xapi_ref().into(), name.into()])
                .await?,
            "VM.clone",
        )?
    };
    let finish = async {
        // a snapshot's is_a_template flag is not reset by the clone
        if vm.kind() != "VM-template" {
            x.call(
                "VM.set_is_a_template",
                vec![new_ref.clone().into(), false.into()],
            )
            .await?;
        }
        x.wait_object_id("VM", &new_ref).await
    };
    match finish.await {
        Ok(id) => {
            grant_creator(&ctx, &id);
            Ok(Value::String(id))
        }
        Err(e) => {
            let _ = vm_destroy(&x, new_ref, DestroyOpts::default()).await;
            Err(e)
        }
    }
}

async fn copy(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec("vm.copy")).await?;
    let vm = res.get("vm")?;
    let sr = res.get("sr")?;
    if vm.pool() != sr.pool() {
        // cross-pool copy is an XVA export/import between the pools
        let name = opt_str(&p, "name").unwrap_or(s(vm, "name_label"));
        let id = super::vm_transfer::copy_across_pools(&res.pools, vm, sr, name, &p).await?;
        return Ok(Value::String(id));
    }
    if s(vm, "power_state") == "Running" {
        check_permission_on_srs(&ctx, &res.pools, vm)?;
    }
    let x = Xapi::of(&res.pools, vm)?;
    let name = match opt_str(&p, "name") {
        Some(n) => n.to_owned(),
        None => s(vm, "name_label").to_owned(),
    };
    let new_ref = copy_vm(&x, vm.xapi_ref(), &name, Some(sr.xapi_ref())).await?;
    if vm.kind() != "VM-template" {
        x.call(
            "VM.set_is_a_template",
            vec![new_ref.clone().into(), false.into()],
        )
        .await?;
    }
    Ok(Value::String(x.wait_object_id("VM", &new_ref).await?))
}

// ------------------------------------------------------- snapshot/revert

/// `2026-01-02T03:04:05.678Z` from milliseconds since the epoch (JS `toISOString`).
pub(super) fn iso_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // civil-from-days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        tod / 3600,
        (tod / 60) % 60,
        tod % 60
    )
}

async fn snapshot(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec("vm.snapshot")).await?;
    let vm = res.get("vm")?;
    check_permission_on_srs(&ctx, &res.pools, vm)?;
    let x = Xapi::of(&res.pools, vm)?;
    let name = match opt_str(&p, "name") {
        Some(n) => n.to_owned(),
        None => format!("{}_{}", s(vm, "name_label"), iso_date(now_ms())),
    };
    let snap_ref = if opt_bool(&p, "saveMemory") == Some(true) {
        x.call_async("VM.checkpoint", vec![vm.xapi_ref().into(), name.into()])
            .await?
    } else {
        // disks tagged [NOSNAP] are left out
        let ignored: Vec<Value> = strs(vm, "$VBDs")
            .iter()
            .filter_map(|id| res.pools.object(id))
            .filter_map(|vbd| {
                vbd.get("VDI")
                    .and_then(Value::as_str)
                    .and_then(|id| res.pools.object(id))
            })
            .filter(|vdi| s(vdi, "name_label").starts_with("[NOSNAP]"))
            .map(|vdi| vdi.xapi_ref().into())
            .collect();
        x.call_async(
            "VM.snapshot",
            vec![vm.xapi_ref().into(), name.into(), Value::Array(ignored)],
        )
        .await?
    };
    let snap_ref = as_ref(snap_ref, "VM.snapshot")?;
    let finish = async {
        if let Some(d) = opt_str(&p, "description") {
            x.call(
                "VM.set_name_description",
                vec![snap_ref.clone().into(), d.into()],
            )
            .await?;
        }
        // XO reads the uuid from XAPI; waiting for the cache too lets callers use the id at once
        x.wait_object_id("VM", &snap_ref).await.map(Value::String)
    };
    match finish.await {
        Ok(uuid) => {
            grant_creator(&ctx, uuid.as_str().unwrap_or_default());
            Ok(uuid)
        }
        Err(e) => {
            let _ = vm_destroy(&x, snap_ref, DestroyOpts::default()).await;
            Err(e)
        }
    }
}

async fn revert(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec("vm.revert")).await?;
    let snap = res.get("snapshot")?;
    let of = s(snap, "$snapshot_of").to_owned();
    check_permissions(&ctx, &[(of.clone(), "operate".to_owned())])?;
    let x = Xapi::of(&res.pools, snap)?;
    x.call_async("VM.revert", vec![snap.xapi_ref().into()])
        .await?;
    let info = x.field("VM", snap.xapi_ref(), "snapshot_info").await?;
    if info.get("power-state-at-snapshot").and_then(Value::as_str) == Some("Running") {
        let vm_ref = x.field("VM", snap.xapi_ref(), "snapshot_of").await?;
        let vm_ref = vm_ref.as_str().unwrap_or(NULL_REF).to_owned();
        let power = x.field("VM", &vm_ref, "power_state").await?;
        let vm = res.pools.object(&vm_ref);
        // XO restores the power state in the background, ignoring errors
        tokio::spawn(async move {
            let outcome = match (power.as_str(), vm) {
                (Some("Halted"), Some(vm)) => start_vm(&x, &vm, false, false, None).await,
                (Some("Suspended"), _) => resume_vm(&x, &vm_ref).await,
                _ => Ok(()),
            };
            if let Err(e) = outcome {
                tracing::debug!("restoring the power state after revert failed: {e}");
            }
        });
    }
    Ok(Value::Bool(true))
}

// ---------------------------------------------------------------- delete

/// Options of [`vm_destroy`] (`@xen-orchestra/xapi` `VM_destroy`).
#[derive(Clone, Copy, Debug)]
pub(super) struct DestroyOpts {
    pub delete_disks: bool,
    pub bypass_blocked: bool,
    pub force_default_template: bool,
}

impl Default for DestroyOpts {
    fn default() -> Self {
        Self {
            delete_disks: true,
            bypass_blocked: false,
            force_default_template: false,
        }
    }
}

/// Destroys a VM (hard shutdown first when not halted), its snapshots and, with `delete_disks`, the
/// disks only it uses.
pub(super) fn vm_destroy(
    x: &Xapi,
    vm_ref: String,
    o: DestroyOpts,
) -> BoxFuture<'_, Result<(), ApiError>> {
    Box::pin(async move {
        let rec = x.record("VM", &vm_ref).await?;
        let blocked = rec.get("blocked_operations").and_then(Value::as_object);
        if let Some(reason) = blocked.and_then(|b| b.get("destroy")) {
            if !o.bypass_blocked {
                return Err(ApiError::forbidden_operation(
                    "destroy",
                    reason.as_str().unwrap_or(""),
                ));
            }
        }
        let other = rec.get("other_config").and_then(Value::as_object);
        let is_default_template = rec.get("is_a_template") == Some(&Value::Bool(true))
            && other
                .and_then(|m| m.get("default_template"))
                .and_then(Value::as_str)
                == Some("true");
        if is_default_template && !o.force_default_template {
            return Err(ApiError::forbidden_operation(
                "destroy",
                "VM is default template",
            ));
        }
        if rec.get("power_state").and_then(Value::as_str) != Some("Halted") {
            x.call("VM.hard_shutdown", vec![vm_ref.clone().into()])
                .await?;
        }
        if is_default_template {
            x.call(
                "VM.remove_from_other_config",
                vec![vm_ref.clone().into(), "default_template".into()],
            )
            .await?;
        }
        // a plain template becomes a VM first (snapshots keep their flag)
        let is_template = rec.get("is_a_template") == Some(&Value::Bool(true));
        let is_snapshot = rec.get("is_a_snapshot") == Some(&Value::Bool(true));
        if is_template && !is_snapshot {
            x.call(
                "VM.set_is_a_template",
                vec![vm_ref.clone().into(), false.into()],
            )
            .await?;
        }
        if o.bypass_blocked && blocked.is_some_and(|b| b.contains_key("destroy")) {
            x.call(
                "VM.remove_from_blocked_operations",
                vec![vm_ref.clone().into(), "destroy".into()],
            )
            .await?;
        }
        // the disks to delete, found before the VM (and its VBDs) go away
        let mut disks = Vec::new();
        if o.delete_disks {
            for vbd in rec
                .get("VBDs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(vbd) = vbd.as_str() else { continue };
                let vbd_rec = x.record("VBD", vbd).await?;
                let vdi = vbd_rec
                    .get("VDI")
                    .and_then(Value::as_str)
                    .unwrap_or(NULL_REF);
                if vbd_rec.get("type").and_then(Value::as_str) != Some("Disk") || vdi == NULL_REF {
                    continue;
                }
                let users = x.field("VDI", vdi, "VBDs").await?;
                let mut only_this_vm = true;
                for other_vbd in users.as_array().into_iter().flatten() {
                    let Some(other_vbd) = other_vbd.as_str() else {
                        continue;
                    };
                    if other_vbd != vbd
                        && x.field("VBD", other_vbd, "VM").await?.as_str() != Some(&vm_ref)
                    {
                        only_this_vm = false;
                    }
                }
                if only_this_vm {
                    disks.push(vdi.to_owned());
                }
            }
        }
        x.call("VM.destroy", vec![vm_ref.clone().into()]).await?;
        for snap in rec
            .get("snapshots")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(snap) = snap.as_str() {
                if let Err(e) = vm_destroy(x, snap.to_owned(), DestroyOpts::default()).await {
                    tracing::warn!("destroying snapshot {snap} failed: {e}");
                }
            }
        }
        for vdi in disks {
            x.call_async("VDI.destroy", vec![vdi.into()]).await?;
        }
        Ok(())
    })
}

async fn delete(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec("vm.delete")).await?;
    let vm = res.get("vm")?;
    let x = Xapi::of(&res.pools, vm)?;
    let force = opt_bool(&p, "force").unwrap_or(false);
    let opts = DestroyOpts {
        delete_disks: opt_bool(&p, "deleteDisks").unwrap_or(true),
        bypass_blocked: opt_bool(&p, "forceBlockedOperation").unwrap_or(force),
        force_default_template: opt_bool(&p, "forceDeleteDefaultTemplate").unwrap_or(force),
    };
    vm_destroy(&x, vm.xapi_ref().to_owned(), opts).await?;
    if let Some(c) = checker(&ctx) {
        c.object_deleted(vm.id());
    }
    Ok(Value::Bool(true))
}

// ------------------------------------------------------------------- set

async fn set(ctx: Ctx, mut p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec("vm.set")).await?;
    let vm = res.get("VM")?.clone();
    let x = Xapi::of(&res.pools, &vm)?;
    p.remove("id");
    if let Some(rs) = p.remove("resourceSet") {
        if !ctx.is_admin() {
            return Err(ApiError::unauthorized(None, None, None));
        }
        // resource sets (self-service) are not part of this server yet
        let _ = rs;
        return Err(ApiError::not_implemented());
    }
    if p.remove("share") == Some(Value::Bool(true)) {
        return Err(ApiError::not_implemented());
    }
    if let Some(v) = p.remove("suspendSr") {
        let sr = res.opt("suspendSr").map_or(NULL_REF, |o| o.xapi_ref());
        let _ = v;
        x.call("VM.set_suspend_SR", vec![vm.xapi_ref().into(), sr.into()])
            .await?;
    }
    if let Some(Value::Object(data)) = p.remove("xenStoreData") {
        for (k, v) in data {
            let key = if k.starts_with("vm-data/") {
                k
            } else {
                format!("vm-data/{k}")
            };
            x.update_map("VM", vm.xapi_ref(), "xenstore_data", &key, v.as_str())
                .await?;
        }
    }
    if let Some(Value::Object(creation)) = p.remove("creation") {
        let mut merged = vm
            .get("creation")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        merged.extend(creation);
        xo_data_set(&x, vm.xapi_ref(), "creation", Value::Object(merged)).await?;
    }
    if let Some(mode) = p.remove("uefiMode") {
        x.call("VM.set_uefi_mode", vec![vm.xapi_ref().into(), mode])
            .await?;
    }
    let target = EditTarget {
        vm_ref: vm.xapi_ref().to_owned(),
        pool_id: vm.pool().map(str::to_owned),
    };
    edit_vm(&x, &target, &p).await?;
    Ok(Value::Bool(true))
}

// ---------------------------------------------------------------- create

/// Params of `vm.create` handled by the method itself (the others are `set`-style properties).
const CREATE_OWN: &[&str] = &[
    "acls",
    "affinityHost",
    "bootAfterCreate",
    "cloudConfig",
    "createVtpm",
    "networkConfig",
    "coreOs",
    "clone",
    "coresPerSocket",
    "resourceSet",
    "destroyCloudConfigVdiAfterBoot",
    "installation",
    "vgpuType",
    "gpuGroup",
    "name_label",
    "name_description",
    "pv_args",
    "share",
    "template",
    "VIFs",
    "VDIs",
    "existingDisks",
    "hvmBootFirmware",
    "copyHostBiosStrings",
];

async fn create(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec("vm.create")).await?;
    let template = res.get("template")?.clone();
    // not supported by this server: self-service resource sets, cloud-init drives, GPUs, ACL presets
    let unsupported = p.get("resourceSet").is_some()
        || p.get("cloudConfig").is_some()
        || p.get("coreOs") == Some(&Value::Bool(true))
        || res.opt("vgpuType").is_some()
        || res.opt("gpuGroup").is_some()
        || p.get("share") == Some(&Value::Bool(true))
        || p.get("acls")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
    if unsupported {
        return Err(ApiError::not_implemented());
    }
    // the other params go to editVm: refuse the ones it does not know before creating anything
    let mut props = Map::new();
    for (k, v) in &p {
        if CREATE_OWN.contains(&k.as_str()) {
            continue;
        }
        if !EDITABLE.contains(&k.as_str()) {
            return Err(ApiError::not_implemented());
        }
        props.insert(k.clone(), v.clone());
    }
    for k in [
        "name_description",
        "affinityHost",
        "coresPerSocket",
        "hvmBootFirmware",
    ] {
        if let Some(v) = p.get(k) {
            props.insert(k.into(), v.clone());
        }
    }
    if let Some(v) = p.get("pv_args") {
        props.insert("PV_args".into(), v.clone());
    }
    let pool_id = template.pool().unwrap_or_default().to_owned();
    check_permissions(&ctx, &[(pool_id.clone(), "administrate".to_owned())])?;
    let x = Xapi::of(&res.pools, &template)?;
    let disks = CreateDisks::from_params(&res.pools, &p)?;
    let name = req_str(&p, "name_label")?;
    let vm_ref = if opt_bool(&p, "clone").unwrap_or(true) {
        as_ref(
            x.call_async("VM.clone", vec![template.xapi_ref().into(), name.into()])
                .await?,
            "VM.clone",
        )?
    } else {
        copy_vm(&x, template.xapi_ref(), name, None).await?
    };
    let user_id = ctx.user()?.id.clone();
    let built = async {
        if opt_bool(&p, "copyHostBiosStrings") == Some(true) {
            copy_bios_strings(&x, &template, &vm_ref, &p).await?;
        }
        // the disks of the provision XML are not created: the VDIs param lists them all
        let _ = x
            .call(
                "VM.remove_from_other_config",
                vec![vm_ref.clone().into(), "disks".into()],
            )
            .await;
        x.call_async("VM.provision", vec![vm_ref.clone().into()])
            .await?;
        // XAPI's provision turns the clone into a VM; made explicit so that a XAPI leaving the flag set
        // (as the simulator does) still yields a VM
        if x.field("VM", &vm_ref, "is_a_template").await? == Value::Bool(true) {
            x.call(
                "VM.set_is_a_template",
                vec![vm_ref.clone().into(), false.into()],
            )
            .await?;
        }
        xo_data_set(
            &x,
            &vm_ref,
            "creation",
            json!({"date": iso_date(now_ms()), "template": s(&template, "uuid"), "user": user_id}),
        )
        .await?;
        let target = EditTarget {
            vm_ref: vm_ref.clone(),
            pool_id: Some(pool_id.clone()),
        };
        edit_vm(&x, &target, &props).await?;
        provision_disks_and_vifs(&x, &vm_ref, &disks).await?;
        if opt_bool(&p, "createVtpm") == Some(true) {
            x.call("VTPM.create", vec![vm_ref.clone().into(), false.into()])
                .await?;
        }
        x.wait_object_id("VM", &vm_ref).await
    };
    let id = match built.await {
        Ok(id) => id,
        Err(e) => {
            let opts = DestroyOpts {
                delete_disks: true,
                bypass_blocked: true,
                force_default_template: true,
            };
            if let Err(e2) = vm_destroy(&x, vm_ref.clone(), opts).await {
                tracing::warn!("cleaning up the VM being created failed: {e2}");
            }
            return Err(e);
        }
    };
    if opt_bool(&p, "bootAfterCreate") == Some(true) {
        let pools = res.pools.clone();
        let id2 = id.clone();
        tokio::spawn(async move {
            let Some(vm) = pools.object(&id2) else { return };
            if let Err(e) = start_vm(&x, &vm, false, false, None).await {
                tracing::warn!(vm = id2, "bootAfterCreate: start failed: {e}");
            }
        });
    }
    Ok(Value::String(id))
}

/// `VM.copy_bios_strings` from the affinity host or the pool master, for HVM templates without BIOS
/// strings when the firmware is not UEFI.
async fn copy_bios_strings(
    x: &Xapi,
    template: &XoObject,
    vm_ref: &str,
    p: &Map<String, Value>,
) -> Result<(), ApiError> {
    let empty = template
        .get("bios_strings")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    let hvm = s(template, "virtualizationMode") == "hvm";
    if !(empty && hvm && opt_str(p, "hvmBootFirmware") != Some("uefi")) {
        return Ok(());
    }
    let host_id = match opt_str(p, "affinityHost") {
        Some(h) => h.to_owned(),
        None => {
            let pool = x
                .pools
                .object_of_type(template.pool().unwrap_or_default(), &["pool"])?;
            s(&pool, "master").to_owned()
        }
    };
    let host = x.pools.object_of_type(&host_id, &["host"])?;
    x.call_async(
        "VM.copy_bios_strings",
        vec![vm_ref.into(), host.xapi_ref().into()],
    )
    .await
    .map(drop)
}

// --------------------------------------------------------------- migrate

async fn migrate(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec("vm.migrate")).await?;
    let vm = res.get("vm")?;
    let host = res.get("host")?;
    let pools = &res.pools;
    let mut pairs = Vec::new();
    let mut map_vdis: HashMap<String, String> = HashMap::new();
    if let Some(Value::Object(m)) = p.get("mapVdisSrs") {
        for (vdi, sr) in m {
            let vdi = pools.object_of_type(vdi, &["VDI"])?;
            let sr_id = sr.as_str().unwrap_or_default();
            let sr = pools.object_of_type(sr_id, &["SR"])?;
            map_vdis.insert(vdi.id().to_owned(), sr.xapi_ref().to_owned());
            pairs.push((sr_id.to_owned(), "administrate".to_owned()));
        }
    }
    let mut map_vifs: HashMap<String, String> = HashMap::new();
    if let Some(Value::Object(m)) = p.get("mapVifsNetworks") {
        for (vif, net) in m {
            let vif = pools.object_of_type(vif, &["VIF"])?;
            let net_id = net.as_str().unwrap_or_default();
            let net = pools.object_of_type(net_id, &["network"])?;
            map_vifs.insert(vif.id().to_owned(), net.xapi_ref().to_owned());
            pairs.push((net_id.to_owned(), "administrate".to_owned()));
        }
    }
    check_permissions(&ctx, &pairs)?;
    let sr = match opt_str(&p, "sr") {
        Some(id) => Some(pools.object_of_type(id, &["SR"])?.xapi_ref().to_owned()),
        None => None,
    };
    let force = opt_bool(&p, "force").unwrap_or(false);
    let x = Xapi::of(pools, vm)?;
    let host_x = Xapi::of(pools, host)?;
    let across_pools = vm.pool() != host.pool();
    let motion = super::vm_migrate::Motion {
        sr,
        map_vdis,
        map_vifs,
        migration_network: res.opt("migrationNetwork").cloned(),
        force,
        bypass_assert: opt_bool(&p, "bypassAssert").unwrap_or(false),
    };
    let use_motion = across_pools
        || motion.sr.is_some()
        || motion.migration_network.is_some()
        || !motion.map_vdis.is_empty()
        || !motion.map_vifs.is_empty();
    if use_motion {
        super::vm_migrate::with_storage_motion(&x, vm, &host_x, host, &motion).await?;
    } else {
        let options = json!({"force": if force { "true" } else { "false" }});
        match x
            .try_call_async(
                "VM.pool_migrate",
                vec![vm.xapi_ref().into(), host.xapi_ref().into(), options],
            )
            .await
        {
            Ok(_) => {}
            Err(CallError::Xapi(e)) if e.code == "VM_REQUIRES_SR" => {
                let retry = super::vm_migrate::Motion {
                    force,
                    ..Default::default()
                };
                super::vm_migrate::with_storage_motion(&x, vm, &host_x, host, &retry).await?;
            }
            Err(e) => return Err(x.api(e)),
        }
    }
    Ok(Value::Bool(true))
}

/// The params of `vm.set` (those of `vm.setAndRestart` too, with `force`).
const SET_PARAMS: &str = r#"{"id": {"type": "string"}, "auto_poweron": {"type": "boolean", "optional": true}, "name_label": {"type": "string", "optional": true}, "name_description": {"type": "string", "minLength": 0, "optional": true}, "notes": {"type": ["string", "null"], "maxLength": 2048, "optional": true}, "high_availability": {"optional": true, "enum": ["best-effort", "restart", ""]}, "CPUs": {"type": "integer", "optional": true}, "cpusMax": {"type": ["integer", "string"], "optional": true}, "memory": {"type": ["integer", "string"], "optional": true}, "memoryMin": {"type": ["integer", "string"], "optional": true}, "memoryMax": {"type": ["integer", "string"], "optional": true}, "memoryStaticMax": {"type": ["integer", "string"], "optional": true}, "PV_args": {"type": "string", "optional": true}, "cpuMask": {"type": "array", "items": {"type": "integer"}, "optional": true}, "cpuWeight": {"type": ["integer", "null"], "optional": true}, "cpuCap": {"type": ["integer", "null"], "optional": true}, "affinityHost": {"type": ["string", "null"], "optional": true}, "vga": {"type": "string", "optional": true}, "videoram": {"type": "number", "optional": true}, "coresPerSocket": {"type": ["string", "number", "null"], "optional": true}, "hasVendorDevice": {"type": "boolean", "optional": true}, "expNestedHvm": {"type": "boolean", "optional": true}, "nestedVirt": {"type": "boolean", "optional": true}, "resourceSet": {"type": ["string", "null"], "optional": true}, "share": {"type": "boolean", "optional": true}, "startDelay": {"type": "integer", "optional": true}, "secureBoot": {"type": "boolean", "optional": true}, "nicType": {"type": ["string", "null"], "optional": true}, "hvmBootFirmware": {"type": ["string", "null"], "optional": true}, "virtualizationMode": {"type": "string", "optional": true}, "viridian": {"type": "boolean", "optional": true}, "blockedOperations": {"type": "object", "optional": true, "properties": {"*": {"type": ["boolean", "null", "string"]}}}, "creation": {"type": "object", "optional": true, "properties": {"user": {"type": "string", "optional": true}}}, "suspendSr": {"type": ["string", "null"], "optional": true}, "uefiMode": {"enum": ["setup", "user"], "optional": true}, "xenStoreData": {"description": "properties that should be set or deleted (if null) in the VM XenStore", "optional": true, "type": "object", "additionalProperties": {"type": ["null", "string"]}}}"#;

fn set_and_restart_params() -> Value {
    let mut m = Map::new();
    m.insert("force".into(), json!({"type": "boolean", "optional": true}));
    if let Value::Object(set) = schema(SET_PARAMS) {
        m.extend(set);
    }
    Value::Object(m)
}

/// XO's `setAndRestart`: the VM is stopped (hard with `force`), changed as `vm.set` does, then started
/// again whether the change worked or not.
async fn set_and_restart(ctx: Ctx, mut p: Map<String, Value>) -> Result<Value, ApiError> {
    // checked as `vm.set` is, before anything stops
    resolve(&ctx, &p, spec("vm.setAndRestart")).await?;
    let force = p.remove("force").unwrap_or(Value::Bool(false));
    let id = p.get("id").cloned().unwrap_or(Value::Null);
    let power = |ctx: &Ctx| {
        let mut q = Map::new();
        q.insert("id".into(), id.clone());
        q.insert("force".into(), force.clone());
        (ctx.clone(), q)
    };
    let (c, q) = power(&ctx);
    stop(c, q).await?;
    let changed = set(ctx.clone(), p).await;
    let (c, q) = power(&ctx);
    let started = start(c, q).await;
    changed?;
    started
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("vm.start", start)
            .params(schema(r#"{"bypassMacAddressesCheck": {"type": "boolean", "optional": true}, "force": {"type": "boolean", "optional": true}, "host": {"type": "string", "optional": true}, "id": {"type": "string"}}"#)),
        Method::new("vm.stop", stop)
            .params(schema(r#"{"id": {"type": "string"}, "force": {"type": "boolean", "optional": true}, "forceShutdownDelay": {"type": "number", "default": 0}, "bypassBlockedOperation": {"type": "boolean", "optional": true}}"#)),
        Method::new("vm.restart", restart)
            .params(schema(r#"{"id": {"type": "string"}, "force": {"type": "boolean", "optional": true}, "bypassBlockedOperation": {"type": "boolean", "optional": true}}"#)),
        Method::new("vm.suspend", suspend)
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("vm.resume", resume)
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("vm.pause", pause)
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("vm.clone", clone)
            .params(schema(r#"{"id": {"type": "string"}, "name": {"type": "string"}, "full_copy": {"type": "boolean"}}"#)),
        Method::new("vm.copy", copy)
            .params(schema(r#"{"compress": {"type": ["boolean", "string"], "optional": true}, "name": {"type": "string", "optional": true}, "vm": {"type": "string"}, "sr": {"type": "string"}}"#)),
        Method::new("vm.snapshot", snapshot)
            .params(schema(r#"{"description": {"type": "string", "minLength": 0, "optional": true}, "id": {"type": "string"}, "name": {"type": "string", "optional": true}, "saveMemory": {"type": "boolean", "optional": true}}"#)),
        Method::new("vm.revert", revert)
            .params(schema(r#"{"snapshot": {"type": "string"}}"#)),
        Method::new("vm.delete", delete)
            .params(schema(r#"{"id": {"type": "string"}, "deleteDisks": {"optional": true, "type": "boolean"}, "force": {"optional": true, "type": "boolean"}, "forceDeleteDefaultTemplate": {"optional": true, "type": "boolean"}, "forceBlockedOperation": {"optional": true, "type": "boolean"}}"#)),
        Method::new("vm.set", set).params(schema(SET_PARAMS)),
        Method::new("vm.setAndRestart", set_and_restart).params(set_and_restart_params()),
        Method::new("vm.create", create)
            .params(schema(r#"{"acls": {"type": "array", "optional": true, "items": {"type": "object", "properties": {"subject": {"type": "string"}, "action": {"type": "string"}}}}, "affinityHost": {"type": "string", "optional": true}, "bootAfterCreate": {"type": "boolean", "optional": true}, "cloudConfig": {"type": "string", "optional": true}, "createVtpm": {"type": "boolean", "default": false}, "networkConfig": {"type": "string", "optional": true}, "coreOs": {"type": "boolean", "optional": true}, "clone": {"type": "boolean", "optional": true}, "coresPerSocket": {"type": ["string", "number"], "optional": true}, "resourceSet": {"type": "string", "optional": true}, "destroyCloudConfigVdiAfterBoot": {"type": "boolean", "optional": true}, "installation": {"type": "object", "optional": true, "properties": {"method": {"type": "string"}, "repository": {"type": "string"}}}, "vgpuType": {"type": "string", "optional": true}, "gpuGroup": {"type": "string", "optional": true}, "name_label": {"type": "string"}, "name_description": {"type": "string", "minLength": 0, "optional": true}, "pv_args": {"type": "string", "optional": true}, "share": {"type": "boolean", "optional": true}, "template": {"type": "string"}, "VIFs": {"optional": true, "type": "array", "items": {"type": "object", "properties": {"network": {"type": "string"}, "mac": {"optional": true, "type": "string"}, "allowedIpv4Addresses": {"optional": true, "type": "array", "items": {"type": "string"}}, "allowedIpv6Addresses": {"optional": true, "type": "array", "items": {"type": "string"}}}}}, "VDIs": {"optional": true, "type": "array", "items": {"type": "object", "properties": {"size": {"type": ["integer", "string"]}, "SR": {"type": "string"}, "type": {"type": "string"}}, "additionalProperties": true}}, "existingDisks": {"optional": true, "type": "object", "additionalProperties": {"type": "object", "properties": {"size": {"type": ["integer", "string"], "optional": true}, "$SR": {"type": "string", "optional": true}}, "additionalProperties": true}}, "hvmBootFirmware": {"type": "string", "optional": true}, "copyHostBiosStrings": {"type": "boolean", "optional": true}, "*": {}}"#)),
        Method::new("vm.migrate", migrate)
            .params(schema(r#"{"vm": {"type": "string"}, "force": {"type": "boolean", "optional": true}, "targetHost": {"type": "string"}, "sr": {"type": "string", "optional": true}, "mapVdisSrs": {"type": "object", "optional": true}, "mapVifsNetworks": {"type": "object", "optional": true}, "migrationNetwork": {"type": "string", "optional": true}, "bypassAssert": {"description": "Bypass the verification asserting whether a VM can be migrated to the specified destination", "optional": true, "type": "boolean"}}"#)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso_date(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_date(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso_date(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
