//! Building client configurations: trusted roots, or any certificate when unauthorized servers are allowed.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::{AcceptAnyCert, TlsError};

/// The crypto provider every configuration here uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A root store holding the Mozilla roots (`webpki-roots`).
pub fn webpki_root_store() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// A client configuration trusting the Mozilla roots plus `extra_roots` (DER), or, with `allow_unauthorized`,
/// any certificate ([`AcceptAnyCert`]; `extra_roots` are then not used). An extra root that is not a usable trust
/// anchor is [`TlsError::BadRoot`].
pub fn client_config(
    allow_unauthorized: bool,
    extra_roots: &[CertificateDer<'_>],
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    if !allow_unauthorized {
        roots = webpki_root_store();
        for der in extra_roots {
            roots
                .add(der.clone().into_owned())
                .map_err(TlsError::BadRoot)?;
        }
    }
    client_config_with_roots(allow_unauthorized, roots)
}

/// A client configuration trusting exactly `roots`, or, with `allow_unauthorized`, any certificate
/// ([`AcceptAnyCert`]; `roots` are then not used). No ALPN, no client authentication: callers adjust a clone.
pub fn client_config_with_roots(
    allow_unauthorized: bool,
    roots: RootCertStore,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocol)?;
    let config = if allow_unauthorized {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert::new(provider)))
            .with_no_client_auth()
    } else {
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}
