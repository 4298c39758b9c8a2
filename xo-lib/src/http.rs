//! One-shot HTTP transfers behind `$getFrom` / `$sendTo` results: GET a download, POST an upload, over
//! the same TCP/TLS settings as the API connection, streamed in both directions.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::client::Xo;
use crate::error::{Error, Result};
use crate::transport::open_stream;

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

const UPLOAD_CHUNK: usize = 256 << 10;

/// A transfer a method asked for: its result was `{"$getFrom": path}` or `{"$sendTo": path}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// Download with GET.
    GetFrom(String),
    /// Upload with POST.
    SendTo(String),
}

impl Transfer {
    /// Recognises a transfer result: an object with exactly one key, `$getFrom` or `$sendTo`, holding a
    /// string.
    pub fn from_result(v: &Value) -> Option<Transfer> {
        let o = v.as_object()?;
        if o.len() != 1 {
            return None;
        }
        let (k, v) = o.iter().next()?;
        let path = v.as_str()?.to_owned();
        match k.as_str() {
            "$getFrom" => Some(Transfer::GetFrom(path)),
            "$sendTo" => Some(Transfer::SendTo(path)),
            _ => None,
        }
    }

    /// The path.
    pub fn path(&self) -> &str {
        match self {
            Transfer::GetFrom(p) | Transfer::SendTo(p) => p,
        }
    }
}

/// An HTTP download in progress.
#[derive(Debug)]
pub struct Download {
    content_length: Option<u64>,
    body: hyper::body::Incoming,
}

impl Download {
    /// `Content-Length` announced by the server.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The next chunk of the body (`None` at the end).
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(Error::Transfer(e.to_string())),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// Copies the whole body into `out`, calling `progress(bytes so far)` after each chunk; returns the
    /// byte count.
    pub async fn copy_to<W: AsyncWrite + Unpin>(
        mut self,
        out: &mut W,
        mut progress: impl FnMut(u64),
    ) -> Result<u64> {
        let mut n = 0u64;
        while let Some(chunk) = self.chunk().await? {
            out.write_all(&chunk).await?;
            n += chunk.len() as u64;
            progress(n);
        }
        out.flush().await?;
        if let Some(expected) = self.content_length {
            if expected != n {
                return Err(Error::Transfer(format!(
                    "body ended after {n} of {expected} bytes"
                )));
            }
        }
        Ok(n)
    }
}

async fn body_text(resp: Response<hyper::body::Incoming>) -> String {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(Ok(f)) = body.frame().await {
        if let Ok(d) = f.into_data() {
            out.extend_from_slice(&d);
            if out.len() >= 64 << 10 {
                out.truncate(64 << 10);
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Xo {
    /// The absolute HTTP URL of a transfer path (`new URL(path, "http(s)://host/api/")`).
    pub fn transfer_url(&self, path: &str) -> Result<String> {
        let (ep, pq) = self.shared.endpoint.resolve(path)?;
        let scheme = if ep.is_secure() { "https" } else { "http" };
        Ok(format!("{scheme}://{}{pq}", ep.authority()))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body,
        len: Option<u64>,
    ) -> Result<Response<hyper::body::Incoming>> {
        let (ep, pq) = self.shared.endpoint.resolve(path)?;
        let io = open_stream(&ep, &self.shared.tls, self.shared.options.connect_timeout).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| Error::Transfer(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "transfer connection ended with an error");
            }
        });
        let mut req = Request::builder()
            .method(method)
            .uri(pq)
            .header(HOST, ep.authority())
            .header(USER_AGENT, concat!("xo-lib/", env!("CARGO_PKG_VERSION")));
        if let Some(n) = len {
            req = req
                .header(CONTENT_LENGTH, n)
                .header(CONTENT_TYPE, "application/octet-stream");
        }
        let req = req.body(body).map_err(|e| Error::Transfer(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Error::Transfer(e.to_string()))?;
        if !resp.status().is_success() {
            let status = resp.status();
            return Err(Error::HttpStatus {
                status: status.as_u16(),
                reason: status.canonical_reason().unwrap_or("").to_owned(),
                body: body_text(resp).await,
            });
        }
        Ok(resp)
    }

    /// GETs a `$getFrom` path; non-2xx ⇒ [`Error::HttpStatus`].
    pub async fn download(&self, path: &str) -> Result<Download> {
        let body = Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        let resp = self.send(Method::GET, path, body, None).await?;
        let content_length = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok(Download {
            content_length,
            body: resp.into_body(),
        })
    }

    /// POSTs `reader` to a `$sendTo` path (with `Content-Length` when `len` is known, chunked
    /// otherwise), calling `progress(bytes sent so far)`; returns the response body as text (usually a
    /// JSON-RPC response). Non-2xx ⇒ [`Error::HttpStatus`].
    pub async fn upload<R>(
        &self,
        path: &str,
        reader: R,
        len: Option<u64>,
        progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<String>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let stream = futures::stream::unfold(
            (reader, progress, 0u64, false),
            |(mut reader, mut progress, sent, done)| async move {
                if done {
                    return None;
                }
                let mut buf = vec![0u8; UPLOAD_CHUNK];
                match reader.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        let sent = sent + n as u64;
                        progress(sent);
                        Some((
                            Ok(Frame::data(Bytes::from(buf))),
                            (reader, progress, sent, false),
                        ))
                    }
                    Err(e) => Some((Err(e), (reader, progress, sent, true))),
                }
            },
        );
        let body = BodyExt::boxed_unsync(StreamBody::new(stream));
        let resp = self.send(Method::POST, path, body, len).await?;
        Ok(body_text(resp).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transfer_results() {
        assert_eq!(
            Transfer::from_result(&json!({"$getFrom": "/api/x"})),
            Some(Transfer::GetFrom("/api/x".into()))
        );
        assert_eq!(
            Transfer::from_result(&json!({"$sendTo": "/api/y"})).map(|t| t.path().to_owned()),
            Some("/api/y".into())
        );
        assert_eq!(
            Transfer::from_result(&json!({"$getFrom": "/a", "b": 1})),
            None
        );
        assert_eq!(Transfer::from_result(&json!({"$getFrom": 1})), None);
        assert_eq!(Transfer::from_result(&json!("x")), None);
    }
}
