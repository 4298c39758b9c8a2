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
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{Error, Protocol, Result, Secret};

/// Where a pool member listens: scheme, host, port and base path of its RPC endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub tls: bool,
    /// Host name or IP, IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// Path prefix, without trailing slash (usually empty).
    pub base_path: String,
    /// HTTP proxy every connection to this endpoint is tunnelled through (kept by [`Endpoint::with_host`]).
    pub proxy: Option<Arc<Proxy>>,
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
            proxy: None,
        })
    }

    /// The same endpoint reached through the HTTP proxy at `proxy` (`http://[user[:password]@]host[:port]`);
    /// `None` or an empty URL: directly.
    pub fn with_proxy(mut self, proxy: Option<&str>) -> Result<Self> {
        self.proxy = match proxy.map(str::trim).filter(|p| !p.is_empty()) {
            Some(url) => Some(Arc::new(Proxy::parse(url)?)),
            None => None,
        };
        Ok(self)
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
        let tcp = connect_tcp(ep, ep.proxy.as_deref()).await?;
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

/// A TCP connection to `ep` (no-delay), through the HTTP `proxy` when there is one (usually
/// `ep.proxy`): `CONNECT host:port` with `Proxy-Authorization: Basic …` when the proxy URL carries
/// credentials; TLS, if any, then runs inside the tunnel. Errors name the proxy, never its credentials.
pub(crate) async fn connect_tcp(ep: &Endpoint, proxy: Option<&Proxy>) -> Result<TcpStream> {
    let Some(proxy) = proxy else {
        let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| Error::Transport(format!("connect to {}: {e}", ep.authority())))?;
        let _ = tcp.set_nodelay(true);
        return Ok(tcp);
    };
    let mut tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| Error::Transport(format!("connect to proxy {}: {e}", proxy.authority())))?;
    let _ = tcp.set_nodelay(true);
    let target = format!("{}:{}", ep.host_for_url(), ep.port);
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = &proxy.authorization {
        req.push_str("Proxy-Authorization: ");
        req.push_str(auth.expose());
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let tunnel_err = |what: String| {
        Error::Transport(format!(
            "proxy {} tunnel to {target}: {what}",
            proxy.authority()
        ))
    };
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| tunnel_err(e.to_string()))?;
    let status = read_connect_answer(&mut tcp).await.map_err(tunnel_err)?;
    if !(200..300).contains(&status.0) {
        return Err(tunnel_err(format!("answered {} {}", status.0, status.1)));
    }
    tracing::debug!(proxy = %proxy.authority(), %target, "tunnel open");
    Ok(tcp)
}

/// Reads the proxy's answer head to `CONNECT` byte by byte (nothing past it: the tunnel's bytes stay in
/// the socket): `(status, reason)`.
async fn read_connect_answer(tcp: &mut TcpStream) -> std::result::Result<(u16, String), String> {
    const MAX_HEAD: usize = 16 * 1024;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err("answer head too large".into());
        }
        match tcp.read(&mut byte).await {
            Ok(0) => return Err("closed before answering".into()),
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(e.to_string()),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(code) if version.starts_with("HTTP/") => {
            Ok((code, parts.next().unwrap_or_default().trim().to_owned()))
        }
        _ => Err(format!("malformed answer {line:?}")),
    }
}

/// An HTTP proxy (XO's `httpProxy`): where it listens, and the `Proxy-Authorization` value when its URL
/// has credentials. `Debug` shows neither the user nor the password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    /// Host name or IP, IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// `Basic base64(user:password)`.
    authorization: Option<Secret>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("authorization", &self.authorization.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Proxy {
    /// `http://[user[:password]@]host[:port]` (port 80 by default; the scheme may be omitted).
    /// User and password may be percent-encoded. Errors never repeat the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<Self> {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(Error::Config(format!(
                    "HTTP proxy scheme {scheme:?} is not supported (http:// only)"
                )))
            }
            None => url,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let bad = || {
            Error::Config("bad HTTP proxy URL (expected http://[user:password@]host[:port])".into())
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse::<u16>().map_err(|_| bad())?,
                None if after.is_empty() => 80,
                None => return Err(bad()),
            };
            (h.to_owned(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse::<u16>().map_err(|_| bad())?),
                None => (hostport.to_owned(), 80),
            }
        };
        if host.is_empty() || host.contains(['@', ' ']) {
            return Err(bad());
        }
        let authorization = userinfo.map(|u| {
            let (user, password) = u.split_once(':').unwrap_or((u, ""));
            let creds = format!("{}:{}", percent_decode(user), percent_decode(password));
            Secret::new(format!("Basic {}", base64(creds.as_bytes())))
        });
        Ok(Proxy {
            host,
            port,
            authorization,
        })
    }

    /// `host:port` (brackets around IPv6), for messages.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `%XX` sequences decoded (invalid ones kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard base64 with padding (RFC 4648), for `Basic` credentials.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | (u32::from(c) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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

    #[test]
    fn proxy_urls_and_basic_credentials() {
        let p = Proxy::parse("http://user:p%40ss%20w@127.0.0.1:3128/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", 3128));
        // base64("user:p@ss w")
        assert_eq!(
            p.authorization.as_ref().unwrap().expose(),
            "Basic dXNlcjpwQHNzIHc="
        );
        assert!(!format!("{p:?}").contains("dXNl"));
        let p = Proxy::parse("proxy.example").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.authorization.is_none()),
            ("proxy.example", 80, true)
        );
        let p = Proxy::parse("http://[::1]:8080").unwrap();
        assert_eq!(p.authority(), "[::1]:8080");
        assert_eq!(
            Proxy::parse("http://u@h:1")
                .unwrap()
                .authorization
                .unwrap()
                .expose(),
            "Basic dTo="
        );
        for bad in [
            "https://h:1",
            "http://h:x",
            "http://:1",
            "http://[::1",
            "http://a b:1",
        ] {
            let e = Proxy::parse(bad).unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{bad}");
        }
        let e = Proxy::parse("http://u:secret@h:bad").unwrap_err();
        assert!(!e.to_string().contains("secret"));
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(percent_decode("a%2"), "a%2");
        let ep = Endpoint::parse("https://10.0.0.1")
            .unwrap()
            .with_proxy(Some("http://127.0.0.1:3128"))
            .unwrap();
        assert_eq!(ep.with_host("10.0.0.2").proxy, ep.proxy);
        assert!(ep.clone().with_proxy(Some(" ")).unwrap().proxy.is_none());
    }
}
