//! Minimal HTTP/1.1 client over TCP or rustls with keep-alive: one endpoint, a pool of idle connections.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{Error, Protocol, Result};

/// Where a pool member listens: scheme, host, port and base path of its RPC endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub tls: bool,
    /// Host name or IP, IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// Path prefix, without trailing slash (usually empty).
    pub base_path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .map_err(|e| Error::Config(format!("bad URL {url:?}: {e}")))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(Error::Config(format!(
                    "URL {url:?} must start with http:// or https://"
                )))
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| Error::Config(format!("URL {url:?} has no host")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let base_path = uri.path().trim_end_matches('/').to_owned();
        Ok(Endpoint {
            tls,
            host,
            port,
            base_path,
        })
    }

    /// The same scheme, port and path on another host (for `HOST_IS_SLAVE [address]`).
    pub fn with_host(&self, host: &str) -> Self {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Endpoint {
            host,
            ..self.clone()
        }
    }

    fn host_for_url(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// `Host` header value.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            self.host_for_url()
        } else {
            format!("{}:{}", self.host_for_url(), self.port)
        }
    }

    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            if self.tls { "https" } else { "http" },
            self.authority(),
            self.base_path
        )
    }

    pub fn path(&self, p: &str) -> String {
        format!("{}{}", self.base_path, p)
    }
}

/// A complete HTTP response.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

const PROTO_UNKNOWN: u8 = 0;
const PROTO_JSON: u8 = 1;
const PROTO_XML: u8 = 2;

/// Connections to one endpoint, plus what RPC protocol it was found to speak.
pub(crate) struct Transport {
    pub endpoint: Endpoint,
    tls: Option<TlsConnector>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    max_idle: usize,
    max_body: usize,
    protocol: AtomicU8,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub fn new(
        endpoint: Endpoint,
        tls: Option<Arc<rustls::ClientConfig>>,
        max_idle: usize,
        max_body: usize,
        protocol: Option<Protocol>,
    ) -> Result<Self> {
        let tls = match (endpoint.tls, tls) {
            (true, Some(cfg)) => Some(TlsConnector::from(cfg)),
            (true, None) => {
                return Err(Error::Config("https URL without TLS configuration".into()))
            }
            (false, _) => None,
        };
        let t = Transport {
            endpoint,
            tls,
            idle: Mutex::new(Vec::new()),
            max_idle,
            max_body,
            protocol: AtomicU8::new(0),
        };
        t.set_protocol(protocol);
        Ok(t)
    }

    pub fn protocol(&self) -> Option<Protocol> {
        match self.protocol.load(Ordering::Relaxed) {
            PROTO_JSON => Some(Protocol::JsonRpc),
            PROTO_XML => Some(Protocol::XmlRpc),
            _ => None,
        }
    }

    pub fn set_protocol(&self, p: Option<Protocol>) {
        let v = match p {
            None => PROTO_UNKNOWN,
            Some(Protocol::JsonRpc) => PROTO_JSON,
            Some(Protocol::XmlRpc) => PROTO_XML,
        };
        self.protocol.store(v, Ordering::Relaxed);
    }

    /// POST `body` to `path`, reusing an idle keep-alive connection when one is available. A request that could not
    /// be written on a reused connection (closed by the server meanwhile) is retried once on a fresh one.
    pub async fn post(
        &self,
        path: &str,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Result<HttpResponse> {
        let len = body.len();
        let mut req = Request::post(path)
            .header(HOST, self.endpoint.authority())
            .header(CONTENT_TYPE, content_type)
            .header(CONTENT_LENGTH, len)
            .header(USER_AGENT, "xo-rs-xapi-client")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::Config(format!("bad request: {e}")))?;
        loop {
            let (mut sender, reused) = match self.take_idle().await {
                Some(s) => (s, true),
                None => (self.connect().await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let content_type = resp
                        .headers()
                        .get(CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let hint = resp
                        .headers()
                        .get(CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    let body = read_body(resp.into_body(), hint, self.max_body).await?;
                    self.put_idle(sender);
                    return Ok(HttpResponse {
                        status,
                        content_type,
                        body,
                    });
                }
                Err(mut e) => match e.take_message() {
                    Some(r) if reused => {
                        tracing::debug!("stale keep-alive connection, retrying on a new one");
                        req = r;
                    }
                    _ => {
                        return Err(Error::Transport(format!(
                            "HTTP exchange failed: {}",
                            e.error()
                        )))
                    }
                },
            }
        }
    }

    async fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        loop {
            let mut s = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
            if !s.is_closed() && s.ready().await.is_ok() {
                return Some(s);
            }
        }
    }

    fn put_idle(&self, s: SendRequest<Full<Bytes>>) {
        if s.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(s);
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let ep = &self.endpoint;
        let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| Error::Transport(format!("connect to {}: {e}", ep.authority())))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(tcp).await,
            Some(connector) => {
                let name = ServerName::try_from(ep.host.clone()).map_err(|e| {
                    Error::Config(format!("bad TLS server name {:?}: {e}", ep.host))
                })?;
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| Error::Tls(format!("handshake with {}: {e}", ep.authority())))?;
                handshake(stream).await
            }
        }
    }
}

async fn handshake<S>(io: S) -> Result<SendRequest<Full<Bytes>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| Error::Transport(format!("HTTP handshake: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("XAPI connection closed: {e}");
        }
    });
    Ok(sender)
}

/// Read a whole body into one buffer, pre-sized from `Content-Length` (capped) to avoid regrowth on big loads.
/// Bodies over `max` bytes are refused.
async fn read_body(mut body: hyper::body::Incoming, hint: usize, max: usize) -> Result<Bytes> {
    if hint > max {
        return Err(Error::Transport(format!(
            "response of {hint} bytes exceeds the {max}-byte limit"
        )));
    }
    let mut first: Option<Bytes> = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::Transport(format!("reading response body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            total += data.len();
            if total > max {
                return Err(Error::Transport(format!(
                    "response exceeds the {max}-byte limit"
                )));
            }
            if first.is_none() && buf.is_empty() {
                first = Some(data);
                continue;
            }
            if let Some(f) = first.take() {
                buf.reserve(hint.max(f.len() + data.len()));
                buf.extend_from_slice(&f);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(match first {
        Some(f) => f,
        None => Bytes::from(buf),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_parsing_and_redirect() {
        let ep = Endpoint::parse("https://192.168.1.2").unwrap();
        assert_eq!(
            (ep.tls, ep.host.as_str(), ep.port),
            (true, "192.168.1.2", 443)
        );
        assert_eq!(ep.url(), "https://192.168.1.2");
        let ep = Endpoint::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(ep.authority(), "127.0.0.1:8080");
        let moved = ep.with_host("127.0.0.3");
        assert_eq!(moved.url(), "http://127.0.0.3:8080");
        let v6 = ep.with_host("::1");
        assert_eq!(v6.url(), "http://[::1]:8080");
        assert_eq!(Endpoint::parse("https://[::1]:4443").unwrap().host, "::1");
        assert!(matches!(Endpoint::parse("ftp://x"), Err(Error::Config(_))));
        assert!(matches!(
            Endpoint::parse("not a url"),
            Err(Error::Config(_))
        ));
    }
}
