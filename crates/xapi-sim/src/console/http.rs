//! HTTP side of `/console`: the classic `CONNECT /console?… HTTP/1.0` tunnel (answered `HTTP/1.1 200 OK` exactly
//! like XAPI, so it is handled before hyper sees the connection) and, through the sim's hyper router, the
//! WebSocket form (`GET /console` with `Upgrade: websocket`, RFB in binary frames) and CONNECT on an HTTP/1.1
//! keep-alive connection.

use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use xapi_types::Ref;

use super::lookup::{alive, resolve, Refusal, Target, REALM};
use super::stream::Prefixed;
use super::{rfb, LIVENESS_POLL};
use crate::state::PoolState;

/// Largest CONNECT request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Buffer of the WebSocket ↔ RFB bridge.
const BRIDGE_BUF: usize = 64 * 1024;

const CONNECT: &[u8] = b"CONNECT ";

/// Look at the start of a fresh connection: a `CONNECT` request is served here (console tunnel) and `None` is
/// returned; anything else comes back, with the bytes read so far put back, for the HTTP server.
pub(crate) async fn intercept<S>(mut io: S, pool: Arc<PoolState>, host: Ref) -> Option<Prefixed<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut buf = Vec::with_capacity(1024);
    let mut tmp = [0u8; 1024];
    while buf.len() < CONNECT.len() && CONNECT.starts_with(&buf) {
        match io.read(&mut tmp).await {
            Ok(0) | Err(_) => return Some(Prefixed::new(buf, io)),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    if !buf.starts_with(CONNECT) {
        return Some(Prefixed::new(buf, io));
    }
    if let Err(e) = tunnel(buf, io, &pool, &host).await {
        tracing::debug!("console tunnel ended: {e}");
    }
    None
}

/// Serve a raw `CONNECT` request whose first bytes are in `buf`.
async fn tunnel<S>(
    mut buf: Vec<u8>,
    mut io: S,
    pool: &Arc<PoolState>,
    host: &Ref,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return reply(&mut io, &status_only(400, "Bad Request")).await;
        }
        let n = io.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let rest = buf.split_off(head_end);
    let Ok(head) = std::str::from_utf8(&buf) else {
        return reply(&mut io, &status_only(400, "Bad Request")).await;
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (_method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(target), Some(version)) = (target, version) else {
        return reply(&mut io, &status_only(400, "Bad Request")).await;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return reply(&mut io, &status_only(400, "Bad Request")).await;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/console" {
        return reply(&mut io, &status_only(404, "Not Found")).await;
    }
    let cookies: Vec<String> = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("cookie"))
        .map(|(_, v)| v.trim().to_owned())
        .collect();
    match resolve(pool, host, query, &cookies) {
        Err(Refusal::Unauthorised) => reply(&mut io, &unauthorised_raw()).await,
        Err(Refusal::Failure(why)) => {
            tracing::debug!("console request refused: {why}");
            reply(&mut io, &internal_error_raw(&why)).await
        }
        Ok(t) => {
            let slot = match t.screen.enter(&t.user, t.limited) {
                Ok(slot) => slot,
                Err(users) => return reply(&mut io, &limit_exceeded_raw(&users)).await,
            };
            io.write_all(
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n",
            )
            .await?;
            io.flush().await?;
            tracing::debug!(console = t.console.as_str(), "console tunnel opened");
            run_rfb(Prefixed::new(rest, io), t, pool.clone(), host.clone()).await;
            drop(slot);
            Ok(())
        }
    }
}

async fn reply<S: AsyncWrite + Unpin>(io: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    io.write_all(bytes).await?;
    io.flush().await?;
    io.shutdown().await
}

fn status_only(code: u16, reason: &str) -> Vec<u8> {
    format!("HTTP/1.1 {code} {reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        .into_bytes()
}

fn unauthorised_raw() -> Vec<u8> {
    format!(
        "HTTP/1.1 401 Unauthorised\r\nConnection: close\r\nCache-Control: no-cache, no-store\r\n\
         WWW-Authenticate: Basic realm=\"{REALM}\"\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}

/// XAPI's page when `pool.limit_console_sessions` is set and someone is connected.
fn limit_page(users: &[String]) -> String {
    let users: Vec<String> = users.iter().map(|u| escape(u)).collect();
    let who = match users.as_slice() {
        [one] => format!("User '{one}' is"),
        many => format!("Users '{}' are", many.join(", ")),
    };
    format!(
        "<html><body><h1>Connection Limit Exceeded</h1><p>{who} currently connected to this console. No new \
         connections are allowed. Please check the limit_console_sessions config and try again later.</p></body></html>"
    )
}

fn limit_exceeded_raw(users: &[String]) -> Vec<u8> {
    let body = limit_page(users);
    format!(
        "HTTP/1.1 503 Connection Limit Exceeded\r\nConnection: close\r\nContent-Type: text/html\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn error_page(detail: &str) -> String {
    let esc = escape(detail);
    format!(
        "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; please wait a while and \
         try again. If the problem persists, please contact your support representative.<h1> Additional \
         information </h1>{esc}</body></html>"
    )
}

fn internal_error_raw(detail: &str) -> Vec<u8> {
    let body = error_page(detail);
    format!(
        "HTTP/1.1 500 Internal Error\r\nConnection: close\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Run the RFB server on `io` for an accepted target until the client leaves or the console goes away.
async fn run_rfb<S>(io: S, t: Target, pool: Arc<PoolState>, host: Ref)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (console, vm) = (t.console.clone(), t.vm.clone());
    let check = move || alive(&pool, &host, &console, &vm);
    if let Err(e) = rfb::serve(io, t.screen, check, LIVENESS_POLL, t.idle).await {
        tracing::debug!("RFB session ended: {e}");
    }
}

fn response(status: StatusCode, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("text/plain")),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    r
}

/// `/console` requests routed by the HTTP server: the WebSocket form (`GET` + `Upgrade: websocket`) and `CONNECT`
/// on an HTTP/1.1 connection. The connection must be served with upgrades enabled.
pub(crate) async fn handle(
    mut req: Request<Incoming>,
    pool: Arc<PoolState>,
    host: Ref,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    if method != Method::GET && method != Method::CONNECT {
        return response(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"Not found"),
        );
    }
    let query = req.uri().query().unwrap_or_default().to_owned();
    let cookies: Vec<String> = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let t = match resolve(&pool, &host, &query, &cookies) {
        Ok(t) => t,
        Err(Refusal::Unauthorised) => {
            let mut r = response(StatusCode::UNAUTHORIZED, "text/plain", Bytes::new());
            if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{REALM}\"")) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        Err(Refusal::Failure(why)) => {
            tracing::debug!("console request refused: {why}");
            return response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/html",
                Bytes::from(error_page(&why)),
            );
        }
    };
    if method == Method::CONNECT {
        let slot = match t.screen.enter(&t.user, t.limited) {
            Ok(slot) => slot,
            Err(users) => {
                let mut r = response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/html",
                    Bytes::from(limit_page(&users)),
                );
                r.extensions_mut()
                    .insert(hyper::ext::ReasonPhrase::from_static(
                        b"Connection Limit Exceeded",
                    ));
                return r;
            }
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(up) => run_rfb(TokioIo::new(up), t, pool, host).await,
                Err(e) => tracing::debug!("CONNECT upgrade failed: {e}"),
            }
            drop(slot);
        });
        let mut r = response(StatusCode::OK, "text/plain", Bytes::new());
        r.headers_mut().remove(header::CONTENT_TYPE);
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        return r;
    }
    // XAPI's WebSocket path refuses outright while `limit_console_sessions` is set.
    if t.limited {
        return response(StatusCode::SERVICE_UNAVAILABLE, "text/plain", Bytes::new());
    }
    let h = req.headers();
    let is_ws = h
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = h.get(header::SEC_WEBSOCKET_KEY).cloned();
    let (true, Some(key)) = (is_ws, key) else {
        // XAPI: a GET that cannot be upgraded is answered 501.
        return response(
            StatusCode::NOT_IMPLEMENTED,
            "text/plain",
            Bytes::from_static(b"Not implemented"),
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None).await;
                ws_session(ws, t, pool, host).await;
            }
            Err(e) => tracing::debug!("WebSocket upgrade failed: {e}"),
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("binary"),
    );
    r
}

/// Bridge a server-side WebSocket to the RFB server: client binary frames are RFB input, RFB output goes out as
/// binary frames; either side ending ends the other (a Close frame is sent when the console goes away).
async fn ws_session<S>(ws: WebSocketStream<S>, t: Target, pool: Arc<PoolState>, host: Ref)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (server_io, mut bridge) = tokio::io::duplex(BRIDGE_BUF);
    let rfb_side = run_rfb(server_io, t, pool, host);
    let pump = async move {
        let (mut sink, mut stream) = ws.split();
        let mut buf = vec![0u8; BRIDGE_BUF];
        loop {
            tokio::select! {
                m = stream.next() => match m {
                    Some(Ok(Message::Binary(b))) => {
                        if bridge.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                n = bridge.read(&mut buf) => match n {
                    Ok(0) | Err(_) => {
                        let _ = sink.send(Message::Close(None)).await;
                        break;
                    }
                    Ok(n) => {
                        if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                },
            }
        }
        let _ = sink.close().await;
    };
    tokio::join!(rfb_side, pump);
}
