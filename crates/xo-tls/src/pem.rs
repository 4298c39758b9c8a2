//! Certificates out of PEM data or PEM files.

use std::path::Path;

use rustls::pki_types::CertificateDer;

use crate::TlsError;

/// Every `CERTIFICATE` section of `pem`, in order. Malformed PEM is [`TlsError::Pem`]; data without any
/// certificate is [`TlsError::NoCertificate`].
pub fn certs_from_pem(mut pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::Pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

/// [`certs_from_pem`] on the contents of the file at `path` (an unreadable file is [`TlsError::Read`]).
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    certs_from_pem(&pem)
}
