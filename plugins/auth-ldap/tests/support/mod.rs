//! Test support: the slapd harness, a recording plugin host, and root-DN changes to the directory.

pub mod slapd;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use ldap3::{LdapConnAsync, Mod};
use serde_json::Value;
use xo_plugin::{
    AccessControl, AuthProvider, DirectoryGroup, DirectoryUser, GroupInfo, MethodDef, PluginError,
    PluginHost, UserInfo,
};
use xo_plugin_auth_ldap::{MemoryDirectory, UserDirectory};

/// A [`PluginHost`] recording what the plugin registers; its users and groups are a [`MemoryDirectory`].
#[derive(Default)]
pub struct FakeHost {
    pub directory: Arc<MemoryDirectory>,
    pub providers: Mutex<Vec<Arc<dyn AuthProvider>>>,
    pub methods: Mutex<BTreeMap<String, MethodDef>>,
    data: Mutex<BTreeMap<String, Value>>,
}

impl FakeHost {
    pub fn provider(&self) -> Option<Arc<dyn AuthProvider>> {
        self.providers.lock().unwrap().first().cloned()
    }

    pub fn method(&self, name: &str) -> Option<MethodDef> {
        self.methods.lock().unwrap().get(name).cloned()
    }
}

impl PluginHost for FakeHost {
    fn plugin_id(&self) -> &str {
        "auth-ldap"
    }
    fn register_method(&self, method: MethodDef) -> Result<(), PluginError> {
        let mut m = self.methods.lock().unwrap();
        if m.contains_key(&method.name) {
            return Err(PluginError::failed("duplicate method"));
        }
        m.insert(method.name.clone(), method);
        Ok(())
    }
    fn unregister_method(&self, name: &str) -> bool {
        self.methods.lock().unwrap().remove(name).is_some()
    }
    fn add_auth_provider(&self, provider: Arc<dyn AuthProvider>) {
        self.providers.lock().unwrap().push(provider);
    }
    fn remove_auth_provider(&self, name: &str) {
        self.providers.lock().unwrap().retain(|p| p.name() != name);
    }
    fn set_access_control(&self, _access: Option<Arc<dyn AccessControl>>) {}
    fn data_get(&self, key: &str) -> Result<Option<Value>, PluginError> {
        Ok(self.data.lock().unwrap().get(key).cloned())
    }
    fn data_set(&self, key: &str, value: &Value) -> Result<(), PluginError> {
        self.data.lock().unwrap().insert(key.into(), value.clone());
        Ok(())
    }
    fn data_remove(&self, key: &str) -> Result<(), PluginError> {
        self.data.lock().unwrap().remove(key);
        Ok(())
    }
    fn user(&self, _id: &str) -> Result<Option<UserInfo>, PluginError> {
        Ok(None)
    }
    fn user_by_email(&self, _email: &str) -> Result<Option<UserInfo>, PluginError> {
        Ok(None)
    }
    fn group(&self, _id: &str) -> Result<Option<GroupInfo>, PluginError> {
        Ok(None)
    }
    fn with_object(&self, _id: &str, _f: &mut dyn FnMut(&Value)) -> bool {
        false
    }
    fn for_each_object(&self, _f: &mut dyn FnMut(&Value)) {}
    fn register_user(
        &self,
        provider: &str,
        provider_user_id: &str,
        name: &str,
    ) -> Result<DirectoryUser, PluginError> {
        self.directory
            .register_user(provider, provider_user_id, name)
    }
    fn users(&self) -> Result<Vec<DirectoryUser>, PluginError> {
        self.directory.users()
    }
    fn groups(&self) -> Result<Vec<DirectoryGroup>, PluginError> {
        self.directory.groups()
    }
    fn directory_group(&self, id: &str) -> Result<Option<DirectoryGroup>, PluginError> {
        self.directory.group(id)
    }
    fn create_group(
        &self,
        name: &str,
        provider: &str,
        provider_group_id: &str,
    ) -> Result<DirectoryGroup, PluginError> {
        self.directory
            .create_group(name, provider, provider_group_id)
    }
    fn rename_group(&self, id: &str, name: &str) -> Result<(), PluginError> {
        self.directory.rename_group(id, name)
    }
    fn add_user_to_group(&self, user_id: &str, group_id: &str) -> Result<(), PluginError> {
        self.directory.add_user_to_group(user_id, group_id)
    }
    fn remove_user_from_group(&self, user_id: &str, group_id: &str) -> Result<(), PluginError> {
        self.directory.remove_user_from_group(user_id, group_id)
    }
    fn delete_group(&self, id: &str) -> Result<(), PluginError> {
        self.directory.delete_group(id)
    }
}

/// A change to the directory made as the root DN.
pub enum Change<'a> {
    /// Remove one value of an attribute.
    RemoveValue(&'a str, &'a str, &'a str),
    /// Add one value of an attribute.
    AddValue(&'a str, &'a str, &'a str),
    /// Rename (new RDN).
    Rename(&'a str, &'a str),
    /// Delete an entry.
    Delete(&'a str),
}

/// Applies `changes` to the directory at `uri` as the root DN.
pub async fn admin_change(uri: &str, changes: &[Change<'_>]) {
    let (conn, mut ldap) = LdapConnAsync::new(uri).await.expect("admin connect");
    ldap3::drive!(conn);
    ldap.simple_bind(slapd::ROOT_DN, slapd::ROOT_PW)
        .await
        .and_then(|r| r.success())
        .expect("admin bind");
    for change in changes {
        let result = match change {
            Change::RemoveValue(dn, attr, value) => {
                ldap.modify(dn, vec![Mod::Delete(*attr, HashSet::from([*value]))])
                    .await
            }
            Change::AddValue(dn, attr, value) => {
                ldap.modify(dn, vec![Mod::Add(*attr, HashSet::from([*value]))])
                    .await
            }
            Change::Rename(dn, rdn) => ldap.modifydn(dn, rdn, true, None).await,
            Change::Delete(dn) => ldap.delete(dn).await,
        };
        result.and_then(|r| r.success()).expect("admin change");
    }
    let _ = ldap.unbind().await;
}
