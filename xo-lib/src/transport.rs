//! Byte streams towards the server: TCP, optionally wrapped in TLS, then either a WebSocket (the API) or
//! a one-shot HTTP/1.1 exchange (transfers).

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

use crate::endpoint::Endpoint;
use crate::error::Error;

/// A bidirectional byte stream (plain TCP or TLS).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The API WebSocket.
pub(crate) type Socket = WebSocketStream<Box<dyn Io>>;

/// Largest accepted message from the server (xo-server allows 100 MiB; big pools send big snapshots).
const MAX_MESSAGE: usize = 256 << 20;

/// Opens TCP (+ TLS when the endpoint is secure) within `timeout`.
pub(crate) async fn open_stream(
    ep: &Endpoint,
    tls: &Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<Box<dyn Io>, Error> {
    let url = ep.http_base();
    let fail = |reason: String| Error::Connect {
        url: url.clone(),
        reason,
    };
    let fut = async {
        let tcp = TcpStream::connect((ep.bare_host(), ep.port()))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        if !ep.is_secure() {
            return Ok(Box::new(tcp) as Box<dyn Io>);
        }
        let name = ServerName::try_from(ep.bare_host().to_owned())
            .map_err(|e| fail(format!("invalid server name: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| fail(format!("TLS: {e}")))?;
        Ok(Box::new(tls) as Box<dyn Io>)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| fail("timed out".into()))?
}

/// Opens the API WebSocket.
pub(crate) async fn open_socket(
    ep: &Endpoint,
    tls: &Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<Socket, Error> {
    let url = ep.ws_url();
    let stream = open_stream(ep, tls, timeout).await?;
    let request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::Connect {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let handshake = tokio_tungstenite::client_async_with_config(request, stream, Some(config));
    let (socket, _response) = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| Error::Connect {
            url: url.clone(),
            reason: "WebSocket handshake timed out".into(),
        })?
        .map_err(|e| Error::Connect {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    Ok(socket)
}
