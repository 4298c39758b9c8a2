//! The `API call: <method>` task every JSON-RPC call runs inside (XO `xo-mixins/api.mjs`): properties
//! `{name, method, params, type: 'api.call', userId?}`, forgotten once it succeeds (`clearLogOnSuccess`), so the
//! log keeps the failed and the running calls. Methods XO never logs ([`NO_LOG`]) run without a task. Unlike XO,
//! secret-looking params (passwords, tokens, OTPs, keys) are replaced with `* obfuscated *` before being stored.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{CreateOptions, Task, TaskLog};

/// Methods run without a task (XO's `NO_LOG_METHODS`).
pub const NO_LOG: &[&str] = &[
    "host.stats",
    "pool.listMissingPatches",
    "proxy.getApplianceUpdaterState",
    "pool.getGuestSecureBootReadiness",
    "vm.getSecurebootReadiness",
];

/// What replaces a secret value.
pub const REDACTED: &str = "* obfuscated *";

/// Whether a params key holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("token")
        || k.contains("secret")
        || k.contains("passphrase")
        || k == "otp"
        || k == "encryptionkey"
        || k == "apikey"
        || k == "privatekey"
}

/// A copy of `value` with every secret-keyed value (at any depth) replaced by [`REDACTED`].
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(redact_map(m)),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        other => other.clone(),
    }
}

fn redact_map(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k) && !v.is_null() {
                Value::String(REDACTED.into())
            } else {
                redact(v)
            };
            (k.clone(), v)
        })
        .collect()
}

/// Starts the task of a call to `method` (validated `params`, caller `user_id`); `None` for [`NO_LOG`] methods.
pub fn start(
    log: &Arc<TaskLog>,
    method: &str,
    params: &Map<String, Value>,
    user_id: Option<&str>,
) -> Option<Task> {
    if NO_LOG.contains(&method) {
        return None;
    }
    let mut properties = Map::new();
    properties.insert("method".into(), Value::String(method.to_owned()));
    properties.insert("params".into(), Value::Object(redact_map(params)));
    properties.insert("type".into(), Value::String("api.call".into()));
    if let Some(u) = user_id {
        properties.insert("userId".into(), Value::String(u.to_owned()));
    }
    Some(log.create_with(
        &format!("API call: {method}"),
        properties,
        CreateOptions {
            clear_on_success: true,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let p = json!({"email": "a@b", "password": "pw", "nested": [{"authenticationToken": "t", "x": 1}],
            "otp": "123456", "bind": {"dn": "cn=x", "password": null}});
        assert_eq!(
            redact(&p),
            json!({"email": "a@b", "password": REDACTED, "nested": [{"authenticationToken": REDACTED, "x": 1}],
                "otp": REDACTED, "bind": {"dn": "cn=x", "password": null}})
        );
    }

    #[test]
    fn no_log_methods_get_no_task() {
        let log = TaskLog::new(10);
        assert!(start(&log, "host.stats", &Map::new(), None).is_none());
        let t = start(&log, "vm.start", &Map::new(), Some("u1")).unwrap();
        let v = log.get(t.id()).unwrap();
        assert_eq!(v["properties"]["name"], "API call: vm.start");
        assert_eq!(v["properties"]["type"], "api.call");
        assert_eq!(v["properties"]["userId"], "u1");
    }
}
