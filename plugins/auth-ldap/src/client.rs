//! LDAP sessions: connect (with failover URIs, `ldaps://` or StartTLS), bind the service account, search,
//! bind as a user. Entries are reduced to their DN and string attributes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions};
use rustls::ClientConfig;

use crate::config::DomainConfig;
use crate::error::LdapAuthError;

/// Connection (TCP + TLS) timeout, as XO's.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one LDAP operation.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// LDAP result code `invalidCredentials`.
const INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code `noSuchObject`.
const NO_SUCH_OBJECT: u32 = 32;

/// A configured domain ready to connect.
#[derive(Debug, Clone)]
pub struct Domain {
    /// Its configuration.
    pub config: DomainConfig,
    /// `true` for the top-level domain.
    pub is_primary: bool,
    /// Provider name in `authProviders`: `ldap` for the primary domain, its URI otherwise.
    pub provider: String,
    tls: Arc<ClientConfig>,
}

impl Domain {
    /// Prepares a domain (reads its CA files).
    pub fn new(config: DomainConfig, is_primary: bool) -> Result<Self, LdapAuthError> {
        let tls =
            crate::tls::client_config(config.check_certificate, &config.certificate_authorities)?;
        let provider = if is_primary {
            "ldap".to_owned()
        } else {
            config.uri.clone()
        };
        Ok(Self {
            config,
            is_primary,
            provider,
            tls,
        })
    }

    /// The primary URI followed by the failover ones.
    pub fn uris(&self) -> Vec<String> {
        std::iter::once(self.config.uri.clone())
            .chain(self.config.failover_uris.iter().cloned())
            .collect()
    }

    /// `id` scoped to this domain: bare for the primary one, `<uri>:<id>` otherwise.
    pub fn scoped_id(&self, id: &str) -> String {
        if self.is_primary {
            id.to_owned()
        } else {
            format!("{}:{id}", self.config.uri)
        }
    }

    /// Connects to the first reachable URI of `uris` and binds the service account (if any). Only
    /// network-level failures move on to the next URI.
    pub async fn connect(&self, uris: &[String]) -> Result<Session, LdapAuthError> {
        let mut last = LdapAuthError::Connect {
            uri: self.config.uri.clone(),
            message: "no URI".into(),
        };
        for uri in uris {
            match self.connect_one(uri).await {
                Ok(session) => return Ok(session),
                Err(e @ LdapAuthError::Connect { .. }) => {
                    tracing::warn!(uri = %uri, error = %e, "LDAP URI unreachable, trying the next one");
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    async fn connect_one(&self, uri: &str) -> Result<Session, LdapAuthError> {
        let plain = uri.to_ascii_lowercase().starts_with("ldap://");
        let settings = LdapConnSettings::new()
            .set_conn_timeout(CONNECT_TIMEOUT)
            .set_config(self.tls.clone())
            .set_starttls(plain && self.config.start_tls);
        let connect_error = |e: LdapError| LdapAuthError::Connect {
            uri: uri.to_owned(),
            message: e.to_string(),
        };
        let (conn, ldap) = tokio::time::timeout(
            CONNECT_TIMEOUT * 2,
            LdapConnAsync::with_settings(settings, uri),
        )
        .await
        .map_err(|_| LdapAuthError::Connect {
            uri: uri.to_owned(),
            message: "connection timeout".into(),
        })?
        .map_err(connect_error)?;
        let driver_uri = uri.to_owned();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(uri = %driver_uri, error = %e, "LDAP connection closed");
            }
        });
        let mut session = Session {
            ldap,
            uri: uri.to_owned(),
        };
        if let Some(bind) = &self.config.bind {
            tracing::debug!(dn = %bind.dn, "binding the LDAP service account");
            match session.bind(&bind.dn, &bind.password).await {
                Ok(true) => {}
                Ok(false) => {
                    session.close().await;
                    return Err(LdapAuthError::ServiceBind {
                        dn: bind.dn.clone(),
                        message: "invalid credentials".into(),
                    });
                }
                Err(e) => {
                    session.close().await;
                    return Err(match e {
                        BindError::Network(message) => LdapAuthError::Connect {
                            uri: uri.to_owned(),
                            message,
                        },
                        BindError::Refused(message) => LdapAuthError::ServiceBind {
                            dn: bind.dn.clone(),
                            message,
                        },
                    });
                }
            }
        }
        Ok(session)
    }
}

/// An entry: DN and string attributes (names as the server sent them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Distinguished name.
    pub dn: String,
    /// Attributes.
    pub attrs: HashMap<String, Vec<String>>,
}

/// Whether `attribute` designates the DN itself (`dn`, `distinguishedName`).
pub fn is_dn_field(attribute: &str) -> bool {
    let a = attribute.trim().to_ascii_lowercase();
    a == "dn" || a == "distinguishedname"
}

impl Entry {
    /// Values of `attribute` (case-insensitive name); `dn` is the entry's DN, and so is
    /// `distinguishedName` when the server does not return it as an attribute.
    pub fn values(&self, attribute: &str) -> Vec<String> {
        let found = self
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(attribute.trim()))
            .map(|(_, v)| v.clone());
        match found {
            Some(v) if !attribute.trim().eq_ignore_ascii_case("dn") => v,
            _ if is_dn_field(attribute) => vec![self.dn.clone()],
            _ => Vec::new(),
        }
    }

    /// First value of `attribute`.
    pub fn first(&self, attribute: &str) -> Option<String> {
        self.values(attribute).into_iter().next()
    }
}

enum BindError {
    Network(String),
    Refused(String),
}

/// A connected (and maybe bound) LDAP session.
#[derive(Debug)]
pub struct Session {
    ldap: Ldap,
    uri: String,
}

impl Session {
    /// The URI this session is connected to.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Simple bind: `Ok(false)` on invalid credentials.
    async fn bind(&mut self, dn: &str, password: &str) -> Result<bool, BindError> {
        let res = self
            .ldap
            .with_timeout(OPERATION_TIMEOUT)
            .simple_bind(dn, password)
            .await
            .map_err(|e| BindError::Network(e.to_string()))?;
        match res.rc {
            0 => Ok(true),
            INVALID_CREDENTIALS => Ok(false),
            _ => Err(BindError::Refused(res.to_string())),
        }
    }

    /// Binds as a user: `Ok(false)` on invalid credentials (or an empty password, which LDAP would
    /// otherwise accept as an unauthenticated bind).
    pub async fn bind_user(&mut self, dn: &str, password: &str) -> Result<bool, LdapAuthError> {
        if password.is_empty() {
            return Ok(false);
        }
        self.bind(dn, password).await.map_err(|e| match e {
            BindError::Network(message) => LdapAuthError::Connect {
                uri: self.uri.clone(),
                message,
            },
            BindError::Refused(message) => LdapAuthError::ServiceBind {
                dn: dn.to_owned(),
                message,
            },
        })
    }

    /// Searches `base` (`None` size limit: unlimited) for `filter`, returning all user attributes plus
    /// `extra` ones; a missing base (`noSuchObject`) yields no entries.
    pub async fn search(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        extra: &[&str],
        size_limit: Option<i32>,
    ) -> Result<Vec<Entry>, LdapAuthError> {
        let mut attrs = vec!["*"];
        attrs.extend(extra.iter().filter(|a| !is_dn_field(a)));
        let search_error = |message: String| LdapAuthError::Search {
            base: base.to_owned(),
            message,
        };
        let ldap = self.ldap.with_timeout(OPERATION_TIMEOUT);
        if let Some(limit) = size_limit {
            ldap.with_search_options(SearchOptions::new().sizelimit(limit));
        }
        let result = ldap
            .search(base, scope, filter, attrs)
            .await
            .map_err(|e| search_error(e.to_string()))?;
        if result.1.rc == NO_SUCH_OBJECT {
            return Ok(Vec::new());
        }
        // A size limit reached (code 4) still returns the entries found.
        if result.1.rc != 0 && result.1.rc != 4 {
            return Err(search_error(result.1.to_string()));
        }
        Ok(result
            .0
            .into_iter()
            .map(SearchEntry::construct)
            .map(|e| Entry {
                dn: e.dn,
                attrs: e.attrs,
            })
            .collect())
    }

    /// Unbinds and closes (errors ignored).
    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }
}
