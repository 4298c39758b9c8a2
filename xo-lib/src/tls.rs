//! TLS client configuration (rustls with the ring provider, via `xo-tls`): Mozilla roots from `webpki-roots`, or,
//! with `allow_unauthorized`, any certificate (self-signed XO appliances) while still checking signatures.

use std::sync::Arc;

use rustls::ClientConfig;

/// Builds the client configuration.
pub(crate) fn client_config(allow_unauthorized: bool) -> Result<Arc<ClientConfig>, String> {
    xo_tls::client_config(allow_unauthorized, &[]).map_err(|e| e.to_string())
}
