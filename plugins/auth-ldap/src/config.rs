//! The plugin's configuration: its JSON schema (same keys, types, defaults and required fields as XO's
//! `xo-server-auth-ldap`), its test schema, and the typed, validated form the plugin works with.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::LdapAuthError;

/// Default user filter (`{{name}}` is replaced by the escaped user name).
pub const DEFAULT_FILTER: &str = "(uid={{name}})";

/// Credentials of the account that searches the directory. `Debug` never shows the password.
#[derive(Clone, Deserialize, PartialEq, Eq)]
pub struct BindCredentials {
    /// Full DN (or `user@domain` for Active Directory).
    pub dn: String,
    /// Its password (a secret: never logged, obfuscated by the server in `plugin.get`).
    pub password: String,
}

impl std::fmt::Debug for BindCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindCredentials")
            .field("dn", &self.dn)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How group members map to users.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MembersMapping {
    /// Group attribute listing the members (e.g. `memberUid`, `member`).
    pub group_attribute: String,
    /// User attribute those values refer to (e.g. `uid`, `dn`).
    pub user_attribute: String,
}

/// Group synchronisation settings.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupsConfig {
    /// Where groups are searched (scope sub).
    pub base: String,
    /// Group filter (e.g. `(objectClass=groupOfNames)`).
    pub filter: String,
    /// Attribute identifying a group (stored as the XO group's `providerGroupId`).
    pub id_attribute: String,
    /// Attribute giving the XO group's name.
    pub display_name_attribute: String,
    /// Member mapping.
    pub members_mapping: MembersMapping,
}

/// One LDAP domain (the primary one is the top level of the configuration).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DomainConfig {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub uri: String,
    /// Tried in order when the previous URI is unreachable.
    #[serde(default)]
    pub failover_uris: Vec<String>,
    /// Paths of PEM CA files; when given they replace the default (Mozilla) roots.
    #[serde(default)]
    pub certificate_authorities: Vec<String>,
    /// Verify the server certificate (default `true`).
    #[serde(default = "default_true")]
    pub check_certificate: bool,
    /// Upgrade `ldap://` connections with StartTLS.
    #[serde(default)]
    pub start_tls: bool,
    /// Where users are searched (scope sub).
    pub base: String,
    /// Service account used before searching (anonymous search without it).
    #[serde(default)]
    pub bind: Option<BindCredentials>,
    /// User filter.
    #[serde(default = "default_filter")]
    pub filter: String,
    /// Attribute whose value identifies the user (`dn`, `uid`, `entryUUID`…).
    pub user_id_attribute: String,
    /// Group synchronisation.
    #[serde(default)]
    pub groups: Option<GroupsConfig>,
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdapConfig {
    /// The primary domain (provider `ldap`).
    pub primary: DomainConfig,
    /// Extra domains (provider = their URI), tried in order after the primary one.
    pub additional_domains: Vec<DomainConfig>,
}

fn default_true() -> bool {
    true
}

fn default_filter() -> String {
    DEFAULT_FILTER.to_owned()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    #[serde(flatten)]
    primary: DomainConfig,
    #[serde(default)]
    additional_domains: Vec<DomainConfig>,
}

impl LdapConfig {
    /// Parses and validates a configuration (missing required fields, bad URI schemes, duplicate URIs are
    /// [`LdapAuthError::Config`]).
    pub fn from_value(value: &Value) -> Result<Self, LdapAuthError> {
        let raw: RawConfig = serde_json::from_value(value.clone())
            .map_err(|e| LdapAuthError::Config(e.to_string()))?;
        let config = Self {
            primary: raw.primary,
            additional_domains: raw.additional_domains,
        };
        let mut seen = std::collections::HashSet::new();
        for domain in config.domains() {
            for uri in std::iter::once(&domain.uri).chain(&domain.failover_uris) {
                check_uri(uri)?;
            }
            if domain.base.is_empty() || domain.user_id_attribute.is_empty() {
                return Err(LdapAuthError::Config(
                    "base and userIdAttribute must not be empty".into(),
                ));
            }
            if !seen.insert(domain.uri.as_str()) {
                return Err(LdapAuthError::Config(format!(
                    "duplicate LDAP URI \"{}\": each domain must have its own URI",
                    domain.uri
                )));
            }
        }
        Ok(config)
    }

    /// The primary domain followed by the additional ones.
    pub fn domains(&self) -> impl Iterator<Item = &DomainConfig> {
        std::iter::once(&self.primary).chain(&self.additional_domains)
    }
}

fn check_uri(uri: &str) -> Result<(), LdapAuthError> {
    let lower = uri.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("ldap://")
        .or_else(|| lower.strip_prefix("ldaps://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(()),
        _ => Err(LdapAuthError::Config(format!(
            "invalid LDAP URI \"{uri}\": expected ldap://host[:port] or ldaps://host[:port]"
        ))),
    }
}

/// Properties of one domain in the configuration schema.
fn domain_properties() -> Value {
    json!({
        "uri": {
            "title": "URI",
            "description": "URI of the LDAP server: ldap://host[:port] or ldaps://host[:port].",
            "type": "string"
        },
        "failoverUris": {
            "title": "Failover URIs",
            "description": "Other URIs of the same directory, tried in order when a server cannot be reached.",
            "type": "array",
            "items": {"type": "string"}
        },
        "certificateAuthorities": {
            "title": "Certificate Authorities",
            "description": "Paths of PEM files of the CAs trusted for ldaps:// and StartTLS. Without them, a default set of well-known CAs is used.",
            "type": "array",
            "items": {"type": "string"}
        },
        "checkCertificate": {
            "title": "Check certificate",
            "description": "Verify the server's certificate. Turn it off only for servers with a self-signed certificate.",
            "type": "boolean",
            "default": true
        },
        "startTls": {
            "title": "Use StartTLS",
            "type": "boolean"
        },
        "base": {
            "title": "Base",
            "description": "Part of the directory tree where users are searched.",
            "type": "string"
        },
        "bind": {
            "title": "Credentials",
            "description": "Account used to search the directory before binding as the user.",
            "type": "object",
            "properties": {
                "dn": {
                    "description": "Full distinguished name of the search account (e.g. uid=xo,ou=people,dc=example,dc=net), or user@domain for Active Directory.",
                    "type": "string"
                },
                "password": {
                    "description": "Password of the search account.",
                    "type": "string"
                }
            },
            "required": ["dn", "password"]
        },
        "filter": {
            "title": "User filter",
            "description": "Filter finding the user; {{name}} is replaced by the escaped user name. E.g. (&(uid={{name}})(memberOf=<group DN>)), or (sAMAccountName={{name}}) for Active Directory.",
            "type": "string",
            "default": DEFAULT_FILTER
        },
        "userIdAttribute": {
            "title": "ID attribute",
            "description": "Unique attribute linking an LDAP user to its XO user, e.g. dn.",
            "type": "string"
        },
        "groups": {
            "title": "Synchronize groups",
            "description": "Import groups from the LDAP directory.",
            "type": "object",
            "properties": {
                "base": {
                    "title": "Base",
                    "description": "Where groups are searched.",
                    "type": "string"
                },
                "filter": {
                    "title": "Filter",
                    "description": "Filter finding the groups, e.g. (objectClass=groupOfNames).",
                    "type": "string"
                },
                "idAttribute": {
                    "title": "ID attribute",
                    "description": "Unique attribute linking an LDAP group to its XO group, e.g. gidNumber.",
                    "type": "string"
                },
                "displayNameAttribute": {
                    "title": "Display name attribute",
                    "description": "Attribute giving the XO group's name, e.g. cn.",
                    "type": "string"
                },
                "membersMapping": {
                    "title": "Members mapping",
                    "type": "object",
                    "properties": {
                        "groupAttribute": {
                            "title": "Group attribute",
                            "description": "Group attribute listing its members, e.g. memberUid.",
                            "type": "string"
                        },
                        "userAttribute": {
                            "title": "User attribute",
                            "description": "User attribute the member values refer to, e.g. uid (or dn).",
                            "type": "string"
                        }
                    },
                    "required": ["groupAttribute", "userAttribute"]
                }
            },
            "required": ["base", "filter", "idAttribute", "displayNameAttribute", "membersMapping"]
        }
    })
}

const DOMAIN_REQUIRED: [&str; 3] = ["uri", "base", "userIdAttribute"];

/// The configuration schema (`plugin.get`'s `configurationSchema`).
pub fn configuration_schema() -> Value {
    let mut properties = domain_properties();
    properties["additionalDomains"] = json!({
        "title": "Additional domains",
        "description": "Other LDAP domains, tried in order when the primary one finds no match.",
        "type": "array",
        "items": {
            "type": "object",
            "properties": domain_properties(),
            "required": DOMAIN_REQUIRED
        }
    });
    json!({
        "type": "object",
        "properties": properties,
        "required": DOMAIN_REQUIRED
    })
}

/// The schema of `plugin.test`'s data.
pub fn test_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "username": {"description": "LDAP username", "type": "string"},
            "password": {"description": "LDAP password", "type": "string"}
        },
        "required": ["username", "password"]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_required() {
        let c = LdapConfig::from_value(&json!({
            "uri": "ldap://h", "base": "dc=x", "userIdAttribute": "dn",
            "bind": {"dn": "cn=a", "password": "s3cret"}
        }))
        .unwrap();
        assert!(c.primary.check_certificate);
        assert!(!c.primary.start_tls);
        assert_eq!(c.primary.filter, DEFAULT_FILTER);
        assert!(!format!("{c:?}").contains("s3cret"));
        for bad in [
            json!({"base": "dc=x", "userIdAttribute": "dn"}),
            json!({"uri": "http://h", "base": "dc=x", "userIdAttribute": "dn"}),
            json!({"uri": "ldap://", "base": "dc=x", "userIdAttribute": "dn"}),
            json!({"uri": "ldap://h", "base": "dc=x", "userIdAttribute": "dn", "bind": {"dn": "x"}}),
            json!({"uri": "ldap://h", "base": "dc=x", "userIdAttribute": "dn",
                   "additionalDomains": [{"uri": "ldap://h", "base": "dc=y", "userIdAttribute": "dn"}]}),
            json!({"uri": "ldap://h", "base": "dc=x", "userIdAttribute": "dn",
                   "groups": {"base": "x"}}),
        ] {
            assert!(LdapConfig::from_value(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schema_shape() {
        let s = configuration_schema();
        assert_eq!(s["required"], json!(["uri", "base", "userIdAttribute"]));
        assert_eq!(s["properties"]["checkCertificate"]["default"], json!(true));
        assert_eq!(
            s["properties"]["additionalDomains"]["items"]["properties"]["bind"]["required"],
            json!(["dn", "password"])
        );
    }
}
