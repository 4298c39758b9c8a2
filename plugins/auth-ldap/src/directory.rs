//! The XO users and groups the plugin creates, links and updates.
//!
//! The plugin works through a [`UserDirectory`]: its methods are XO's plugin-facing `registerUser2`,
//! `getAllUsers`, `getAllGroups`, `getGroup`, `createGroup`, `updateGroup`, `addUserToGroup`,
//! `removeUserFromGroup`, `deleteGroup`. [`HostDirectory`] forwards them to the plugin host (xo-server
//! implements them over its store); [`MemoryDirectory`] is an in-memory implementation with the same
//! semantics (tests, examples).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Map};
use xo_plugin::{PluginError, PluginHost};

pub use xo_plugin::{DirectoryGroup, DirectoryUser};

/// XO's user and group operations the LDAP plugin needs.
pub trait UserDirectory: Send + Sync + 'static {
    /// XO's `registerUser2(provider, {user: {id, name}})`: the user linked to `(provider, provider_user_id)`
    /// (renamed to `name` unless another user has that name or it has several providers); else the user
    /// named `name`, linked (when `authentication.mergeProvidersUsers` allows it, an error otherwise);
    /// else (when `createUserOnFirstSignin`) a new user without password (`permission: none`). The link is
    /// `authProviders[provider] = {id: provider_user_id}`; a linked user loses its local password.
    fn register_user(
        &self,
        provider: &str,
        provider_user_id: &str,
        name: &str,
    ) -> Result<DirectoryUser, PluginError>;
    /// Every user.
    fn users(&self) -> Result<Vec<DirectoryUser>, PluginError>;
    /// Every group.
    fn groups(&self) -> Result<Vec<DirectoryGroup>, PluginError>;
    /// A group by id.
    fn group(&self, id: &str) -> Result<Option<DirectoryGroup>, PluginError>;
    /// Creates a provider group (code 16 style failure when the name is taken).
    fn create_group(
        &self,
        name: &str,
        provider: &str,
        provider_group_id: &str,
    ) -> Result<DirectoryGroup, PluginError>;
    /// Renames a group.
    fn rename_group(&self, id: &str, name: &str) -> Result<(), PluginError>;
    /// Adds a user to a group (no-op when already a member).
    fn add_user_to_group(&self, user_id: &str, group_id: &str) -> Result<(), PluginError>;
    /// Removes a user from a group (no-op when not a member).
    fn remove_user_from_group(&self, user_id: &str, group_id: &str) -> Result<(), PluginError>;
    /// Deletes a group.
    fn delete_group(&self, id: &str) -> Result<(), PluginError>;
}

/// The [`UserDirectory`] of a plugin host: every operation is the host's (`PluginHost::register_user`…).
#[derive(Clone)]
pub struct HostDirectory(pub Arc<dyn PluginHost>);

impl std::fmt::Debug for HostDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HostDirectory")
            .field(&self.0.plugin_id())
            .finish()
    }
}

impl UserDirectory for HostDirectory {
    fn register_user(
        &self,
        provider: &str,
        provider_user_id: &str,
        name: &str,
    ) -> Result<DirectoryUser, PluginError> {
        self.0.register_user(provider, provider_user_id, name)
    }
    fn users(&self) -> Result<Vec<DirectoryUser>, PluginError> {
        self.0.users()
    }
    fn groups(&self) -> Result<Vec<DirectoryGroup>, PluginError> {
        self.0.groups()
    }
    fn group(&self, id: &str) -> Result<Option<DirectoryGroup>, PluginError> {
        self.0.directory_group(id)
    }
    fn create_group(
        &self,
        name: &str,
        provider: &str,
        provider_group_id: &str,
    ) -> Result<DirectoryGroup, PluginError> {
        self.0.create_group(name, provider, provider_group_id)
    }
    fn rename_group(&self, id: &str, name: &str) -> Result<(), PluginError> {
        self.0.rename_group(id, name)
    }
    fn add_user_to_group(&self, user_id: &str, group_id: &str) -> Result<(), PluginError> {
        self.0.add_user_to_group(user_id, group_id)
    }
    fn remove_user_from_group(&self, user_id: &str, group_id: &str) -> Result<(), PluginError> {
        self.0.remove_user_from_group(user_id, group_id)
    }
    fn delete_group(&self, id: &str) -> Result<(), PluginError> {
        self.0.delete_group(id)
    }
}

#[derive(Debug, Default)]
struct Memory {
    users: BTreeMap<String, DirectoryUser>,
    groups: BTreeMap<String, DirectoryGroup>,
}

/// An in-memory [`UserDirectory`] with XO's semantics (`createUserOnFirstSignin` and
/// `mergeProvidersUsers` both on, XO's defaults).
#[derive(Debug, Default)]
pub struct MemoryDirectory {
    inner: Mutex<Memory>,
}

impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a local user (no provider); returns its id.
    pub fn add_local_user(&self, name: &str) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.inner.lock().users.insert(
            id.clone(),
            DirectoryUser {
                id: id.clone(),
                name: name.to_owned(),
                auth_providers: Map::new(),
            },
        );
        id
    }

    /// Adds a group without provider; returns its id.
    pub fn add_local_group(&self, name: &str) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.inner.lock().groups.insert(
            id.clone(),
            DirectoryGroup {
                id: id.clone(),
                name: name.to_owned(),
                users: Vec::new(),
                provider: None,
                provider_group_id: None,
            },
        );
        id
    }

    /// A user by name.
    pub fn user_by_name(&self, name: &str) -> Option<DirectoryUser> {
        self.inner
            .lock()
            .users
            .values()
            .find(|u| u.name == name)
            .cloned()
    }

    /// A group by name.
    pub fn group_by_name(&self, name: &str) -> Option<DirectoryGroup> {
        self.inner
            .lock()
            .groups
            .values()
            .find(|g| g.name == name)
            .cloned()
    }
}

fn no_such(kind: &str, id: &str) -> PluginError {
    PluginError::no_such_object(id, kind)
}

impl UserDirectory for MemoryDirectory {
    fn register_user(
        &self,
        provider: &str,
        provider_user_id: &str,
        name: &str,
    ) -> Result<DirectoryUser, PluginError> {
        let mut m = self.inner.lock();
        let linked = m
            .users
            .values()
            .find(|u| u.provider_id(provider) == Some(provider_user_id))
            .map(|u| u.id.clone());
        let id = match linked {
            Some(id) => {
                let taken = m.users.values().any(|u| u.name == name && u.id != id);
                let user = m.users.get_mut(&id).ok_or_else(|| no_such("user", &id))?;
                if user.name != name && !taken && user.auth_providers.len() < 2 {
                    user.name = name.to_owned();
                }
                id
            }
            None => {
                let existing = m
                    .users
                    .values()
                    .find(|u| u.name == name)
                    .map(|u| u.id.clone());
                let id = existing.unwrap_or_else(|| {
                    let id = uuid::Uuid::new_v4().to_string();
                    m.users.insert(
                        id.clone(),
                        DirectoryUser {
                            id: id.clone(),
                            name: name.to_owned(),
                            auth_providers: Map::new(),
                        },
                    );
                    id
                });
                let user = m.users.get_mut(&id).ok_or_else(|| no_such("user", &id))?;
                user.auth_providers
                    .insert(provider.to_owned(), json!({ "id": provider_user_id }));
                id
            }
        };
        m.users
            .get(&id)
            .cloned()
            .ok_or_else(|| no_such("user", &id))
    }

    fn users(&self) -> Result<Vec<DirectoryUser>, PluginError> {
        Ok(self.inner.lock().users.values().cloned().collect())
    }

    fn groups(&self) -> Result<Vec<DirectoryGroup>, PluginError> {
        Ok(self.inner.lock().groups.values().cloned().collect())
    }

    fn group(&self, id: &str) -> Result<Option<DirectoryGroup>, PluginError> {
        Ok(self.inner.lock().groups.get(id).cloned())
    }

    fn create_group(
        &self,
        name: &str,
        provider: &str,
        provider_group_id: &str,
    ) -> Result<DirectoryGroup, PluginError> {
        let mut m = self.inner.lock();
        if m.groups.values().any(|g| g.name == name) {
            return Err(PluginError::Api {
                code: 16,
                message: "unique constraint violated".into(),
                data: Some(json!({ "field": "name", "value": name })),
            });
        }
        let group = DirectoryGroup {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            users: Vec::new(),
            provider: Some(provider.to_owned()),
            provider_group_id: Some(provider_group_id.to_owned()),
        };
        m.groups.insert(group.id.clone(), group.clone());
        Ok(group)
    }

    fn rename_group(&self, id: &str, name: &str) -> Result<(), PluginError> {
        let mut m = self.inner.lock();
        if m.groups.values().any(|g| g.name == name && g.id != id) {
            return Err(PluginError::Api {
                code: 16,
                message: "unique constraint violated".into(),
                data: Some(json!({ "field": "name", "value": name })),
            });
        }
        let g = m.groups.get_mut(id).ok_or_else(|| no_such("group", id))?;
        g.name = name.to_owned();
        Ok(())
    }

    fn add_user_to_group(&self, user_id: &str, group_id: &str) -> Result<(), PluginError> {
        let mut m = self.inner.lock();
        if !m.users.contains_key(user_id) {
            return Err(no_such("user", user_id));
        }
        let g = m
            .groups
            .get_mut(group_id)
            .ok_or_else(|| no_such("group", group_id))?;
        if !g.users.iter().any(|u| u == user_id) {
            g.users.push(user_id.to_owned());
        }
        Ok(())
    }

    fn remove_user_from_group(&self, user_id: &str, group_id: &str) -> Result<(), PluginError> {
        let mut m = self.inner.lock();
        let g = m
            .groups
            .get_mut(group_id)
            .ok_or_else(|| no_such("group", group_id))?;
        g.users.retain(|u| u != user_id);
        Ok(())
    }

    fn delete_group(&self, id: &str) -> Result<(), PluginError> {
        self.inner
            .lock()
            .groups
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| no_such("group", id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_user_links_renames_and_merges() {
        let d = MemoryDirectory::new();
        let a = d.register_user("ldap", "uid=a", "alice").unwrap();
        assert_eq!(a.provider_id("ldap"), Some("uid=a"));
        // Same provider id, new name: renamed.
        let a2 = d.register_user("ldap", "uid=a", "alice2").unwrap();
        assert_eq!(
            (a2.id.as_str(), a2.name.as_str()),
            (a.id.as_str(), "alice2")
        );
        // New name taken by someone else: kept.
        let bob = d.add_local_user("bob");
        let a3 = d.register_user("ldap", "uid=a", "bob").unwrap();
        assert_eq!(a3.name, "alice2");
        // Unknown provider id, existing name: merged into that user.
        let b = d.register_user("other", "x", "bob").unwrap();
        assert_eq!(b.id, bob);
        assert_eq!(b.provider_id("other"), Some("x"));
        assert_eq!(d.users().unwrap().len(), 2);
        // Two providers: no more renaming.
        let b2 = d.register_user("ldap", "uid=b", "bob").unwrap();
        assert_eq!(b2.id, bob);
        let b3 = d.register_user("ldap", "uid=b", "robert").unwrap();
        assert_eq!(b3.name, "bob");
    }

    #[test]
    fn group_operations() {
        let d = MemoryDirectory::new();
        let u = d.add_local_user("u");
        let g = d.create_group("g", "ldap", "1").unwrap();
        assert_eq!(d.create_group("g", "ldap", "2").unwrap_err().code(), 16);
        d.add_user_to_group(&u, &g.id).unwrap();
        d.add_user_to_group(&u, &g.id).unwrap();
        assert_eq!(d.group(&g.id).unwrap().unwrap().users, vec![u.clone()]);
        assert_eq!(d.add_user_to_group("nope", &g.id).unwrap_err().code(), 1);
        d.rename_group(&g.id, "h").unwrap();
        d.remove_user_from_group(&u, &g.id).unwrap();
        assert!(d.group_by_name("h").unwrap().users.is_empty());
        d.delete_group(&g.id).unwrap();
        assert_eq!(d.delete_group(&g.id).unwrap_err().code(), 1);
    }
}
