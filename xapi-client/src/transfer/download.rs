//! The download side of transfers: a hand-written HTTP/1.1 answer reader (status line, headers, then the body by
//! `Content-Length`, `chunked` coding or up to the end of the connection) that hands out large chunks read straight
//! from the socket into `Bytes`, without hyper's per-frame machinery.

use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;
use tokio::io::AsyncReadExt;

use super::Conn;
use crate::{Error, Result};

/// Largest answer head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// Bytes asked of the socket per read (a body chunk handed out is at most this long).
const READ: usize = 256 * 1024;

/// A parsed answer head.
#[derive(Debug, Clone, Default)]
pub(super) struct Head {
    pub status: u16,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub content_type: Option<String>,
    pub task_id: Option<String>,
    pub location: Option<String>,
}

/// Read an answer head from `io`; the bytes read past it stay in `buf`.
pub(super) async fn read_head(io: &mut Conn, buf: &mut BytesMut) -> Result<Head> {
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEAD {
            return Err(Error::Transport("answer head too large".into()));
        }
        buf.reserve(8192);
        let n = io
            .read_buf(buf)
            .await
            .map_err(|e| Error::Transport(format!("reading the answer: {e}")))?;
        if n == 0 {
            return Err(Error::Transport(
                "connection closed before an answer".into(),
            ));
        }
    };
    let head = buf.split_to(end + 4);
    parse_head(&head[..end])
}

/// Parse a head (without its final empty line).
pub(super) fn parse_head(raw: &[u8]) -> Result<Head> {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Transport("malformed answer status line".into()))?;
    let mut h = Head {
        status,
        ..Head::default()
    };
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                h.content_length = Some(
                    v.parse()
                        .map_err(|_| Error::Transport(format!("bad Content-Length {v:?}")))?,
                )
            }
            "transfer-encoding" => h.chunked = v.to_ascii_lowercase().contains("chunked"),
            "content-type" => h.content_type = Some(v.to_owned()),
            "task-id" => h.task_id = Some(v.to_owned()),
            "location" => h.location = Some(v.to_owned()),
            _ => {}
        }
    }
    if h.chunked {
        // RFC 9112 §6.3: chunked coding wins over a Content-Length
        h.content_length = None;
    }
    Ok(h)
}

/// How the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes remain.
    Length(u64),
    /// Chunked coding: this many bytes remain of the current chunk (`None`: a chunk-size line comes next).
    Chunked(Option<u64>),
    /// Up to the end of the connection.
    Close,
    /// Done.
    Ended,
}

/// A body being read: the connection, what was read past the last piece handed out, the framing.
pub(super) struct Body {
    io: Conn,
    buf: BytesMut,
    framing: Framing,
    /// Read chunk-size lines a few bytes at a time (so that the chunks' data stays in the socket, for splicing).
    small_lines: bool,
}

/// The next step of a body copied by splicing (see [`Body::next_raw`]).
#[derive(Debug)]
pub(super) enum Raw {
    /// Body bytes already read: to write as they are.
    Bytes(Bytes),
    /// At most this many body bytes are next in the socket: to move, then report with [`Body::advance_raw`].
    Socket(u64),
    /// The body ended.
    End,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("framing", &self.framing)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

fn body_err(e: impl std::fmt::Display) -> Error {
    Error::Transport(format!("reading the transfer body: {e}"))
}

impl Body {
    /// The body of an answer with head `h` on `io` (`buf`: bytes already read past the head).
    pub(super) fn new(io: Conn, buf: BytesMut, h: &Head) -> Self {
        let framing = if h.status == 204 || h.status == 304 {
            Framing::Ended
        } else if h.chunked {
            Framing::Chunked(None)
        } else if let Some(l) = h.content_length {
            Framing::Length(l)
        } else {
            Framing::Close
        };
        Body {
            io,
            buf,
            framing,
            small_lines: false,
        }
    }

    /// The connection when it is plain TCP (bytes can be spliced out of it).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(super) fn tcp(&self) -> Option<&tokio::net::TcpStream> {
        match &self.io {
            Conn::Plain(t) => Some(t),
            Conn::Other(_) => None,
        }
    }

    /// Read more from the connection into `buf` (at least one byte unless `Ok(0)`: end of connection).
    async fn fill(&mut self) -> Result<usize> {
        if self.buf.capacity() - self.buf.len() < READ / 4 {
            self.buf.reserve(READ);
        }
        self.io.read_buf(&mut self.buf).await.map_err(body_err)
    }

    /// Up to `max` bytes of the body from what is buffered, else from one read.
    async fn take(&mut self, max: u64) -> Result<Option<Bytes>> {
        if self.buf.is_empty() && self.fill().await? == 0 {
            return Ok(None);
        }
        let n = (self.buf.len() as u64).min(max) as usize;
        Ok(Some(self.buf.split_to(n).freeze()))
    }

    /// One line (without its CRLF) of the chunked coding.
    async fn line(&mut self) -> Result<String> {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = self.buf.split_to(p);
                self.buf.advance(2);
                return Ok(String::from_utf8_lossy(&l).into_owned());
            }
            if self.buf.len() > MAX_LINE {
                return Err(body_err("chunk line too long"));
            }
            let n = if self.small_lines {
                let mut b = [0u8; 16];
                let n = self.io.read(&mut b).await.map_err(body_err)?;
                self.buf.extend_from_slice(&b[..n]);
                n
            } else {
                self.fill().await?
            };
            if n == 0 {
                return Err(body_err("connection closed inside the chunked coding"));
            }
        }
    }

    /// Bytes of data that may come next, after any chunk-size line (0: the body ended).
    async fn data_ahead(&mut self) -> Result<u64> {
        loop {
            match self.framing {
                Framing::Ended => return Ok(0),
                Framing::Close => return Ok(u64::MAX),
                Framing::Length(0) => self.framing = Framing::Ended,
                Framing::Length(rest) => return Ok(rest),
                Framing::Chunked(None) => {
                    let l = self.line().await?;
                    let hex = l.split(';').next().unwrap_or_default().trim();
                    let size = u64::from_str_radix(hex, 16)
                        .map_err(|_| body_err(format!("bad chunk size {hex:?}")))?;
                    if size == 0 {
                        // trailers, up to an empty line
                        while !self.line().await?.is_empty() {}
                        self.framing = Framing::Ended;
                    } else {
                        self.framing = Framing::Chunked(Some(size));
                    }
                }
                Framing::Chunked(Some(0)) => {
                    if !self.line().await?.is_empty() {
                        return Err(body_err("chunk not followed by CRLF"));
                    }
                    self.framing = Framing::Chunked(None);
                }
                Framing::Chunked(Some(rest)) => return Ok(rest),
            }
        }
    }

    /// Account for `n` data bytes consumed (`n == 0`: the connection ended).
    fn consumed(&mut self, n: u64) -> Result<()> {
        self.framing = match self.framing {
            Framing::Close if n == 0 => Framing::Ended,
            Framing::Length(rest) if n == 0 => {
                return Err(body_err(format!(
                    "connection closed {rest} bytes before the end"
                )))
            }
            Framing::Chunked(Some(_)) if n == 0 => {
                return Err(body_err("connection closed inside a chunk"))
            }
            Framing::Length(rest) => Framing::Length(rest - n.min(rest)),
            Framing::Chunked(Some(rest)) => Framing::Chunked(Some(rest - n.min(rest))),
            f => f,
        };
        Ok(())
    }

    /// The next step of a copy by splicing: buffered bytes first, then how many bytes to move from the socket.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(super) async fn next_raw(&mut self) -> Result<Raw> {
        self.small_lines = true;
        let ahead = self.data_ahead().await?;
        if ahead == 0 {
            return Ok(Raw::End);
        }
        if self.buf.is_empty() {
            return Ok(Raw::Socket(ahead));
        }
        let n = (self.buf.len() as u64).min(ahead) as usize;
        self.consumed(n as u64)?;
        Ok(Raw::Bytes(self.buf.split_to(n).freeze()))
    }

    /// Report `n` bytes moved out of the socket after [`Raw::Socket`] (0: the connection ended).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(super) fn advance_raw(&mut self, n: u64) -> Result<()> {
        self.consumed(n)
    }

    /// The next piece of the body, `None` at its end.
    pub(super) async fn next(&mut self) -> Result<Option<Bytes>> {
        let ahead = self.data_ahead().await?;
        if ahead == 0 {
            return Ok(None);
        }
        let b = self.take(ahead).await?;
        self.consumed(b.as_ref().map_or(0, |b| b.len() as u64))?;
        Ok(b)
    }

    /// The body as a stream of pieces (ending after the first error).
    pub(super) fn into_stream(self) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        futures::stream::unfold(Some(self), |body| async move {
            let mut body = body?;
            match body.next().await {
                Ok(Some(b)) => Some((Ok(b), Some(body))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;

    /// The body of `answer` (head included) as read by [`Body`], written to the reader in pieces of `step` bytes.
    async fn read_all(answer: &[u8], step: usize) -> (Head, Result<Vec<u8>>) {
        let (mut w, r) = tokio::io::duplex(64);
        let answer = answer.to_vec();
        tokio::spawn(async move {
            for piece in answer.chunks(step) {
                if w.write_all(piece).await.is_err() {
                    return;
                }
            }
        });
        let mut io = Conn::Other(Box::new(r));
        let mut buf = BytesMut::new();
        let h = read_head(&mut io, &mut buf).await.unwrap();
        let mut s = std::pin::pin!(Body::new(io, buf, &h).into_stream());
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            match c {
                Ok(c) => out.extend_from_slice(&c),
                Err(e) => return (h, Err(e)),
            }
        }
        (h, Ok(out))
    }

    #[tokio::test]
    async fn framings() {
        for step in [1, 3, 1000] {
            let (h, b) = read_all(
                b"HTTP/1.1 200 OK\r\ntask-id: OpaqueRef:t\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
                step,
            )
            .await;
            assert_eq!((h.status, h.task_id.as_deref()), (200, Some("OpaqueRef:t")));
            assert_eq!(b.unwrap(), b"hello");
            let (h, b) = read_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\n",
                step,
            )
            .await;
            assert_eq!(h.content_length, None);
            assert_eq!(b.unwrap(), b"abc0123456789");
            let (_, b) = read_all(b"HTTP/1.0 200 OK\r\n\r\nuntil the end", step).await;
            assert_eq!(b.unwrap(), b"until the end");
        }
    }

    #[tokio::test]
    async fn truncated_bodies_are_errors() {
        let (_, b) = read_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 7).await;
        assert!(
            matches!(&b, Err(Error::Transport(m)) if m.contains("5 bytes before the end")),
            "{b:?}"
        );
        let (_, b) = read_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort",
            7,
        )
        .await;
        assert!(matches!(&b, Err(Error::Transport(m)) if m.contains("inside a chunk")));
        let (_, b) = read_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            7,
        )
        .await;
        assert!(matches!(&b, Err(Error::Transport(m)) if m.contains("bad chunk size")));
        let (_, b) = read_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n0\r\n\r\n",
            7,
        )
        .await;
        assert!(matches!(&b, Err(Error::Transport(m)) if m.contains("CRLF")));
    }

    #[test]
    fn malformed_heads() {
        assert!(parse_head(b"garbage").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x").is_err());
        let h = parse_head(b"HTTP/1.1 302 Found\r\nLocation: http://h/x").unwrap();
        assert_eq!((h.status, h.location.as_deref()), (302, Some("http://h/x")));
    }
}
