//! The record types stored in each collection, with XO's JSON field names.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A user's global permission level (`none < read < write < admin`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// No global permission (the default).
    #[default]
    None,
    /// Read.
    Read,
    /// Write.
    Write,
    /// Administrator: bypasses every check.
    Admin,
}

impl Permission {
    /// Parses XO's permission names.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Self::None,
            "read" => Self::Read,
            "write" => Self::Write,
            "admin" => Self::Admin,
            _ => return None,
        })
    }

    /// XO's name for this level.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

/// A user account.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// uuid v4.
    pub id: String,
    /// Unique login name.
    pub email: String,
    /// Argon2 PHC string; absent for users from external providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pw_hash: Option<String>,
    /// Global permission.
    #[serde(default)]
    pub permission: Permission,
    /// Ids of the groups the user belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Free-form preferences.
    #[serde(default)]
    pub preferences: Map<String, Value>,
    /// External providers the user is synchronised with (`{<provider>: {id, data?}}`).
    #[serde(
        default,
        rename = "authProviders",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_providers: Option<Map<String, Value>>,
}

impl User {
    /// The public properties XO sends to clients: `{id, email, permission, groups, preferences,
    /// authProviders?}` (never the password hash).
    pub fn public(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), self.id.clone().into());
        m.insert("email".into(), self.email.clone().into());
        m.insert("groups".into(), self.groups.clone().into());
        m.insert("permission".into(), self.permission.as_str().into());
        m.insert(
            "preferences".into(),
            Value::Object(self.preferences.clone()),
        );
        if let Some(p) = &self.auth_providers {
            m.insert("authProviders".into(), Value::Object(p.clone()));
        }
        Value::Object(m)
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("pw_hash", &self.pw_hash.as_ref().map(|_| "<redacted>"))
            .field("permission", &self.permission)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// A group of users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// uuid v4.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Member user ids.
    #[serde(default)]
    pub users: Vec<String>,
    /// Provider that synchronises this group (e.g. `ldap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Id of the group at the provider.
    #[serde(
        default,
        rename = "providerGroupId",
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_group_id: Option<String>,
}

/// A registered XAPI server (pool master address and credentials).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    /// uuid v4.
    pub id: String,
    /// Host name or address, optionally with a port.
    pub host: String,
    /// XAPI user name.
    pub username: String,
    /// XAPI password (never sent back to clients, never logged).
    pub password: String,
    /// Accept self-signed certificates.
    #[serde(default, rename = "allowUnauthorized")]
    pub allow_unauthorized: bool,
    /// Whether xo-server should stay connected to it.
    #[serde(default)]
    pub enabled: bool,
    /// User-given label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Refuse state-changing calls on this pool.
    #[serde(default, rename = "readOnly")]
    pub read_only: bool,
    /// HTTP proxy URL.
    #[serde(default, rename = "httpProxy", skip_serializing_if = "Option::is_none")]
    pub http_proxy: Option<String>,
    /// Last connection error (serialised), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("id", &self.id)
            .field("host", &self.host)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("allow_unauthorized", &self.allow_unauthorized)
            .field("enabled", &self.enabled)
            .field("label", &self.label)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// What `server.add` provides.
#[derive(Clone, Default)]
pub struct NewServer {
    /// Host name or address.
    pub host: String,
    /// XAPI user name.
    pub username: String,
    /// XAPI password.
    pub password: String,
    /// Optional label.
    pub label: Option<String>,
    /// Accept self-signed certificates.
    pub allow_unauthorized: bool,
    /// Connect now and at every start.
    pub enabled: bool,
    /// Optional HTTP proxy.
    pub http_proxy: Option<String>,
}

impl std::fmt::Debug for NewServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewServer")
            .field("host", &self.host)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// An authentication token. The secret itself is never stored: `id` is its hex SHA-256.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Token {
    /// Hex SHA-256 of the secret (see [`crate::hash_token_secret`]).
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Expiry, ms since the epoch.
    pub expiration: i64,
    /// Free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Client the token belongs to (`{id, …}`), reused by `token.create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Value>,
    /// Last uses by IP: `{<ip>: {timestamp}}`, at most 10 entries.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub last_uses: Map<String, Value>,
}

impl Token {
    /// `client.id` if any.
    pub fn client_id(&self) -> Option<&str> {
        self.client.as_ref()?.get("id")?.as_str()
    }
}
