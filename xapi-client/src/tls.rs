//! rustls client configuration: webpki roots plus extra roots, or "allow unauthorized" (any certificate,
//! signatures still checked) — the shared policy of `xo-tls`.

use std::sync::Arc;

use xo_tls::CertificateDer;

use crate::{Error, Result};

/// Build the client TLS configuration (`extra_roots` are DER certificates).
pub(crate) fn client_config(
    allow_unauthorized: bool,
    extra_roots: &[Vec<u8>],
) -> Result<Arc<rustls::ClientConfig>> {
    let roots: Vec<CertificateDer<'_>> = extra_roots
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    xo_tls::client_config(allow_unauthorized, &roots)
        .map_err(|e| Error::Config(format!("TLS: {e}")))
}
