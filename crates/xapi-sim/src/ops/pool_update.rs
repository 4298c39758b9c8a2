//! `pool_update.*` (spec xapi.md §5.2): introduce from an uploaded "sim update ISO", precheck, apply, pool_apply,
//! pool_clean, destroy; plus the XCP-ng `updater.py` host plugin's per-host pending package lists.
//!
//! # Sim update ISO format
//! Real XAPI reads `update.xml` from the ISO on the VDI. The simulator reads the VDI's first bytes instead:
//!
//! ```text
//! XO-SIM-UPDATE 1\n
//! {"uuid": "…", "name_label": "…", "name_description": "…", "version": "1.0", "key": "",
//!  "installation_size": 0, "after_apply_guidance": ["restartHost"], "product_version": "8.2.1",
//!  "requires": ["<update uuid>"], "conflicts": ["<update uuid>"], "apply_fails": false}\n
//! <any payload bytes>
//! ```
//!
//! Only the magic line and one JSON line (within the first MiB) are read; `uuid` and `name_label` are required,
//! everything else is optional. `product_version` (when set) must equal the host's
//! `software_version.product_version` (`UPDATE_PRECHECK_FAILED_WRONG_SERVER_VERSION`), `requires` must already be
//! applied on the host (`…_PREREQUISITE_MISSING`), `conflicts` must not be (`…_CONFLICT_PRESENT`), and
//! `apply_fails: true` makes `apply` fail with `UPDATE_APPLY_FAILED` (to test error paths).
//!
//! # Updater plugin
//! `host.call_plugin(host, "updater.py", "check_update", {})` returns the JSON list set with
//! [`set_pending_packages`] for that host (empty by default); `update` applies them (clears the list) and
//! returns `""`, as XCP-ng's plugin does.

use std::collections::HashMap;
use std::sync::OnceLock;

use parking_lot::Mutex;
use serde_json::{json, Map};
use xapi_types::{Ref, Value, XapiError};

use super::helpers::{get, jr, refs, s, void, Params};
use crate::db::Db;
use crate::rpc::{Ctx, Registry};
use crate::state::str_field;

/// First line of a sim update ISO.
pub const MAGIC: &str = "XO-SIM-UPDATE 1";

pub fn register(reg: &mut Registry) {
    reg.register("pool_update.introduce", introduce);
    reg.register("pool_update.precheck", precheck);
    reg.register("pool_update.apply", apply);
    reg.register("pool_update.pool_apply", pool_apply);
    reg.register("pool_update.pool_clean", pool_clean);
    reg.register("pool_update.destroy", destroy);
}

fn invalid(info: impl Into<String>) -> XapiError {
    XapiError::new("INVALID_UPDATE", [info.into()])
}

/// Parsed header of a sim update ISO.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateMeta {
    pub uuid: String,
    pub name_label: String,
    pub name_description: String,
    pub version: String,
    pub key: String,
    pub installation_size: i64,
    pub after_apply_guidance: Vec<String>,
    pub product_version: String,
    pub requires: Vec<String>,
    pub conflicts: Vec<String>,
    pub apply_fails: bool,
}

const GUIDANCES: &[&str] = &["restartHVM", "restartPV", "restartHost", "restartXAPI"];

fn strs(o: &Map<String, Value>, k: &str) -> Result<Vec<String>, XapiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(format!("{k} must be strings")))
            })
            .collect(),
        Some(_) => Err(invalid(format!("{k} must be an array"))),
    }
}

/// Parse the header of a sim update ISO (`INVALID_UPDATE [info]` when it is not one).
pub fn parse_update(bytes: &[u8]) -> Result<UpdateMeta, XapiError> {
    let mut lines = bytes.splitn(3, |&c| c == b'\n');
    let magic = lines.next().unwrap_or_default();
    if magic != MAGIC.as_bytes() {
        return Err(invalid("update.xml not found: not an update ISO"));
    }
    let header = lines
        .next()
        .ok_or_else(|| invalid("truncated update header"))?;
    let v: Value =
        serde_json::from_slice(header).map_err(|e| invalid(format!("bad update header: {e}")))?;
    let o = v
        .as_object()
        .ok_or_else(|| invalid("update header is not an object"))?;
    let st = |k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let m = UpdateMeta {
        uuid: st("uuid"),
        name_label: st("name_label"),
        name_description: st("name_description"),
        version: st("version"),
        key: st("key"),
        installation_size: o
            .get("installation_size")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        after_apply_guidance: strs(o, "after_apply_guidance")?,
        product_version: st("product_version"),
        requires: strs(o, "requires")?,
        conflicts: strs(o, "conflicts")?,
        apply_fails: o
            .get("apply_fails")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    if m.uuid.is_empty() || m.name_label.is_empty() {
        return Err(invalid("update header lacks uuid or name_label"));
    }
    if let Some(g) = m
        .after_apply_guidance
        .iter()
        .find(|g| !GUIDANCES.contains(&g.as_str()))
    {
        return Err(invalid(format!("unknown after-apply guidance {g}")));
    }
    Ok(m)
}

/// Serialise an update header (the inverse of [`parse_update`], for tests and tools).
pub fn encode_update(meta: &Value, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{MAGIC}\n{meta}\n").into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Side data per update ref the DB has no field for (requires / conflicts / product version / failure switch).
fn side() -> &'static Mutex<HashMap<String, UpdateMeta>> {
    static SIDE: OnceLock<Mutex<HashMap<String, UpdateMeta>>> = OnceLock::new();
    SIDE.get_or_init(Default::default)
}

/// Introduce the update read from `vdi` (also used by the `/update` upload handler).
pub fn introduce_vdi(db: &mut Db, vdi: &Ref) -> Result<Ref, XapiError> {
    let rec = get(db, "VDI", vdi)?;
    let uuid = s(&rec, "uuid").to_owned();
    let size = rec
        .get("virtual_size")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .max(0) as u64;
    let head = db.vdi_data.read_block(vdi, &uuid, 0, size);
    let m = parse_update(&head)?;
    if db.find_by_uuid("pool_update", &m.uuid).is_some() {
        return Err(XapiError::new("UPDATE_ALREADY_EXISTS", [m.uuid.clone()]));
    }
    let r = Db::new_ref();
    let fields = crate::db::rec([
        ("uuid", json!(m.uuid)),
        ("name_label", json!(m.name_label)),
        ("name_description", json!(m.name_description)),
        ("version", json!(m.version)),
        ("key", json!(m.key)),
        ("installation_size", json!(m.installation_size)),
        ("after_apply_guidance", json!(m.after_apply_guidance)),
        ("vdi", jr(vdi)),
        ("hosts", json!([])),
        ("enforce_homogeneity", json!(false)),
    ]);
    db.create("pool_update", r.clone(), fields)?;
    side().lock().insert(r.0.clone(), m);
    Ok(r)
}

fn introduce(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let vdi = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.write(|db| introduce_vdi(db, &vdi)).map(|r| jr(&r))
}

fn meta_of(db: &Db, update: &Ref) -> Result<UpdateMeta, XapiError> {
    let uuid = s(&get(db, "pool_update", update)?, "uuid").to_owned();
    Ok(side()
        .lock()
        .get(&update.0)
        .cloned()
        .unwrap_or_else(|| UpdateMeta {
            uuid,
            ..Default::default()
        }))
}

fn applied_uuids(db: &Db, host: &Ref) -> Result<Vec<String>, XapiError> {
    let h = get(db, "host", host)?;
    Ok(refs(&h, "updates")
        .iter()
        .filter(|u| db.exists("pool_update", u))
        .map(|u| str_field(db, "pool_update", u, "uuid"))
        .collect())
}

fn check(db: &Db, update: &Ref, host: &Ref) -> Result<UpdateMeta, XapiError> {
    let m = meta_of(db, update)?;
    let h = get(db, "host", host)?;
    let u = &update.0;
    if refs(&h, "updates").contains(update) {
        return Err(XapiError::new("UPDATE_ALREADY_APPLIED", [u.clone()]));
    }
    if !m.product_version.is_empty() {
        let installed = h
            .get("software_version")
            .and_then(|v| v.get("product_version"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if installed != m.product_version {
            return Err(XapiError::new(
                "UPDATE_PRECHECK_FAILED_WRONG_SERVER_VERSION",
                [u.clone(), installed, m.product_version.clone()],
            ));
        }
    }
    let applied = applied_uuids(db, host)?;
    if let Some(missing) = m.requires.iter().find(|r| !applied.contains(r)) {
        return Err(XapiError::new(
            "UPDATE_PRECHECK_FAILED_PREREQUISITE_MISSING",
            [u.clone(), missing.clone()],
        ));
    }
    if let Some(c) = m.conflicts.iter().find(|c| applied.contains(c)) {
        return Err(XapiError::new(
            "UPDATE_PRECHECK_FAILED_CONFLICT_PRESENT",
            [u.clone(), c.clone()],
        ));
    }
    Ok(m)
}

fn precheck(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let (update, host) = (pp.r(0)?, pp.r(1)?);
    ctx.pool
        .read(|db| check(db, &update, &host))
        .map(|_| json!("ok"))
}

fn add_ref(db: &mut Db, class: &str, r: &Ref, field: &str, v: &Ref) -> Result<(), XapiError> {
    let mut cur = refs(&get(db, class, r)?, field);
    if !cur.contains(v) {
        cur.push(v.clone());
        let vals: Vec<Value> = cur.iter().map(jr).collect();
        db.set_field(class, r, field, Value::Array(vals))?;
    }
    Ok(())
}

fn apply_on(db: &mut Db, update: &Ref, host: &Ref) -> Result<(), XapiError> {
    let m = check(db, update, host)?;
    if m.apply_fails {
        return Err(XapiError::new(
            "UPDATE_APPLY_FAILED",
            [format!("applying {} failed (simulated)", m.name_label)],
        ));
    }
    add_ref(db, "pool_update", update, "hosts", host)?;
    add_ref(db, "host", host, "updates", update)?;
    if m.after_apply_guidance.iter().any(|g| g == "restartHost") {
        add_ref(db, "host", host, "updates_requiring_reboot", update)?;
    }
    db.set_field(
        "host",
        host,
        "last_software_update",
        json!(super::helpers::now()),
    )?;
    Ok(())
}

fn apply(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let (update, host) = (pp.r(0)?, pp.r(1)?);
    ctx.pool
        .write(|db| apply_on(db, &update, &host))
        .map(|_| void())
}

fn pool_apply(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let update = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.write(|db| {
        let rec = get(db, "pool_update", &update)?;
        let done = refs(&rec, "hosts");
        let todo: Vec<Ref> = db
            .refs("host")
            .into_iter()
            .filter(|h| !done.contains(h))
            .collect();
        if todo.is_empty() {
            return Err(XapiError::new(
                "UPDATE_ALREADY_APPLIED_IN_POOL",
                [update.0.clone()],
            ));
        }
        let mut failed = Vec::new();
        for h in &todo {
            if let Err(e) = apply_on(db, &update, h) {
                tracing::debug!("pool_apply on {}: {}", h.0, e.code);
                failed.push(h.0.clone());
            }
        }
        if failed.is_empty() {
            Ok(void())
        } else {
            Err(XapiError::new("UPDATE_POOL_APPLY_FAILED", failed))
        }
    })
}

fn drop_vdi(db: &mut Db, update: &Ref) -> Result<(), XapiError> {
    let rec = get(db, "pool_update", update)?;
    let vdi = super::helpers::rf(&rec, "vdi");
    if db.exists("VDI", &vdi) {
        super::vdi::destroy_vdi(db, &vdi)?;
    }
    db.set_field("pool_update", update, "vdi", json!("OpaqueRef:NULL"))
}

fn pool_clean(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let update = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.write(|db| drop_vdi(db, &update)).map(|_| void())
}

fn destroy(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let update = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.write(|db| {
        let rec = get(db, "pool_update", &update)?;
        if !refs(&rec, "hosts").is_empty() {
            return Err(XapiError::code("UPDATE_IS_APPLIED"));
        }
        drop_vdi(db, &update)?;
        db.destroy("pool_update", &update)?;
        side().lock().remove(&update.0);
        Ok(void())
    })
}

// --- updater.py (XCP-ng) -------------------------------------------------------------------------------------

fn packages() -> &'static Mutex<HashMap<String, Vec<Value>>> {
    static PKGS: OnceLock<Mutex<HashMap<String, Vec<Value>>>> = OnceLock::new();
    PKGS.get_or_init(Default::default)
}

/// Set the packages `updater.py check_update` reports as pending on the host with this uuid (sim control API).
/// Each entry should look like XCP-ng's: `{name, version, release, description, changelog, url, size, license}`.
pub fn set_pending_packages(host_uuid: &str, pkgs: Vec<Value>) {
    packages().lock().insert(host_uuid.to_owned(), pkgs);
}

/// The packages pending on a host.
pub fn pending_packages(host_uuid: &str) -> Vec<Value> {
    packages()
        .lock()
        .get(host_uuid)
        .cloned()
        .unwrap_or_default()
}

/// `updater.py check_update`: the pending list as a JSON string.
pub(crate) fn updater_check(host_uuid: &str) -> Value {
    json!(Value::Array(pending_packages(host_uuid)).to_string())
}

/// `updater.py update`: install everything pending (clears the list).
pub(crate) fn updater_update(host_uuid: &str) -> Value {
    packages().lock().remove(host_uuid);
    json!("")
}
