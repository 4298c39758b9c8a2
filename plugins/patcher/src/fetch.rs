//! HTTP(S) downloads of the catalogue and update zips, held in memory up to a bound (no disk).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{parse_catalogue, Catalogue, Error, Result};

fn tls() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

async fn send<T>(
    io: T,
    req: Request<Empty<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let t = |e: hyper::Error| Error::Transport(e.to_string());
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(t)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("download connection: {e}");
        }
    });
    tx.send_request(req).await.map_err(t)
}

/// GET `url` (http or https, following up to 5 redirects) into memory; at most `max` bytes.
pub async fn fetch(url: &str, max: u64) -> Result<Bytes> {
    fetch_with_progress(url, max, &mut |_, _| {}).await
}

/// [`fetch`], calling `progress(received, content_length)` after each chunk of the body.
pub async fn fetch_with_progress(
    url: &str,
    max: u64,
    progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
) -> Result<Bytes> {
    let mut url = url.to_owned();
    for _ in 0..5 {
        let uri: Uri = url
            .parse()
            .map_err(|e| Error::Transport(format!("bad URL {url}: {e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(Error::Transport(format!("unsupported URL {url}"))),
        };
        let host = uri
            .host()
            .ok_or_else(|| Error::Transport(format!("no host in {url}")))?
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let pq = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_owned();
        let authority = uri
            .authority()
            .map(|a| a.as_str())
            .unwrap_or(&host)
            .to_owned();
        let req = Request::get(pq)
            .header(header::HOST, authority)
            .header(header::USER_AGENT, "xo-rs-patcher")
            .body(Empty::new())
            .map_err(|e| Error::Transport(e.to_string()))?;
        let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| Error::Transport(format!("connecting to {host}:{port}: {e}")))?;
        let resp = if https {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| Error::Transport(e.to_string()))?;
            let s = tokio_rustls::TlsConnector::from(tls())
                .connect(name, tcp)
                .await
                .map_err(|e| Error::Transport(format!("TLS with {host}: {e}")))?;
            send(s, req).await?
        } else {
            send(tcp, req).await?
        };
        let status = resp.status();
        if status.is_redirection() {
            if let Some(loc) = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
            {
                url = if loc.starts_with('/') {
                    format!(
                        "{}://{}{loc}",
                        if https { "https" } else { "http" },
                        uri.authority().map(|a| a.as_str()).unwrap_or(&host)
                    )
                } else {
                    loc.to_owned()
                };
                continue;
            }
        }
        if !status.is_success() {
            return Err(Error::Download {
                url,
                status: status.as_u16(),
            });
        }
        let too_large = || Error::TooLarge {
            url: url.clone(),
            max,
        };
        let length = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if length.is_some_and(|n| n > max) {
            return Err(too_large());
        }
        let mut body = resp.into_body();
        let mut buf = BytesMut::new();
        while let Some(f) = body.frame().await {
            let f = f.map_err(|e| Error::Transport(format!("reading {url}: {e}")))?;
            if let Ok(d) = f.into_data() {
                if buf.len() as u64 + d.len() as u64 > max {
                    return Err(too_large());
                }
                buf.extend_from_slice(&d);
                progress(buf.len() as u64, length);
            }
        }
        return Ok(buf.freeze());
    }
    Err(Error::Transport(format!("too many redirects for {url}")))
}

/// Fetch and parse the updates catalogue.
pub async fn fetch_catalogue(url: &str, max: u64) -> Result<Catalogue> {
    let body = fetch(url, max).await?;
    let text = std::str::from_utf8(&body).map_err(|e| Error::Catalogue(e.to_string()))?;
    parse_catalogue(text)
}
