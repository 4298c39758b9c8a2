//! A simulated XCP-ng pool speaking XAPI (XML-RPC and JSON-RPC over HTTP/HTTPS on loopback), for tests and demos.
//!
//! Build a pool with [`Sim::builder`], serve it with [`Sim::serve`], then drive it through the returned
//! [`RunningPool`] (URLs, fault injection, direct state access).

pub mod db;
pub mod events;
pub mod faults;
pub mod generic;
pub mod ops;
pub mod rpc;
mod session;
pub mod state;
mod tasks;

pub use db::{Db, Record};
pub use faults::Faults;
pub use rpc::{Ctx, Handler, Registry};
pub use state::{PoolState, SimConfig};
