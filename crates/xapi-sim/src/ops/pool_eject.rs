//! `pool.eject`: a member leaves the pool as `xapi_pool.ml` `eject` does. Refused with HA on
//! (`HA_IS_ENABLED`), for the master (`INTERNAL_ERROR [Xapi_pool.Cannot_eject_master]`) and while a guest
//! still runs, is paused or suspended there (`OPERATION_NOT_ALLOWED [VM resident on host]`). Otherwise the
//! host's PBDs are unplugged, SRs only it could reach are forgotten (their VDIs go), its control domain is
//! destroyed, and its record goes with everything hanging off it (PIFs, host_cpus, metrics…); its
//! sessions end and it comes back as the master of a pool of its own (a fresh database, as after its reboot:
//! the same uuid, name and address, its local storage empty), which its listener serves from then on.
//! `host.destroy` removes the records of a member that is down for good the same way.

use std::sync::Arc;

use serde_json::json;
use xapi_types::{Ref, Value, XapiError};

use super::allowed::update_vm_trees;
use super::helpers::{b, get, pool_ref, refs, rf, s, valid, void, Params};
use super::sr_lifecycle::drop_sr;
use crate::db::Db;
use crate::rpc::{Ctx, Registry};
use crate::seed::{seed, SeedSpec};
use crate::state::{master_of, PoolState};

pub fn register(reg: &mut Registry) {
    reg.register("pool.eject", eject);
    reg.register("host.destroy", destroy);
}

fn destroy(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let host = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.write(|db| destroy_host(db, &host))?;
    Ok(void())
}

fn eject(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let host = Params::new(&ctx.method, &p).r(0)?;
    let who = ctx.pool.read(|db| Identity::of(db, &host))?;
    ctx.pool.write(|db| eject_host(db, &host))?;
    // the host restarts out of the pool: its sessions are gone, and it comes back on its own
    ctx.pool.restart_host(&host);
    let (db, alone) = who.standalone()?;
    ctx.pool.set_reborn(
        &host,
        Arc::new(PoolState::new(db, ctx.pool.config.clone())),
        alone,
    );
    Ok(void())
}

/// What an ejected host keeps through its reboot (XAPI's inventory and the host's own settings).
struct Identity {
    uuid: String,
    name_label: String,
    hostname: String,
    address: std::net::Ipv4Addr,
}

impl Identity {
    fn of(db: &Db, host: &Ref) -> Result<Identity, XapiError> {
        let h = get(db, "host", host)?;
        Ok(Identity {
            uuid: s(&h, "uuid").to_owned(),
            name_label: s(&h, "name_label").to_owned(),
            hostname: s(&h, "hostname").to_owned(),
            address: s(&h, "address")
                .parse()
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST),
        })
    }

    /// The database of the one-host pool the host makes after its reboot, and its host.
    fn standalone(&self) -> Result<(Db, Ref), XapiError> {
        let mut db = Db::new();
        seed(
            &mut db,
            &SeedSpec {
                hosts: 1,
                vms: 0,
                name: String::new(),
                first_address: self.address,
            },
        )?;
        let host = db
            .refs("host")
            .into_iter()
            .next()
            .ok_or_else(|| XapiError::internal("a seeded pool without a host"))?;
        db.set_field("host", &host, "uuid", json!(self.uuid))?;
        db.set_field("host", &host, "name_label", json!(self.name_label))?;
        db.set_field("host", &host, "hostname", json!(self.hostname))?;
        Ok((db, host))
    }
}

/// Removes `host` from the pool database (see the module doc), or fails without changing anything.
pub fn eject_host(db: &mut Db, host: &Ref) -> Result<(), XapiError> {
    let h = get(db, "host", host)?;
    let pool = pool_ref(db);
    if db.get("pool", &pool).is_some_and(|p| b(p, "ha_enabled")) {
        return Err(XapiError::code("HA_IS_ENABLED"));
    }
    if master_of(db) == *host {
        return Err(XapiError::new(
            "INTERNAL_ERROR",
            ["Xapi_pool.Cannot_eject_master"],
        ));
    }
    let resident = refs(&h, "resident_VMs");
    if resident.iter().any(|vm| {
        db.get("VM", vm)
            .is_some_and(|r| !b(r, "is_control_domain") && s(r, "power_state") != "Halted")
    }) {
        return Err(XapiError::new(
            "OPERATION_NOT_ALLOWED",
            ["VM resident on host"],
        ));
    }
    remove_member(db, host, &h)
}

/// `host.destroy`: the record of a member that is gone for good (not live, not the master, no guest resident)
/// goes with everything hanging off it, as in [`eject_host`]; `HOST_IS_LIVE`, `HOST_CANNOT_DESTROY_SELF`,
/// `HOST_HAS_RESIDENT_VMS` otherwise.
pub fn destroy_host(db: &mut Db, host: &Ref) -> Result<(), XapiError> {
    let h = get(db, "host", host)?;
    let live = db
        .get("host_metrics", &rf(&h, "metrics"))
        .is_some_and(|m| b(m, "live"));
    if live {
        return Err(XapiError::new("HOST_IS_LIVE", [host.0.clone()]));
    }
    if master_of(db) == *host {
        return Err(XapiError::new("HOST_CANNOT_DESTROY_SELF", [host.0.clone()]));
    }
    let guests = refs(&h, "resident_VMs")
        .iter()
        .any(|vm| db.get("VM", vm).is_some_and(|r| !b(r, "is_control_domain")));
    if guests {
        return Err(XapiError::new("HOST_HAS_RESIDENT_VMS", [host.0.clone()]));
    }
    remove_member(db, host, &h)
}

/// The records of `host` (whose record is `h`) and of what hangs off it go; SRs only it reached are forgotten.
fn remove_member(db: &mut Db, host: &Ref, h: &crate::db::Record) -> Result<(), XapiError> {
    let resident = refs(h, "resident_VMs");
    let pbds = refs(h, "PBDs");
    let mut touched_vms = Vec::new();
    for pbd in &pbds {
        let Some(sr) = db.get("PBD", pbd).map(|r| rf(r, "SR")) else {
            continue;
        };
        db.destroy("PBD", pbd)?;
        let orphan = db
            .get("SR", &sr)
            .is_some_and(|r| refs(r, "PBDs").is_empty());
        if orphan {
            // `SR.forget` of an SR nobody can reach any more: its VDIs go, VBDs on them become empty
            touched_vms.extend(drop_sr(db, &sr, Vec::new())?);
        }
    }
    let control_domains: Vec<Ref> = resident
        .into_iter()
        .filter(|vm| db.get("VM", vm).is_some_and(|r| b(r, "is_control_domain")))
        .collect();
    for vm in &control_domains {
        destroy_vm(db, vm)?;
    }
    if valid(db, "VM", &rf(h, "control_domain")) {
        destroy_vm(db, &rf(h, "control_domain"))?;
    }
    // every other record of the host (PIFs, host_cpus, crashdumps, patches, PCIs…) and their metrics
    let classes: Vec<&'static str> = db.table_counts().into_iter().map(|(c, _)| c).collect();
    for class in classes {
        if class == "VM" || class == "session" {
            continue;
        }
        for r in db.find(class, |rec| {
            rec.get("host").and_then(Value::as_str) == Some(host.as_str())
        }) {
            let metrics = db.get(class, &r).map(|rec| rf(rec, "metrics"));
            db.destroy(class, &r)?;
            if let Some(m) = metrics.filter(|m| !m.is_null()) {
                let mclass = format!("{class}_metrics");
                if db.exists(&mclass, &m) {
                    db.destroy(&mclass, &m)?;
                }
            }
        }
    }
    // halted guests that preferred this host keep no dangling affinity
    for vm in db.find("VM", |r| {
        r.get("affinity").and_then(Value::as_str) == Some(host.as_str())
    }) {
        db.set_field("VM", &vm, "affinity", json!(Ref::NULL_STR))?;
    }
    let metrics = rf(h, "metrics");
    db.destroy("host", host)?;
    if db.exists("host_metrics", &metrics) {
        db.destroy("host_metrics", &metrics)?;
    }
    update_vm_trees(db, touched_vms)
}

/// Destroys a (control-domain) VM with its devices, consoles and metrics.
fn destroy_vm(db: &mut Db, vm: &Ref) -> Result<(), XapiError> {
    let Some(r) = db.get("VM", vm).cloned() else {
        return Ok(());
    };
    for (class, field) in [("VBD", "VBDs"), ("VIF", "VIFs"), ("console", "consoles")] {
        for child in refs(&r, field) {
            if db.exists(class, &child) {
                db.destroy(class, &child)?;
            }
        }
    }
    db.destroy("VM", vm)?;
    for (class, field) in [
        ("VM_metrics", "metrics"),
        ("VM_guest_metrics", "guest_metrics"),
    ] {
        let m = rf(&r, field);
        if db.exists(class, &m) {
            db.destroy(class, &m)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(hosts: usize, vms: usize) -> crate::Sim {
        crate::Sim::builder().hosts(hosts).vms(vms).build().unwrap()
    }

    #[test]
    fn eject_refusals_change_nothing() {
        let sim = sim(2, 4);
        let st = sim.state().clone();
        let master = st.master();
        let before = st.read(Db::total);
        let e = st.write(|db| eject_host(db, &master)).unwrap_err();
        assert_eq!(e.code, "INTERNAL_ERROR");
        let e = st
            .write(|db| eject_host(db, &Ref::from("OpaqueRef:nope")))
            .unwrap_err();
        assert_eq!(e.code, "HANDLE_INVALID");
        assert_eq!(st.read(Db::total), before);
    }
}
