//! Persistence for xo-server on sled: users, groups, XAPI servers, authentication tokens, settings and plugin
//! state, as typed collections of JSON records.
//!
//! Invariants:
//! - every write that returns `Ok` has been flushed to disk (`sled::Db::flush`) first;
//! - user emails are unique (secondary index tree, updated in the same transaction as the record);
//! - token secrets are never stored: a token's `id` is the hex SHA-256 of the secret handed to the client;
//! - the database carries a schema version; [`Store::open`] runs the registered migrations up to
//!   [`SCHEMA_VERSION`] and refuses databases written by a newer version.

mod collection;
mod error;
pub mod layout;
mod migrate;
mod password;
mod records;
mod store;
mod token;

pub use collection::{Collection, Record};
pub use error::{Result, StoreError};
pub use migrate::{migrations, SCHEMA_VERSION};
pub use password::HashParams;
pub use records::{Group, NewServer, Permission, Server, Token, User};
pub use store::{Store, StoreOptions};
pub use token::{hash_token_secret, new_token_secret};
