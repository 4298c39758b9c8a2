//! The HTTP(S) listener: one axum router for `/api/` (WebSocket), the REST API (`/rest/v0`) and plain HTTP, TLS through rustls with
//! a provided or self-signed (rcgen) certificate, start-up and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::app::{App, StartError};
use crate::config::Config;

/// The axum router for an app.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/api/", get(crate::ws::api_upgrade))
        .route("/api/consoles/{*id}", get(crate::console::console_upgrade))
        .route(
            "/",
            get(|| async { "xo-server: JSON-RPC over WebSocket at /api/\n" }),
        )
        .merge(crate::rest::router())
        .fallback(crate::transfer::serve)
        .with_state(app)
}

fn tls_config(config: &Config) -> Result<rustls::ServerConfig, StartError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let err = |e: String| StartError::Listen(e);
    let (certs, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) =
        match (&config.cert, &config.key) {
            (Some(cert), Some(key)) => {
                let cert_pem =
                    std::fs::read(cert).map_err(|e| err(format!("{}: {e}", cert.display())))?;
                let key_pem =
                    std::fs::read(key).map_err(|e| err(format!("{}: {e}", key.display())))?;
                let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| err(format!("{}: {e}", cert.display())))?;
                let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
                    .map_err(|e| err(format!("{}: {e}", key.display())))?
                    .ok_or_else(|| err(format!("{}: no private key", key.display())))?;
                (certs, key)
            }
            _ => {
                let ck = rcgen::generate_simple_self_signed(vec![
                    "localhost".into(),
                    "127.0.0.1".into(),
                ])
                .map_err(|e| err(format!("self-signed certificate: {e}")))?;
                tracing::info!("using a generated self-signed certificate");
                (
                    vec![ck.cert.der().clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der())),
                )
            }
        };
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err(format!("TLS: {e}")))
}

/// A TLS listener for `axum::serve`: TCP accepts and handshakes run in a background task so that a slow
/// handshake never blocks the others.
struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, conn_tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let _ = conn_tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    break;
                }
            }
        });
        Ok(Self { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The peer address of a connection, for both plain and TLS listeners.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    app: App,
    local_addr: SocketAddr,
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://…` or `https://…` base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// WebSocket URL of the API (`ws://…/api/`).
    pub fn api_url(&self) -> String {
        format!("{}/api/", self.url.replacen("http", "ws", 1))
    }

    /// The application.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Stops accepting, closes every connection, and waits (up to 10 s) until every handle on the app is
    /// released, so that the database can be reopened right away.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for c in self.app.connections() {
            c.close(1001, "server shutting down");
        }
        self.app.tasks().release_watchers();
        let _ = (&mut self.task).await;
        let inner = Arc::downgrade(&self.app.inner);
        drop(self.app);
        for _ in 0..1000 {
            if inner.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!("application still referenced after shutdown");
    }

    /// Waits until the server stops (it runs until [`RunningServer::shutdown`]).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds the listener, runs start hooks, connects enabled servers, then serves.
pub async fn serve(app: App) -> Result<RunningServer, StartError> {
    let config = app.config().clone();
    let tls = config.uses_tls();
    let acceptor = if tls {
        Some(TlsAcceptor::from(Arc::new(tls_config(&config)?)))
    } else {
        None
    };
    let tcp = TcpListener::bind(config.listen)
        .await
        .map_err(|e| StartError::Listen(format!("{}: {e}", config.listen)))?;
    let local_addr = tcp
        .local_addr()
        .map_err(|e| StartError::Listen(e.to_string()))?;
    let url = format!("{}://{}", if tls { "https" } else { "http" }, local_addr);
    *app.inner.url.lock() = Some(url.clone());
    app.run_start_hooks().await?;
    app.connect_enabled_servers();

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let make = router(app.clone()).into_make_service_with_connect_info::<PeerAddr>();
    let shutdown = async move {
        let _ = stop_rx.await;
    };
    let task = if let Some(acceptor) = acceptor {
        let listener =
            TlsListener::new(tcp, acceptor).map_err(|e| StartError::Listen(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, make)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "server error");
            }
        })
    } else {
        tokio::spawn(async move {
            if let Err(e) = axum::serve(tcp, make)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "server error");
            }
        })
    };
    tracing::info!(%url, "xo-server listening");
    Ok(RunningServer {
        app,
        local_addr,
        url,
        stop: Some(stop_tx),
        task,
    })
}
