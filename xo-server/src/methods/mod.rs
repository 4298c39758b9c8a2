//! The core API methods (session, system, user, group, token, server, api, xo) and the object methods
//! acting on XAPI (vm, host, pool, sr, vdi, vbd, vif, network, tag, message, task), declared for the registry.

mod api;
mod disk_transfer;
mod fixed_lists;
mod group;
mod host;
mod host_health;
mod message;
mod multipart;
mod network;
pub mod patches;
mod pbd;
mod pif;
mod plugin;
mod pool;
pub mod resolve;
mod server;
mod session;
mod sr;
mod sr_create;
mod stats;
mod system;
mod tag;
mod tag_config;
mod task;
mod token;
mod upload_body;
mod user;
mod vbd;
mod vdi;
mod vif;
mod vif_set;
mod vm;
mod vm_cd_boot;
mod vm_disks;
mod vm_edit;
mod vm_migrate;
mod vm_transfer;
mod xo;

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::registry::Method;

pub use token::parse_duration_ms;

/// Every core method.
pub fn core_methods() -> Vec<Method> {
    let mut v = Vec::new();
    v.extend(session::methods());
    v.extend(system::methods());
    v.extend(user::methods());
    v.extend(group::methods());
    v.extend(token::methods());
    v.extend(server::methods());
    v.extend(api::methods());
    v.extend(xo::methods());
    v.extend(plugin::methods());
    v.extend(object_methods());
    v
}

/// The object methods acting on XAPI (vm, host, pool, sr, vdi/disk, vbd, vif, network, tag, message,
/// task); their `resolve` entries are in [`resolve::resolve_table`].
pub fn object_methods() -> Vec<Method> {
    let mut v = Vec::new();
    v.extend(vm::methods());
    v.extend(vm_cd_boot::methods());
    v.extend(host::methods());
    v.extend(host_health::methods());
    v.extend(pool::methods());
    v.extend(sr::methods());
    v.extend(sr_create::methods());
    v.extend(vdi::methods());
    v.extend(vbd::methods());
    v.extend(vif::methods());
    v.extend(vif_set::methods());
    v.extend(network::methods());
    v.extend(fixed_lists::methods());
    v.extend(pbd::methods());
    v.extend(pif::methods());
    v.extend(tag::methods());
    v.extend(tag_config::methods());
    v.extend(message::methods());
    v.extend(task::methods());
    v.extend(vm_transfer::methods());
    v.extend(disk_transfer::methods());
    v.extend(stats::methods());
    v.extend(patches::methods());
    v
}

/// A string param (validation already checked its type when the schema declares it).
pub(crate) fn opt_str<'a>(p: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    p.get(key).and_then(Value::as_str)
}

/// A required string param.
pub(crate) fn req_str<'a>(p: &'a Map<String, Value>, key: &str) -> Result<&'a str, ApiError> {
    opt_str(p, key).ok_or_else(|| ApiError::invalid_parameters_message(format!("missing {key}")))
}

/// An optional boolean param.
pub(crate) fn opt_bool(p: &Map<String, Value>, key: &str) -> Option<bool> {
    p.get(key).and_then(Value::as_bool)
}
