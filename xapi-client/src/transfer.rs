//! HTTP transfers to and from XAPI hosts (spec xapi.md §6): `GET /export`, `/export_raw_vdi`, `/rrd_updates`…
//! ([`Client::get_resource`]) and `PUT /import`, `/import_raw_vdi` ([`Client::put_resource`]), authenticated with
//! the client's `session_id` (query), optionally inside a caller-made task (`task_id`, see
//! [`Client::create_task`]), following `302` redirects to other pool members.
//!
//! Bodies stream both ways with bounded memory. Downloads hand out hyper's body as is. Uploads are written on a
//! fresh connection as raw HTTP/1.1 (like XO's `putResource`): XAPI refuses chunked request bodies, so an upload of
//! unknown length announces a huge `Content-Length`; XAPI stops at the end of the
//! archive and the outcome is read from the task, not from the HTTP answer (so [`UNKNOWN_LENGTH`] only suits formats
//! whose end the server recognises: XVA).

mod download;
#[cfg(target_os = "linux")]
mod splice;

use std::fmt::Display;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::http::Endpoint;
use crate::{Client, Error, Ref, Result};

/// `Content-Length` announced for uploads of unknown length (the value XO's xen-api uses, 2^50).
pub const UNKNOWN_LENGTH: u64 = 1_125_899_906_842_624;

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;

/// Largest response head accepted from an upload.
const MAX_HEAD: usize = 16 * 1024;

/// Response body bytes kept from an upload.
const MAX_UPLOAD_ANSWER: usize = 64 * 1024;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection to a host: plain TCP (whose bytes can be spliced on Linux) or anything else (TLS).
enum Conn {
    Plain(TcpStream),
    Other(Box<dyn Io>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(t) => Pin::new(t).poll_read(cx, buf),
            Conn::Other(o) => Pin::new(o).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(t) => Pin::new(t).poll_write(cx, buf),
            Conn::Other(o) => Pin::new(o).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(t) => Pin::new(t).poll_flush(cx),
            Conn::Other(o) => Pin::new(o).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(t) => Pin::new(t).poll_shutdown(cx),
            Conn::Other(o) => Pin::new(o).poll_shutdown(cx),
        }
    }
}

/// A streaming answer of an XAPI host.
pub struct Download {
    /// HTTP status (2xx: other statuses are errors).
    pub status: u16,
    /// `Content-Length`, when announced.
    pub content_length: Option<u64>,
    /// `Content-Type`, when announced.
    pub content_type: Option<String>,
    /// The `task-id` header XAPI answers with (the task the transfer runs in).
    pub task_id: Option<String>,
    /// The body, read as it arrives (dropping it closes the connection, which aborts the transfer on XAPI).
    body: download::Body,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("status", &self.status)
            .field("content_length", &self.content_length)
            .field("content_type", &self.content_type)
            .field("task_id", &self.task_id)
            .field("body", &self.body)
            .finish()
    }
}

impl Download {
    /// The body as a stream of chunks (up to 256 KiB each, read straight from the connection).
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes>> + Send + Unpin + 'static {
        Box::pin(self.body.into_stream())
    }
}

/// What an upload answered (the operation's outcome is its task's: see [`Client::wait_task`]).
#[derive(Debug, Clone)]
pub struct Upload {
    /// HTTP status of the answer.
    pub status: u16,
    /// Body bytes written.
    pub bytes_sent: u64,
    /// `task-id` header of the answer, if any.
    pub task_id: Option<String>,
    /// Start of the answer body (at most 64 KiB; XAPI usually sends the new object's ref or nothing).
    pub body: Bytes,
}

/// What [`Client::put_download`] did.
#[derive(Debug, Clone)]
pub struct Piped {
    /// The upload's answer.
    pub upload: Upload,
    /// Whether the download was read to its end (else the upload stopped early: its source task should be
    /// cancelled).
    pub source_ended: bool,
}

/// Percent-encoding of a query component.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `path?k=v&…` with the session first.
fn path_and_query(ep: &Endpoint, path: &str, session: &str, query: &[(&str, String)]) -> String {
    let mut s = format!("{}?session_id={}", ep.path(path), encode(session));
    for (k, v) in query {
        s.push('&');
        s.push_str(&encode(k));
        s.push('=');
        s.push_str(&encode(v));
    }
    s
}

/// Split an absolute `Location` into an endpoint and its path+query.
fn parse_location(current: &Endpoint, loc: &str) -> Result<(Endpoint, String)> {
    if loc.starts_with('/') {
        return Ok((current.clone(), loc.to_owned()));
    }
    let uri: http::Uri = loc
        .parse()
        .map_err(|e| Error::Transport(format!("bad redirect location: {e}")))?;
    let pq = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let base = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or_default()
    );
    Ok((Endpoint::parse(&base)?, pq))
}

impl Client {
    /// `task.create(label, description)`: a task to pass as `task_id` to a transfer, to follow its progress, cancel
    /// it and read its result with [`Client::wait_task`]. The caller destroys it.
    pub async fn create_task(&self, label: &str, description: &str) -> Result<Ref> {
        match self
            .call("task.create", vec![label.into(), description.into()])
            .await?
        {
            serde_json::Value::String(s) => Ok(Ref(s)),
            _ => Err(Error::structure("task.create did not return a ref")),
        }
    }

    async fn session(&self) -> Result<String> {
        if let Some(s) = self.session_id() {
            return Ok(s.expose().to_owned());
        }
        self.login().await?;
        self.session_id()
            .map(|s| s.expose().to_owned())
            .ok_or_else(|| Error::Transport("no session after login".into()))
    }

    async fn open(&self, ep: &Endpoint) -> Result<Conn> {
        // the client's proxy, also for redirect targets
        let proxy = self.transport().endpoint.proxy.clone();
        let tcp = crate::http::connect_tcp(ep, proxy.as_deref()).await?;
        if !ep.tls {
            return Ok(Conn::Plain(tcp));
        }
        let cfg = self
            .tls_config()
            .ok_or_else(|| Error::Config("https URL without TLS configuration".into()))?;
        tls_handshake(cfg, ep, tcp).await
    }

    /// `GET path?session_id=…&query…` on the pool's host (following redirects): the answer, streaming.
    /// Non-2xx answers are [`Error::Http`].
    pub async fn get_resource(&self, path: &str, query: &[(&str, String)]) -> Result<Download> {
        self.get_resource_on(None, path, query).await
    }

    /// [`Client::get_resource`] on another member of the pool: `address` (a host's `address` field) replaces the
    /// pool URL's host, keeping its scheme and port (per-host resources such as `/rrd_updates`). `None`: the pool
    /// URL's host.
    pub async fn get_resource_on(
        &self,
        address: Option<&str>,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Download> {
        let session = self.session().await?;
        let mut ep = self.transport().endpoint.clone();
        if let Some(a) = address.map(str::trim).filter(|a| !a.is_empty()) {
            ep.host = a.trim_start_matches('[').trim_end_matches(']').to_owned();
        }
        let mut pq = path_and_query(&ep, path, &session, query);
        for _ in 0..=MAX_REDIRECTS {
            let io = self.open(&ep).await?;
            match get_once(io, &ep, &pq, path).await? {
                Ok(d) => return Ok(d),
                Err(loc) => (ep, pq) = parse_location(&ep, &loc)?,
            }
        }
        Err(Error::Transport(format!("too many redirects for {path}")))
    }

    /// `PUT path?session_id=…&query…` with `body` streamed (`length`: its exact size, `None` when unknown, see
    /// [`UNKNOWN_LENGTH`]). A first empty request (without `task_id`) discovers a redirect, as XO does, so the body
    /// is consumed once. An error of `body` aborts the connection (XAPI then fails the import and rolls back).
    pub async fn put_resource<S, E>(
        &self,
        path: &str,
        query: &[(&str, String)],
        length: Option<u64>,
        body: S,
    ) -> Result<Upload>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + Unpin,
        E: Display,
    {
        let (ep, pq) = self.put_target(path, query).await?;
        let (up, _) = self.raw_put(&ep, &pq, length, body).await?;
        if !(200..300).contains(&up.status) {
            return Err(Error::Http {
                status: up.status,
                path: path.to_owned(),
            });
        }
        Ok(up)
    }

    /// Where a PUT of `path` goes: a first empty request (without `task_id`) discovers a redirect, as XO does, so
    /// that the body is consumed once.
    async fn put_target(&self, path: &str, query: &[(&str, String)]) -> Result<(Endpoint, String)> {
        let session = self.session().await?;
        let mut ep = self.transport().endpoint.clone();
        let mut pq = path_and_query(&ep, path, &session, query);
        // redirect probe: an empty request without the task
        let probe_q: Vec<(&str, String)> = query
            .iter()
            .filter(|(k, _)| *k != "task_id")
            .cloned()
            .collect();
        let mut probe_pq = path_and_query(&ep, path, &session, &probe_q);
        for _ in 0..MAX_REDIRECTS {
            let empty = futures::stream::empty::<std::result::Result<Bytes, std::io::Error>>();
            let r = self.raw_put(&ep, &probe_pq, Some(0), empty).await?;
            if !(300..400).contains(&r.0.status) {
                break;
            }
            let Some(loc) = r.1 else { break };
            let (nep, npq) = parse_location(&ep, &loc)?;
            // the real request goes where the probe was sent, with the task
            let (_, real) = parse_location(&ep, &loc.replace(&probe_pq, &pq))?;
            pq = if real == npq {
                path_and_query(&nep, path, &session, query)
            } else {
                real
            };
            ep = nep;
            probe_pq = npq;
        }
        Ok((ep, pq))
    }

    /// `PUT` of the body of `src` (a download from this or another client) as [`Client::put_resource`] would with
    /// `src.into_stream()`, but when both connections are plain TCP on Linux the bytes move inside the kernel
    /// (`splice(2)` through a pipe) instead of through user space. Also says whether the download reached its end
    /// (when not, the caller should cancel the download's task: the upload stopped early).
    pub async fn put_download(
        &self,
        path: &str,
        query: &[(&str, String)],
        length: Option<u64>,
        src: Download,
    ) -> Result<Piped> {
        let (ep, pq) = self.put_target(path, query).await?;
        #[cfg(target_os = "linux")]
        let (up, source_ended) = if src.body.tcp().is_some() && !ep.tls {
            self.raw_put_spliced(&ep, &pq, length, src.body).await?
        } else {
            self.raw_put_streamed(&ep, &pq, length, src).await?
        };
        #[cfg(not(target_os = "linux"))]
        let (up, source_ended) = self.raw_put_streamed(&ep, &pq, length, src).await?;
        if !(200..300).contains(&up.status) {
            return Err(Error::Http {
                status: up.status,
                path: path.to_owned(),
            });
        }
        Ok(Piped {
            upload: up,
            source_ended,
        })
    }

    /// [`Client::put_download`] through user space.
    async fn raw_put_streamed(
        &self,
        ep: &Endpoint,
        pq: &str,
        length: Option<u64>,
        src: Download,
    ) -> Result<(Upload, bool)> {
        let ended = Arc::new(AtomicBool::new(false));
        let flag = ended.clone();
        let mut inner = src.into_stream();
        let stream = futures::stream::poll_fn(move |cx| {
            let next = inner.poll_next_unpin(cx);
            if let Poll::Ready(None) = next {
                flag.store(true, Ordering::SeqCst);
            }
            next
        });
        let (up, _) = self.raw_put(ep, pq, length, stream).await?;
        Ok((up, ended.load(Ordering::SeqCst)))
    }

    /// [`Client::put_download`] by splicing: the upload's head, then the download's buffered bytes written and the
    /// rest moved socket to socket, unless the server answers first.
    #[cfg(target_os = "linux")]
    async fn raw_put_spliced(
        &self,
        ep: &Endpoint,
        pq: &str,
        length: Option<u64>,
        mut body: download::Body,
    ) -> Result<(Upload, bool)> {
        let Conn::Plain(mut tcp) = self.open(ep).await? else {
            return Err(Error::Transport(
                "splice needs a plain TCP connection".into(),
            ));
        };
        let pipe = splice::Pipe::new()
            .map_err(|e| Error::Transport(format!("upload: creating a pipe: {e}")))?;
        let io_err = |e: std::io::Error| Error::Transport(format!("upload: {e}"));
        let head = put_head(ep, pq, length);
        tcp.write_all(head.as_bytes()).await.map_err(io_err)?;
        let (mut rd, wr) = tcp.split();
        let dst: &TcpStream = wr.as_ref();
        let reader = read_answer(&mut rd);
        tokio::pin!(reader);
        let writer = async {
            let mut sent: u64 = 0;
            let room = |sent: u64, n: u64| {
                if length.is_some_and(|max| sent + n > max) {
                    Err(WriteError::Source(Error::Transport(
                        "upload source is longer than announced".into(),
                    )))
                } else {
                    Ok(())
                }
            };
            loop {
                match body.next_raw().await.map_err(WriteError::Source)? {
                    download::Raw::End => break,
                    download::Raw::Bytes(b) => {
                        room(sent, b.len() as u64)?;
                        splice::write_all(dst, &b)
                            .await
                            .map_err(|e| WriteError::Io(io_err(e)))?;
                        sent += b.len() as u64;
                    }
                    download::Raw::Socket(ahead) => {
                        let src = body.tcp().ok_or_else(|| {
                            WriteError::Source(Error::Transport("download is not plain TCP".into()))
                        })?;
                        // never more than the announced length allows (one byte more reveals an overlong source)
                        let max = length.map_or(ahead, |l| ahead.min(l - sent + 1));
                        let n = pipe.relay(src, dst, max).await.map_err(|e| match e {
                            splice::RelayError::Source(e) => WriteError::Source(Error::Transport(
                                format!("reading the transfer body: {e}"),
                            )),
                            splice::RelayError::Sink(e) => WriteError::Io(io_err(e)),
                        })? as u64;
                        body.advance_raw(n).map_err(WriteError::Source)?;
                        room(sent, n)?;
                        sent += n;
                    }
                }
            }
            if length.is_some_and(|l| l != sent) {
                return Err(WriteError::Source(Error::Transport(
                    "upload source ended before the announced length".into(),
                )));
            }
            Ok::<u64, WriteError>(sent)
        };
        tokio::pin!(writer);
        // as `raw_put`: write until done, unless the server answers first
        let (sent, answer, ended) = tokio::select! {
            w = &mut writer => match w {
                Ok(n) => (n, reader.await?, true),
                Err(WriteError::Source(e)) => return Err(e),
                Err(WriteError::Io(e)) => (0, reader.await.map_err(|_| e)?, false),
            },
            a = &mut reader => (0, a?, false),
        };
        let (status, task_id, _, answer_body) = answer;
        Ok((
            Upload {
                status,
                bytes_sent: sent,
                task_id,
                body: answer_body,
            },
            ended,
        ))
    }

    /// One raw PUT: head, body (stopped early when the server answers an error first), write shutdown, answer.
    async fn raw_put<S, E>(
        &self,
        ep: &Endpoint,
        pq: &str,
        length: Option<u64>,
        mut body: S,
    ) -> Result<(Upload, Option<String>)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + Unpin,
        E: Display,
    {
        let io = self.open(ep).await?;
        let (mut rd, mut wr) = tokio::io::split(io);
        let head = put_head(ep, pq, length);
        let io_err = |e: std::io::Error| Error::Transport(format!("upload: {e}"));
        wr.write_all(head.as_bytes()).await.map_err(io_err)?;
        let reader = read_answer(&mut rd);
        tokio::pin!(reader);
        let writer = async {
            let mut sent: u64 = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| {
                    WriteError::Source(Error::Transport(format!("upload source failed: {e}")))
                })?;
                if length.is_some_and(|max| sent + chunk.len() as u64 > max) {
                    return Err(WriteError::Source(Error::Transport(
                        "upload source is longer than announced".into(),
                    )));
                }
                wr.write_all(&chunk)
                    .await
                    .map_err(|e| WriteError::Io(io_err(e)))?;
                sent += chunk.len() as u64;
            }
            if length.is_some_and(|l| l != sent) {
                return Err(WriteError::Source(Error::Transport(
                    "upload source ended before the announced length".into(),
                )));
            }
            // no write shutdown: XAPI (hyper too) may take it for the end of the connection and drop the answer;
            // the server knows the end from Content-Length or, for UNKNOWN_LENGTH, from the archive's end
            wr.flush().await.map_err(|e| WriteError::Io(io_err(e)))?;
            Ok::<u64, WriteError>(sent)
        };
        tokio::pin!(writer);
        // write until done, unless the server answers first (an early error, or the end of an operation that
        // stopped reading, e.g. the end of an archive sent with UNKNOWN_LENGTH)
        let (sent, answer) = tokio::select! {
            w = &mut writer => match w {
                Ok(n) => (n, reader.await?),
                Err(WriteError::Source(e)) => return Err(e),
                // the server closed while we wrote: its answer tells what happened, if any
                Err(WriteError::Io(e)) => (0, reader.await.map_err(|_| e)?),
            },
            a = &mut reader => (0, a?),
        };
        let (status, task_id, location, body) = answer;
        Ok((
            Upload {
                status,
                bytes_sent: sent,
                task_id,
                body,
            },
            location,
        ))
    }
}

/// One `GET pq` on `io`: the download, or (`Err`) where a 3xx answer redirects. `path` names the resource in
/// errors.
async fn get_once(
    mut io: Conn,
    ep: &Endpoint,
    pq: &str,
    path: &str,
) -> Result<std::result::Result<Download, String>> {
    let req = format!(
        "GET {pq} HTTP/1.1\r\nHost: {}\r\nUser-Agent: xo-rs-xapi-client\r\nConnection: close\r\n\r\n",
        ep.authority()
    );
    io.write_all(req.as_bytes())
        .await
        .map_err(|e| Error::Transport(format!("GET {path}: {e}")))?;
    let mut buf = BytesMut::new();
    let head = download::read_head(&mut io, &mut buf).await?;
    let status = head.status;
    if (300..400).contains(&status) {
        let loc = head.location.clone().ok_or(Error::Http {
            status,
            path: path.to_owned(),
        })?;
        tracing::debug!(status, "transfer redirected");
        return Ok(Err(loc));
    }
    if !(200..300).contains(&status) {
        return Err(Error::Http {
            status,
            path: path.to_owned(),
        });
    }
    Ok(Ok(Download {
        status,
        content_length: head.content_length,
        content_type: head.content_type.clone(),
        task_id: head.task_id.clone(),
        body: download::Body::new(io, buf, &head),
    }))
}

/// `GET url` of any `http://` or `https://` server (not a XAPI host: no session, no proxy), read as
/// [`Client::get_resource`] reads, following up to 5 redirects; certificates are verified against the webpki
/// roots. Non-2xx answers are [`Error::Http`] (whose `path` is the URL's path).
pub async fn fetch_url(url: &str) -> Result<Download> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Error::Config(format!(
            "URL {url:?} must start with http:// or https://"
        )));
    }
    let none = Endpoint::parse("http://localhost")?;
    let (mut ep, mut pq) = parse_location(&none, url)?;
    let path = pq.split('?').next().unwrap_or_default().to_owned();
    for _ in 0..=MAX_REDIRECTS {
        let tcp = crate::http::connect_tcp(&ep, None).await?;
        let io = if ep.tls {
            let cfg = xo_tls::client_config(false, &[])
                .map_err(|e| Error::Config(format!("TLS: {e}")))?;
            tls_handshake(cfg, &ep, tcp).await?
        } else {
            Conn::Plain(tcp)
        };
        match get_once(io, &ep, &pq, &path).await? {
            Ok(d) => return Ok(d),
            Err(loc) => (ep, pq) = parse_location(&ep, &loc)?,
        }
    }
    Err(Error::Transport(format!("too many redirects for {path}")))
}

/// The TLS handshake with `ep` (its host as the server name) over `tcp`.
async fn tls_handshake(
    cfg: Arc<rustls::ClientConfig>,
    ep: &Endpoint,
    tcp: TcpStream,
) -> Result<Conn> {
    let name = ServerName::try_from(ep.host.clone())
        .map_err(|e| Error::Config(format!("bad TLS server name {:?}: {e}", ep.host)))?;
    let s = TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| Error::Tls(format!("handshake with {}: {e}", ep.authority())))?;
    Ok(Conn::Other(Box::new(s)))
}

/// The head of a PUT of `length` bytes (`None`: [`UNKNOWN_LENGTH`]).
fn put_head(ep: &Endpoint, pq: &str, length: Option<u64>) -> String {
    format!(
        "PUT {pq} HTTP/1.1\r\nHost: {}\r\nUser-Agent: xo-rs-xapi-client\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        ep.authority(),
        length.unwrap_or(UNKNOWN_LENGTH)
    )
}

/// Decode a (complete or truncated) chunked body.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..p])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size.filter(|s| *s > 0) else {
            break;
        };
        b = &b[p + 2..];
        let n = size.min(b.len());
        out.extend_from_slice(&b[..n]);
        b = &b[(n + 2).min(b.len())..];
    }
    out
}

/// Why writing an upload stopped.
enum WriteError {
    /// The body source failed (the upload must not be taken as complete).
    Source(Error),
    /// The connection failed.
    Io(Error),
}

/// Read an HTTP/1.1 answer: status, `task-id`, `Location`, start of the body (until EOF or 64 KiB). The body of a
/// 2xx answer is read to the end of the connection (XAPI ends it when the operation ends).
async fn read_answer<R: AsyncRead + Unpin>(
    rd: &mut R,
) -> Result<(u16, Option<String>, Option<String>, Bytes)> {
    let mut buf = Vec::with_capacity(1024);
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEAD {
            return Err(Error::Transport("answer head too large".into()));
        }
        let n = rd
            .read(&mut tmp)
            .await
            .map_err(|e| Error::Transport(format!("reading the answer: {e}")))?;
        if n == 0 {
            return Err(Error::Transport(
                "connection closed before an answer".into(),
            ));
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Transport("malformed answer status line".into()))?;
    let (mut task_id, mut location, mut length, mut chunked) = (None, None, None, false);
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "task-id" => task_id = Some(v.to_owned()),
                "location" => location = Some(v.to_owned()),
                "content-length" => length = v.parse::<u64>().ok(),
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
    }
    // The answer ends at its Content-Length, its last chunk, or the end of the connection (the server may
    // keep the connection open, waiting for the rest of an UNKNOWN_LENGTH body).
    let mut raw = buf[head_end + 4..].to_vec();
    let mut total = raw.len() as u64;
    let mut tail: Vec<u8> = raw.iter().rev().take(7).rev().copied().collect();
    let ended = |total: u64, tail: &[u8]| match (length, chunked) {
        (Some(l), _) => total >= l,
        (None, true) => tail.ends_with(b"\r\n0\r\n\r\n") || (total == 5 && tail == b"0\r\n\r\n"),
        _ => false,
    };
    while !ended(total, &tail) {
        match rd.read(&mut tmp).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n as u64;
                if raw.len() < MAX_UPLOAD_ANSWER {
                    raw.extend_from_slice(&tmp[..n.min(MAX_UPLOAD_ANSWER - raw.len())]);
                }
                tail.extend_from_slice(&tmp[..n]);
                let cut = tail.len().saturating_sub(7);
                tail.drain(..cut);
            }
        }
    }
    let body = if chunked { dechunk(&raw) } else { raw };
    Ok((status, task_id, location, Bytes::from(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_location() {
        let ep = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        let pq = path_and_query(
            &ep,
            "/export",
            "OpaqueRef:a b",
            &[("ref", "OpaqueRef:x".into())],
        );
        assert_eq!(pq, "/export?session_id=OpaqueRef:a%20b&ref=OpaqueRef:x");
        let (e2, p2) = parse_location(&ep, "http://10.0.0.2:81/export?x=1").unwrap();
        assert_eq!(
            (e2.authority().as_str(), p2.as_str()),
            ("10.0.0.2:81", "/export?x=1")
        );
        let (e3, p3) = parse_location(&ep, "/import?y").unwrap();
        assert_eq!((e3, p3.as_str()), (ep, "/import?y"));
    }
}

#[cfg(test)]
mod sim_tests {
    use super::*;
    use crate::ClientOptions;
    use std::time::Duration;

    async fn pool(vms: usize) -> (xapi_sim::RunningPool, Client) {
        pool_over(vms, true).await
    }

    /// A simulated pool served over TLS or plain HTTP, and a client of it.
    async fn pool_over(vms: usize, tls: bool) -> (xapi_sim::RunningPool, Client) {
        let p = xapi_sim::Sim::builder()
            .vms(vms)
            .build()
            .unwrap()
            .serve("127.0.0.1:0".parse().unwrap(), tls)
            .await
            .unwrap();
        let c = Client::connect(
            ClientOptions::new(p.master_url().trim_end_matches('/'), "root", "root")
                .allow_unauthorized(true),
        )
        .await
        .unwrap();
        (p, c)
    }

    /// A halted guest VM of the pool of `c`.
    async fn halted_vm(c: &Client) -> Ref {
        let vms = c.get_all_records("VM").await.unwrap();
        let (vm, rec) = vms
            .iter()
            .find(|(_, r)| r["is_control_domain"] == false && r["is_a_template"] == false)
            .expect("a VM");
        if rec["power_state"] == "Running" {
            c.call("VM.hard_shutdown", vec![vm.0.clone().into()])
                .await
                .unwrap();
        }
        vm.clone()
    }

    /// The export of a halted VM of `ca`'s pool, and an import task on `cb`'s pool for it.
    async fn export_and_import_task(ca: &Client, cb: &Client) -> (Download, Ref) {
        let vm = halted_vm(ca).await;
        let d = ca
            .get_resource("/export", &[("ref", vm.0.clone())])
            .await
            .unwrap();
        let task = cb.create_task("import", "").await.unwrap();
        (d, task)
    }

    /// What the import `task` on `cb`'s pool gave, once it ended.
    async fn import_outcome(cb: &Client, task: &Ref) -> serde_json::Value {
        let rec = tokio::time::timeout(Duration::from_secs(20), cb.wait_task(task))
            .await
            .expect("task in time")
            .unwrap();
        crate::task_outcome(Some("VM.import"), &rec).unwrap()
    }

    #[tokio::test]
    async fn export_put_download_into_import_spliced_and_over_tls() {
        for tls in [false, true] {
            let (_a, ca) = pool_over(2, tls).await;
            let (_b, cb) = pool_over(0, tls).await;
            let (d, task) = export_and_import_task(&ca, &cb).await;
            let piped = tokio::time::timeout(
                Duration::from_secs(20),
                cb.put_download("/import", &[("task_id", task.0.clone())], None, d),
            )
            .await
            .expect("upload in time")
            .unwrap();
            assert!(piped.source_ended, "tls {tls}");
            assert!(piped.upload.bytes_sent > 0);
            let out = import_outcome(&cb, &task).await;
            assert!(
                out.as_array().is_some_and(|a| a.len() == 1),
                "tls {tls}: {out}"
            );
        }
    }

    #[tokio::test]
    async fn export_piped_into_import_of_unknown_length() {
        let (_a, ca) = pool(3).await;
        let (_b, cb) = pool(0).await;
        let (d, task) = export_and_import_task(&ca, &cb).await;
        let up = tokio::time::timeout(
            Duration::from_secs(20),
            cb.put_resource(
                "/import",
                &[("task_id", task.0.clone())],
                None,
                d.into_stream(),
            ),
        )
        .await
        .expect("upload in time");
        eprintln!("{up:?}");
        let out = import_outcome(&cb, &task).await;
        assert!(out.as_array().is_some_and(|a| a.len() == 1), "{out}");
    }
}

#[cfg(test)]
mod redirect_tests {
    //! `get_resource` following a `302` from one scripted listener to another (as a pool master redirects a
    //! transfer to the member holding the VM), and giving up on a redirect loop.
    use super::*;
    use crate::{ClientOptions, Protocol};
    use futures::StreamExt;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Reads into `buf` up to the end of a request head; the head's text, where it ends in `buf` and its
    /// `Content-Length` (0 without one). `None` at the end of the connection or on an error.
    async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, usize, u64)> {
        let mut tmp = [0u8; 4096];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        Some((head, end, len))
    }

    /// Reads from `s` until `buf` holds `len` bytes (or the connection ends); whether it got them.
    async fn read_to_len(s: &mut TcpStream, buf: &mut Vec<u8>, len: usize) -> bool {
        let mut tmp = vec![0u8; 65536];
        while buf.len() < len {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        true
    }

    /// Read one request (head and `Content-Length` body); its request line.
    async fn read_request(s: &mut TcpStream) -> Option<String> {
        let mut buf = Vec::new();
        let (head, end, len) = read_head(s, &mut buf).await?;
        if !read_to_len(s, &mut buf, end + len as usize).await {
            return None;
        }
        head.lines().next().map(str::to_owned)
    }

    /// A listener answering each request with `answer(its own base URL, the request line)`, keeping every
    /// request line.
    async fn scripted(
        answer: impl Fn(&str, &str) -> Vec<u8> + Send + Sync + 'static,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let me = base.clone();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (log, me, answer) = (log.clone(), me.clone(), answer.clone());
                tokio::spawn(async move {
                    while let Some(line) = read_request(&mut s).await {
                        log.lock().unwrap().push(line.clone());
                        if s.write_all(&answer(&me, &line)).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (base, seen)
    }

    /// The whole body of a download.
    async fn collect(d: Download) -> Vec<u8> {
        let mut body = Vec::new();
        let mut s = d.into_stream();
        while let Some(chunk) = s.next().await {
            body.extend_from_slice(&chunk.unwrap());
        }
        body
    }

    const LOGIN: &str = "<?xml version=\"1.0\"?><methodResponse><params><param><value><struct>\
        <member><name>Status</name><value>Success</value></member>\
        <member><name>Value</name><value>OpaqueRef:s1</value></member>\
        </struct></value></param></params></methodResponse>";

    /// The answer to an XML-RPC login.
    fn login_answer() -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{LOGIN}",
            LOGIN.len()
        )
        .into_bytes()
    }

    /// A listener answering XML-RPC logins and redirecting every GET to `target` (path and query kept).
    async fn redirector(target: Option<String>) -> (String, Arc<Mutex<Vec<String>>>) {
        scripted(move |me, line| {
            if line.starts_with("POST") {
                return login_answer();
            }
            let pq = line.split(' ').nth(1).unwrap_or("/");
            let to = target.as_deref().unwrap_or(me);
            format!("HTTP/1.1 302 Found\r\nLocation: {to}{pq}\r\nContent-Length: 0\r\n\r\n")
                .into_bytes()
        })
        .await
    }

    /// A listener answering every GET with `body` (and a `task-id`).
    async fn member(body: &'static [u8]) -> (String, Arc<Mutex<Vec<String>>>) {
        scripted(move |_, _| {
            let mut a = format!(
                "HTTP/1.1 200 OK\r\ntask-id: OpaqueRef:t1\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            a.extend_from_slice(body);
            a
        })
        .await
    }

    fn client(url: &str) -> Client {
        Client::with_protocol(
            ClientOptions::new(url, "root", "pw"),
            Some(Protocol::XmlRpc),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn get_follows_a_302_to_another_listener() {
        let (b, b_seen) = member(b"exported bytes").await;
        let (a, a_seen) = redirector(Some(b.clone())).await;
        let c = client(&a);
        let d = c
            .get_resource("/export", &[("uuid", "u 1".into())])
            .await
            .unwrap();
        assert_eq!(d.status, 200);
        assert_eq!(d.task_id.as_deref(), Some("OpaqueRef:t1"));
        let body = collect(d).await;
        assert_eq!(body, b"exported bytes");
        let a_seen = a_seen.lock().unwrap().clone();
        assert!(a_seen.iter().any(|l| l.starts_with("POST")), "{a_seen:?}");
        assert!(
            a_seen.contains(&"GET /export?session_id=OpaqueRef:s1&uuid=u%201 HTTP/1.1".to_owned()),
            "{a_seen:?}"
        );
        // the member got the same path and query (session included) and nothing else
        assert_eq!(
            *b_seen.lock().unwrap(),
            vec!["GET /export?session_id=OpaqueRef:s1&uuid=u%201 HTTP/1.1".to_owned()]
        );
    }

    #[tokio::test]
    async fn get_gives_up_on_a_redirect_loop() {
        let (a, a_seen) = redirector(None).await;
        let c = client(&a);
        let Err(e) = c.get_resource("/export", &[]).await else {
            panic!("a redirect loop must fail");
        };
        assert!(
            matches!(&e, Error::Transport(m) if m.contains("too many redirects")),
            "{e:?}"
        );
        let gets = a_seen
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("GET"))
            .count();
        assert_eq!(gets, MAX_REDIRECTS + 1);
    }

    /// A listener answering logins, every GET with `body` (chunked in 7-byte pieces when `chunked`, else with a
    /// Content-Length) and every PUT with `200`, keeping what each PUT carried (up to its Content-Length or EOF).
    async fn source_and_sink(body: Vec<u8>, chunked: bool) -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let puts = Arc::new(Mutex::new(Vec::new()));
        let log = puts.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (log, body) = (log.clone(), body.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let Some((head, end, len)) = read_head(&mut s, &mut buf).await else {
                        return;
                    };
                    let answer = if head.starts_with("POST") {
                        login_answer()
                    } else if head.starts_with("GET") {
                        if chunked {
                            let mut a =
                                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                            for c in body.chunks(7) {
                                a.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                                a.extend_from_slice(c);
                                a.extend_from_slice(b"\r\n");
                            }
                            a.extend_from_slice(b"0\r\n\r\n");
                            a
                        } else {
                            let mut a = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            a.extend_from_slice(&body);
                            a
                        }
                    } else {
                        // a PUT: its body up to its length (or the end of the connection)
                        let mut got = buf[end..].to_vec();
                        read_to_len(&mut s, &mut got, len as usize).await;
                        if len > 0 {
                            log.lock().unwrap().push(got);
                        }
                        b"HTTP/1.1 200 OK\r\ntask-id: OpaqueRef:up\r\nContent-Length: 2\r\n\r\nok"
                            .to_vec()
                    };
                    let _ = s.write_all(&answer).await;
                });
            }
        });
        (base, puts)
    }

    #[tokio::test]
    async fn put_download_moves_every_framing_byte_exact() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for chunked in [false, true] {
            let (url, puts) = source_and_sink(data.clone(), chunked).await;
            let c = client(&url);
            let d = c.get_resource("/export", &[]).await.unwrap();
            let piped = c
                .put_download("/import", &[], Some(data.len() as u64), d)
                .await
                .unwrap();
            assert!(piped.source_ended, "chunked {chunked}");
            assert_eq!(piped.upload.bytes_sent, data.len() as u64);
            assert_eq!(piped.upload.task_id.as_deref(), Some("OpaqueRef:up"));
            let puts = puts.lock().unwrap().clone();
            assert_eq!(puts.len(), 1, "chunked {chunked}");
            assert!(puts[0] == data, "chunked {chunked}: body differs");
        }
    }

    #[tokio::test]
    async fn put_download_refuses_a_source_longer_or_shorter_than_announced() {
        let data = vec![7u8; 100_000];
        for chunked in [false, true] {
            let (url, _) = source_and_sink(data.clone(), chunked).await;
            let c = client(&url);
            for (announced, why) in [
                (1000, "longer than announced"),
                (200_000, "before the announced length"),
            ] {
                let d = c.get_resource("/export", &[]).await.unwrap();
                let e = c
                    .put_download("/import", &[], Some(announced), d)
                    .await
                    .unwrap_err();
                assert!(
                    matches!(&e, Error::Transport(m) if m.contains(why)),
                    "announced {announced}, chunked {chunked}: {e:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn fetch_url_follows_a_redirect_and_refuses_other_schemes() {
        let (b, b_seen) = member(b"an archive").await;
        let (a, _) = redirector(Some(b.clone())).await;
        let d = fetch_url(&format!("{a}/dir/vm.xva?x=1")).await.unwrap();
        let body = collect(d).await;
        assert_eq!(body, b"an archive");
        assert_eq!(
            *b_seen.lock().unwrap(),
            vec!["GET /dir/vm.xva?x=1 HTTP/1.1".to_owned()]
        );
        let e = fetch_url("ftp://127.0.0.1/x").await.unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e:?}");
    }
}
