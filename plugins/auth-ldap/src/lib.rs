//! xo-server LDAP authentication plugin (`auth-ldap`), compatible with XO's `xo-server-auth-ldap`.
//!
//! Configured like XO's plugin ([`config::configuration_schema`]: `uri`, `failoverUris`,
//! `certificateAuthorities`, `checkCertificate`, `startTls`, `base`, `bind {dn, password}`, `filter`,
//! `userIdAttribute`, `groups {base, filter, idAttribute, displayNameAttribute, membersMapping}`,
//! `additionalDomains`), it adds the `ldap` sign-in provider: the user is searched with the service
//! account, bound with its password, then registered as an XO user linked by
//! `authProviders.ldap.id = <userIdAttribute value>`; with group sync its LDAP groups become XO groups
//! `{provider: 'ldap', providerGroupId}`. TLS is rustls (ring). The XO side of users and groups goes
//! through a [`UserDirectory`]: the plugin host's ([`AuthLdapPlugin::from_host`], what xo-server uses)
//! or a given one ([`AuthLdapPlugin::new`]).

mod authenticator;
mod client;
pub mod config;
mod directory;
mod error;
mod filter;
mod groups;
mod plugin;
mod tls;

pub use authenticator::{Authenticator, ConnectionReport};
pub use client::{CONNECT_TIMEOUT, OPERATION_TIMEOUT};
pub use config::{BindCredentials, DomainConfig, GroupsConfig, LdapConfig, MembersMapping};
pub use directory::{DirectoryGroup, DirectoryUser, HostDirectory, MemoryDirectory, UserDirectory};
pub use error::LdapAuthError;
pub use filter::{escape, eval_filter};
pub use groups::GROUP_PROVIDER;
pub use plugin::{AuthLdapPlugin, METHODS, PLUGIN_NAME, PROVIDER_NAME};
