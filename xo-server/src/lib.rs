//! xo-server as a library: application state ([`App`], [`AppBuilder`]), the declarative method
//! [`Registry`], JSON-RPC over WebSocket at `/api/` ([`serve`]), the `all` notification broadcaster
//! ([`App::publish`]) and the [`PoolConnector`] seam towards XAPI pools.

mod alloc;
pub mod app;
pub mod auth;
pub mod config;
pub mod connection;
pub mod console;
pub mod context;
pub mod demo;
pub mod docs;
pub mod error;
pub mod http;
pub mod methods;
pub mod plugins;
pub mod pool;
pub mod registry;
pub mod rest;
pub mod rpc;
pub mod schema;
pub mod tasks;
pub mod transfer;
mod ws;
pub mod xapi;

pub use app::{now_ms, App, AppBuilder, PublishStats, StartError, StartHook, WeakApp};
pub use auth::{AuthProvider, AuthSuccess};
pub use config::{Config, ConfigError};
pub use connection::Connection;
pub use context::Ctx;
pub use error::ApiError;
pub use http::{router, serve, RunningServer};
pub use pool::{ConnectError, ConnectionState, NoopConnector, PoolConnector, ServerStatus};
pub use registry::{Access, Handler, Method, Registry, RegistryError, Reply};
