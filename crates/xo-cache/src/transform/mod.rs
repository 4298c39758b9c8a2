//! Pure XAPI record → XO object transforms, one module per type family, mirroring xo-server's
//! `xapi-object-to-xo.mjs`. Cross-object data comes through a [`Ctx`] (a [`Lookup`] that records reads).
//!
//! JS `undefined` is modelled as an absent key (omitted on the wire); links to NULL/unknown refs are absent
//! for single links and `null` inside arrays, exactly as `JSON.stringify` renders XO's objects.

mod host;
mod message;
mod misc;
mod network;
mod pool;
mod sr;
mod task;
mod vbd;
mod vdi;
mod vm;
pub mod vm_networks;

use serde_json::Value;

use crate::jsval::Record;
use crate::lookup::{Ctx, Deps, Lookup};

/// The XAPI classes (lower-case) that produce XO objects.
pub const TRANSFORMED_CLASSES: &[&str] = &[
    "pool",
    "host",
    "vm",
    "sr",
    "pbd",
    "pif",
    "vdi",
    "vbd",
    "vif",
    "network",
    "message",
    "task",
    "host_patch",
    "pool_patch",
    "pci",
    "pgpu",
    "vgpu",
    "gpu_group",
    "vgpu_type",
    "vtpm",
    "pusb",
    "vusb",
    "usb_group",
    "bond",
    "sm",
];

/// Whether records of `class` (any case) become XO objects.
pub fn is_transformed(class: &str) -> bool {
    TRANSFORMED_CLASSES
        .iter()
        .any(|c| c.eq_ignore_ascii_case(class))
}

/// XAPI's proper class name for the default `type` (`xen-api`'s `$type`).
fn xapi_type_name(lc: &str) -> &str {
    match lc {
        "pool" => "pool",
        "host" => "host",
        "network" => "network",
        "message" => "message",
        "task" => "task",
        other => other,
    }
}

/// Transform one record into an XO object (a JSON object), reading other records through `ctx`.
/// `None` when the class has no XO counterpart or the pool record is not known yet.
pub fn transform(class: &str, r: &str, rec: &Record, ctx: &Ctx<'_>) -> Option<Record> {
    let lc = class.to_ascii_lowercase();
    let pool_uuid = ctx.pool_uuid()?.to_owned();
    let mut obj = match lc.as_str() {
        "pool" => pool::pool(rec, ctx),
        "host" => host::host(rec, ctx),
        "vm" => vm::vm(rec, ctx, &pool_uuid),
        "sr" => sr::sr(rec, ctx),
        "pbd" => sr::pbd(rec, ctx),
        "pif" => network::pif(rec, ctx),
        "vdi" => vdi::vdi(rec, ctx),
        "vbd" => vbd::vbd(rec, ctx),
        "vif" => network::vif(rec, ctx),
        "network" => network::network(rec, ctx),
        "message" => message::message(rec),
        "task" => task::task(rec, r, ctx),
        "host_patch" => misc::host_patch(rec, ctx),
        "pool_patch" => misc::pool_patch(rec, r, ctx),
        "pci" => misc::pci(rec, ctx),
        "pgpu" => misc::pgpu(rec, ctx),
        "vgpu" => misc::vgpu(rec, ctx),
        "gpu_group" => misc::gpu_group(rec, ctx),
        "vgpu_type" => misc::vgpu_type(rec, ctx),
        "vtpm" => misc::vtpm(rec, ctx),
        "pusb" => misc::pusb(rec, ctx),
        "vusb" => misc::vusb(rec, ctx),
        "usb_group" => misc::usb_group(rec, ctx),
        "bond" => misc::bond(rec, ctx),
        "sm" => misc::sm(rec),
        _ => return None,
    };
    let uuid = rec.get("uuid").and_then(Value::as_str);
    if !obj.contains_key("id") {
        obj.insert("id".into(), Value::String(uuid.unwrap_or(r).to_owned()));
    }
    if !obj.contains_key("type") {
        obj.insert("type".into(), Value::String(xapi_type_name(&lc).to_owned()));
    }
    if let Some(u) = rec.get("uuid") {
        if !obj.contains_key("uuid") {
            obj.insert("uuid".into(), u.clone());
        }
    }
    obj.insert("$pool".into(), Value::String(pool_uuid.clone()));
    obj.insert("$poolId".into(), Value::String(pool_uuid));
    obj.insert("_xapiRef".into(), Value::String(r.to_owned()));
    for v in obj.values_mut() {
        crate::object::js_numbers(v);
    }
    Some(obj)
}

/// Transform with a plain lookup; returns the XO object as a JSON value.
pub fn to_xo(class: &str, r: &str, rec: &Record, lookup: &dyn Lookup) -> Option<Value> {
    let ctx = Ctx::new(lookup);
    transform(class, r, rec, &ctx).map(Value::Object)
}

/// Transform and also return what was read (used by the store for incremental re-derivation).
pub fn to_xo_with_deps(
    class: &str,
    r: &str,
    rec: &Record,
    lookup: &dyn Lookup,
) -> (Option<Record>, Deps) {
    let ctx = Ctx::new(lookup);
    let obj = transform(class, r, rec, &ctx);
    (obj, ctx.into_deps())
}
