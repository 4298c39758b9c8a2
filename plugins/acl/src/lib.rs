//! The ACL plugin (`acl`): XO's v1 ACLs as an xo-server plugin.
//!
//! - entries `{id, subject, object, action}`: subject a user or group id, object any XO object id, action
//!   a role (`viewer`, `operator`, `admin`) expanded to permissions (`view`, `operate`, `administrate`)
//!   or, verbatim, any other permission name ([`entries`]);
//! - `acl.add`, `acl.remove`, `acl.get`, `acl.getCurrentPermissions`, `role.getAll` ([`methods`]);
//! - checks with XO's inheritance rules (pool → host → VM, SR → VDI, VM → VDI through VBDs, …,
//!   [`rules`]) for every method call that resolves objects, and the per-user visible sets filtering
//!   `xo.getAllObjects` and `all` notifications, cached per user and updated per batch ([`visibility`]).
//!
//! Entry ids are XO's (`multiKeyHash(subject, object, action)`, [`multikey_hash`]).
//!
//! Entries live in the plugin's storage (key `acls`); loading installs the server's access control,
//! unloading removes it (non-admin users then hold no permission at all).

pub mod entries;
pub mod methods;
pub mod multikey_hash;
pub mod rules;
pub mod visibility;

use std::sync::Arc;

use xo_plugin::{BoxFuture, Manifest, Plugin, PluginError, PluginHost};

use crate::visibility::AclState;

/// The ACL plugin.
#[derive(Debug, Default)]
pub struct AclPlugin {
    state: AclState,
}

/// A new instance, to register with the server.
pub fn plugin() -> Arc<dyn Plugin> {
    Arc::new(AclPlugin::default())
}

impl AclPlugin {
    /// The shared state (entries, caches).
    pub fn state(&self) -> &AclState {
        &self.state
    }
}

impl Plugin for AclPlugin {
    fn manifest(&self) -> Manifest {
        Manifest {
            name: "acl".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Access control lists: who may view, operate or administrate which objects".into(),
            keywords: vec!["acl".into(), "permissions".into()],
        }
    }

    fn load<'a>(&'a self, host: Arc<dyn PluginHost>) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            let acls = match host.data_get(entries::STORAGE_KEY)? {
                Some(v) => entries::decode(&v)?,
                None => Vec::new(),
            };
            self.state.attach(host.clone(), acls);
            for m in methods::methods(self.state.clone()) {
                host.register_method(m)?;
            }
            host.set_access_control(Some(Arc::new(self.state.clone())));
            Ok(())
        })
    }

    fn unload<'a>(&'a self, host: Arc<dyn PluginHost>) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            host.set_access_control(None);
            for name in methods::NAMES {
                host.unregister_method(name);
            }
            self.state.detach();
            Ok(())
        })
    }
}
