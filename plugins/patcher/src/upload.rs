//! `PUT /update?session_id&task_id` on the pool master with a streamed body of known length (hyper client).

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{header, Request, Uri};
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use xapi_client::{Client, Ref};

use crate::{Error, Result};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Percent-encoding of a query component.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Stream `body` (exactly `length` bytes) to the master's `/update`, inside `task`; the HTTP status.
pub(crate) async fn put_update<S>(client: &Client, task: &Ref, length: u64, body: S) -> Result<u16>
where
    S: Stream<Item = std::result::Result<Bytes, String>> + Send + 'static,
{
    let t = |e: String| Error::Transport(format!("update upload: {e}"));
    let uri: Uri = client
        .url()
        .parse()
        .map_err(|e| t(format!("bad pool URL: {e}")))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or_else(|| t("no host in the pool URL".into()))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let session = client
        .session_id()
        .ok_or_else(|| t("not logged in".into()))?;
    let pq = format!(
        "/update?session_id={}&task_id={}",
        enc(session.expose()),
        enc(&task.0)
    );
    let frames = body.map(|r| r.map(Frame::data).map_err(BoxError::from));
    let req = Request::put(pq)
        .header(
            header::HOST,
            uri.authority().map(|a| a.as_str()).unwrap_or(&host),
        )
        .header(header::CONTENT_LENGTH, length)
        .header(header::USER_AGENT, "xo-rs-patcher")
        .body(StreamBody::new(frames))
        .map_err(|e| t(e.to_string()))?;
    let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| t(format!("connecting to {host}:{port}: {e}")))?;
    let status = if https {
        let cfg = client
            .tls_config()
            .ok_or_else(|| t("https without TLS configuration".into()))?;
        let name =
            rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| t(e.to_string()))?;
        let s = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| t(format!("TLS: {e}")))?;
        send(s, req).await?
    } else {
        send(tcp, req).await?
    };
    Ok(status)
}

async fn send<T, B>(io: T, req: Request<B>) -> Result<u16>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body<Data = Bytes, Error = BoxError> + Send + 'static,
{
    let t = |e: hyper::Error| Error::Transport(format!("update upload: {e}"));
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(t)?;
    let conn = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("update upload connection: {e}");
        }
    });
    let r = tx.send_request(req).await.map_err(t);
    drop(tx);
    let _ = conn.await;
    Ok(r?.status().as_u16())
}
