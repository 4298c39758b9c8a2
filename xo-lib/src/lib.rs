//! Rust client library for xo-server (JSON-RPC 2.0 over WebSocket at `/api/`), the counterpart of
//! Xen Orchestra's `xo-lib`.
//!
//! - [`Xo::connect`] opens `ws://` or `wss://` (with [`Options::allow_unauthorized`] for self-signed
//!   certificates), signs in with a password or a token ([`Credentials`]), and reconnects with a
//!   fibonacci [`Backoff`] when asked to, signing in again.
//! - [`Xo::call`] calls any method; server errors come back as [`Error::Api`] carrying XO's `code`,
//!   `message` and `data` ([`ApiError`], [`codes`]).
//! - [`Xo::events`] delivers notifications (`all`) and connection [`Event`]s.
//! - [`ObjectCache`] keeps every XO object in sync from `xo.getAllObjects` + `all` events, resyncing
//!   after a reconnection.
//! - [`Transfer`], [`Xo::download`] and [`Xo::upload`] follow `$getFrom` / `$sendTo` results.
//!
//! ```no_run
//! # async fn demo() -> Result<(), xo_lib::Error> {
//! use xo_lib::{Credentials, Options, Xo};
//! let xo = Xo::connect(
//!     Options::new("http://127.0.0.1:8080").credentials(Credentials::password("admin@admin.net", "admin")),
//! )
//! .await?;
//! println!("xo-server {}", xo.server_version().await?);
//! for vm in xo.list_vms().await? {
//!     println!("{} {}", vm["id"], vm["name_label"]);
//! }
//! # Ok(()) }
//! ```

mod cache;
mod client;
mod endpoint;
mod error;
mod helpers;
mod http;
mod options;
mod tls;
mod transport;
mod types;

pub use cache::{CacheEvent, ObjectCache};
pub use client::{Event, Xo, FIRST_REQUEST_ID};
pub use endpoint::Endpoint;
pub use error::{codes, ApiError, Error, Result};
pub use helpers::wait_for_power_state;
pub use http::{Download, Transfer};
pub use options::{Backoff, Options};
pub use types::{
    Credentials, MethodInfo, Notification, ObjectsChange, Permission, TokenOptions, User,
};
