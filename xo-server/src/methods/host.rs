//! `host.*` acting on XAPI: enable/disable, restart (evacuation first, XO's version guard), restartAgent
//! (and its alias `restart_agent`), set, detach, forget, setMaintenanceMode, start, stop, emergencyShutdownHost,
//! setRemoteSyslogHost, scanPifs —
//! `packages/xo-server/src/api/host.mjs`.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use super::resolve::{
    incorrect_state, r, resolve_one, s, schema, spec_of, str_list, CallError, Resolve, Xapi,
};
use super::{opt_bool, opt_str};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;
use crate::xapi::XoObject;

const HOST: &[&str] = &["host"];

/// `resolve` entries of the `host.*` methods.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    ("host.detach", &[r("host", "id", HOST, "administrate")]),
    ("host.disable", &[r("host", "id", HOST, "administrate")]),
    (
        "host.emergencyShutdownHost",
        &[r("host", "host", HOST, "administrate")],
    ),
    ("host.enable", &[r("host", "id", HOST, "administrate")]),
    ("host.forget", &[r("host", "id", HOST, "administrate")]),
    ("host.restart", &[r("host", "id", HOST, "operate")]),
    (
        "host.restartAgent",
        &[r("host", "id", HOST, "administrate")],
    ),
    (
        "host.restart_agent",
        &[r("host", "id", HOST, "administrate")],
    ),
    ("host.scanPifs", &[r("host", "id", HOST, "administrate")]),
    ("host.set", &[r("host", "id", HOST, "administrate")]),
    (
        "host.setRemoteSyslogHost",
        &[r("host", "id", HOST, "administrate")],
    ),
    (
        "host.setMaintenanceMode",
        &[r("host", "id", HOST, "administrate")],
    ),
    ("host.start", &[r("host", "id", HOST, "operate")]),
    ("host.stop", &[r("host", "id", HOST, "operate")]),
];

async fn host_call(
    ctx: Ctx,
    p: Map<String, Value>,
    method: &str,
) -> Result<(Xapi, std::sync::Arc<XoObject>), ApiError> {
    resolve_one(&ctx, &p, spec_of(RESOLVES, method), "host").await
}

async fn enable(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, host) = host_call(ctx, p, "host.enable").await?;
    x.call("host.enable", vec![host.xapi_ref().into()]).await?;
    Ok(Value::Bool(true))
}

async fn disable(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let transient = opt_bool(&p, "transient").unwrap_or(false);
    let (x, host) = host_call(ctx, p, "host.disable").await?;
    // auto_enable: a transient disable ends at the next toolstack restart
    match x
        .try_call(
            "host.disable",
            vec![host.xapi_ref().into(), transient.into()],
        )
        .await
    {
        Ok(_) => {}
        Err(CallError::Xapi(e)) if e.code == "MESSAGE_PARAMETER_COUNT_MISMATCH" => {
            x.call("host.disable", vec![host.xapi_ref().into()]).await?;
        }
        Err(e) => return Err(x.api(e)),
    }
    Ok(Value::Bool(true))
}

/// Compares dotted numeric versions (`8.2.1` < `8.3.0`).
fn compare_versions(a: &str, b: &str) -> Ordering {
    let parse = |v: &str| -> Vec<u64> {
        v.split(['.', '-'])
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    let (a, b) = (parse(a), parse(b));
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            a.get(i)
                .copied()
                .unwrap_or(0)
                .cmp(&b.get(i).copied().unwrap_or(0))
        })
        .find(|o| *o != Ordering::Equal)
        .unwrap_or(Ordering::Equal)
}

/// XO refuses to reboot a slave needing a reboot before its master is up to date.
fn version_guard(x: &Xapi, host: &XoObject) -> Result<(), ApiError> {
    let reboot_required = host.get("rebootRequired").and_then(Value::as_bool) == Some(true);
    if !reboot_required {
        return Ok(());
    }
    let pool = x
        .pools
        .object_of_type(host.pool().unwrap_or_default(), &["pool"])?;
    let master = x.pools.object_of_type(s(&pool, "master"), HOST)?;
    if master.id() == host.id() {
        return Ok(());
    }
    let fail = || incorrect_state(json!(true), json!(false), master.id(), "rebootRequired");
    match compare_versions(s(&master, "version"), s(host, "version")) {
        Ordering::Less => Err(fail()),
        Ordering::Equal if master.get("rebootRequired").and_then(Value::as_bool) == Some(true) => {
            Err(fail())
        }
        _ => Ok(()),
    }
}

/// XO's `clearHost`: disable, then evacuate; when the evacuation fails and `force` is off, the host is
/// re-enabled and the error returned.
async fn clear_host(x: &Xapi, host: &XoObject, force: bool) -> Result<(), ApiError> {
    let host_ref = host.xapi_ref();
    x.call("host.disable", vec![host_ref.into()]).await?;
    let pool = x.pools.object(host.pool().unwrap_or_default());
    let network = pool
        .as_ref()
        .and_then(|p| p.get("otherConfig"))
        .and_then(|o| o.get("xo:migrationNetwork"))
        .and_then(Value::as_str)
        .map(|id| {
            x.pools
                .object(id)
                .map(|n| n.xapi_ref().to_owned())
                .ok_or_else(|| ApiError::internal(format!("could not find migration network {id}")))
        })
        .transpose()?;
    let mut params: Vec<Value> = vec![host_ref.into()];
    if let Some(n) = network {
        params.push(n.into());
    }
    let evacuated = loop {
        match x.try_call_async("host.evacuate", params.clone()).await {
            Err(CallError::Xapi(e))
                if e.code == "MESSAGE_PARAMETER_COUNT_MISMATCH" && params.len() > 1 =>
            {
                params.pop();
            }
            other => break other,
        }
    };
    if let Err(e) = evacuated {
        if !force {
            x.call("host.enable", vec![host_ref.into()]).await?;
            return Err(x.api(e));
        }
    }
    Ok(())
}

async fn restart(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let force = opt_bool(&p, "force").unwrap_or(false);
    let bypass_version = opt_bool(&p, "bypassVersionCheck").unwrap_or(force);
    let suspend = opt_bool(&p, "suspendResidentVms").unwrap_or(false);
    let (x, host) = host_call(ctx, p, "host.restart").await?;
    if !bypass_version {
        version_guard(&x, &host)?;
    }
    // no backup jobs run in this server: the backup guard (bypassBackupCheck) has nothing to wait for
    if suspend {
        // XO's smart reboot (suspend the resident VMs, reboot, resume them) is not implemented
        return Err(ApiError::not_implemented());
    }
    clear_host(&x, &host, force).await?;
    x.call_async("host.reboot", vec![host.xapi_ref().into()])
        .await?;
    Ok(Value::Bool(true))
}

/// XO's `setMaintenanceMode`: on, the host is cleared (disabled, its VMs evacuated; re-enabled if that
/// fails); the VMs of `vmsToForceMigrate` (running guests whose migration is blocked) have that block lifted
/// meanwhile and restored afterwards. Off, the host is enabled again.
async fn set_maintenance_mode(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let on = p
        .get("maintenance")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let forced = str_list(p.get("vmsToForceMigrate"));
    let (x, host) = host_call(ctx, p, "host.setMaintenanceMode").await?;
    if !on {
        x.call("host.enable", vec![host.xapi_ref().into()]).await?;
        return Ok(Value::Bool(true));
    }
    let mut vms = Vec::new();
    for id in &forced {
        // a VM of this host's pool
        let vm = x
            .pools
            .object(id)
            .filter(|o| o.kind() == "VM" && o.pool() == host.pool())
            .ok_or_else(|| ApiError::no_such_object(id, Some("VM")))?;
        vms.push(vm);
    }
    let mut lifted = Vec::new();
    for vm in &vms {
        match super::vm::unblock(&x, vm, &["pool_migrate", "migrate_send"]).await {
            Ok(restore) => lifted.push((vm.clone(), restore)),
            Err(e) => {
                reblock_all(&x, lifted).await;
                return Err(e);
            }
        }
    }
    let cleared = clear_host(&x, &host, false).await;
    reblock_all(&x, lifted).await;
    cleared?;
    Ok(Value::Bool(true))
}

/// VMs whose blocked operations were lifted, with what to restore.
type Lifted = Vec<(std::sync::Arc<XoObject>, Vec<(String, String)>)>;

async fn reblock_all(x: &Xapi, lifted: Lifted) {
    for (vm, restore) in lifted {
        super::vm::reblock(x, &vm, restore).await;
    }
}

/// XO's `emergencyShutdownHost`: disabled, every guest running there suspended (failures ignored), then shut
/// down.
async fn emergency_shutdown(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, host) = host_call(ctx, p, "host.emergencyShutdownHost").await?;
    let host_ref = host.xapi_ref();
    x.call("host.disable", vec![host_ref.into()]).await?;
    let guests = x.field_refs("host", host_ref, "resident_VMs").await?;
    let suspends = guests.iter().map(|vm| async {
        let control = x.field("VM", vm, "is_control_domain").await?;
        if control.as_bool() != Some(true) {
            x.call_async("VM.suspend", vec![vm.as_str().into()]).await?;
        }
        Ok::<_, ApiError>(())
    });
    for r in futures::future::join_all(suspends).await {
        if let Err(e) = r {
            tracing::debug!("suspending a guest before an emergency shutdown failed: {e}");
        }
    }
    x.call_async("host.shutdown", vec![host_ref.into()]).await?;
    Ok(Value::Bool(true))
}

/// XO's `forgetHost`: `host.destroy` (XAPI forgets only a member that is down and holds no guest).
async fn forget(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, host) = host_call(ctx, p, "host.forget").await?;
    x.call_async("host.destroy", vec![host.xapi_ref().into()])
        .await?;
    Ok(Value::Bool(true))
}

/// XO's `setRemoteSyslogHost`: the host's `logging` (`syslog_destination`, or nothing with `null`), then
/// `host.syslog_reconfigure`.
async fn set_remote_syslog_host(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let logging = match p.get("syslogDestination") {
        Some(Value::String(d)) => json!({ "syslog_destination": d }),
        _ => json!({}),
    };
    let (x, host) = host_call(ctx, p, "host.setRemoteSyslogHost").await?;
    x.call("host.set_logging", vec![host.xapi_ref().into(), logging])
        .await?;
    x.call("host.syslog_reconfigure", vec![host.xapi_ref().into()])
        .await?;
    Ok(Value::Bool(true))
}

/// XO's `scanPifs`: `PIF.scan` looks for new physical interfaces of the host.
async fn scan_pifs(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, host) = host_call(ctx, p, "host.scanPifs").await?;
    x.call("PIF.scan", vec![host.xapi_ref().into()]).await?;
    Ok(Value::Bool(true))
}

/// XO's `powerOnHost`: `host.power_on` (XAPI refuses it without a power-on mode).
async fn start(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, host) = host_call(ctx, p, "host.start").await?;
    x.call_async("host.power_on", vec![host.xapi_ref().into()])
        .await?;
    Ok(Value::Bool(true))
}

/// XO's `shutdownHost`: the host is cleared first (or only disabled with `bypassEvacuate`), then shut down.
async fn stop(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let bypass_evacuate = opt_bool(&p, "bypassEvacuate").unwrap_or(false);
    let (x, host) = host_call(ctx, p, "host.stop").await?;
    // no backup jobs run in this server: the backup guard (bypassBackupCheck) has nothing to wait for
    if bypass_evacuate {
        x.call("host.disable", vec![host.xapi_ref().into()]).await?;
    } else {
        clear_host(&x, &host, false).await?;
    }
    x.call_async("host.shutdown", vec![host.xapi_ref().into()])
        .await?;
    Ok(Value::Bool(true))
}

async fn restart_agent_of(ctx: Ctx, p: Map<String, Value>, name: &str) -> Result<Value, ApiError> {
    let (x, host) = host_call(ctx, p, name).await?;
    x.call_async("host.restart_agent", vec![host.xapi_ref().into()])
        .await?;
    Ok(Value::Bool(true))
}

async fn restart_agent(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    restart_agent_of(ctx, p, "host.restartAgent").await
}

async fn restart_agent_alias(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    restart_agent_of(ctx, p, "host.restart_agent").await
}

/// XO's `setHostMultipathing`: with the host disabled and its PBDs unplugged, sets the multipathing
/// keys of `other_config`; then re-plugs and re-enables whatever it changed (also on failure).
async fn set_multipathing(x: &Xapi, host: &XoObject, on: bool) -> Result<(), ApiError> {
    let host_ref = host.xapi_ref();
    let rec = x.record("host", host_ref).await?;
    let was_enabled = rec.get("enabled").and_then(Value::as_bool) == Some(true);
    if was_enabled {
        x.call("host.disable", vec![host_ref.into()]).await?;
    }
    let mut unplugged = Vec::new();
    let mut outcome = Ok(());
    for pbd in rec
        .get("PBDs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(pbd) = pbd.as_str() else { continue };
        match x.field("PBD", pbd, "currently_attached").await {
            Ok(Value::Bool(true)) => match x.call("PBD.unplug", vec![pbd.into()]).await {
                Ok(_) => unplugged.push(pbd.to_owned()),
                Err(e) => tracing::warn!("PBD.unplug failed: {e}"),
            },
            Ok(_) => {}
            Err(e) => tracing::warn!("reading a PBD failed: {e}"),
        }
    }
    let keys: &[(&str, &str)] = if on {
        &[("multipathing", "true"), ("multipathhandle", "dmp")]
    } else {
        &[("multipathing", "false")]
    };
    for (k, v) in keys {
        if let Err(e) = x
            .update_map("host", host_ref, "other_config", k, Some(v))
            .await
        {
            outcome = Err(e);
            break;
        }
    }
    for pbd in unplugged {
        if let Err(e) = x.call("PBD.plug", vec![pbd.into()]).await {
            tracing::warn!("PBD.plug failed: {e}");
        }
    }
    if was_enabled {
        if let Err(e) = x.call("host.enable", vec![host_ref.into()]).await {
            tracing::warn!("host.enable failed: {e}");
        }
    }
    outcome
}

async fn set(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let (x, host) = host_call(ctx, p.clone(), "host.set").await?;
    let host_ref = host.xapi_ref();
    if let Some(iqn) = opt_str(&p, "iscsiIqn") {
        let rec = x.record("host", host_ref).await?;
        if rec.contains_key("iscsi_iqn") {
            x.call("host.set_iscsi_iqn", vec![host_ref.into(), iqn.into()])
                .await?;
        } else {
            let v = (!iqn.is_empty()).then_some(iqn);
            x.update_map("host", host_ref, "other_config", "iscsi_iqn", v)
                .await?;
        }
    }
    for field in ["name_description", "name_label"] {
        if let Some(v) = opt_str(&p, field) {
            x.call(
                &format!("host.set_{field}"),
                vec![host_ref.into(), v.into()],
            )
            .await?;
        }
    }
    if let Some(on) = opt_bool(&p, "multipathing") {
        set_multipathing(&x, &host, on).await?;
    }
    Ok(Value::Bool(true))
}

/// XO's `detachHostFromPool`: `pool.eject` (XAPI refuses the master, hosts running guests, HA pools),
/// then the ejected host — a pool of its own after its reboot — is registered as a new server with the
/// pool's credentials and connected in the background.
async fn detach(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let app = ctx.app.clone();
    let (x, host) = host_call(ctx, p, "host.detach").await?;
    let address = host
        .get("address")
        .and_then(Value::as_str)
        .map(str::to_owned);
    x.call("pool.eject", vec![host.xapi_ref().into()]).await?;
    if let Some(address) = address.filter(|a| !a.is_empty()) {
        register_ejected(&app, x.client.server_id(), address);
    }
    Ok(Value::Bool(true))
}

/// Registers the ejected host at `address` as a server like `server_id` (same credentials, proxy,
/// label, read-only flag), then tries to connect it after each delay of
/// [`crate::xapi::PoolsConfig::ejected_host_connect_delays`] while it is unreachable, as XO does.
/// Failures are recorded on the new server (registration failures, e.g. a host already registered, are
/// only logged: XO ignores them).
fn register_ejected(app: &crate::App, server_id: &str, address: String) {
    let Ok(Some(src)) = app.store().server(server_id) else {
        return;
    };
    let added = app.store().add_server(xo_store::NewServer {
        host: address.clone(),
        username: src.username.clone(),
        password: src.password.clone(),
        label: src.label.clone(),
        allow_unauthorized: src.allow_unauthorized,
        enabled: true,
        http_proxy: src.http_proxy.clone(),
    });
    let mut server = match added {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(host = %address, error = %e, "ejected host not registered as a server");
            return;
        }
    };
    if src.read_only {
        server.read_only = true;
        if let Err(e) = app.store().update_server(&server) {
            tracing::warn!(error = %e, "cannot mark the ejected host's server read-only");
        }
    }
    tracing::info!(server = %server.id, host = %address, "ejected host registered as a new server");
    let delays = crate::xapi::Pools::of(app)
        .map(|p| p.config().ejected_host_connect_delays.clone())
        .unwrap_or_default();
    let weak = app.downgrade();
    let id = server.id;
    tokio::spawn(async move {
        for delay in delays {
            tokio::time::sleep(delay).await;
            let Some(app) = weak.upgrade() else { return };
            let Ok(Some(server)) = app.store().server(&id) else {
                return;
            };
            if !server.enabled {
                return;
            }
            let result = app.connector().connect(app.clone(), server).await;
            app.record_connect_result(&id, result.as_ref().err());
            match result {
                Err(e) if retry_ejected_connect(&e) => continue,
                _ => return,
            }
        }
    });
}

/// Whether connecting an ejected host failed only because it is not back yet, as XO decides: unreachable
/// while it reboots, or still a member of the pool it left (its login lands on that pool, already connected).
fn retry_ejected_connect(e: &crate::pool::ConnectError) -> bool {
    e.code.as_deref() == Some("EHOSTUNREACH") || e.is_pool_already_connected()
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("host.enable", enable)
            .description("enable to create VM on the host")
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("host.disable", disable)
            .description("disable to create VM on the host")
            .params(schema(r#"{"id": {"type": "string"}, "transient": {"type": "boolean", "optional": true}}"#)),
        Method::new("host.restart", restart)
            .description("restart the host")
            .params(schema(r#"{"bypassBackupCheck": {"type": "boolean", "optional": true}, "bypassBlockedSuspend": {"type": "boolean", "optional": true}, "bypassCurrentVmCheck": {"type": "boolean", "optional": true}, "id": {"type": "string"}, "force": {"type": "boolean", "optional": true}, "suspendResidentVms": {"type": "boolean", "default": false}, "bypassVersionCheck": {"type": "boolean", "optional": true}}"#)),
        Method::new("host.restartAgent", restart_agent)
            .description("restart the Xen agent on the host")
            .params(schema(r#"{"bypassBackupCheck": {"type": "boolean", "optional": true}, "id": {"type": "string"}}"#)),
        Method::new("host.restart_agent", restart_agent_alias)
            .description("restart the Xen agent on the host")
            .params(schema(r#"{"bypassBackupCheck": {"type": "boolean", "optional": true}, "id": {"type": "string"}}"#)),
        Method::new("host.set", set)
            .description("changes the properties of an host")
            .params(schema(r#"{"id": {"type": "string"}, "iscsiIqn": {"type": "string", "optional": true}, "name_label": {"type": "string", "optional": true}, "name_description": {"type": "string", "minLength": 0, "optional": true}, "multipathing": {"type": "boolean", "optional": true}}"#)),
        Method::new("host.detach", detach)
            .description("eject the host of a pool")
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("host.setMaintenanceMode", set_maintenance_mode)
            .description("manage the maintenance mode")
            .params(schema(r#"{"id": {"type": "string"}, "maintenance": {"type": "boolean"}, "vmsToForceMigrate": {"type": "array", "items": {"type": "string"}, "optional": true}}"#)),
        Method::new("host.emergencyShutdownHost", emergency_shutdown)
            .description("suspend all VMs and shutdown host")
            .params(schema(r#"{"host": {"type": "string"}}"#)),
        Method::new("host.forget", forget)
            .description("remove the host record from XAPI database")
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("host.setRemoteSyslogHost", set_remote_syslog_host).params(schema(
            r#"{"id": {"type": "string"}, "syslogDestination": {"type": ["null", "string"]}}"#,
        )),
        Method::new("host.scanPifs", scan_pifs)
            .description("Refresh the list of physical interfaces for this host")
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("host.start", start)
            .description("start the host")
            .params(schema(r#"{"id": {"type": "string"}}"#)),
        Method::new("host.stop", stop)
            .description("stop the host")
            .params(schema(r#"{"bypassBackupCheck": {"type": "boolean", "optional": true}, "id": {"type": "string"}, "bypassEvacuate": {"type": "boolean", "optional": true}}"#)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(compare_versions("8.2.1", "8.3.0"), Ordering::Less);
        assert_eq!(compare_versions("8.3", "8.3.0"), Ordering::Equal);
        assert_eq!(compare_versions("10.0", "9.9"), Ordering::Greater);
    }

    #[test]
    fn an_ejected_host_is_tried_again_while_it_is_not_back() {
        use crate::pool::ConnectError;
        let failure = |code: &str| ConnectError::new(code, Some(code));
        assert!(retry_ejected_connect(&failure("EHOSTUNREACH")));
        assert!(retry_ejected_connect(
            &ConnectError::pool_already_connected("pool", "old server", "new server")
        ));
        // XO gives up on anything else
        assert!(!retry_ejected_connect(&failure("ECONNREFUSED")));
        assert!(!retry_ejected_connect(&failure(
            "SESSION_AUTHENTICATION_FAILED"
        )));
    }
}
