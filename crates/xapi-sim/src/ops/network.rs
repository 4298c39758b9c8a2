//! network messages: create (auto bridge name, MTU 1500) and destroy (`NETWORK_CONTAINS_VIF` / `_PIF`).

use serde_json::json;
use xapi_types::{Ref, Value, XapiError};

use super::helpers::{constructor_record, get, i, jr, refs, s, void, Params};
use crate::db::{Db, Record};
use crate::rpc::{Ctx, Registry};

pub fn register(reg: &mut Registry) {
    reg.register("network.create", create);
    reg.register("network.destroy", destroy);
}

/// Create a network row: bridge `xapiN` when not given, MTU 1500 when not positive.
pub fn create_network(db: &mut Db, mut rec: Record) -> Result<Ref, XapiError> {
    if s(&rec, "bridge").is_empty() {
        let used: Vec<String> = db
            .all("network")
            .map(|(_, n)| s(n, "bridge").to_owned())
            .collect();
        let bridge = (0..)
            .map(|n| format!("xapi{n}"))
            .find(|b| !used.contains(b))
            .unwrap_or_default();
        rec.insert("bridge".into(), json!(bridge));
    }
    if i(&rec, "MTU") <= 0 {
        rec.insert("MTU".into(), json!(1500));
    }
    rec.entry("managed").or_insert(json!(true));
    db.insert("network", rec)
}

/// Destroy a network: refused while VIFs or PIFs use it.
pub fn destroy_network(db: &mut Db, net: &Ref) -> Result<(), XapiError> {
    let r = get(db, "network", net)?;
    let vifs = refs(&r, "VIFs");
    if !vifs.is_empty() {
        return Err(XapiError::new(
            "NETWORK_CONTAINS_VIF",
            vifs.into_iter().map(|v| v.0),
        ));
    }
    let pifs = refs(&r, "PIFs");
    if !pifs.is_empty() {
        return Err(XapiError::new(
            "NETWORK_CONTAINS_PIF",
            pifs.into_iter().map(|v| v.0),
        ));
    }
    db.destroy("network", net)
}

fn create(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let rec = constructor_record("network", p.into_iter().next().unwrap_or(Value::Null))?;
    ctx.pool.write(|db| create_network(db, rec)).map(|r| jr(&r))
}

fn destroy(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let net = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool
        .write(|db| destroy_network(db, &net))
        .map(|_| void())
}
