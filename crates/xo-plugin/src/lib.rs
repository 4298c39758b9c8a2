//! The xo-server plugin contract, free of any xo-server dependency.
//!
//! A [`Plugin`] describes itself (name, version, description, JSON-schema configuration with secret
//! fields, presets, test schema) and implements `configure`, `load`, `unload` and `test`. The server
//! registers plugins at start-up, keeps which are loaded and their configuration in its store, and hands
//! each plugin a [`PluginHost`]: the plugin adds API methods ([`MethodDef`]) and authentication providers
//! ([`AuthProvider`]) through it, stores its own data, looks up XO objects and users, and may install the
//! server's [`AccessControl`] (the ACL plugin does). Whatever a plugin registered disappears when it
//! unloads, even if its `unload` forgets to remove it.

mod access;
mod auth;
mod directory;
mod error;
mod host;
mod method;
mod plugin;

pub use access::{AccessControl, BatchVisibility};
pub use auth::{AuthOutcome, AuthProvider};
pub use directory::{DirectoryGroup, DirectoryUser};
pub use error::PluginError;
pub use host::{GroupInfo, PluginHost, UserInfo};
pub use method::{CallContext, MethodDef, MethodHandler, MethodPermission, ResolveSpec};
pub use plugin::{Manifest, Plugin};

/// A boxed, sendable future (what every async plugin hook returns).
pub type BoxFuture<'a, T> = futures::future::BoxFuture<'a, T>;
