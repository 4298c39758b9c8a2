//! Unit tests: in-memory handshakes (no sockets) against rcgen certificates.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConnection, ServerConfig, ServerConnection};

use crate::*;

/// A self-signed certificate for `localhost` and its PKCS#8 key.
fn self_signed() -> (CertificateDer<'static>, PrivateKeyDer<'static>, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    (ck.cert.der().clone(), key, ck.cert.pem())
}

/// Runs a full handshake in memory; the first error of either side.
fn handshake(
    client: Arc<ClientConfig>,
    name: &str,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<(), rustls::Error> {
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    let mut c = ClientConnection::new(client, ServerName::try_from(name.to_owned()).unwrap())?;
    let mut s = ServerConnection::new(Arc::new(server))?;
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets()?;
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets()?;
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn self_signed_accepted_when_unauthorized_allowed() {
    let (cert, key, _) = self_signed();
    let cfg = client_config(true, &[]).unwrap();
    handshake(cfg, "localhost", cert, key).unwrap();
}

#[test]
fn unauthorized_allowed_accepts_any_name() {
    let (cert, key, _) = self_signed();
    let cfg = client_config(true, &[]).unwrap();
    handshake(cfg, "elsewhere.example", cert, key).unwrap();
}

#[test]
fn self_signed_rejected_otherwise() {
    let (cert, key, _) = self_signed();
    let cfg = client_config(false, &[]).unwrap();
    let err = handshake(cfg, "localhost", cert, key).unwrap_err();
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(_)),
        "{err:?}"
    );
}

#[test]
fn extra_root_trusted() {
    let (cert, key, _) = self_signed();
    let cfg = client_config(false, std::slice::from_ref(&cert)).unwrap();
    handshake(cfg, "localhost", cert, key).unwrap();
}

#[test]
fn extra_root_does_not_excuse_wrong_name() {
    let (cert, key, _) = self_signed();
    let cfg = client_config(false, std::slice::from_ref(&cert)).unwrap();
    let err = handshake(cfg, "elsewhere.example", cert, key).unwrap_err();
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(_)),
        "{err:?}"
    );
}

#[test]
fn exact_roots_trusted() {
    let (cert, key, pem) = self_signed();
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem(pem.as_bytes()).unwrap() {
        roots.add(c).unwrap();
    }
    let cfg = client_config_with_roots(false, roots).unwrap();
    handshake(cfg, "localhost", cert, key).unwrap();
}

#[test]
fn bad_extra_root_is_an_error() {
    let bad = CertificateDer::from(vec![1u8, 2, 3]);
    let err = client_config(false, std::slice::from_ref(&bad)).unwrap_err();
    assert!(matches!(err, TlsError::BadRoot(_)), "{err:?}");
    assert!(err.to_string().starts_with("bad extra root certificate"));
    // Not parsed at all when any certificate is accepted.
    assert!(client_config(true, &[bad]).is_ok());
}

#[test]
fn webpki_store_is_populated() {
    assert!(!webpki_root_store().is_empty());
}

#[test]
fn pem_parsing() {
    let (cert, _, pem) = self_signed();
    assert_eq!(certs_from_pem(pem.as_bytes()).unwrap(), vec![cert]);
    assert!(matches!(
        certs_from_pem(b"not a pem"),
        Err(TlsError::NoCertificate)
    ));
    let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        certs_from_pem(broken.as_bytes()),
        Err(TlsError::Pem(_))
    ));
}

#[test]
fn pem_files() {
    let (cert, _, pem) = self_signed();
    let path = std::env::temp_dir().join(format!("xo-tls-test-{}.pem", std::process::id()));
    std::fs::write(&path, pem).unwrap();
    let read = read_pem_certs(&path);
    std::fs::remove_file(&path).ok();
    assert_eq!(read.unwrap(), vec![cert]);
    let missing = read_pem_certs(std::path::Path::new("/nonexistent/xo-tls.pem")).unwrap_err();
    assert!(matches!(missing, TlsError::Read { .. }), "{missing:?}");
    assert!(missing.to_string().contains("/nonexistent/xo-tls.pem"));
}
