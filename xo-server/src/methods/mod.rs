//! The core API methods (session, system, user, group, token, server, api, xo), declared for the registry.

mod api;
mod group;
mod server;
mod session;
mod system;
mod token;
mod user;
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
