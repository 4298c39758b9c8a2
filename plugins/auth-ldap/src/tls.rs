//! rustls client configurations (ring provider) for `ldaps://` and StartTLS: the configured CAs (or the
//! Mozilla roots), or no certificate check at all when `checkCertificate` is off.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::LdapAuthError;

/// Builds the client configuration of a domain. `ca_files` are PEM file paths (read now: an unreadable or
/// certificate-less file is a configuration error).
pub fn client_config(
    check_certificate: bool,
    ca_files: &[String],
) -> Result<Arc<ClientConfig>, LdapAuthError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| LdapAuthError::Config(format!("TLS: {e}")))?;
    let mut roots = RootCertStore::empty();
    if ca_files.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        for path in ca_files {
            let pem = std::fs::read(path).map_err(|e| {
                LdapAuthError::Config(format!("cannot read certificate authority {path}: {e}"))
            })?;
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    LdapAuthError::Config(format!("invalid certificate authority {path}: {e}"))
                })?;
            if certs.is_empty() {
                return Err(LdapAuthError::Config(format!(
                    "no certificate in certificate authority file {path}"
                )));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    LdapAuthError::Config(format!("invalid certificate authority {path}: {e}"))
                })?;
            }
        }
    }
    let config = if check_certificate {
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Accepts any server certificate (`checkCertificate: false`) but still checks handshake signatures.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors() {
        assert!(client_config(true, &[]).is_ok());
        assert!(client_config(false, &[]).is_ok());
        let missing = client_config(true, &["/nonexistent/ca.pem".into()]);
        assert!(matches!(missing, Err(LdapAuthError::Config(m)) if m.contains("cannot read")));
        let dir = std::env::temp_dir().join(format!("xo-ldap-empty-{}", std::process::id()));
        std::fs::write(&dir, "not a pem").unwrap();
        let empty = client_config(true, &[dir.to_string_lossy().into_owned()]);
        std::fs::remove_file(&dir).ok();
        assert!(matches!(empty, Err(LdapAuthError::Config(m)) if m.contains("no certificate")));
    }
}
