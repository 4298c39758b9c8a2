//! message messages: create (`UUID_INVALID` for unknown objects), destroy / destroy_many / destroy_all,
//! get(cls, obj_uuid, since), get_since(since). Getters (`get_all`, `get_record`…) are generic.

use serde_json::Map;
use xapi_types::datetime::parse_unix;
use xapi_types::{Ref, Value, XapiError};

use super::helpers::{get, jr, post_message, s, void, Params};
use crate::db::{Db, Record};
use crate::rpc::{Ctx, Registry};

pub fn register(reg: &mut Registry) {
    reg.register("message.create", create);
    reg.register("message.destroy", destroy);
    reg.register("message.destroy_many", destroy_many);
    reg.register("message.destroy_all", destroy_all);
    reg.register("message.get", get_for);
    reg.register("message.get_since", get_since);
}

/// The DB table of a message `cls` value.
pub fn table_of_cls(cls: &str) -> Option<&'static str> {
    Some(match cls {
        "VM" => "VM",
        "Host" => "host",
        "SR" => "SR",
        "Pool" => "pool",
        "VMPP" => "VMPP",
        "VMSS" => "VMSS",
        "PVS_proxy" => "PVS_proxy",
        "VDI" => "VDI",
        "Certificate" => "Certificate",
        _ => return None,
    })
}

fn create(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let name = pp.s(0)?;
    let priority = pp.i(1)?;
    let cls = pp.s(2)?;
    let uuid = pp.s(3)?;
    let body = pp.s(4)?;
    ctx.pool
        .write(|db| {
            let table = table_of_cls(&cls)
                .ok_or_else(|| XapiError::new("INVALID_VALUE", ["cls".to_owned(), cls.clone()]))?;
            if db.find_by_uuid(table, &uuid).is_none() {
                return Err(XapiError::new("UUID_INVALID", [cls.clone(), uuid.clone()]));
            }
            post_message(db, &name, priority, &cls, &uuid, &body)
        })
        .map(|r| jr(&r))
}

fn destroy(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let m = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool
        .write(|db| db.destroy("message", &m))
        .map(|_| void())
}

fn destroy_many(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let msgs: Vec<Ref> = Params::new(&ctx.method, &p)
        .set_or_empty(0)?
        .iter()
        .filter_map(Value::as_str)
        .map(Ref::from)
        .collect();
    ctx.pool
        .write(|db| {
            for m in &msgs {
                get(db, "message", m)?;
            }
            for m in &msgs {
                db.destroy("message", m)?;
            }
            Ok(())
        })
        .map(|_| void())
}

/// `destroy_all(filters)`: filters on `cls`, `obj_uuid`, `name`, `priority` (all optional, ANDed) and
/// `before` / `after` timestamps.
fn destroy_all(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let filters = Params::new(&ctx.method, &p).map_or_empty(0)?;
    let f = |k: &str| filters.get(k).and_then(Value::as_str).map(str::to_owned);
    let (cls, uuid, name, prio) = (f("cls"), f("obj_uuid"), f("name"), f("priority"));
    let before = f("before").and_then(|t| parse_unix(&t));
    let after = f("after").and_then(|t| parse_unix(&t));
    ctx.pool
        .write(|db| {
            let doomed = db.find("message", |m| {
                let ts = parse_unix(s(m, "timestamp")).unwrap_or(0);
                cls.as_deref().is_none_or(|c| s(m, "cls") == c)
                    && uuid.as_deref().is_none_or(|u| s(m, "obj_uuid") == u)
                    && name.as_deref().is_none_or(|n| s(m, "name") == n)
                    && prio.as_deref().is_none_or(|p| {
                        m.get("priority").map(|v| v.to_string()).as_deref() == Some(p)
                    })
                    && before.is_none_or(|b| ts < b)
                    && after.is_none_or(|a| ts > a)
            });
            for m in doomed {
                db.destroy("message", &m)?;
            }
            Ok(())
        })
        .map(|_| void())
}

fn select(db: &Db, since: i64, mut keep: impl FnMut(&Record) -> bool) -> Value {
    let mut out = Map::new();
    for (r, m) in db.all("message") {
        let ts = parse_unix(s(m, "timestamp")).unwrap_or(0);
        if ts > since && keep(m) {
            out.insert(r.0.clone(), Value::Object(m.clone()));
        }
    }
    Value::Object(out)
}

fn since_param(pp: &Params, n: usize) -> Result<i64, XapiError> {
    let t = pp.s(n)?;
    parse_unix(&t).ok_or_else(|| XapiError::new("INVALID_VALUE", ["since".to_owned(), t]))
}

fn get_for(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let cls = pp.s(0)?;
    let uuid = pp.s(1)?;
    let since = since_param(&pp, 2)?;
    Ok(ctx.pool.read(|db| {
        select(db, since, |m| {
            s(m, "cls") == cls && s(m, "obj_uuid") == uuid
        })
    }))
}

fn get_since(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let since = since_param(&pp, 0)?;
    Ok(ctx.pool.read(|db| select(db, since, |_| true)))
}
