//! Typed errors: XO/JSON-RPC errors carrying the server's `code`, `message` and `data`, and the
//! connection, protocol and transfer failures of the client itself.

use serde_json::Value;

/// Well-known error codes (`xo-common/api-errors.js` and JSON-RPC).
pub mod codes {
    /// `not implemented`.
    pub const NOT_IMPLEMENTED: i64 = 0;
    /// `no such object`.
    pub const NO_SUCH_OBJECT: i64 = 1;
    /// `not enough permissions`.
    pub const UNAUTHORIZED: i64 = 2;
    /// `invalid credentials`.
    pub const INVALID_CREDENTIALS: i64 = 3;
    /// `forbidden operation`.
    pub const FORBIDDEN_OPERATION: i64 = 5;
    /// `authentication failed` (towards a XAPI host).
    pub const AUTHENTICATION_FAILED: i64 = 8;
    /// `invalid parameters` (`data.errors` holds the schema errors).
    pub const INVALID_PARAMETERS: i64 = 10;
    /// `VM state is … but should be …`.
    pub const VM_BAD_POWER_STATE: i64 = 13;
    /// JSON-RPC: invalid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// JSON-RPC: invalid request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// JSON-RPC: method not found (`data` = the method name).
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// JSON-RPC: generic server error (`unknown error from the peer` for non-admins).
    pub const SERVER_ERROR: i64 = -32000;
}

/// An error answered by xo-server to a call: XO's `{code, message, data}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct ApiError {
    /// XO code (0‥28) or JSON-RPC code (−32xxx).
    pub code: i64,
    /// Human-readable message.
    pub message: String,
    /// Optional details (e.g. `{errors:[…]}` for code 10, `{id, type}` for code 1).
    pub data: Option<Value>,
}

impl ApiError {
    /// Parses the `error` member of a JSON-RPC response (lenient: missing members get defaults).
    pub fn from_json(v: &Value) -> Self {
        Self {
            code: v
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or(codes::SERVER_ERROR),
            message: v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_owned(),
            data: v.get("data").cloned(),
        }
    }

    /// `invalid credentials` (3) or `authentication failed` (8).
    pub fn is_authentication(&self) -> bool {
        matches!(
            self.code,
            codes::INVALID_CREDENTIALS | codes::AUTHENTICATION_FAILED
        )
    }
}

/// Everything that can go wrong with xo-lib.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server URL cannot be used.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// TCP, TLS or WebSocket handshake failure.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// URL tried.
        url: String,
        /// Cause.
        reason: String,
    },
    /// The connection was lost while the call was pending (or the client was closed).
    #[error("connection closed")]
    ConnectionClosed,
    /// No connection is open right now (e.g. while reconnecting).
    #[error("not connected")]
    NotConnected,
    /// The server answered the call with an error.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// `session.*` methods go through [`crate::Xo::sign_in`] and friends, not `call`.
    #[error("session.*() methods are disabled from this interface ({0})")]
    SessionMethod(String),
    /// The call did not complete within the configured timeout.
    #[error("call timed out")]
    Timeout,
    /// A result did not have the expected shape (typed helpers).
    #[error("unexpected result: {0}")]
    Decode(String),
    /// An HTTP transfer answered with a non-2xx status.
    #[error("{status} {reason}")]
    HttpStatus {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
        /// Start of the body (at most 64 KiB).
        body: String,
    },
    /// An HTTP transfer failed at the protocol/network level.
    #[error("transfer failed: {0}")]
    Transfer(String),
    /// Local I/O (file being uploaded or downloaded).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The XO/JSON-RPC code when the server answered with an error.
    pub fn code(&self) -> Option<i64> {
        match self {
            Error::Api(e) => Some(e.code),
            _ => None,
        }
    }

    /// The server's error, if that is what this is.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }

    /// Connection-level failure (could not connect, lost, not connected, transfer network error).
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::ConnectionClosed
                | Error::NotConnected
                | Error::Transfer(_)
        )
    }

    /// Authentication failure (invalid credentials, expired token).
    pub fn is_authentication(&self) -> bool {
        self.api().is_some_and(ApiError::is_authentication)
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_error_from_json() {
        let e = ApiError::from_json(&json!({"code": 3, "message": "invalid credentials"}));
        assert_eq!(e.code, 3);
        assert!(e.is_authentication());
        assert_eq!(e.to_string(), "invalid credentials (code 3)");
        let e = ApiError::from_json(&json!("garbage"));
        assert_eq!(e.code, codes::SERVER_ERROR);
        assert_eq!(Error::from(e).code(), Some(-32000));
        assert!(Error::ConnectionClosed.is_connection());
        assert!(!Error::Timeout.is_authentication());
    }
}
