//! Names of the sled trees and keys that make up the on-disk layout (stable across versions; a change needs a
//! migration).

/// Tree holding metadata (`schema_version`).
pub const META: &str = "meta";
/// Key in [`META`]: the schema version, ASCII decimal.
pub const SCHEMA_VERSION_KEY: &str = "schema_version";
/// Users by id (JSON [`crate::User`]).
pub const USERS: &str = "users";
/// Email → user id index (since schema 2).
pub const USERS_BY_EMAIL: &str = "users_by_email";
/// Groups by id.
pub const GROUPS: &str = "groups";
/// XAPI servers by id.
pub const SERVERS: &str = "servers";
/// Authentication tokens by id (hex SHA-256 of the secret).
pub const TOKENS: &str = "tokens";
/// Free-form settings (key → JSON).
pub const SETTINGS: &str = "settings";
/// Plugin state (plugin id → JSON).
pub const PLUGINS: &str = "plugins";
