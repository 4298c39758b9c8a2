//! Sign-in against the configured domains: search the user with the service account, bind as each
//! matching entry with the given password, register (create or link) the XO user, sync its groups.

use std::sync::Arc;

use ldap3::Scope;
use serde_json::{json, Value};
use xo_plugin::AuthOutcome;

use crate::client::{Domain, Session};
use crate::config::LdapConfig;
use crate::directory::{DirectoryUser, UserDirectory};
use crate::error::LdapAuthError;
use crate::filter::eval_filter;

/// The configured plugin: its domains and the XO directory it registers users and groups in.
#[derive(Clone)]
pub struct Authenticator {
    pub(crate) domains: Vec<Domain>,
    pub(crate) directory: Arc<dyn UserDirectory>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("domains", &self.domains)
            .finish_non_exhaustive()
    }
}

/// Result of testing one URI (`ldap.testConnections`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionReport {
    /// The URI.
    pub uri: String,
    /// Its domain's provider name.
    pub domain: String,
    /// Whether connecting, binding (and reading the groups base) worked.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
}

impl ConnectionReport {
    /// `{uri, domain, ok, error?}`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"uri": self.uri, "domain": self.domain, "ok": self.ok});
        if let Some(e) = &self.error {
            v["error"] = e.clone().into();
        }
        v
    }
}

impl Authenticator {
    /// Prepares the domains of a validated configuration (reads CA files).
    pub fn new(
        config: &LdapConfig,
        directory: Arc<dyn UserDirectory>,
    ) -> Result<Self, LdapAuthError> {
        let domains = config
            .domains()
            .enumerate()
            .map(|(i, d)| Domain::new(d.clone(), i == 0))
            .collect::<Result<_, _>>()?;
        Ok(Self { domains, directory })
    }

    /// The domains, primary first.
    pub fn domains(&self) -> &[Domain] {
        &self.domains
    }

    /// Tries `username`/`password` on each domain in order. `Ok(None)`: no domain knows these credentials;
    /// `Err`: none matched and the last domain that failed could not be queried (unreachable, service
    /// bind refused…). Empty names or passwords never match.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<AuthOutcome>, LdapAuthError> {
        if username.is_empty() || password.is_empty() {
            return Ok(None);
        }
        let mut failure = None;
        for domain in &self.domains {
            match self.authenticate_in(domain, username, password).await {
                Ok(Some(outcome)) => return Ok(Some(outcome)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(domain = %domain.provider, error = %e, "LDAP domain failed, trying the next one");
                    failure = Some(e);
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    async fn authenticate_in(
        &self,
        domain: &Domain,
        username: &str,
        password: &str,
    ) -> Result<Option<AuthOutcome>, LdapAuthError> {
        let mut session = domain.connect(&domain.uris()).await?;
        let result = self
            .authenticate_session(&mut session, domain, username, password)
            .await;
        session.close().await;
        let Some(user) = result? else {
            tracing::debug!(user = %username, domain = %domain.provider, "no LDAP match");
            return Ok(None);
        };
        Ok(Some(AuthOutcome {
            user_id: user.id,
            expiration: None,
            bypass_otp: false,
        }))
    }

    async fn authenticate_session(
        &self,
        session: &mut Session,
        domain: &Domain,
        username: &str,
        password: &str,
    ) -> Result<Option<DirectoryUser>, LdapAuthError> {
        let config = &domain.config;
        let filter = eval_filter(&config.filter, &[("name", username)])?;
        let mut extra = vec![config.user_id_attribute.as_str()];
        if let Some(groups) = &config.groups {
            extra.push(groups.members_mapping.user_attribute.as_str());
        }
        let entries = session
            .search(&config.base, Scope::Subtree, &filter, &extra, None)
            .await?;
        tracing::debug!(count = entries.len(), "LDAP entries found");
        for entry in entries {
            if !session.bind_user(&entry.dn, password).await? {
                tracing::debug!(dn = %entry.dn, "LDAP bind refused");
                continue;
            }
            tracing::info!(dn = %entry.dn, user = %username, domain = %domain.provider, "LDAP user authenticated");
            let ldap_id = entry.first(&config.user_id_attribute).ok_or_else(|| {
                LdapAuthError::MissingAttribute {
                    attribute: config.user_id_attribute.clone(),
                    username: username.to_owned(),
                }
            })?;
            let user = self.directory.register_user(
                &domain.provider,
                &domain.scoped_id(&ldap_id),
                username,
            )?;
            if let Some(groups) = &config.groups {
                let member_id = entry.first(&groups.members_mapping.user_attribute);
                // The session is now bound as the user: sync groups on a fresh service session.
                if let Err(e) = self
                    .synchronize_domain(domain, Some((&user, member_id.as_deref())))
                    .await
                {
                    tracing::error!(error = %e, "failed to synchronize LDAP groups");
                }
            }
            return Ok(Some(user));
        }
        Ok(None)
    }

    /// `ldap.synchronizeGroups`: full group sync of one domain (by index) or of all of them.
    pub async fn synchronize_groups(
        &self,
        domain_index: Option<usize>,
    ) -> Result<(), LdapAuthError> {
        let domains: Vec<&Domain> = match domain_index {
            Some(i) => vec![self
                .domains
                .get(i)
                .ok_or_else(|| LdapAuthError::Config(format!("no LDAP domain at index {i}")))?],
            None => self.domains.iter().collect(),
        };
        for domain in domains {
            if domain.config.groups.is_some() {
                self.synchronize_domain(domain, None).await?;
            }
        }
        Ok(())
    }

    /// `ldap.testConnections`: connects and binds to every URI of every domain (and reads the groups base
    /// when groups are synchronised).
    pub async fn test_connections(&self) -> Vec<ConnectionReport> {
        let mut reports = Vec::new();
        for domain in &self.domains {
            for uri in domain.uris() {
                let mut report = ConnectionReport {
                    uri: uri.clone(),
                    domain: domain.provider.clone(),
                    ok: true,
                    error: None,
                };
                match domain.connect(std::slice::from_ref(&uri)).await {
                    Ok(mut session) => {
                        if let Some(groups) = &domain.config.groups {
                            let found = session
                                .search(&groups.base, Scope::Base, "(objectClass=*)", &[], Some(1))
                                .await;
                            let error = match found {
                                Ok(entries) if entries.is_empty() => Some("no such object".into()),
                                Ok(_) => None,
                                Err(e) => Some(e.to_string()),
                            };
                            if let Some(e) = error {
                                report.ok = false;
                                report.error = Some(format!(
                                    "groups base \"{}\" unreachable: {e}",
                                    groups.base
                                ));
                            }
                        }
                        session.close().await;
                    }
                    Err(e) => {
                        report.ok = false;
                        report.error = Some(e.to_string());
                    }
                }
                reports.push(report);
            }
        }
        reports
    }
}
