//! The declarative method registry: one table drives dispatch, permission checks, parameter validation,
//! introspection (`system.*`) and the generated API reference. Methods can be added and removed at run time
//! (the plugin seam).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::RwLock;
use serde_json::{json, Map, Value};

use crate::context::Ctx;
use crate::error::ApiError;
use crate::schema::{ParamsSchema, SchemaError};

/// Who may call a method (XO's method-level `permission`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `permission: null`: callable without signing in.
    Anonymous,
    /// `permission` absent: any signed-in user.
    User,
    /// `permission: 'admin'`.
    Admin,
}

/// A method implementation: receives the call context and the validated params object.
pub type Handler = Arc<
    dyn Fn(Ctx, Map<String, Value>) -> BoxFuture<'static, Result<Reply, ApiError>> + Send + Sync,
>;

/// What a method answers: a JSON value, or a result already serialised as JSON text (a large listing written as
/// it is instead of being parsed into a tree and serialised again). XO task logs record a text result as `null`.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A value.
    Value(Value),
    /// JSON text; only xo-server's own serialisations are put here (never checked again).
    Json(String),
}

impl From<Value> for Reply {
    fn from(v: Value) -> Self {
        Reply::Value(v)
    }
}

/// One API method.
#[derive(Clone)]
pub struct Method {
    name: String,
    description: Option<String>,
    params: Option<Value>,
    access: Access,
    schema: Option<Arc<ParamsSchema>>,
    handler: Handler,
}

impl std::fmt::Debug for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Method")
            .field("name", &self.name)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl Method {
    /// A method callable by signed-in users, without params schema (not validated), answering `true`.
    pub fn new<F, Fut>(name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Ctx, Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ApiError>> + Send + 'static,
    {
        Method::new_reply(name, move |ctx, p| {
            let fut = handler(ctx, p);
            async move { fut.await.map(Reply::Value) }
        })
    }

    /// [`Method::new`] for a handler that may answer JSON text ([`Reply::Json`]).
    pub fn new_reply<F, Fut>(name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Ctx, Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Reply, ApiError>> + Send + 'static,
    {
        Self {
            name: name.into(),
            description: None,
            params: None,
            access: Access::User,
            schema: None,
            handler: Arc::new(move |ctx, p| Box::pin(handler(ctx, p))),
        }
    }

    /// Sets the description.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = Some(d.into());
        self
    }

    /// Sets the XO-dialect params map (`{name: schema}`); calls are then validated against it.
    pub fn params(mut self, params: Value) -> Self {
        self.params = Some(params);
        self
    }

    /// Sets who may call it.
    pub fn access(mut self, a: Access) -> Self {
        self.access = a;
        self
    }

    /// Name (`namespace.method`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Description if any.
    pub fn get_description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The raw XO-dialect params map, if declared.
    pub fn get_params(&self) -> Option<&Value> {
        self.params.as_ref()
    }

    /// Who may call it.
    pub fn get_access(&self) -> Access {
        self.access
    }

    /// The compiled schema (present when params were declared).
    pub fn schema(&self) -> Option<&ParamsSchema> {
        self.schema.as_deref()
    }

    /// Runs the handler.
    pub fn call(
        &self,
        ctx: Ctx,
        params: Map<String, Value>,
    ) -> BoxFuture<'static, Result<Reply, ApiError>> {
        (self.handler)(ctx, params)
    }

    /// The entry of `system.getMethodsInfo`: `{description?, params, permission?}` (`permission` is `null`
    /// for anonymous methods, `"admin"`, or absent).
    pub fn info(&self) -> Value {
        let mut m = Map::new();
        if let Some(d) = &self.description {
            m.insert("description".into(), d.clone().into());
        }
        m.insert(
            "params".into(),
            self.params.clone().unwrap_or_else(|| json!({})),
        );
        match self.access {
            Access::Anonymous => {
                m.insert("permission".into(), Value::Null);
            }
            Access::Admin => {
                m.insert("permission".into(), "admin".into());
            }
            Access::User => {}
        }
        Value::Object(m)
    }
}

/// Errors when registering a method.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The name is taken.
    #[error("API method {0} already exists")]
    Duplicate(String),
    /// The name has no namespace (`ns.method`).
    #[error("invalid API method name {0:?}")]
    BadName(String),
    /// The params schema does not compile.
    #[error("invalid params schema for {name}: {source}")]
    Schema {
        /// Method.
        name: String,
        /// Cause.
        source: SchemaError,
    },
}

/// The set of registered methods (sorted by name).
#[derive(Default)]
pub struct Registry {
    methods: RwLock<BTreeMap<String, Arc<Method>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("methods", &self.methods.read().len())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a method (its schema is compiled now).
    pub fn register(&self, mut method: Method) -> Result<(), RegistryError> {
        if !method.name.contains('.') || method.name.starts_with('.') || method.name.ends_with('.')
        {
            return Err(RegistryError::BadName(method.name));
        }
        if let Some(p) = &method.params {
            let s = ParamsSchema::compile(p).map_err(|source| RegistryError::Schema {
                name: method.name.clone(),
                source,
            })?;
            method.schema = Some(Arc::new(s));
        }
        let mut methods = self.methods.write();
        if methods.contains_key(&method.name) {
            return Err(RegistryError::Duplicate(method.name));
        }
        methods.insert(method.name.clone(), Arc::new(method));
        Ok(())
    }

    /// Adds several methods, all or none.
    pub fn register_all(
        &self,
        methods: impl IntoIterator<Item = Method>,
    ) -> Result<(), RegistryError> {
        let mut added: Vec<String> = Vec::new();
        for m in methods {
            let name = m.name.clone();
            if let Err(e) = self.register(m) {
                for n in added {
                    self.unregister(&n);
                }
                return Err(e);
            }
            added.push(name);
        }
        Ok(())
    }

    /// Removes a method; `true` if it was registered.
    pub fn unregister(&self, name: &str) -> bool {
        self.methods.write().remove(name).is_some()
    }

    /// Looks a method up.
    pub fn get(&self, name: &str) -> Option<Arc<Method>> {
        self.methods.read().get(name).cloned()
    }

    /// All method names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.methods.read().keys().cloned().collect()
    }

    /// All methods, sorted by name.
    pub fn methods(&self) -> Vec<Arc<Method>> {
        self.methods.read().values().cloned().collect()
    }

    /// `system.getMethodsInfo` result.
    pub fn methods_info(&self) -> Value {
        Value::Object(
            self.methods
                .read()
                .iter()
                .map(|(k, m)| (k.clone(), m.info()))
                .collect(),
        )
    }
}
