//! rustls client configurations (ring provider, via `xo-tls`) for `ldaps://` and StartTLS: the configured CAs
//! (or the Mozilla roots), or no certificate check at all when `checkCertificate` is off.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use xo_tls::TlsError;

use crate::error::LdapAuthError;

/// Builds the client configuration of a domain. `ca_files` are PEM file paths (read now: an unreadable or
/// certificate-less file is a configuration error).
pub fn client_config(
    check_certificate: bool,
    ca_files: &[String],
) -> Result<Arc<ClientConfig>, LdapAuthError> {
    let roots = if ca_files.is_empty() {
        xo_tls::webpki_root_store()
    } else {
        let mut roots = RootCertStore::empty();
        for path in ca_files {
            let invalid = |e: &dyn std::fmt::Display| {
                LdapAuthError::Config(format!("invalid certificate authority {path}: {e}"))
            };
            let certs = xo_tls::read_pem_certs(Path::new(path)).map_err(|e| match e {
                TlsError::Read { source, .. } => LdapAuthError::Config(format!(
                    "cannot read certificate authority {path}: {source}"
                )),
                TlsError::NoCertificate => LdapAuthError::Config(format!(
                    "no certificate in certificate authority file {path}"
                )),
                TlsError::Pem(e) => invalid(&e),
                other => invalid(&other),
            })?;
            for cert in certs {
                roots.add(cert).map_err(|e| invalid(&e))?;
            }
        }
        roots
    };
    xo_tls::client_config_with_roots(!check_certificate, roots)
        .map_err(|e| LdapAuthError::Config(format!("TLS: {e}")))
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
