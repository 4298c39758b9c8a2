//! Shared harness for the end-to-end and peer-compatibility suites of the `xo-tests` crate.
//!
//! - [`sim`]: start a simulated XCP-ng pool (xapi-sim) in-process on `127.0.0.1:0`, on its own
//!   runtime thread, so that synchronous tests and child processes can talk to it.
//! - [`child`]: run a child process with a time limit and captured output.
//! - [`peers`]: locate the provisioned peer clients (`.venv`, `tests/peers/node_modules`) and
//!   run a peer script against a pool, failing loudly when `scripts/setup-peers.sh` was not run.

pub mod child;
pub mod error;
pub mod paths;
pub mod peers;
pub mod sim;

pub use child::{run_with_timeout, ChildOutput};
pub use error::HarnessError;
pub use peers::{run_peer, Peer, PeerTarget};
pub use sim::{SimOptions, SimPool};
