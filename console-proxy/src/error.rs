//! Errors of opening or running a console proxy.

/// Why a console proxy could not be set up or broke down.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The console location is not an `http(s)://host[:port]/path?query` URL.
    #[error("invalid console location: {0}")]
    InvalidLocation(String),
    /// The TCP connection to the host failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// TLS set-up or handshake failed (e.g. an untrusted certificate without `allow_unauthorized`).
    #[error("TLS: {0}")]
    Tls(String),
    /// Connecting, the handshake or the CONNECT answer took longer than `Limits::connect_timeout`.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The host answered the CONNECT with a non-200 status (401: bad session; 500: unknown console or VM not
    /// running there; 404: console without address).
    #[error("console request refused: HTTP {status} {reason}")]
    Refused { status: u16, reason: String },
    /// The host's answer was not HTTP.
    #[error("malformed answer to CONNECT: {0}")]
    BadResponse(String),
    /// The WebSocket side failed.
    #[error("WebSocket: {0}")]
    WebSocket(String),
    /// The console connection failed mid-stream.
    #[error("console I/O: {0}")]
    Io(#[from] std::io::Error),
}
