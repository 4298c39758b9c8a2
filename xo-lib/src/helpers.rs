//! Typed helpers for the common calls (introspection, objects, tokens, users, servers, VM power).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::cache::ObjectCache;
use crate::client::Xo;
use crate::error::{Error, Result};
use crate::types::{MethodInfo, TokenOptions, User};

fn decode<T: serde::de::DeserializeOwned>(method: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::Decode(format!("{method}: {e}")))
}

impl Xo {
    /// [`Xo::call`] decoding the result into `T` ([`Error::Decode`] when it does not fit).
    pub async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T> {
        decode(method, self.call(method, params).await?)
    }

    /// `system.getServerVersion`.
    pub async fn server_version(&self) -> Result<String> {
        decode(
            "system.getServerVersion",
            self.call("system.getServerVersion", Value::Null).await?,
        )
    }

    /// `system.listMethods`.
    pub async fn list_methods(&self) -> Result<Vec<String>> {
        decode(
            "system.listMethods",
            self.call("system.listMethods", Value::Null).await?,
        )
    }

    /// `system.getMethodsInfo`, sorted by name.
    pub async fn methods_info(&self) -> Result<BTreeMap<String, MethodInfo>> {
        match self.call("system.getMethodsInfo", Value::Null).await? {
            Value::Object(m) => Ok(m
                .iter()
                .map(|(k, v)| (k.clone(), MethodInfo::from_json(v)))
                .collect()),
            _ => Err(Error::Decode("system.getMethodsInfo: not an object".into())),
        }
    }

    /// `system.methodSignature` (code 1 when the method does not exist).
    pub async fn method_signature(&self, method: &str) -> Result<MethodInfo> {
        let v = self
            .call("system.methodSignature", json!({ "method": method }))
            .await?;
        v.get(0)
            .map(MethodInfo::from_json)
            .ok_or_else(|| Error::Decode("system.methodSignature: empty answer".into()))
    }

    /// `xo.getAllObjects({filter?, limit?})`: objects by id.
    pub async fn get_all_objects(
        &self,
        filter: Option<Value>,
        limit: Option<u64>,
    ) -> Result<Map<String, Value>> {
        let mut p = json!({});
        if let Some(f) = filter {
            p["filter"] = f;
        }
        if let Some(l) = limit {
            p["limit"] = l.into();
        }
        decode("xo.getAllObjects", self.call("xo.getAllObjects", p).await?)
    }

    /// The VMs (`xo.getAllObjects({filter: {type: 'VM'}})`), sorted by `name_label`.
    pub async fn list_vms(&self) -> Result<Vec<Value>> {
        let mut vms: Vec<Value> = self
            .get_all_objects(Some(json!({ "type": "VM" })), None)
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .filter(|v| v.get("type").and_then(Value::as_str) == Some("VM"))
            .collect();
        vms.sort_by(|a, b| {
            let key = |v: &Value| {
                v.get("name_label")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            key(a).cmp(&key(b))
        });
        Ok(vms)
    }

    /// `token.create`: returns the token.
    pub async fn create_token(&self, options: &TokenOptions) -> Result<String> {
        decode(
            "token.create",
            self.call("token.create", options.to_params()).await?,
        )
    }

    /// `token.deleteOwn({tokens})`.
    pub async fn delete_own_tokens(&self, tokens: &[String]) -> Result<()> {
        self.call("token.deleteOwn", json!({ "tokens": tokens }))
            .await
            .map(drop)
    }

    /// `user.getAll` (admin).
    pub async fn users(&self) -> Result<Vec<User>> {
        decode("user.getAll", self.call("user.getAll", Value::Null).await?)
    }

    /// `user.create({email, password, permission?})` (admin): the new user id.
    pub async fn create_user(
        &self,
        email: &str,
        password: &str,
        permission: Option<&str>,
    ) -> Result<String> {
        let mut p = json!({ "email": email, "password": password });
        if let Some(perm) = permission {
            p["permission"] = perm.into();
        }
        decode("user.create", self.call("user.create", p).await?)
    }

    /// `server.getAll` (admin): the XAPI pools xo-server connects to.
    pub async fn servers(&self) -> Result<Vec<Value>> {
        decode(
            "server.getAll",
            self.call("server.getAll", Value::Null).await?,
        )
    }

    /// `vm.start({id})`.
    pub async fn start_vm(&self, id: &str) -> Result<()> {
        self.call("vm.start", json!({ "id": id })).await.map(drop)
    }

    /// `vm.stop({id, force})` (clean shutdown unless `force`).
    pub async fn stop_vm(&self, id: &str, force: bool) -> Result<()> {
        self.call("vm.stop", json!({ "id": id, "force": force }))
            .await
            .map(drop)
    }

    /// `vm.restart({id, force})`.
    pub async fn restart_vm(&self, id: &str, force: bool) -> Result<()> {
        self.call("vm.restart", json!({ "id": id, "force": force }))
            .await
            .map(drop)
    }
}

/// Waits until object `id` in `cache` has `power_state == state` (e.g. `Running`), at most `timeout`;
/// returns the object. [`Error::Timeout`] otherwise.
pub async fn wait_for_power_state(
    cache: &ObjectCache,
    id: &str,
    state: &str,
    timeout: Duration,
) -> Result<Value> {
    let wait = cache.wait_until(|objects| {
        objects
            .get(id)
            .filter(|o| o.get("power_state").and_then(Value::as_str) == Some(state))
            .cloned()
    });
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| Error::Timeout)
}
