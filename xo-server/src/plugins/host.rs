//! The server's [`PluginHost`]: one handle per plugin, recording what the plugin registered (methods,
//! authentication providers, access control) so that unloading removes it all.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use xo_plugin::{
    AccessControl, CallContext, DirectoryGroup, DirectoryUser, GroupInfo, MethodDef,
    MethodPermission, PluginError, PluginHost, ResolveSpec, UserInfo,
};
use xo_store::{Group, Permission, StoreError, User};

use super::Plugins;
use crate::app::{App, WeakApp};
use crate::auth::{AuthProvider, AuthSuccess};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::{Access, Method};
use crate::xapi::Pools;

/// A plugin's handle on the server.
pub struct Host {
    app: WeakApp,
    id: String,
    methods: Mutex<BTreeMap<String, Vec<ResolveSpec>>>,
    providers: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("plugin", &self.id).finish()
    }
}

/// The plugin-facing view of a user.
pub fn user_info(u: &User) -> UserInfo {
    UserInfo {
        id: u.id.clone(),
        email: u.email.clone(),
        permission: u.permission.as_str().to_owned(),
        groups: u.groups.clone(),
    }
}

/// A plugin error as an API error.
pub fn api_error(e: PluginError) -> ApiError {
    match e {
        PluginError::Api {
            code,
            message,
            data,
        } => ApiError::Rpc {
            code,
            message,
            data,
        },
        PluginError::Failed(m) => ApiError::internal(m),
    }
}

fn store_error(e: StoreError) -> PluginError {
    match e {
        StoreError::DuplicateGroupName(name) => PluginError::Api {
            code: 16,
            message: "group already exists".into(),
            data: Some(serde_json::json!({ "objectId": name, "objectType": "group" })),
        },
        StoreError::DuplicateEmail(email) => PluginError::Api {
            code: 16,
            message: "user already exists".into(),
            data: Some(serde_json::json!({ "objectId": email, "objectType": "user" })),
        },
        StoreError::NotFound { collection, id } => {
            PluginError::no_such_object(&id, collection.trim_end_matches('s'))
        }
        e => PluginError::failed(e.to_string()),
    }
}

fn directory_user(u: User) -> DirectoryUser {
    DirectoryUser {
        id: u.id,
        name: u.email,
        auth_providers: u.auth_providers.unwrap_or_default(),
    }
}

fn directory_group(g: Group) -> DirectoryGroup {
    DirectoryGroup {
        id: g.id,
        name: g.name,
        users: g.users,
        provider: g.provider,
        provider_group_id: g.provider_group_id,
    }
}

fn provider_id<'a>(u: &'a User, provider: &str) -> Option<&'a str> {
    u.auth_providers
        .as_ref()?
        .get(provider)?
        .get("id")?
        .as_str()
}

/// XO's `registerUser2`: the user linked to `(provider, provider_user_id)` (renamed when possible), else
/// the user named `name` (linked, losing its password), else a new password-less user.
fn register_user(
    store: &xo_store::Store,
    provider: &str,
    provider_user_id: &str,
    name: &str,
) -> Result<User, StoreError> {
    let users = store.users()?;
    if let Some(mut user) = users
        .iter()
        .find(|u| provider_id(u, provider) == Some(provider_user_id))
        .cloned()
    {
        let taken = users.iter().any(|u| u.email == name && u.id != user.id);
        let providers = user.auth_providers.as_ref().map_or(0, Map::len);
        if user.email != name && !taken && providers < 2 {
            user.email = name.to_owned();
            store.update_user(&user)?;
        }
        return Ok(user);
    }
    let mut user = match users.into_iter().find(|u| u.email == name) {
        Some(u) => u,
        None => store.create_user(name, None, Permission::None)?,
    };
    user.auth_providers.get_or_insert_with(Map::new).insert(
        provider.to_owned(),
        serde_json::json!({ "id": provider_user_id }),
    );
    user.pw_hash = None;
    store.update_user(&user)?;
    Ok(user)
}

impl Host {
    pub(crate) fn new(app: WeakApp, id: &str) -> Self {
        Self {
            app,
            id: id.to_owned(),
            methods: Mutex::new(BTreeMap::new()),
            providers: Mutex::new(BTreeSet::new()),
        }
    }

    fn app(&self) -> Result<App, PluginError> {
        self.app
            .upgrade()
            .ok_or_else(|| PluginError::failed("server stopped"))
    }

    fn data_key(&self, key: &str) -> String {
        format!("{}/data/{key}", self.id)
    }

    /// Removes everything the plugin registered (after unloading).
    pub(crate) fn cleanup(&self) {
        let Some(app) = self.app.upgrade() else {
            return;
        };
        for name in std::mem::take(&mut *self.methods.lock()).into_keys() {
            app.registry().unregister(&name);
        }
        for name in std::mem::take(&mut *self.providers.lock()) {
            app.remove_auth_provider(&name);
        }
        if let Some(p) = app.extension::<Plugins>() {
            p.clear_access_of(&self.id);
        }
    }

    /// The methods this plugin has registered, with their `resolve` entries.
    pub fn registered_methods(&self) -> Vec<(String, Vec<ResolveSpec>)> {
        self.methods
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Runs a plugin method: resolve entries, then the handler.
async fn run(
    host: Arc<Host>,
    def: Arc<MethodDef>,
    ctx: Ctx,
    mut params: Map<String, Value>,
) -> Result<Value, ApiError> {
    if !def.resolve.is_empty() {
        let user = ctx.user()?.clone();
        let pools = Pools::of(&ctx.app)?;
        pools.wait_connecting().await;
        let mut pairs = Vec::new();
        let mut resolved = Vec::new();
        for spec in &def.resolve {
            let id = match params.remove(&spec.param) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => s,
                Some(other) => return Err(ApiError::no_such_object(&other.to_string(), None)),
            };
            let types: Vec<&str> = spec.types.iter().map(String::as_str).collect();
            let obj = pools.object_of_type(&id, &types)?;
            if !spec.action.is_empty() {
                pairs.push((obj.id().to_owned(), spec.action.clone()));
            }
            resolved.push((spec.key.clone(), obj.value().clone()));
        }
        super::check_permissions(&ctx.app, &user, &pairs)?;
        params.extend(resolved);
    }
    let call = CallContext {
        user: ctx.user.as_ref().map(user_info),
        host: Arc::new(HostHandle(host)),
    };
    (def.handler)(call, params).await.map_err(api_error)
}

struct ProviderAdapter(Arc<dyn xo_plugin::AuthProvider>);

impl AuthProvider for ProviderAdapter {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn authenticate(
        &self,
        _app: App,
        credentials: Map<String, Value>,
    ) -> BoxFuture<'static, Result<Option<AuthSuccess>, String>> {
        let f = self.0.authenticate(credentials);
        Box::pin(async move {
            Ok(f.await?.map(|o| AuthSuccess {
                user_id: o.user_id,
                expiration: o.expiration,
                bypass_otp: o.bypass_otp,
            }))
        })
    }
}

/// Registers a plugin method on behalf of `host`.
pub(crate) fn register(host: &Arc<Host>, def: MethodDef) -> Result<(), PluginError> {
    let app = host.app()?;
    let name = def.name.clone();
    let resolve = def.resolve.clone();
    let access = match def.permission {
        MethodPermission::Anonymous => Access::Anonymous,
        MethodPermission::User => Access::User,
        MethodPermission::Admin => Access::Admin,
    };
    let mut m = Method::new(name.clone(), {
        let host = host.clone();
        let def = Arc::new(def.clone());
        move |ctx: Ctx, p: Map<String, Value>| run(host.clone(), def.clone(), ctx, p)
    })
    .access(access);
    if let Some(d) = &def.description {
        m = m.description(d.clone());
    }
    if let Some(p) = &def.params {
        m = m.params(p.clone());
    }
    app.registry()
        .register(m)
        .map_err(|e| PluginError::failed(e.to_string()))?;
    host.methods.lock().insert(name, resolve);
    Ok(())
}

/// The `Arc<Host>` wrapper implementing [`PluginHost`] (registration needs the `Arc`).
#[derive(Debug, Clone)]
pub struct HostHandle(pub(crate) Arc<Host>);

impl PluginHost for HostHandle {
    fn plugin_id(&self) -> &str {
        &self.0.id
    }

    fn register_method(&self, method: MethodDef) -> Result<(), PluginError> {
        register(&self.0, method)
    }

    fn unregister_method(&self, name: &str) -> bool {
        if self.0.methods.lock().remove(name).is_none() {
            return false;
        }
        self.0
            .app
            .upgrade()
            .is_some_and(|app| app.registry().unregister(name))
    }

    fn add_auth_provider(&self, provider: Arc<dyn xo_plugin::AuthProvider>) {
        if let Ok(app) = self.0.app() {
            self.0.providers.lock().insert(provider.name().to_owned());
            app.add_auth_provider(Arc::new(ProviderAdapter(provider)));
        }
    }

    fn remove_auth_provider(&self, name: &str) {
        if self.0.providers.lock().remove(name) {
            if let Some(app) = self.0.app.upgrade() {
                app.remove_auth_provider(name);
            }
        }
    }

    fn set_access_control(&self, access: Option<Arc<dyn AccessControl>>) {
        let Some(app) = self.0.app.upgrade() else {
            return;
        };
        if let Some(p) = app.extension::<Plugins>() {
            match access {
                Some(a) => p.set_access(&self.0.id, a),
                None => p.clear_access_of(&self.0.id),
            }
        }
    }

    fn data_get(&self, key: &str) -> Result<Option<Value>, PluginError> {
        self.0
            .app()?
            .store()
            .plugin_state(&self.0.data_key(key))
            .map_err(store_error)
    }

    fn data_set(&self, key: &str, value: &Value) -> Result<(), PluginError> {
        self.0
            .app()?
            .store()
            .set_plugin_state(&self.0.data_key(key), value)
            .map_err(store_error)
    }

    fn data_remove(&self, key: &str) -> Result<(), PluginError> {
        self.0
            .app()?
            .store()
            .remove_plugin_state(&self.0.data_key(key))
            .map(|_| ())
            .map_err(store_error)
    }

    fn user(&self, id: &str) -> Result<Option<UserInfo>, PluginError> {
        Ok(self
            .0
            .app()?
            .store()
            .user(id)
            .map_err(store_error)?
            .as_ref()
            .map(user_info))
    }

    fn user_by_email(&self, email: &str) -> Result<Option<UserInfo>, PluginError> {
        Ok(self
            .0
            .app()?
            .store()
            .user_by_email(email)
            .map_err(store_error)?
            .as_ref()
            .map(user_info))
    }

    fn group(&self, id: &str) -> Result<Option<GroupInfo>, PluginError> {
        Ok(self
            .0
            .app()?
            .store()
            .group(id)
            .map_err(store_error)?
            .map(|g| GroupInfo {
                id: g.id,
                name: g.name,
                users: g.users,
            }))
    }

    fn with_object(&self, id: &str, f: &mut dyn FnMut(&Value)) -> bool {
        let Some(app) = self.0.app.upgrade() else {
            return false;
        };
        let Some(pools) = app.extension::<Pools>() else {
            return false;
        };
        match pools.cache().get(id) {
            Some(o) => {
                f(o.value());
                true
            }
            None => false,
        }
    }

    fn for_each_object(&self, f: &mut dyn FnMut(&Value)) {
        let Some(app) = self.0.app.upgrade() else {
            return;
        };
        let Some(pools) = app.extension::<Pools>() else {
            return;
        };
        for o in pools.cache().find(|_| true, None) {
            // parsed for the call only: the cache keeps objects as JSON text
            o.with_value(&mut *f);
        }
    }

    fn register_user(
        &self,
        provider: &str,
        provider_user_id: &str,
        name: &str,
    ) -> Result<DirectoryUser, PluginError> {
        let app = self.0.app()?;
        let user =
            register_user(app.store(), provider, provider_user_id, name).map_err(store_error)?;
        tracing::info!(plugin = %self.0.id, provider, user = %user.id, "user registered by provider");
        Ok(directory_user(user))
    }

    fn users(&self) -> Result<Vec<DirectoryUser>, PluginError> {
        let users = self.0.app()?.store().users().map_err(store_error)?;
        Ok(users.into_iter().map(directory_user).collect())
    }

    fn groups(&self) -> Result<Vec<DirectoryGroup>, PluginError> {
        let groups = self.0.app()?.store().groups().map_err(store_error)?;
        Ok(groups.into_iter().map(directory_group).collect())
    }

    fn directory_group(&self, id: &str) -> Result<Option<DirectoryGroup>, PluginError> {
        let group = self.0.app()?.store().group(id).map_err(store_error)?;
        Ok(group.map(directory_group))
    }

    fn create_group(
        &self,
        name: &str,
        provider: &str,
        provider_group_id: &str,
    ) -> Result<DirectoryGroup, PluginError> {
        let app = self.0.app()?;
        let store = app.store();
        let mut group = store.create_group(name).map_err(store_error)?;
        group.provider = Some(provider.to_owned());
        group.provider_group_id = Some(provider_group_id.to_owned());
        store.update_group(&group).map_err(store_error)?;
        Ok(directory_group(group))
    }

    fn rename_group(&self, id: &str, name: &str) -> Result<(), PluginError> {
        let app = self.0.app()?;
        let store = app.store();
        let mut group = store
            .group(id)
            .map_err(store_error)?
            .ok_or_else(|| PluginError::no_such_object(id, "group"))?;
        group.name = name.to_owned();
        store.update_group(&group).map_err(store_error)
    }

    fn add_user_to_group(&self, user_id: &str, group_id: &str) -> Result<(), PluginError> {
        self.0
            .app()?
            .store()
            .add_user_to_group(group_id, user_id)
            .map_err(store_error)
    }

    fn remove_user_from_group(&self, user_id: &str, group_id: &str) -> Result<(), PluginError> {
        self.0
            .app()?
            .store()
            .remove_user_from_group(group_id, user_id)
            .map_err(store_error)
    }

    fn delete_group(&self, id: &str) -> Result<(), PluginError> {
        if self
            .0
            .app()?
            .store()
            .delete_group(id)
            .map_err(store_error)?
        {
            Ok(())
        } else {
            Err(PluginError::no_such_object(id, "group"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_xo_codes() {
        let e = store_error(StoreError::DuplicateGroupName("ops".into()));
        assert_eq!(e.code(), 16);
        let e = store_error(StoreError::DuplicateEmail("a@b".into()));
        assert_eq!(e.code(), 16);
        let e = store_error(StoreError::NotFound {
            collection: "groups",
            id: "g".into(),
        });
        assert_eq!(e.code(), 1);
        let e = store_error(StoreError::Invalid("bad".into()));
        assert_eq!(e.code(), -32000);
    }
}
