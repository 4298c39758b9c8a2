//! Errors plugins return; the server maps them to XO API errors.

use serde_json::{json, Value};

/// A plugin failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginError {
    /// An XO API error with its code (sent as is to callers).
    #[error("{message} (code {code})")]
    Api {
        /// XO code.
        code: i64,
        /// Message.
        message: String,
        /// Optional data.
        data: Option<Value>,
    },
    /// Any other failure (shown to admins only, masked for other users).
    #[error("{0}")]
    Failed(String),
}

impl PluginError {
    /// A plain failure.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }

    /// Code 1 `no such <type> <id>`.
    pub fn no_such_object(id: &str, object_type: &str) -> Self {
        Self::Api {
            code: 1,
            message: format!("no such {object_type} {id}"),
            data: Some(json!({ "id": id, "type": object_type })),
        }
    }

    /// Code 2 `not enough permissions`.
    pub fn unauthorized(permission: Option<&str>, object_id: Option<&str>) -> Self {
        let mut data = json!({ "object": {} });
        if let Some(p) = permission {
            data["permission"] = p.into();
        }
        if let Some(id) = object_id {
            data["object"]["id"] = id.into();
        }
        Self::Api {
            code: 2,
            message: "not enough permissions".into(),
            data: Some(data),
        }
    }

    /// Code 10 with a message.
    pub fn invalid_parameters(message: impl Into<String>) -> Self {
        Self::Api {
            code: 10,
            message: message.into(),
            data: Some(json!({})),
        }
    }

    /// The XO code this error carries on the wire (`-32000` for plain failures).
    pub fn code(&self) -> i64 {
        match self {
            Self::Api { code, .. } => *code,
            Self::Failed(_) => -32000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_carry_xo_codes_and_shapes() {
        let e = PluginError::no_such_object("x", "plugin");
        assert_eq!(e.code(), 1);
        assert_eq!(e.to_string(), "no such plugin x (code 1)");
        let e = PluginError::unauthorized(Some("view"), Some("vm"));
        assert_eq!(
            e,
            PluginError::Api {
                code: 2,
                message: "not enough permissions".into(),
                data: Some(json!({"permission": "view", "object": {"id": "vm"}})),
            }
        );
        let e = PluginError::unauthorized(None, None);
        assert!(
            matches!(e, PluginError::Api { data: Some(ref d), .. } if *d == json!({"object": {}}))
        );
        assert_eq!(PluginError::invalid_parameters("bad").code(), 10);
        assert_eq!(PluginError::failed("boom").code(), -32000);
    }
}
