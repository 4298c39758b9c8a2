//! Opening a console tunnel: TCP (and TLS for https) to the host, `CONNECT <path>?…&session_id=… HTTP/1.0`, and
//! the check for a 200 answer. Bytes that arrived after the answer's head are kept for the pump.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::Location;
use crate::{ConsoleTarget, ProxyError};

/// Largest accepted answer head.
const MAX_HEAD: usize = 16 * 1024;

/// A byte stream to the console.
pub trait ConsoleIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ConsoleIo for T {}

/// An open console tunnel: the stream, plus console bytes already read past the HTTP answer.
pub struct Tunnel {
    pub io: Box<dyn ConsoleIo>,
    pub early: Vec<u8>,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("early", &self.early.len())
            .finish()
    }
}

/// Open the tunnel to `target` within `timeout`.
pub async fn open(target: &ConsoleTarget, timeout: Duration) -> Result<Tunnel, ProxyError> {
    let loc = Location::parse(&target.location_url, target.default_port)?;
    match tokio::time::timeout(timeout, open_inner(target, &loc)).await {
        Ok(r) => r,
        Err(_) => Err(ProxyError::Timeout("opening the console")),
    }
}

async fn open_inner(target: &ConsoleTarget, loc: &Location) -> Result<Tunnel, ProxyError> {
    let addr = loc.addr();
    let tcp = TcpStream::connect(&addr)
        .await
        .map_err(|source| ProxyError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let mut io: Box<dyn ConsoleIo> = if loc.tls {
        let cfg = crate::tls::client_config(target.allow_unauthorized, &target.extra_roots)?;
        let name = match loc.host.parse::<std::net::IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
            Err(_) => rustls::pki_types::ServerName::try_from(loc.host.clone())
                .map_err(|e| ProxyError::InvalidLocation(format!("{}: {e}", loc.host)))?,
        };
        let s = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| ProxyError::Tls(e.to_string()))?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    io.write_all(loc.connect_request(&target.session_id).as_bytes())
        .await?;
    io.flush().await?;
    let (head, early) = read_head(&mut io).await?;
    check_status(&head)?;
    tracing::debug!(host = %addr, "console tunnel open");
    Ok(Tunnel { io, early })
}

/// Read up to the end of the answer head; returns (head, bytes after it).
async fn read_head<S: AsyncRead + Unpin>(io: &mut S) -> Result<(String, Vec<u8>), ProxyError> {
    let mut buf = Vec::with_capacity(512);
    let mut tmp = [0u8; 1024];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let early = buf.split_off(i + 4);
            let head = String::from_utf8_lossy(&buf).into_owned();
            return Ok((head, early));
        }
        if buf.len() > MAX_HEAD {
            return Err(ProxyError::BadResponse("answer head too long".into()));
        }
        let n = io.read(&mut tmp).await?;
        if n == 0 {
            return Err(ProxyError::BadResponse(format!(
                "connection closed after {} bytes of answer",
                buf.len()
            )));
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// Accept `HTTP/1.x 200 …`; map other statuses to [`ProxyError::Refused`].
fn check_status(head: &str) -> Result<(), ProxyError> {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    let reason = parts.next().unwrap_or_default().trim().to_owned();
    match status {
        Some(200) if version.starts_with("HTTP/1.") => Ok(()),
        Some(status) if version.starts_with("HTTP/") => Err(ProxyError::Refused { status, reason }),
        _ => Err(ProxyError::BadResponse(
            line.chars().take(80).collect::<String>(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert!(check_status("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n").is_ok());
        assert!(check_status("HTTP/1.0 200 OK\r\n\r\n").is_ok());
        assert!(matches!(
            check_status("HTTP/1.1 401 Unauthorised\r\n\r\n"),
            Err(ProxyError::Refused { status: 401, ref reason }) if reason == "Unauthorised"
        ));
        assert!(matches!(
            check_status("RFB 003.008\n"),
            Err(ProxyError::BadResponse(_))
        ));
        assert!(matches!(check_status(""), Err(ProxyError::BadResponse(_))));
    }

    #[tokio::test]
    async fn head_and_early_bytes() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nRFB 003.008\n")
            .await
            .unwrap();
        let (head, early) = read_head(&mut b).await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"));
        assert_eq!(early, b"RFB 003.008\n");
        drop(a);
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"HTTP/1.1 200").await.unwrap();
        drop(a);
        assert!(matches!(
            read_head(&mut b).await,
            Err(ProxyError::BadResponse(_))
        ));
    }
}
