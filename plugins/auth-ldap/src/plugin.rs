//! The `auth-ldap` plugin: manifest, schemas, `configure`/`load`/`unload`/`test`, the `ldap` sign-in
//! provider and the `ldap.synchronizeGroups` / `ldap.testConnections` methods.

use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{Map, Value};
use xo_plugin::{
    AuthOutcome, AuthProvider, BoxFuture, Manifest, MethodDef, MethodPermission, Plugin,
    PluginError, PluginHost,
};

use crate::authenticator::Authenticator;
use crate::config::{configuration_schema, test_schema, LdapConfig};
use crate::directory::{HostDirectory, UserDirectory};
use crate::error::LdapAuthError;

/// Plugin id.
pub const PLUGIN_NAME: &str = "auth-ldap";
/// Name of the authentication provider it adds.
pub const PROVIDER_NAME: &str = "ldap";
/// API methods it adds (callable by any signed-in user, as in XO).
pub const METHODS: [&str; 2] = ["ldap.synchronizeGroups", "ldap.testConnections"];

type State = Arc<RwLock<Option<Arc<Authenticator>>>>;

/// The LDAP authentication plugin.
pub struct AuthLdapPlugin {
    /// `None`: the host's directory (given at `configure`).
    directory: Option<Arc<dyn UserDirectory>>,
    state: State,
}

impl std::fmt::Debug for AuthLdapPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLdapPlugin")
            .field("configured", &self.state.read().is_some())
            .finish_non_exhaustive()
    }
}

impl AuthLdapPlugin {
    /// A plugin registering users and groups in `directory`.
    pub fn new(directory: Arc<dyn UserDirectory>) -> Self {
        Self {
            directory: Some(directory),
            state: Arc::new(RwLock::new(None)),
        }
    }

    /// A plugin registering users and groups through its [`PluginHost`] (the server's users and
    /// groups, via [`HostDirectory`]).
    pub fn from_host() -> Self {
        Self {
            directory: None,
            state: Arc::new(RwLock::new(None)),
        }
    }

    /// The current configuration's authenticator (`None` until configured).
    pub fn authenticator(&self) -> Option<Arc<Authenticator>> {
        self.state.read().clone()
    }
}

fn current(state: &State) -> Result<Arc<Authenticator>, LdapAuthError> {
    state.read().clone().ok_or(LdapAuthError::NotConfigured)
}

/// The `ldap` sign-in provider: handles `{username | email, password}` credentials.
struct LdapProvider {
    state: State,
}

impl AuthProvider for LdapProvider {
    fn name(&self) -> &str {
        PROVIDER_NAME
    }

    fn authenticate(
        &self,
        credentials: Map<String, Value>,
    ) -> BoxFuture<'static, Result<Option<AuthOutcome>, String>> {
        let state = self.state.clone();
        Box::pin(async move {
            let username = credentials
                .get("username")
                .or_else(|| credentials.get("email"))
                .and_then(Value::as_str);
            let password = credentials.get("password").and_then(Value::as_str);
            let (Some(username), Some(password)) = (username, password) else {
                return Ok(None);
            };
            let auth = current(&state).map_err(|e| e.to_string())?;
            auth.authenticate(username, password)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

fn synchronize_method(state: State) -> MethodDef {
    MethodDef::new(METHODS[0], move |_ctx, params: Map<String, Value>| {
        let state = state.clone();
        async move {
            let index = match params.get("domainIndex") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_u64()
                        .and_then(|i| usize::try_from(i).ok())
                        .ok_or_else(|| {
                            PluginError::invalid_parameters(
                                "domainIndex must be a non-negative integer",
                            )
                        })?,
                ),
            };
            let auth = current(&state)?;
            if let Some(i) = index {
                if i >= auth.domains().len() {
                    return Err(PluginError::invalid_parameters(format!(
                        "no LDAP domain at index {i}"
                    )));
                }
            }
            auth.synchronize_groups(index).await?;
            Ok(Value::Bool(true))
        }
    })
    .description(
        "synchronize the XO groups with the LDAP groups (all domains, or the one at domainIndex)",
    )
    .permission(MethodPermission::User)
}

fn test_connections_method(state: State) -> MethodDef {
    MethodDef::new(METHODS[1], move |_ctx, _params| {
        let state = state.clone();
        async move {
            let auth = current(&state)?;
            let reports = auth.test_connections().await;
            Ok(Value::Array(reports.iter().map(|r| r.to_json()).collect()))
        }
    })
    .description("connect and bind to every configured LDAP URI: [{uri, domain, ok, error?}]")
    .permission(MethodPermission::User)
}

impl Plugin for AuthLdapPlugin {
    fn manifest(&self) -> Manifest {
        Manifest {
            name: PLUGIN_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "LDAP authentication plugin for XO-Server".into(),
            keywords: [
                "ldap",
                "orchestra",
                "plugin",
                "xen",
                "xen-orchestra",
                "xo-server",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    fn configuration_schema(&self) -> Option<Value> {
        Some(configuration_schema())
    }

    fn test_schema(&self) -> Option<Value> {
        Some(test_schema())
    }

    fn testable(&self) -> bool {
        true
    }

    fn configure<'a>(
        &'a self,
        host: Arc<dyn PluginHost>,
        configuration: Value,
        _loaded: bool,
    ) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            let config = LdapConfig::from_value(&configuration)?;
            let directory = self
                .directory
                .clone()
                .unwrap_or_else(|| Arc::new(HostDirectory(host)));
            let auth = Authenticator::new(&config, directory)?;
            *self.state.write() = Some(Arc::new(auth));
            tracing::info!(uri = %config.primary.uri, "LDAP plugin configured");
            Ok(())
        })
    }

    fn load<'a>(&'a self, host: Arc<dyn PluginHost>) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            host.add_auth_provider(Arc::new(LdapProvider {
                state: self.state.clone(),
            }));
            for method in [
                synchronize_method(self.state.clone()),
                test_connections_method(self.state.clone()),
            ] {
                if let Err(e) = host.register_method(method) {
                    host.remove_auth_provider(PROVIDER_NAME);
                    for name in METHODS {
                        host.unregister_method(name);
                    }
                    return Err(e);
                }
            }
            Ok(())
        })
    }

    fn unload<'a>(&'a self, host: Arc<dyn PluginHost>) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            host.remove_auth_provider(PROVIDER_NAME);
            for name in METHODS {
                host.unregister_method(name);
            }
            Ok(())
        })
    }

    fn test<'a>(
        &'a self,
        _host: Arc<dyn PluginHost>,
        data: Value,
    ) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            let field = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_owned);
            let (Some(username), Some(password)) = (field("username"), field("password")) else {
                return Err(PluginError::invalid_parameters(
                    "username and password are required",
                ));
            };
            let auth = current(&self.state)?;
            match auth.authenticate(&username, &password).await? {
                Some(_) => Ok(()),
                None => Err(PluginError::failed("could not authenticate user")),
            }
        })
    }
}
