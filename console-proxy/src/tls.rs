//! rustls client configuration: webpki roots plus optional extra roots, or "allow unauthorized" (any certificate
//! and name, handshake signatures still verified) — the shared policy of `xo-tls`, as in xapi-client.

use std::sync::Arc;

use xo_tls::CertificateDer;

use crate::ProxyError;

/// Build the client TLS configuration (`extra_roots` are DER certificates).
pub(crate) fn client_config(
    allow_unauthorized: bool,
    extra_roots: &[Vec<u8>],
) -> Result<Arc<rustls::ClientConfig>, ProxyError> {
    let roots: Vec<CertificateDer<'_>> = extra_roots
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    xo_tls::client_config(allow_unauthorized, &roots).map_err(|e| ProxyError::Tls(e.to_string()))
}
