//! PIF messages (XA `xapi_pif.ml`, `xapi_host.ml`): `PIF.plug` / `unplug` (the management interface cannot be
//! unplugged: `PIF_IS_MANAGEMENT_INTERFACE`), `PIF.reconfigure_ip` / `reconfigure_ipv6` (modes checked, a static
//! address needed: `INVALID_IP_ADDRESS_SPECIFIED`), `PIF.forget`, `PIF.scan` (a simulated host's NICs never
//! change: nothing new is found), `host.management_reconfigure` (which PIF carries the management traffic of its
//! host), and `host.syslog_reconfigure` (applies `host.logging`: nothing to restart here).

use serde_json::json;
use xapi_types::{Ref, Value, XapiError};

use super::helpers::{b, get, rf, set, void, Params};
use crate::db::Db;
use crate::rpc::{Ctx, Registry};

pub fn register(reg: &mut Registry) {
    reg.register("PIF.plug", plug);
    reg.register("PIF.unplug", unplug);
    reg.register("PIF.reconfigure_ip", reconfigure_ip);
    reg.register("PIF.reconfigure_ipv6", reconfigure_ipv6);
    reg.register("PIF.forget", forget);
    reg.register("PIF.scan", host_only);
    reg.register("host.management_reconfigure", management_reconfigure);
    reg.register("host.syslog_reconfigure", host_only);
}

/// Messages that only need their host to exist in a simulator.
fn host_only(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let host = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.read(|db| get(db, "host", &host))?;
    Ok(void())
}

fn not_management(db: &Db, pif: &Ref) -> Result<(), XapiError> {
    if b(&get(db, "PIF", pif)?, "management") {
        return Err(XapiError::new(
            "PIF_IS_MANAGEMENT_INTERFACE",
            [pif.0.clone()],
        ));
    }
    Ok(())
}

fn attach(ctx: &Ctx, p: Vec<Value>, on: bool) -> Result<Value, XapiError> {
    let pif = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.write(|db| {
        if !on {
            not_management(db, &pif)?;
        }
        set(db, "PIF", &pif, vec![("currently_attached", json!(on))])
    })?;
    Ok(void())
}

fn plug(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    attach(ctx, p, true)
}

fn unplug(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    attach(ctx, p, false)
}

fn invalid_ip(ip: &str) -> XapiError {
    XapiError::new("INVALID_IP_ADDRESS_SPECIFIED", [ip.to_owned()])
}

fn reconfigure_ip(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let pif = pp.r(0)?;
    let mode = pp.s(1)?;
    let (ip, netmask, gateway, dns) = (pp.s(2)?, pp.s(3)?, pp.s(4)?, pp.s(5)?);
    check_mode(&mode, &["None", "DHCP", "Static"])?;
    if mode == "Static" {
        if ip.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(invalid_ip(&ip));
        }
        if netmask.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(invalid_ip(&netmask));
        }
        if !gateway.is_empty() && gateway.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(invalid_ip(&gateway));
        }
    }
    let (ip, netmask, gateway) = if mode == "Static" {
        (ip, netmask, gateway)
    } else {
        (String::new(), String::new(), String::new())
    };
    let fields = vec![
        ("ip_configuration_mode", json!(mode)),
        ("IP", json!(ip)),
        ("netmask", json!(netmask)),
        ("gateway", json!(gateway)),
        ("DNS", json!(dns)),
    ];
    ctx.pool.write(|db| set(db, "PIF", &pif, fields))?;
    Ok(void())
}

/// `INVALID_VALUE [mode, m]` unless `m` is one of `allowed`.
fn check_mode(m: &str, allowed: &[&str]) -> Result<(), XapiError> {
    if allowed.contains(&m) {
        Ok(())
    } else {
        Err(XapiError::new(
            "INVALID_VALUE",
            ["mode".to_owned(), m.to_owned()],
        ))
    }
}

fn reconfigure_ipv6(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let pif = pp.r(0)?;
    let mode = pp.s(1)?;
    let (ipv6, gateway, dns) = (pp.s(2)?, pp.s(3)?, pp.s(4)?);
    check_mode(&mode, &["None", "DHCP", "Static", "Autoconf"])?;
    if mode == "Static" {
        let addr = ipv6.split('/').next().unwrap_or_default();
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid_ip(&ipv6));
        }
    }
    let addresses = if mode == "Static" {
        vec![ipv6]
    } else {
        Vec::new()
    };
    let fields = vec![
        ("ipv6_configuration_mode", json!(mode)),
        ("IPv6", json!(addresses)),
        ("ipv6_gateway", json!(gateway)),
        ("DNS", json!(dns)),
    ];
    ctx.pool.write(|db| set(db, "PIF", &pif, fields))?;
    Ok(void())
}

fn forget(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pif = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.write(|db| {
        not_management(db, &pif)?;
        let metrics = rf(&get(db, "PIF", &pif)?, "metrics");
        db.destroy("PIF", &pif)?;
        if db.exists("PIF_metrics", &metrics) {
            db.destroy("PIF_metrics", &metrics)?;
        }
        Ok::<_, XapiError>(())
    })?;
    Ok(void())
}

/// The host's management traffic moves to `pif` (attached as it must be); its other PIFs lose the flag.
fn management_reconfigure(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pif = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.write(|db| {
        let rec = get(db, "PIF", &pif)?;
        if super::helpers::s(&rec, "ip_configuration_mode") == "None" {
            return Err(XapiError::new(
                "PIF_HAS_NO_NETWORK_CONFIGURATION",
                [pif.0.clone()],
            ));
        }
        let host = rf(&rec, "host");
        for other in db.find("PIF", |r| {
            r.get("host").and_then(Value::as_str) == Some(host.as_str())
        }) {
            let on = other == pif;
            set(db, "PIF", &other, vec![("management", json!(on))])?;
        }
        set(db, "PIF", &pif, vec![("currently_attached", json!(true))])
    })?;
    Ok(void())
}
