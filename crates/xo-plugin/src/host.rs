//! What the server offers a plugin: method and provider registration, the ACL seam, per-plugin storage,
//! users, groups and XO objects.

use std::sync::Arc;

use serde_json::Value;

use crate::{AccessControl, AuthProvider, MethodDef, PluginError};

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
}
