//! What the server offers a plugin: method and provider registration, the ACL seam, per-plugin storage,
//! users, groups and XO objects.

use std::sync::Arc;

use serde_json::Value;

use crate::{AccessControl, AuthProvider, DirectoryGroup, DirectoryUser, MethodDef, PluginError};

/// A user as plugins see it (never the password hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// Id.
    pub id: String,
    /// Login name.
    pub email: String,
    /// Global permission (`none`, `read`, `write`, `admin`).
    pub permission: String,
    /// Ids of the groups the user belongs to.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// Whether the user is an administrator (bypasses every ACL).
    pub fn is_admin(&self) -> bool {
        self.permission == "admin"
    }
}

/// A group as plugins see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Member user ids.
    pub users: Vec<String>,
}

/// The server side of the contract, one handle per plugin. Everything registered through a handle is
/// removed by the server when the plugin unloads.
pub trait PluginHost: Send + Sync + 'static {
    /// Id of the plugin this handle belongs to.
    fn plugin_id(&self) -> &str;

    /// Adds an API method (fails on a duplicate or an invalid params schema).
    fn register_method(&self, method: MethodDef) -> Result<(), PluginError>;
    /// Removes a method this plugin added; `true` if it was there.
    fn unregister_method(&self, name: &str) -> bool;

    /// Adds an authentication provider (tried after password and token).
    fn add_auth_provider(&self, provider: Arc<dyn AuthProvider>);
    /// Removes this plugin's providers with this name.
    fn remove_auth_provider(&self, name: &str);

    /// Installs (or with `None` removes) the server's access control: method `resolve` checks and the
    /// per-user filtering of `xo.getAllObjects` and `all` notifications. Without one, non-admin users hold
    /// no permission on any object.
    fn set_access_control(&self, access: Option<Arc<dyn AccessControl>>);

    /// A value of this plugin's persistent storage.
    fn data_get(&self, key: &str) -> Result<Option<Value>, PluginError>;
    /// Persists a value (flushed before returning).
    fn data_set(&self, key: &str, value: &Value) -> Result<(), PluginError>;
    /// Removes a value.
    fn data_remove(&self, key: &str) -> Result<(), PluginError>;

    /// A user by id.
    fn user(&self, id: &str) -> Result<Option<UserInfo>, PluginError>;
    /// A user by login name.
    fn user_by_email(&self, email: &str) -> Result<Option<UserInfo>, PluginError>;
    /// A group by id.
    fn group(&self, id: &str) -> Result<Option<GroupInfo>, PluginError>;

    /// Calls `f` with the XO object `id` (its JSON, with `id`, `type` and link fields); `false` when there
    /// is no such object.
    fn with_object(&self, id: &str, f: &mut dyn FnMut(&Value)) -> bool;
    /// Calls `f` with every XO object.
    fn for_each_object(&self, f: &mut dyn FnMut(&Value));

    /// XO's `registerUser2(provider, {user: {id, name}})`: the user linked to `(provider,
    /// provider_user_id)` (renamed to `name` unless another user has that name or it has several
    /// providers); else the user named `name`, linked; else a new user without password
    /// (`permission: none`). The link is `authProviders[provider] = {id: provider_user_id}`; a linked
    /// user loses its local password. Hosts without user management fail.
    fn register_user(
        &self,
        provider: &str,
        provider_user_id: &str,
        name: &str,
    ) -> Result<DirectoryUser, PluginError> {
        let _ = (provider, provider_user_id, name);
        Err(no_directory())
    }
    /// Every user.
    fn users(&self) -> Result<Vec<DirectoryUser>, PluginError> {
        Err(no_directory())
    }
    /// Every group.
    fn groups(&self) -> Result<Vec<DirectoryGroup>, PluginError> {
        Err(no_directory())
    }
    /// A group with its provider fields.
    fn directory_group(&self, id: &str) -> Result<Option<DirectoryGroup>, PluginError> {
        let _ = id;
        Err(no_directory())
    }
    /// Creates a provider group (code 16 when the name is taken).
    fn create_group(
        &self,
        name: &str,
        provider: &str,
        provider_group_id: &str,
    ) -> Result<DirectoryGroup, PluginError> {
        let _ = (name, provider, provider_group_id);
        Err(no_directory())
    }
    /// Renames a group (code 16 when the name is taken).
    fn rename_group(&self, id: &str, name: &str) -> Result<(), PluginError> {
        let _ = (id, name);
        Err(no_directory())
    }
    /// Adds a user to a group (no-op when already a member).
    fn add_user_to_group(&self, user_id: &str, group_id: &str) -> Result<(), PluginError> {
        let _ = (user_id, group_id);
        Err(no_directory())
    }
    /// Removes a user from a group (no-op when not a member).
    fn remove_user_from_group(&self, user_id: &str, group_id: &str) -> Result<(), PluginError> {
        let _ = (user_id, group_id);
        Err(no_directory())
    }
    /// Deletes a group (code 1 when there is none).
    fn delete_group(&self, id: &str) -> Result<(), PluginError> {
        let _ = id;
        Err(no_directory())
    }
}

fn no_directory() -> PluginError {
    PluginError::failed("this plugin host offers no user and group management")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host implementing only the required methods.
    struct Bare;

    impl PluginHost for Bare {
        fn plugin_id(&self) -> &str {
            "bare"
        }
        fn register_method(&self, _: MethodDef) -> Result<(), PluginError> {
            Ok(())
        }
        fn unregister_method(&self, _: &str) -> bool {
            false
        }
        fn add_auth_provider(&self, _: Arc<dyn AuthProvider>) {}
        fn remove_auth_provider(&self, _: &str) {}
        fn set_access_control(&self, _: Option<Arc<dyn AccessControl>>) {}
        fn data_get(&self, _: &str) -> Result<Option<Value>, PluginError> {
            Ok(None)
        }
        fn data_set(&self, _: &str, _: &Value) -> Result<(), PluginError> {
            Ok(())
        }
        fn data_remove(&self, _: &str) -> Result<(), PluginError> {
            Ok(())
        }
        fn user(&self, _: &str) -> Result<Option<UserInfo>, PluginError> {
            Ok(None)
        }
        fn user_by_email(&self, _: &str) -> Result<Option<UserInfo>, PluginError> {
            Ok(None)
        }
        fn group(&self, _: &str) -> Result<Option<GroupInfo>, PluginError> {
            Ok(None)
        }
        fn with_object(&self, _: &str, _: &mut dyn FnMut(&Value)) -> bool {
            false
        }
        fn for_each_object(&self, _: &mut dyn FnMut(&Value)) {}
    }

    #[test]
    fn directory_operations_fail_without_user_management() {
        let h = Bare;
        assert!(h.register_user("ldap", "x", "x").is_err());
        assert!(h.users().is_err());
        assert!(h.groups().is_err());
        assert!(h.directory_group("g").is_err());
        assert!(h.create_group("g", "ldap", "1").is_err());
        assert!(h.rename_group("g", "h").is_err());
        assert!(h.add_user_to_group("u", "g").is_err());
        assert!(h.remove_user_from_group("u", "g").is_err());
        let e = h.delete_group("g").unwrap_err();
        assert_eq!(e.code(), -32000, "{e}");
    }
}
