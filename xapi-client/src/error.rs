//! The client's error type: API failures (`XapiError`), transport, TLS, timeouts and codec errors.

use std::time::Duration;

pub use xapi_types::XapiError;

/// Everything a call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The server answered with an API-level failure (`[code, params…]`).
    #[error("XAPI error: {0}")]
    Xapi(#[from] XapiError),
    /// Connection refused/reset, DNS, I/O, or an HTTP exchange that broke mid-way.
    #[error("transport error: {0}")]
    Transport(String),
    /// The TLS handshake failed (e.g. an untrusted certificate without `allow_unauthorized`).
    #[error("TLS error: {0}")]
    Tls(String),
    /// The call (connect + request + response) did not complete in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The server answered with a non-200 HTTP status where an RPC answer was expected.
    #[error("HTTP status {status} for {path}")]
    Http { status: u16, path: String },
    /// The body could not be decoded (malformed XML/JSON, unexpected structure, value not of the schema type).
    #[error("codec error: {0}")]
    Codec(#[from] xapi_types::CodecError),
    /// The client's URL or options are unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A task being awaited disappeared (destroyed by someone else) before finishing.
    #[error("task {0} vanished before completion")]
    TaskVanished(String),
}

impl Error {
    /// The XAPI error code if this is an API failure.
    pub fn xapi_code(&self) -> Option<&str> {
        match self {
            Error::Xapi(e) => Some(&e.code),
            _ => None,
        }
    }

    /// True for failures of the connection itself (worth a reconnect with backoff).
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            Error::Transport(_) | Error::Tls(_) | Error::Timeout(_) | Error::Http { .. }
        )
    }

    pub(crate) fn structure(msg: impl Into<String>) -> Self {
        Error::Codec(xapi_types::CodecError::Structure(msg.into()))
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
