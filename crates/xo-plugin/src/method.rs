//! API methods a plugin adds: name, XO-dialect params, permission, `resolve` entries and a handler.

use std::future::Future;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::{BoxFuture, PluginError, PluginHost, UserInfo};

/// Who may call a plugin method (XO's method-level `permission`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MethodPermission {
    /// `permission: null`: no sign-in needed.
    Anonymous,
    /// No `permission`: any signed-in user (XO's default for plugin methods).
    #[default]
    User,
    /// `permission: 'admin'`.
    Admin,
}

/// One XO `resolve` entry: the object whose id is in `param` is looked up (one of `types`, any type when
/// empty), ACL-checked for `action` unless it is empty, and handed to the handler under `key` (its full
/// XO object replaces the id in the params).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveSpec {
    /// Params key the handler finds the object under.
    pub key: String,
    /// Param carrying the object id.
    pub param: String,
    /// Accepted XO types.
    pub types: Vec<String>,
    /// Permission checked (`view`, `operate`, `administrate`), empty for none.
    pub action: String,
}

/// What a plugin method handler receives besides its params.
#[derive(Clone)]
pub struct CallContext {
    /// The caller (loaded fresh for the call), `None` when anonymous.
    pub user: Option<UserInfo>,
    /// The host of the plugin that registered the method.
    pub host: Arc<dyn PluginHost>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A method handler.
pub type MethodHandler = Arc<
    dyn Fn(CallContext, Map<String, Value>) -> BoxFuture<'static, Result<Value, PluginError>>
        + Send
        + Sync,
>;

/// An API method declared by a plugin.
#[derive(Clone)]
pub struct MethodDef {
    /// `namespace.method`.
    pub name: String,
    /// Description shown by `system.getMethodsInfo`.
    pub description: Option<String>,
    /// XO-dialect params map (`{name: schema}`), validated by the server when present.
    pub params: Option<Value>,
    /// Who may call it.
    pub permission: MethodPermission,
    /// Objects to resolve and ACL-check before the handler runs.
    pub resolve: Vec<ResolveSpec>,
    /// The implementation.
    pub handler: MethodHandler,
}

impl std::fmt::Debug for MethodDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodDef")
            .field("name", &self.name)
            .field("permission", &self.permission)
            .field("resolve", &self.resolve)
            .finish_non_exhaustive()
    }
}

impl MethodDef {
    /// A method any signed-in user may call, without params schema.
    pub fn new<F, Fut>(name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(CallContext, Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, PluginError>> + Send + 'static,
    {
        Self {
            name: name.into(),
            description: None,
            params: None,
            permission: MethodPermission::User,
            resolve: Vec::new(),
            handler: Arc::new(move |ctx, p| Box::pin(handler(ctx, p))),
        }
    }

    /// Sets the description.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = Some(d.into());
        self
    }

    /// Sets the XO-dialect params map.
    pub fn params(mut self, params: Value) -> Self {
        self.params = Some(params);
        self
    }

    /// Sets who may call it.
    pub fn permission(mut self, p: MethodPermission) -> Self {
        self.permission = p;
        self
    }

    /// Adds a `resolve` entry `key: [param, types, action]`.
    pub fn resolve(mut self, key: &str, param: &str, types: &[&str], action: &str) -> Self {
        self.resolve.push(ResolveSpec {
            key: key.to_owned(),
            param: param.to_owned(),
            types: types.iter().map(|t| (*t).to_owned()).collect(),
            action: action.to_owned(),
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_every_field() {
        let m = MethodDef::new("ns.m", |_, _| async { Ok(Value::Null) })
            .description("d")
            .params(serde_json::json!({"id": {"type": "string"}}))
            .permission(MethodPermission::Admin)
            .resolve("vm", "id", &["VM", "VM-snapshot"], "operate");
        assert_eq!(m.name, "ns.m");
        assert_eq!(m.description.as_deref(), Some("d"));
        assert_eq!(m.permission, MethodPermission::Admin);
        assert_eq!(
            m.resolve,
            vec![ResolveSpec {
                key: "vm".into(),
                param: "id".into(),
                types: vec!["VM".into(), "VM-snapshot".into()],
                action: "operate".into(),
            }]
        );
        assert_eq!(MethodPermission::default(), MethodPermission::User);
        assert!(format!("{m:?}").contains("ns.m"));
    }
}
