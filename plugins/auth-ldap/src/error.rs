//! Errors of the LDAP plugin (none of them carries a password).

use xo_plugin::PluginError;

/// An LDAP plugin failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LdapAuthError {
    /// The configuration is invalid (or a CA file cannot be read).
    #[error("invalid LDAP configuration: {0}")]
    Config(String),
    /// The plugin is used before being configured.
    #[error("plugin not configured")]
    NotConfigured,
    /// No server of the domain could be reached (connection refused, timeout, TLS failure…).
    #[error("LDAP server {uri} unreachable: {message}")]
    Connect {
        /// The last URI tried.
        uri: String,
        /// Why.
        message: String,
    },
    /// The service account could not bind.
    #[error("LDAP bind as {dn} failed: {message}")]
    ServiceBind {
        /// Service account DN.
        dn: String,
        /// Why (e.g. invalid credentials).
        message: String,
    },
    /// A search failed.
    #[error("LDAP search in {base} failed: {message}")]
    Search {
        /// Search base.
        base: String,
        /// Why.
        message: String,
    },
    /// The user filter refers to an unknown `{{variable}}`.
    #[error("invalid variable in LDAP filter: {0}")]
    FilterVariable(String),
    /// The authenticated entry lacks the configured id attribute.
    #[error("could not find field {attribute} on user {username}")]
    MissingAttribute {
        /// `userIdAttribute`.
        attribute: String,
        /// Who signed in.
        username: String,
    },
    /// The XO user/group directory refused an operation.
    #[error("XO directory: {0}")]
    Directory(String),
}

impl From<LdapAuthError> for PluginError {
    fn from(e: LdapAuthError) -> Self {
        match e {
            LdapAuthError::Config(_) | LdapAuthError::FilterVariable(_) => {
                PluginError::invalid_parameters(e.to_string())
            }
            LdapAuthError::NotConfigured => {
                PluginError::invalid_parameters("plugin not configured")
            }
            other => PluginError::failed(other.to_string()),
        }
    }
}

impl From<PluginError> for LdapAuthError {
    fn from(e: PluginError) -> Self {
        LdapAuthError::Directory(e.to_string())
    }
}
