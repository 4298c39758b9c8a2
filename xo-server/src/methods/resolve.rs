//! Shared plumbing of the object methods (vm, host, pool, sr, vdi, vbd, vif, network, tag, message,
//! task): XO's `resolve` step (§1.3 step 9) as a declarative table, the ACL hook, XAPI calls that keep
//! the raw XAPI error code for XO's fallbacks, bounded waits for new objects, `parseSize`.
//!
//! Every object method declares its `resolve` entries (`[param, types, action]`) as a static
//! [`Resolve`] list; [`resolve_table`] exposes them all (method name → entries) for the ACL work.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use xapi_client::XapiError;
use xo_store::User;

use crate::context::Ctx;
use crate::error::ApiError;
use crate::xapi::{is_read_only_call, PoolClient, Pools, XoObject};

/// One XO `resolve` entry: `key: [param, types, action]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolve {
    /// Name under which the handler gets the object (`vm`, `host`…).
    pub key: &'static str,
    /// The param holding the id (deleted from the params by XO).
    pub param: &'static str,
    /// Accepted XO types (empty: any type).
    pub types: &'static [&'static str],
    /// The permission checked on the object (`""`: resolved without check).
    pub action: &'static str,
}

/// Shorthand constructor for the static tables.
pub(crate) const fn r(
    key: &'static str,
    param: &'static str,
    types: &'static [&'static str],
    action: &'static str,
) -> Resolve {
    Resolve {
        key,
        param,
        types,
        action,
    }
}

/// Every object method with its `resolve` entries (same information as XO's `method.resolve`).
pub fn resolve_table() -> Vec<(&'static str, &'static [Resolve])> {
    let mut v = Vec::new();
    v.extend_from_slice(super::vm::RESOLVES);
    v.extend_from_slice(super::vm_cd_boot::RESOLVES);
    v.extend_from_slice(super::host::RESOLVES);
    v.extend_from_slice(super::host_health::RESOLVES);
    v.extend_from_slice(super::pool::RESOLVES);
    v.extend_from_slice(super::sr::RESOLVES);
    v.extend_from_slice(super::sr_create::RESOLVES);
    v.extend_from_slice(super::vdi::RESOLVES);
    v.extend_from_slice(super::vbd::RESOLVES);
    v.extend_from_slice(super::vif::RESOLVES);
    v.extend_from_slice(super::vif_set::RESOLVES);
    v.extend_from_slice(super::network::RESOLVES);
    v.extend_from_slice(super::pbd::RESOLVES);
    v.extend_from_slice(super::pif::RESOLVES);
    v.extend_from_slice(super::tag::RESOLVES);
    v.extend_from_slice(super::message::RESOLVES);
    v.extend_from_slice(super::task::RESOLVES);
    v.extend_from_slice(super::vm_transfer::RESOLVES);
    v.extend_from_slice(super::disk_transfer::RESOLVES);
    v.extend_from_slice(super::stats::RESOLVES);
    v.sort_by_key(|(name, _)| *name);
    v
}

/// Decides whether a non-admin user holds permissions on objects (the future ACL plugin installs one as
/// the app extension [`Permissions`]). Without it, non-admins hold no permission on any object.
pub trait PermissionChecker: Send + Sync {
    /// The index of the first `(object id, action)` pair the user lacks, `None` when all are granted.
    fn first_denied(&self, user: &User, pairs: &[(String, String)]) -> Option<usize>;

    /// XO's `addAcl(subject, object, action)`: a non-admin who clones or snapshots a VM gets `admin` on
    /// the new one. Default: nothing is recorded.
    fn add_acl(&self, _subject: &str, _object: &str, _action: &str) {}

    /// XO removes the ACLs of a deleted VM (`vm.delete`). Default: nothing to remove.
    fn object_deleted(&self, _object: &str) {}
}

/// The installed checker, if any.
pub(crate) fn checker(ctx: &Ctx) -> Option<Arc<dyn PermissionChecker>> {
    ctx.app.extension::<Permissions>().map(|p| p.0.clone())
}

/// XO's `addAcl(user, object, 'admin')` for non-admin creators.
pub(crate) fn grant_creator(ctx: &Ctx, object: &str) {
    if ctx.is_admin() {
        return;
    }
    if let (Some(user), Some(c)) = (ctx.user.as_ref(), checker(ctx)) {
        c.add_acl(&user.id, object, "admin");
    }
}

/// App extension carrying the [`PermissionChecker`].
pub struct Permissions(pub Arc<dyn PermissionChecker>);

impl std::fmt::Debug for Permissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Permissions")
    }
}

/// XO's `checkPermissions(pairs)`: admins pass; otherwise the first denied pair gives
/// `unauthorized(action, objectId)`.
pub(crate) fn check_permissions(ctx: &Ctx, pairs: &[(String, String)]) -> Result<(), ApiError> {
    if ctx.is_admin() || pairs.is_empty() {
        return Ok(());
    }
    let user = ctx.user()?;
    let denied = match ctx.app.extension::<Permissions>() {
        Some(p) => p.0.first_denied(user, pairs),
        None => Some(0),
    };
    match denied.and_then(|i| pairs.get(i)) {
        None => Ok(()),
        Some((id, action)) => Err(ApiError::unauthorized(Some(action), Some(id), None)),
    }
}

/// The objects a call resolved, by key.
pub(crate) struct Resolved {
    pub pools: Arc<Pools>,
    objects: HashMap<&'static str, Arc<XoObject>>,
}

impl Resolved {
    /// A resolved object (`None` when its param was absent or null).
    pub fn opt(&self, key: &str) -> Option<&Arc<XoObject>> {
        self.objects.get(key)
    }

    /// A resolved object of a required param.
    pub fn get(&self, key: &str) -> Result<&Arc<XoObject>, ApiError> {
        self.objects
            .get(key)
            .ok_or_else(|| ApiError::invalid_parameters_message(format!("missing {key}")))
    }
}

/// XO's resolve step: each present param is looked up (XO id or OpaqueRef) with its type checked
/// (`noSuchObject(id, types)`), then the non-empty actions are checked all at once.
pub(crate) async fn resolve(
    ctx: &Ctx,
    p: &Map<String, Value>,
    spec: &[Resolve],
) -> Result<Resolved, ApiError> {
    ctx.user()?;
    let pools = Pools::of(&ctx.app)?;
    pools.wait_connecting().await;
    let mut objects = HashMap::new();
    let mut pairs = Vec::new();
    for e in spec {
        let id = match p.get(e.param) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(ApiError::no_such_object(&other.to_string(), None));
            }
        };
        let obj = pools.object_of_type(id, e.types)?;
        if !e.action.is_empty() {
            pairs.push((obj.id().to_owned(), e.action.to_owned()));
        }
        objects.insert(e.key, obj);
    }
    check_permissions(ctx, &pairs)?;
    Ok(Resolved { pools, objects })
}

/// The `resolve` entries of `method` in a module table.
pub(crate) fn spec_of(
    table: &'static [(&'static str, &'static [Resolve])],
    method: &str,
) -> &'static [Resolve] {
    table
        .iter()
        .find(|(n, _)| *n == method)
        .map_or(&[], |(_, s)| s)
}

/// An XAPI failure with its raw code, or any other error already mapped to XO's.
#[derive(Debug)]
pub(crate) enum CallError {
    /// XAPI answered an error (raw code and params).
    Xapi(XapiError),
    /// Anything else (read-only refusal, transport…), already an XO error.
    Api(ApiError),
}

/// The XAPI connection of one pool for a method handler.
#[derive(Clone)]
pub(crate) struct Xapi {
    pub pools: Arc<Pools>,
    pub client: PoolClient,
}

impl Xapi {
    /// The connection of the pool `obj` belongs to.
    pub fn of(pools: &Arc<Pools>, obj: &XoObject) -> Result<Self, ApiError> {
        Ok(Self {
            pools: pools.clone(),
            client: pools.client_for_object(obj.id())?,
        })
    }

    fn guard(&self, method: &str) -> Result<(), CallError> {
        if self.client.is_read_only() && !is_read_only_call(method) {
            return Err(CallError::Api(ApiError::internal(format!(
                "cannot call {method}() in read only mode"
            ))));
        }
        Ok(())
    }

    fn split(&self, e: xapi_client::Error) -> CallError {
        match e {
            xapi_client::Error::Xapi(x) => CallError::Xapi(x),
            other => CallError::Api(self.pools.map_error(other)),
        }
    }

    /// XO's mapping of a raw XAPI failure.
    pub fn map(&self, x: XapiError) -> ApiError {
        self.pools.map_error(xapi_client::Error::Xapi(x))
    }

    /// Maps a [`CallError`] to XO's error.
    pub fn api(&self, e: CallError) -> ApiError {
        match e {
            CallError::Xapi(x) => self.map(x),
            CallError::Api(a) => a,
        }
    }

    /// Synchronous call keeping the raw XAPI error.
    pub async fn try_call(&self, method: &str, params: Vec<Value>) -> Result<Value, CallError> {
        self.guard(method)?;
        self.client
            .raw()
            .call(method, params)
            .await
            .map_err(|e| self.split(e))
    }

    /// `Async.` call awaited through its task, keeping the raw XAPI error.
    pub async fn try_call_async(
        &self,
        method: &str,
        params: Vec<Value>,
    ) -> Result<Value, CallError> {
        self.guard(method)?;
        self.client
            .raw()
            .call_async(method, params)
            .await
            .map_err(|e| self.split(e))
    }

    /// Synchronous call, errors mapped to XO's.
    pub async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, ApiError> {
        self.try_call(method, params).await.map_err(|e| self.api(e))
    }

    /// `Async.` call, errors mapped to XO's.
    pub async fn call_async(&self, method: &str, params: Vec<Value>) -> Result<Value, ApiError> {
        self.try_call_async(method, params)
            .await
            .map_err(|e| self.api(e))
    }

    /// A field read straight from XAPI (`<class>.get_<field>`).
    pub async fn field(&self, class: &str, r: &str, field: &str) -> Result<Value, ApiError> {
        self.call(&format!("{class}.get_{field}"), vec![r.into()])
            .await
    }

    /// A whole XAPI record (`<class>.get_record`).
    pub async fn record(&self, class: &str, r: &str) -> Result<Map<String, Value>, ApiError> {
        match self
            .call(&format!("{class}.get_record"), vec![r.into()])
            .await?
        {
            Value::Object(m) => Ok(m),
            other => Err(ApiError::internal(format!(
                "{class}.get_record returned {other}"
            ))),
        }
    }

    /// The refs of the set field `field` of `class` `r`, as XAPI has them now.
    pub async fn field_refs(
        &self,
        class: &str,
        r: &str,
        field: &str,
    ) -> Result<Vec<String>, ApiError> {
        Ok(str_list(Some(&self.field(class, r, field).await?)))
    }

    /// XO's `update_<map>(key, value)`: removes the key, then adds it unless `value` is `None`.
    pub async fn update_map(
        &self,
        class: &str,
        r: &str,
        map: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), ApiError> {
        self.call(
            &format!("{class}.remove_from_{map}"),
            vec![r.into(), key.into()],
        )
        .await?;
        if let Some(v) = value {
            self.call(
                &format!("{class}.add_to_{map}"),
                vec![r.into(), key.into(), v.into()],
            )
            .await?;
        }
        Ok(())
    }

    /// Waits (bounded by the pools' ready timeout) for the object with XAPI ref `xapi_ref` to be in the
    /// cache, as XO's `_getOrWaitObject`; then its XO id. Falls back to the XAPI uuid when the cache does
    /// not get it in time.
    pub async fn wait_object_id(&self, class: &str, xapi_ref: &str) -> Result<String, ApiError> {
        let limit = self.pools.config().ready_timeout;
        let found = wait_until(&self.pools, limit, |pools| {
            pools.object(xapi_ref).map(|o| o.id().to_owned())
        })
        .await;
        match found {
            Some(id) => Ok(id),
            None => match self.field(class, xapi_ref, "uuid").await? {
                Value::String(s) => Ok(s),
                other => Err(ApiError::internal(format!("bad uuid {other}"))),
            },
        }
    }
}

/// Polls `check` against the cache after every batch of changes, at most `limit`.
pub(crate) async fn wait_until<T>(
    pools: &Pools,
    limit: Duration,
    check: impl Fn(&Pools) -> Option<T>,
) -> Option<T> {
    let mut sub = pools.cache().subscribe();
    if let Some(v) = check(pools) {
        return Some(v);
    }
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Err(_) => return check(pools),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {
                // lagged or closed: resubscribe and look again
                sub = pools.cache().subscribe();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if let Some(v) = check(pools) {
            return Some(v);
        }
    }
}

/// The XAPI class of an XO type (`VM-snapshot` → `VM`…).
pub(crate) fn xapi_class(kind: &str) -> &str {
    match kind {
        "VM" | "VM-template" | "VM-snapshot" | "VM-controller" => "VM",
        "VDI" | "VDI-snapshot" | "VDI-unmanaged" => "VDI",
        "patch" => "host_patch",
        "gpuGroup" => "GPU_group",
        "vgpu" => "VGPU",
        "vgpuType" => "VGPU_type",
        "bond" => "Bond",
        other => other,
    }
}

/// Code 21 `operation failed`.
pub(crate) fn operation_failed(object_id: &str, code: &str) -> ApiError {
    ApiError::Rpc {
        code: 21,
        message: "operation failed".into(),
        data: Some(json!({ "objectId": object_id, "code": code })),
    }
}

/// Code 25 `incorrect state`.
pub(crate) fn incorrect_state(
    actual: Value,
    expected: Value,
    object: &str,
    property: &str,
) -> ApiError {
    ApiError::Rpc {
        code: 25,
        message: "incorrect state".into(),
        data: Some(json!({
            "actual": actual, "expected": expected, "object": object, "property": property
        })),
    }
}

/// A plain `Error` (XO throws `new Error(message)`): `-32000` with the message for admins.
pub(crate) fn plain_error(message: impl Into<String>) -> ApiError {
    ApiError::internal(message)
}

/// XO's `parseSize`: an integer, a numeric string or a human size (`"2 GiB"` binary, `"2G"`/`"2 GB"`
/// decimal, `"512M"`…).
pub(crate) fn parse_size(v: &Value) -> Result<i64, ApiError> {
    let bad = || ApiError::invalid_parameters_message(format!("invalid size: {v}"));
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.floor() as i64))
            .ok_or_else(bad),
        Value::String(s) => {
            let s = s.trim();
            let split = s
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let num: f64 = num.parse().map_err(|_| bad())?;
            let unit = unit.trim();
            let unit = unit.strip_suffix('B').unwrap_or(unit);
            let (prefix, binary) = match unit.strip_suffix('i') {
                Some(p) => (p, true),
                None => (unit, false),
            };
            let exp = match prefix {
                "" => 0,
                "k" | "K" => 1,
                "M" => 2,
                "G" => 3,
                "T" => 4,
                "P" => 5,
                _ => return Err(bad()),
            };
            let base: f64 = if binary { 1024.0 } else { 1000.0 };
            let bytes = (num * base.powi(exp)).floor();
            if !bytes.is_finite() || bytes < 0.0 || bytes > i64::MAX as f64 {
                return Err(bad());
            }
            Ok(bytes as i64)
        }
        _ => Err(bad()),
    }
}

/// A string field of an object value.
pub(crate) fn s<'a>(o: &'a XoObject, key: &str) -> &'a str {
    o.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A string array field of an object value.
pub(crate) fn strs(o: &XoObject, key: &str) -> Vec<String> {
    str_list(o.get(key))
}

/// The strings of a JSON array (a list param, a set field), none when it is absent or not an array.
pub(crate) fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Resolves `method`'s entries (`spec`) and gives the object under `key` with the XAPI of its pool.
pub(crate) async fn resolve_one(
    ctx: &Ctx,
    p: &Map<String, Value>,
    spec: &'static [Resolve],
    key: &str,
) -> Result<(Xapi, Arc<XoObject>), ApiError> {
    let res = resolve(ctx, p, spec).await?;
    let obj = res.get(key)?.clone();
    Ok((Xapi::of(&res.pools, &obj)?, obj))
}

/// A string of a raw XAPI record.
pub(crate) fn rs<'a>(rec: &'a Map<String, Value>, key: &str) -> &'a str {
    rec.get(key).and_then(Value::as_str).unwrap_or("")
}

/// An integer of a raw XAPI record (ints may arrive as strings from XML-RPC).
pub(crate) fn ri(rec: &Map<String, Value>, key: &str) -> i64 {
    match rec.get(key) {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// A params schema from its JSON text (the real server's, verbatim).
pub(crate) fn schema(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| {
        tracing::error!("invalid params schema: {e}");
        json!({})
    })
}

/// The empty XAPI ref.
pub(crate) const NULL_REF: &str = "OpaqueRef:NULL";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size(&json!(1024)).unwrap(), 1024);
        assert_eq!(parse_size(&json!("1024")).unwrap(), 1024);
        assert_eq!(parse_size(&json!("2GiB")).unwrap(), 2 << 30);
        assert_eq!(parse_size(&json!("2 GiB")).unwrap(), 2 << 30);
        assert_eq!(parse_size(&json!("2G")).unwrap(), 2_000_000_000);
        assert_eq!(parse_size(&json!("512MB")).unwrap(), 512_000_000);
        assert_eq!(parse_size(&json!("1.5Ki")).unwrap(), 1536);
        assert_eq!(parse_size(&json!("abc")).unwrap_err().code(), 10);
        assert_eq!(parse_size(&json!("12 parsecs")).unwrap_err().code(), 10);
        assert_eq!(parse_size(&json!(true)).unwrap_err().code(), 10);
    }

    #[test]
    fn table_is_sorted_and_unique() {
        let t = resolve_table();
        for w in t.windows(2) {
            assert!(w[0].0 < w[1].0, "{} {}", w[0].0, w[1].0);
        }
        assert!(t.iter().any(|(n, _)| *n == "vm.start"));
    }

    #[test]
    fn classes() {
        assert_eq!(xapi_class("VM-snapshot"), "VM");
        assert_eq!(xapi_class("VDI-snapshot"), "VDI");
        assert_eq!(xapi_class("host"), "host");
    }
}
