//! Console proxy: bridges a WebSocket (noVNC in a browser, via xo-server) to an XAPI VM or host console.
//!
//! The console is reached like XO does for hosts without the WebSocket console endpoint: TCP (TLS for `https`
//! locations) to the host in `console.location`, `CONNECT <path>?<query>&session_id=<session> HTTP/1.0` (the
//! session also goes in a `session_id` cookie), a `200` answer, then the socket is a raw RFB byte pipe. Binary
//! WebSocket frames carry those bytes unchanged in both directions.
//!
//! ```no_run
//! # async fn demo(
//! #     ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
//! # ) -> Result<(), console_proxy::ProxyError> {
//! use console_proxy::{proxy, ConsoleTarget, Limits};
//! let target = ConsoleTarget::new("https://10.0.0.5/console?ref=OpaqueRef:…", "OpaqueRef:session…")
//!     .allow_unauthorized(true);
//! let stats = proxy(ws, &target, &Limits::default()).await?;
//! println!("{} bytes to the console, ended: {:?}", stats.bytes_to_console, stats.end);
//! # Ok(()) }
//! ```
//!
//! To answer the upgrade only once the console is known to be reachable, call [`open_console`] first and then
//! [`pump`] with the upgraded socket. Any message type implementing [`WsMessage`] works (tungstenite's; axum's
//! with the `axum` feature). For interactive latency, disable Nagle on the client-facing TCP socket
//! (`TcpStream::set_nodelay(true)`); the proxy does so on the console side.

mod connect;
mod error;
mod message;
mod pump;
mod target;
mod tls;

use std::fmt::Display;
use std::time::Instant;

use futures::{Sink, SinkExt, Stream};

pub use connect::{ConsoleIo, Tunnel};
pub use error::ProxyError;
pub use message::{Incoming, WsMessage};
pub use pump::{pump, EndReason, ProxyStats};
pub use target::{ConsoleTarget, Limits};

/// Open the console tunnel (TCP/TLS + CONNECT + 200 check) within `limits.connect_timeout`.
pub async fn open_console(target: &ConsoleTarget, limits: &Limits) -> Result<Tunnel, ProxyError> {
    connect::open(target, limits.connect_timeout).await
}

/// Open the console of `target` and pump between it and `ws` until either side closes or a limit is hit. When the
/// console cannot be opened, `ws` gets a Close frame (1011) and the error is returned.
pub async fn proxy<S, M, E>(
    mut ws: S,
    target: &ConsoleTarget,
    limits: &Limits,
) -> Result<ProxyStats, ProxyError>
where
    S: Stream<Item = Result<M, E>> + Sink<M> + Unpin,
    <S as Sink<M>>::Error: Display,
    M: WsMessage,
    E: Display,
{
    let start = Instant::now();
    match open_console(target, limits).await {
        Ok(tunnel) => pump::pump_from(ws, tunnel, limits, start).await,
        Err(e) => {
            tracing::debug!("console unavailable: {e}");
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                let _ = ws.send(M::close(1011, "console unavailable")).await;
                let _ = ws.close().await;
            })
            .await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// The proxy future can be spawned on a multi-threaded runtime.
    #[allow(dead_code)]
    fn proxy_futures_are_send(
        ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
        t: ConsoleTarget,
    ) {
        let limits = Limits::default();
        let f = proxy(ws, &t, &limits);
        assert_send(&f);
    }

    #[cfg(feature = "axum")]
    #[allow(dead_code)]
    fn axum_sockets_work(ws: axum::extract::ws::WebSocket, t: ConsoleTarget) {
        let limits = Limits::default();
        let f = proxy(ws, &t, &limits);
        assert_send(&f);
    }
}
