//! The seam between xo-server and XAPI pools: [`PoolConnector`] is called when servers are added, enabled,
//! disabled or removed, and answers their connection status for `server.getAll`.

use futures::future::BoxFuture;
use serde_json::{Map, Value};
use xo_store::Server;

use crate::app::App;

/// State of the connection to one XAPI server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not connected.
    #[default]
    Disconnected,
    /// Connecting.
    Connecting,
    /// Connected.
    Connected,
}

impl ConnectionState {
    /// XO's name (`server.getAll` `status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disconnected => "disconnected",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
        }
    }
}

/// What the connector knows about one server.
#[derive(Clone, Debug, Default)]
pub struct ServerStatus {
    /// Connection state.
    pub state: ConnectionState,
    /// Extra properties merged into `server.getAll` entries (`poolId`, `master`, `poolNameLabel`,
    /// `poolNameDescription`, `poolMembersAddresses`…).
    pub extra: Map<String, Value>,
}

/// A failed connection attempt.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    /// Human-readable message (no secrets).
    pub message: String,
    /// XAPI/OS error code if any (e.g. `SESSION_AUTHENTICATION_FAILED`).
    pub code: Option<String>,
    /// More about the failure, stored on the server and shown to admins (e.g. XO's `PoolAlreadyConnected`
    /// properties).
    pub data: Option<Map<String, Value>>,
}

/// `name` of XO's error for a pool already connected through another server.
const POOL_ALREADY_CONNECTED: &str = "PoolAlreadyConnected";

impl ConnectError {
    /// A failure with its message and, if any, its XAPI/OS code.
    pub fn new(message: impl Into<String>, code: Option<&str>) -> Self {
        ConnectError {
            message: message.into(),
            code: code.map(str::to_owned),
            data: None,
        }
    }

    /// XO's `PoolAlreadyConnected` (`this pool is already connected`): `connecting` reached the pool
    /// `pool_id`, which `connected` already connects.
    pub fn pool_already_connected(pool_id: &str, connected: &str, connecting: &str) -> Self {
        let mut data = Map::new();
        data.insert("poolId".into(), pool_id.into());
        data.insert("connectedServerId".into(), connected.into());
        data.insert("connectingServerId".into(), connecting.into());
        data.insert("name".into(), POOL_ALREADY_CONNECTED.into());
        ConnectError {
            message: "this pool is already connected".into(),
            code: None,
            data: Some(data),
        }
    }

    /// Whether this is [`ConnectError::pool_already_connected`].
    pub fn is_pool_already_connected(&self) -> bool {
        self.data
            .as_ref()
            .and_then(|d| d.get("name"))
            .and_then(Value::as_str)
            == Some(POOL_ALREADY_CONNECTED)
    }
}

/// Connects and disconnects XAPI pools. The app calls `connect` for enabled servers at start, on
/// `server.add` (autoConnect) and `server.enable`; `disconnect` on `server.disable` and `server.remove`.
/// Implementations publish pool objects through [`App::publish`]. Keep only a [`crate::WeakApp`] if the
/// connector must hold on to the app (the app owns the connector).
pub trait PoolConnector: Send + Sync + 'static {
    /// Connects to `server` (resolves once connected or failed).
    fn connect(&self, app: App, server: Server) -> BoxFuture<'static, Result<(), ConnectError>>;
    /// Disconnects the server with this id (no-op when not connected).
    fn disconnect(&self, app: App, server_id: String) -> BoxFuture<'static, ()>;
    /// Current status of a server.
    fn status(&self, _server_id: &str) -> ServerStatus {
        ServerStatus::default()
    }
}

/// The default connector: connects nothing (servers stay `disconnected`).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopConnector;

impl PoolConnector for NoopConnector {
    fn connect(&self, _app: App, _server: Server) -> BoxFuture<'static, Result<(), ConnectError>> {
        Box::pin(async { Ok(()) })
    }

    fn disconnect(&self, _app: App, _server_id: String) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}
