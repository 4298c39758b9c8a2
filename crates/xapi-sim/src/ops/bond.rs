//! Bonds (XA `xapi_bond.ml`): `Bond.create` makes a bond master PIF (`bond<N>`) on the network for the members'
//! host and marks the members as its slaves (the management interface and its IP configuration move to the
//! master); `Bond.destroy` undoes it. Refusals: `PIF_BOND_NEEDS_MORE_MEMBERS`, `PIF_CANNOT_BOND_CROSS_HOST`,
//! `PIF_ALREADY_BONDED`, `PIF_IS_VLAN`, an unknown mode (`INVALID_VALUE`).

use serde_json::json;
use xapi_types::{Ref, Value, XapiError};

use super::helpers::{b, get, i, refs, rf, s, set, valid, void, Params};
use crate::db::{rec, Db};
use crate::rpc::{Ctx, Registry};

pub fn register(reg: &mut Registry) {
    reg.register("Bond.create", create);
    reg.register("Bond.destroy", destroy);
}

/// The IP configuration fields a management interface carries.
const IP_FIELDS: &[&str] = &[
    "ip_configuration_mode",
    "IP",
    "netmask",
    "gateway",
    "DNS",
    "ipv6_configuration_mode",
    "IPv6",
    "ipv6_gateway",
    "primary_address_type",
];

fn create(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let network = pp.r(0)?;
    let members: Vec<Ref> = p
        .get(1)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(Ref::from)
        .collect();
    let mac = pp.s(2)?;
    let mode = pp.s(3).unwrap_or_else(|_| "balance-slb".into());
    let properties = p.get(4).cloned().unwrap_or_else(|| json!({}));
    if !["balance-slb", "active-backup", "lacp"].contains(&mode.as_str()) {
        return Err(XapiError::new("INVALID_VALUE", ["mode".to_owned(), mode]));
    }
    ctx.pool
        .write(|db| bond(db, &network, &members, &mac, &mode, properties))
        .map(|r| json!(r.0))
}

fn bond(
    db: &mut Db,
    network: &Ref,
    members: &[Ref],
    mac: &str,
    mode: &str,
    properties: Value,
) -> Result<Ref, XapiError> {
    let net = get(db, "network", network)?;
    if members.len() < 2 {
        return Err(XapiError::code("PIF_BOND_NEEDS_MORE_MEMBERS"));
    }
    let mut host = None;
    for m in members {
        let pif = get(db, "PIF", m)?;
        if host.get_or_insert_with(|| rf(&pif, "host")) != &rf(&pif, "host") {
            return Err(XapiError::code("PIF_CANNOT_BOND_CROSS_HOST"));
        }
        if valid(db, "Bond", &rf(&pif, "bond_slave_of")) {
            return Err(XapiError::new("PIF_ALREADY_BONDED", [m.0.clone()]));
        }
        if i(&pif, "VLAN") >= 0 {
            return Err(XapiError::new("PIF_IS_VLAN", [m.0.clone()]));
        }
    }
    let host = host.unwrap_or_else(Ref::null);
    let first = get(db, "PIF", &members[0])?;
    let taken = db
        .find("PIF", |r| {
            r.get("host").and_then(Value::as_str) == Some(host.as_str())
                && r.get("device")
                    .and_then(Value::as_str)
                    .is_some_and(|d| d.starts_with("bond"))
        })
        .len();
    let mac = if mac.is_empty() {
        s(&first, "MAC").to_owned()
    } else {
        mac.to_owned()
    };
    let mtu = i(&net, "MTU");
    let master = db.insert(
        "PIF",
        rec([
            ("device", json!(format!("bond{taken}"))),
            ("network", json!(network.0)),
            ("host", json!(host.0)),
            ("MAC", json!(mac)),
            ("MTU", json!(if mtu > 0 { mtu } else { 1500 })),
            ("VLAN", json!(-1)),
            ("physical", json!(false)),
            ("currently_attached", json!(true)),
            ("managed", json!(true)),
            ("ip_configuration_mode", json!("None")),
            ("ipv6_configuration_mode", json!("None")),
        ]),
    )?;
    let bond = db.insert(
        "Bond",
        rec([
            ("master", json!(master.0)),
            ("mode", json!(mode)),
            ("properties", properties),
            ("primary_slave", json!(members[0].0)),
            ("links_up", json!(members.len())),
            ("other_config", json!({})),
        ]),
    )?;
    for m in members {
        let pif = get(db, "PIF", m)?;
        if b(&pif, "management") {
            // the management interface moves to the bond, with its address
            take_management(db, &pif, &master)?;
            set(db, "PIF", m, vec![("management", json!(false))])?;
        }
        set(
            db,
            "PIF",
            m,
            vec![
                ("bond_slave_of", json!(bond.0)),
                ("currently_attached", json!(false)),
            ],
        )?;
    }
    Ok(bond)
}

/// PIF `to` becomes the management interface with the IP configuration of `from` (a PIF record).
fn take_management(db: &mut Db, from: &crate::db::Record, to: &Ref) -> Result<(), XapiError> {
    let mut moved: Vec<(&str, Value)> = IP_FIELDS
        .iter()
        .filter_map(|f| from.get(*f).map(|v| (*f, v.clone())))
        .collect();
    moved.push(("management", json!(true)));
    set(db, "PIF", to, moved)
}

fn destroy(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let bond = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.write(|db| unbond(db, &bond))?;
    Ok(void())
}

/// The slaves come back (the primary one takes the management interface back), the master PIF goes.
fn unbond(db: &mut Db, bond: &Ref) -> Result<(), XapiError> {
    let rec = get(db, "Bond", bond)?;
    let master = rf(&rec, "master");
    let slaves = refs(&rec, "slaves");
    let primary = rf(&rec, "primary_slave");
    if let Some(m) = db.get("PIF", &master).cloned() {
        if b(&m, "management") {
            let target = if valid(db, "PIF", &primary) {
                primary.clone()
            } else {
                slaves.first().cloned().unwrap_or_else(Ref::null)
            };
            if valid(db, "PIF", &target) {
                take_management(db, &m, &target)?;
            }
        }
    }
    for s in &slaves {
        if db.exists("PIF", s) {
            set(
                db,
                "PIF",
                s,
                vec![
                    ("bond_slave_of", json!(Ref::NULL_STR)),
                    ("currently_attached", json!(true)),
                ],
            )?;
        }
    }
    db.destroy("Bond", bond)?;
    if db.exists("PIF", &master) {
        db.destroy("PIF", &master)?;
    }
    Ok(())
}
