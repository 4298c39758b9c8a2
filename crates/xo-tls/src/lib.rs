//! Shared rustls client configuration (ring provider): the Mozilla roots from `webpki-roots` plus extra roots, or
//! "allow unauthorized" (any certificate chain and name, handshake signatures still verified), and PEM loading.
//!
//! This crate knows nothing of XAPI or XO: it is plain TLS policy, used by every client that talks TLS.

mod config;
mod error;
mod pem;
mod verifier;

pub use config::{client_config, client_config_with_roots, provider, webpki_root_store};
pub use error::TlsError;
pub use pem::{certs_from_pem, read_pem_certs};
pub use verifier::AcceptAnyCert;

/// The rustls types callers need to name (certificates, configurations, root stores).
pub use rustls::{pki_types::CertificateDer, ClientConfig, RootCertStore};

#[cfg(test)]
mod tests;
