//! XO users and groups as identity-provider plugins (LDAP, SAML…) create, link and synchronise them.

use serde_json::{Map, Value};

/// An XO user as the directory operations show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryUser {
    /// XO user id.
    pub id: String,
    /// Login name (`email`).
    pub name: String,
    /// `authProviders`: `{<provider>: {id, data?}}`.
    pub auth_providers: Map<String, Value>,
}

impl DirectoryUser {
    /// The id this user has with `provider` (`authProviders[provider].id`).
    pub fn provider_id(&self, provider: &str) -> Option<&str> {
        self.auth_providers.get(provider)?.get("id")?.as_str()
    }
}

/// An XO group as the directory operations show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryGroup {
    /// XO group id.
    pub id: String,
    /// Name (unique).
    pub name: String,
    /// Member user ids.
    pub users: Vec<String>,
    /// `provider` (e.g. `ldap` for groups a provider synchronises).
    pub provider: Option<String>,
    /// `providerGroupId`.
    pub provider_group_id: Option<String>,
}
