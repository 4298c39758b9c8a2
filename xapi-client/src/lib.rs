//! XAPI client: JSON-RPC (XML-RPC fallback) over HTTP or HTTPS (rustls) to XCP-ng / XenServer pools.
//!
//! - [`Client`]: login following `HOST_IS_SLAVE`, generic [`Client::call`] with the session inserted, re-login
//!   on `SESSION_INVALID`, bounded concurrency and per-call timeouts; typed helpers (`get_all_records`, …).
//! - Async tasks: [`Client::call_async`] awaits tasks through `event.from`, no polling.
//! - [`Client::watch`]: a [`Watch`] stream of [`WatchEvent`]s (full `Reset`, incremental `Changes`,
//!   `Disconnected`) for cache engines.
//!
//! Values are `serde_json::Value` in the canonical form described in [`xapi_types`]. Passwords and session ids are
//! [`Secret`]s: never printed by `Debug`, never logged.
//!
//! ```no_run
//! use futures::StreamExt;
//! use serde_json::json;
//! use xapi_client::{Client, ClientOptions, WatchEvent, WatchOptions};
//!
//! # async fn demo() -> Result<(), xapi_client::Error> {
//! let opts = ClientOptions::new("https://192.168.1.10", "root", "password").allow_unauthorized(true);
//! let client = Client::connect(opts).await?; // follows HOST_IS_SLAVE to the master
//! let vms = client.get_all_records("VM").await?; // Vec<(Ref, Map<String, Value>)>
//! if let Some((vm, _)) = vms.first() {
//!     // Async.VM.start, awaited through task events; the task is destroyed afterwards.
//!     client.call_async("VM.start", vec![json!(vm.0), json!(false), json!(false)]).await?;
//! }
//! let mut events = client.watch(WatchOptions::default());
//! while let Some(ev) = events.next().await {
//!     match ev {
//!         WatchEvent::Reset { records } => { /* replace everything: class -> [(ref, record)] */ }
//!         WatchEvent::Changes(changes) => { /* apply add/mod (snapshot) and del, in order */ }
//!         WatchEvent::Disconnected { error, retry_in } => { /* mark the pool disconnected */ }
//!     }
//! }
//! client.logout().await
//! # }
//! ```

mod client;
mod compact;
mod error;
mod events;
mod http;
mod options;
mod rpc;
mod secret;
mod task;
mod task_hub;
mod tls;
mod transfer;
mod watch;

pub use client::Client;
pub use error::{Error, Result, XapiError};
pub use events::{parse_event_batch, ClassNames, EventBatch, ObjectChange, Op};
pub use options::ClientOptions;
pub use rpc::Protocol;
pub use secret::Secret;
pub use task::task_outcome;
pub use transfer::{fetch_url, Download, Piped, Upload, UNKNOWN_LENGTH};
pub use watch::{ClassRecords, FieldFilter, Watch, WatchEvent, WatchOptions};
pub use xapi_types::{Ref, Value};
