//! API errors with XO's codes and shapes (`xo-common/api-errors.js`) and JSON-RPC protocol errors.

use serde_json::{json, Value};

/// An error answered to a JSON-RPC call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// An XO or JSON-RPC error: sent as is to every caller.
    #[error("{message} (code {code})")]
    Rpc {
        /// XO code (0..28) or JSON-RPC code (-32xxx).
        code: i64,
        /// Message.
        message: String,
        /// Optional data.
        data: Option<Value>,
    },
    /// Any other failure: admins get `{-32000, message, data}`, everybody else
    /// `{-32000, "unknown error from the peer"}`.
    #[error("{message}")]
    Internal {
        /// Message.
        message: String,
        /// Serialised details for admins.
        data: Option<Value>,
    },
}

impl ApiError {
    fn rpc(code: i64, message: impl Into<String>, data: Option<Value>) -> Self {
        Self::Rpc {
            code,
            message: message.into(),
            data,
        }
    }

    /// A plain error (masked for non-admins).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal {
            message: message.into(),
            data: None,
        }
    }

    /// Code 0.
    pub fn not_implemented() -> Self {
        Self::rpc(0, "not implemented", None)
    }

    /// Code 1: `no such <type> <id>`.
    pub fn no_such_object(id: &str, object_type: Option<&str>) -> Self {
        let message = format!("no such {} {id}", object_type.unwrap_or("object"));
        let mut data = json!({ "id": id });
        if let Some(t) = object_type {
            data["type"] = t.into();
        }
        Self::rpc(1, message, Some(data))
    }

    /// Code 2 (`permission` and the object are omitted when `None`, as JSON drops `undefined`).
    pub fn unauthorized(
        permission: Option<&str>,
        object_id: Option<&str>,
        object_type: Option<&str>,
    ) -> Self {
        let mut data = serde_json::Map::new();
        if let Some(p) = permission {
            data.insert("permission".into(), p.into());
        }
        let mut object = serde_json::Map::new();
        if let Some(id) = object_id {
            object.insert("id".into(), id.into());
        }
        if let Some(t) = object_type {
            object.insert("type".into(), t.into());
        }
        data.insert("object".into(), Value::Object(object));
        Self::rpc(2, "not enough permissions", Some(Value::Object(data)))
    }

    /// Code 3.
    pub fn invalid_credentials() -> Self {
        Self::rpc(3, "invalid credentials", None)
    }

    /// Code 5.
    pub fn forbidden_operation(operation: &str, reason: &str) -> Self {
        Self::rpc(
            5,
            format!("forbidden operation: {operation}"),
            Some(json!({ "operation": operation, "reason": reason })),
        )
    }

    /// Code 10 from schema validation (ajv error objects in `data.errors`).
    pub fn invalid_parameters(errors: Vec<Value>) -> Self {
        Self::rpc(10, "invalid parameters", Some(json!({ "errors": errors })))
    }

    /// Code 10 with a custom message.
    pub fn invalid_parameters_message(message: impl Into<String>) -> Self {
        Self::rpc(10, message, Some(json!({})))
    }

    /// Code 16.
    pub fn object_already_exists(object_id: &str, object_type: &str) -> Self {
        Self::rpc(
            16,
            format!("{object_type} already exists"),
            Some(json!({ "objectId": object_id, "objectType": object_type })),
        )
    }

    /// -32601.
    pub fn method_not_found(name: &str) -> Self {
        Self::rpc(
            -32601,
            format!("method not found: {name}"),
            Some(Value::String(name.to_owned())),
        )
    }

    /// -32700.
    pub fn invalid_json() -> Self {
        Self::rpc(-32700, "invalid JSON", None)
    }

    /// -32600.
    pub fn invalid_request(why: &str) -> Self {
        Self::rpc(
            -32600,
            "invalid request",
            Some(Value::String(why.to_owned())),
        )
    }

    /// The JSON-RPC `error` member as seen by a caller (`admin` decides whether internal errors are shown).
    pub fn to_json(&self, admin: bool) -> Value {
        match self {
            Self::Rpc {
                code,
                message,
                data,
            } => {
                let mut v = json!({ "code": code, "message": message });
                if let Some(d) = data {
                    v["data"] = d.clone();
                }
                v
            }
            Self::Internal { message, data } if admin => json!({
                "code": -32000,
                "message": message,
                "data": data.clone().unwrap_or_else(|| json!({ "message": message, "name": "Error" })),
            }),
            Self::Internal { .. } => {
                json!({ "code": -32000, "message": "unknown error from the peer" })
            }
        }
    }

    /// The code this error carries on the wire.
    pub fn code(&self) -> i64 {
        match self {
            Self::Rpc { code, .. } => *code,
            Self::Internal { .. } => -32000,
        }
    }
}

impl From<xo_store::StoreError> for ApiError {
    fn from(e: xo_store::StoreError) -> Self {
        ApiError::internal(e.to_string())
    }
}
