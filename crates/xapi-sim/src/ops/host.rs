//! host messages: enable / disable, evacuate (`CANNOT_EVACUATE_HOST`), reboot / shutdown (need a disabled host;
//! resident VMs halted after a short delay), servertime, restart_agent, call_plugin, memory queries.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map};
use xapi_types::{Ref, Value, XapiError};

use super::allowed::update_host;
use super::helpers::{b, get, i, jr, now, refs, rf, s, set, valid, void, Params};
use super::placement::{
    assert_can_boot_here, host_free_memory, host_live, update_host_memory, vm_start_memory,
};
use super::vm::{halt, is_live_guest, migrate_vm, vm_message};
use crate::db::Db;
use crate::rpc::{Ctx, Registry};
use crate::state::PoolState;

/// Delay before a rebooting / shutting-down host halts its VMs and goes away.
pub const HOST_DOWN_DELAY: Duration = Duration::from_millis(300);
/// Time a rebooting host stays down.
pub const HOST_REBOOT_DOWNTIME: Duration = Duration::from_millis(700);

pub fn register(reg: &mut Registry) {
    reg.register("host.enable", enable);
    reg.register("host.disable", disable);
    reg.register("host.evacuate", evacuate);
    reg.register("host.assert_can_evacuate", assert_can_evacuate);
    reg.register(
        "host.get_vms_which_prevent_evacuation",
        get_vms_which_prevent_evacuation,
    );
    reg.register("host.reboot", reboot);
    reg.register("host.shutdown", shutdown);
    reg.register("host.power_on", power_on);
    reg.register("host.set_power_on_mode", set_power_on_mode);
    reg.register("host.get_servertime", get_servertime);
    reg.register("host.get_server_localtime", get_server_localtime);
    reg.register("host.restart_agent", restart_agent);
    reg.register("host.call_plugin", call_plugin);
    reg.register("host.compute_free_memory", compute_free_memory);
    reg.register("host.compute_memory_overhead", compute_memory_overhead);
    reg.register("host.get_management_interface", get_management_interface);
    reg.register("host.set_hostname_live", set_hostname_live);
    reg.register("host.enable_ssh", enable_ssh);
    reg.register("host.disable_ssh", disable_ssh);
    reg.register("host.dmesg", dmesg);
}

fn host_param(ctx: &Ctx, p: &[Value]) -> Result<Ref, XapiError> {
    Params::new(&ctx.method, p).r(0)
}

fn enable(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let host = host_param(ctx, &p)?;
    ctx.pool
        .write(|db| {
            get(db, "host", &host)?;
            if !host_live(db, &host) {
                return Err(XapiError::new("HOST_OFFLINE", [host.0.clone()]));
            }
            db.set_field("host", &host, "enabled", json!(true))?;
            update_host(db, &host)
        })
        .map(|_| void())
}

fn disable(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let host = host_param(ctx, &p)?;
    ctx.pool
        .write(|db| {
            get(db, "host", &host)?;
            db.set_field("host", &host, "enabled", json!(false))?;
            update_host(db, &host)
        })
        .map(|_| void())
}

/// Guests resident on the host (control domains excluded), running or paused.
fn resident_guests(db: &Db, host: &Ref) -> Vec<Ref> {
    db.get("host", host)
        .map(|h| refs(h, "resident_VMs"))
        .unwrap_or_default()
        .into_iter()
        .filter(|vm| is_live_guest(db, vm))
        .collect()
}

/// Plan where each resident guest would go: Ok((vm, target)) or Err((vm, error)).
fn evacuation_plan(db: &Db, host: &Ref) -> Vec<Result<(Ref, Ref), (Ref, XapiError)>> {
    let mut extra: Vec<(Ref, i64)> = Vec::new();
    let mut out = Vec::new();
    let mut targets: Vec<Ref> = db.refs("host").into_iter().filter(|h| h != host).collect();
    targets.sort_by_key(|h| {
        db.get("host", h)
            .map(|r| s(r, "address").to_owned())
            .unwrap_or_default()
    });
    for vm in resident_guests(db, host) {
        let need = vm_start_memory(db, &vm);
        let mut last_err = XapiError::code("NO_HOSTS_AVAILABLE");
        let mut best: Option<(i64, Ref)> = None;
        for t in &targets {
            match assert_can_boot_here(db, &vm, t) {
                Ok(()) => {
                    let used = extra
                        .iter()
                        .filter(|(h, _)| h == t)
                        .fold(0i64, |acc, (_, m)| acc.saturating_add(*m));
                    let free = host_free_memory(db, t).saturating_sub(used);
                    if free >= need {
                        if best.as_ref().is_none_or(|(f, _)| free > *f) {
                            best = Some((free, t.clone()));
                        }
                    } else {
                        last_err = XapiError::new(
                            "HOST_NOT_ENOUGH_FREE_MEMORY",
                            [need.to_string(), free.to_string()],
                        );
                    }
                }
                Err(e) => last_err = e,
            }
        }
        match best {
            Some((_, t)) => {
                extra.push((t.clone(), need));
                out.push(Ok((vm, t)));
            }
            None => out.push(Err((vm, last_err))),
        }
    }
    out
}

fn cannot_evacuate(errors: &[(Ref, XapiError)]) -> XapiError {
    let parts: Vec<String> = errors
        .iter()
        .map(|(_, e)| e.to_description().join(","))
        .collect();
    XapiError::new("CANNOT_EVACUATE_HOST", [parts.join("|")])
}

/// Migrate every resident guest away, or fail without moving anything.
pub fn evacuate_host(db: &mut Db, host: &Ref) -> Result<(), XapiError> {
    get(db, "host", host)?;
    let plan = evacuation_plan(db, host);
    let errors: Vec<(Ref, XapiError)> = plan
        .iter()
        .filter_map(|p| p.as_ref().err().cloned())
        .collect();
    if !errors.is_empty() {
        return Err(cannot_evacuate(&errors));
    }
    for (vm, target) in plan.into_iter().flatten() {
        migrate_vm(db, &vm, &target)?;
        update_host(db, &target)?;
    }
    update_host_memory(db, host)?;
    update_host(db, host)
}

fn evacuate(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let host = host_param(ctx, &p)?;
    ctx.pool
        .write(|db| evacuate_host(db, &host))
        .map(|_| void())
}

fn assert_can_evacuate(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let host = host_param(ctx, &p)?;
    ctx.pool.read(|db| {
        get(db, "host", &host)?;
        let errors: Vec<(Ref, XapiError)> = evacuation_plan(db, &host)
            .into_iter()
            .filter_map(|p| p.err())
            .collect();
        if errors.is_empty() {
            Ok(void())
        } else {
            Err(cannot_evacuate(&errors))
        }
    })
}

fn get_vms_which_prevent_evacuation(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let host = host_param(ctx, &p)?;
    ctx.pool.read(|db| {
        get(db, "host", &host)?;
        let mut m = Map::new();
        for e in evacuation_plan(db, &host)
            .into_iter()
            .filter_map(|p| p.err())
        {
            m.insert(e.0 .0.clone(), json!(e.1.to_description()));
        }
        Ok(Value::Object(m))
    })
}

/// Halt the host's guests, unplug its PBDs and mark it dead (`host_metrics.live = false`).
pub fn take_host_down(db: &mut Db, host: &Ref) -> Result<(), XapiError> {
    for vm in resident_guests(db, host) {
        halt(db, &vm)?;
        vm_message(db, &vm, "VM_SHUTDOWN", "shut down (host going down)")?;
    }
    let h = get(db, "host", host)?;
    for pbd in refs(&h, "PBDs") {
        if db.exists("PBD", &pbd) {
            db.set_field("PBD", &pbd, "currently_attached", json!(false))?;
        }
    }
    let metrics = rf(&h, "metrics");
    if valid(db, "host_metrics", &metrics) {
        set(
            db,
            "host_metrics",
            &metrics,
            vec![("live", json!(false)), ("last_updated", json!(now()))],
        )?;
    }
    update_host(db, host)
}

/// Bring a host back: live, PBDs plugged, enabled.
pub fn bring_host_up(db: &mut Db, host: &Ref) -> Result<(), XapiError> {
    let h = get(db, "host", host)?;
    for pbd in refs(&h, "PBDs") {
        if db.exists("PBD", &pbd) {
            db.set_field("PBD", &pbd, "currently_attached", json!(true))?;
        }
    }
    let metrics = rf(&h, "metrics");
    if valid(db, "host_metrics", &metrics) {
        set(
            db,
            "host_metrics",
            &metrics,
            vec![("live", json!(true)), ("last_updated", json!(now()))],
        )?;
    }
    db.set_field("host", host, "enabled", json!(true))?;
    update_host_memory(db, host)?;
    update_host(db, host)
}

fn power_cycle(ctx: &Ctx, p: Vec<Value>, reboot: bool) -> Result<Value, XapiError> {
    let host = host_param(ctx, &p)?;
    ctx.pool.read(|db| {
        let h = get(db, "host", &host)?;
        if b(&h, "enabled") {
            return Err(XapiError::code("HOST_NOT_DISABLED"));
        }
        Ok(())
    })?;
    let pool: Arc<PoolState> = ctx.pool.clone();
    let spawned = std::thread::Builder::new()
        .name("xapi-sim-host-power".into())
        .spawn(move || {
            std::thread::sleep(HOST_DOWN_DELAY);
            if let Err(e) = pool.write(|db| take_host_down(db, &host)) {
                tracing::warn!(error = %e, "host going down failed");
                return;
            }
            pool.restart_host(&host);
            if reboot {
                std::thread::sleep(HOST_REBOOT_DOWNTIME);
                if let Err(e) = pool.write(|db| bring_host_up(db, &host)) {
                    tracing::warn!(error = %e, "host coming back failed");
                }
            }
        });
    spawned.map_err(|e| XapiError::internal(format!("cannot spawn: {e}")))?;
    Ok(void())
}

fn reboot(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    power_cycle(ctx, p, true)
}

fn shutdown(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    power_cycle(ctx, p, false)
}

/// `host.power_on`: refused with `HOST_POWER_ON_MODE_DISABLED` unless a power-on mode is set (XAPI then asks
/// that mode's plugin to start the machine, which a live host ignores); a host that is down comes back after
/// its boot time.
fn power_on(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let host = host_param(ctx, &p)?;
    let live = ctx.pool.read(|db| {
        let h = get(db, "host", &host)?;
        if s(&h, "power_on_mode").is_empty() {
            return Err(XapiError::code("HOST_POWER_ON_MODE_DISABLED"));
        }
        let metrics = rf(&h, "metrics");
        Ok(db
            .get("host_metrics", &metrics)
            .is_some_and(|m| b(m, "live")))
    })?;
    if live {
        return Ok(void());
    }
    let pool: Arc<PoolState> = ctx.pool.clone();
    std::thread::Builder::new()
        .name("xapi-sim-host-power-on".into())
        .spawn(move || {
            std::thread::sleep(HOST_REBOOT_DOWNTIME);
            if let Err(e) = pool.write(|db| bring_host_up(db, &host)) {
                tracing::warn!(error = %e, "host coming up failed");
            }
        })
        .map_err(|e| XapiError::internal(format!("cannot spawn: {e}")))?;
    Ok(void())
}

/// `host.set_power_on_mode(host, mode, config)`: how `host.power_on` starts the machine (`""`: it cannot).
fn set_power_on_mode(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let host = pp.r(0)?;
    let mode = pp.s(1)?;
    let config = p.get(2).cloned().unwrap_or_else(|| json!({}));
    if !config.is_object() {
        return Err(XapiError::new(
            "FIELD_TYPE_ERROR",
            ["power_on_config".to_owned()],
        ));
    }
    ctx.pool.write(|db| {
        get(db, "host", &host)?;
        set(
            db,
            "host",
            &host,
            vec![("power_on_mode", json!(mode)), ("power_on_config", config)],
        )
    })?;
    Ok(void())
}

fn get_servertime(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let host = host_param(ctx, &p)?;
    ctx.pool.read(|db| get(db, "host", &host))?;
    Ok(json!(now()))
}

fn get_server_localtime(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    // Simulated hosts run in UTC: local time is the server time without a zone designator.
    let host = host_param(ctx, &p)?;
    ctx.pool.read(|db| get(db, "host", &host))?;
    Ok(json!(now().trim_end_matches('Z')))
}

fn restart_agent(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let host = host_param(ctx, &p)?;
    ctx.pool.read(|db| get(db, "host", &host))?;
    let pool = ctx.pool.clone();
    // Answer first, then drop the host's sessions as a toolstack restart does.
    std::thread::Builder::new()
        .name("xapi-sim-restart-agent".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            pool.restart_host(&host);
        })
        .map_err(|e| XapiError::internal(format!("cannot spawn: {e}")))?;
    Ok(void())
}

fn call_plugin(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let host = pp.r(0)?;
    let plugin = pp.s(1)?;
    let func = pp.s(2)?;
    let uuid = ctx
        .pool
        .read(|db| get(db, "host", &host).map(|h| s(&h, "uuid").to_owned()))?;
    match (plugin.as_str(), func.as_str()) {
        ("updater.py", "check_update") => Ok(super::pool_update::updater_check(&uuid)),
        ("updater.py", "update") => Ok(super::pool_update::updater_update(&uuid)),
        ("updater.py", "get_proxies") => Ok(json!("{}")),
        ("updater.py", _) => Err(XapiError::new(
            "XENAPI_PLUGIN_FAILURE",
            [
                func.clone(),
                "NoSuchFunction".to_owned(),
                format!("no function {func} in {plugin}"),
            ],
        )),
        _ => Err(XapiError::new("XENAPI_MISSING_PLUGIN", [plugin])),
    }
}

fn compute_free_memory(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let host = host_param(ctx, &p)?;
    ctx.pool.read(|db| {
        get(db, "host", &host)?;
        Ok(json!(host_free_memory(db, &host)))
    })
}

fn compute_memory_overhead(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let host = host_param(ctx, &p)?;
    ctx.pool
        .read(|db| get(db, "host", &host).map(|h| json!(i(&h, "memory_overhead"))))
}

fn get_management_interface(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let host = host_param(ctx, &p)?;
    ctx.pool.read(|db| {
        let h = get(db, "host", &host)?;
        refs(&h, "PIFs")
            .into_iter()
            .find(|pif| db.get("PIF", pif).is_some_and(|r| b(r, "management")))
            .map(|r| jr(&r))
            .ok_or_else(|| XapiError::code("HOST_HAS_NO_MANAGEMENT_IP"))
    })
}

fn set_hostname_live(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let host = pp.r(0)?;
    let name = pp.s(1)?;
    let valid_name = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-');
    if !valid_name {
        return Err(XapiError::new(
            "HOST_NAME_INVALID",
            ["hostname contains invalid characters"],
        ));
    }
    ctx.pool
        .write(|db| {
            get(db, "host", &host)?;
            db.set_field("host", &host, "hostname", json!(name))
        })
        .map(|_| void())
}

fn set_ssh(ctx: &Ctx, p: Vec<Value>, on: bool) -> Result<Value, XapiError> {
    let host = host_param(ctx, &p)?;
    ctx.pool
        .write(|db| {
            get(db, "host", &host)?;
            db.set_field("host", &host, "ssh_enabled", json!(on))
        })
        .map(|_| void())
}

fn enable_ssh(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    set_ssh(ctx, p, true)
}

fn disable_ssh(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    set_ssh(ctx, p, false)
}

fn dmesg(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let host = host_param(ctx, &p)?;
    let name = ctx
        .pool
        .read(|db| get(db, "host", &host).map(|h| s(&h, "hostname").to_owned()))?;
    Ok(json!(format!(
        "[    0.000000] Linux version 4.19.0+1 (simulated host {name})\n"
    )))
}
