//! Why a TLS client configuration could not be built.

use std::path::PathBuf;

/// A TLS configuration failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused the protocol/provider set-up.
    #[error("{0}")]
    Protocol(rustls::Error),
    /// An extra root certificate is not a usable trust anchor.
    #[error("bad extra root certificate: {0}")]
    BadRoot(rustls::Error),
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}", path = path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// PEM data is malformed.
    #[error("invalid PEM: {0}")]
    Pem(std::io::Error),
    /// PEM data holds no `CERTIFICATE` section.
    #[error("no certificate in PEM data")]
    NoCertificate,
}
