//! `system.*`: introspection of the registry and versions.

use serde_json::{json, Value};

use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::{Access, Method};

/// The xo-server version this implementation reports (the XO release it is compatible with).
pub const SERVER_VERSION: &str = "5.207.2";

fn timezone() -> String {
    if let Ok(tz) = std::env::var("TZ") {
        let tz = tz.trim_start_matches(':');
        if !tz.is_empty() {
            return tz.to_owned();
        }
    }
    if let Ok(tz) = std::fs::read_to_string("/etc/timezone") {
        let tz = tz.trim();
        if !tz.is_empty() {
            return tz.to_owned();
        }
    }
    if let Ok(target) = std::fs::read_link("/etc/localtime") {
        let s = target.to_string_lossy();
        if let Some(i) = s.find("zoneinfo/") {
            return s[i + "zoneinfo/".len()..].to_owned();
        }
    }
    "UTC".into()
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("system.getMethodsInfo", |ctx: Ctx, _| async move {
            Ok(ctx.app.registry().methods_info())
        })
        .description("returns the signatures of all available API methods")
        .params(json!({}))
        .access(Access::Anonymous),
        Method::new("system.listMethods", |ctx: Ctx, _| async move {
            Ok(json!(ctx.app.registry().names()))
        })
        .description("returns the name of all available API methods")
        .params(json!({}))
        .access(Access::Anonymous),
        Method::new("system.methodSignature", |ctx: Ctx, p| async move {
            let name = super::req_str(&p, "method")?;
            let m = ctx
                .app
                .registry()
                .get(name)
                .ok_or_else(|| ApiError::no_such_object(name, None))?;
            let mut info = m.info();
            let mut sig = json!({ "name": name });
            if let Value::Object(o) = &mut info {
                for (k, v) in std::mem::take(o) {
                    sig[k] = v;
                }
            }
            Ok(json!([sig]))
        })
        .description("returns the signature of an API method")
        .params(json!({"method": {"type": "string"}}))
        .access(Access::Anonymous),
        Method::new("system.getServerVersion", |_, _| async {
            Ok(json!(SERVER_VERSION))
        })
        .description("return the version of xo-server")
        .params(json!({}))
        .access(Access::Anonymous),
        Method::new("system.getVersion", |_, _| async { Ok(json!("0.1")) })
            .description("API version (unstable)")
            .params(json!({}))
            .access(Access::Anonymous),
        Method::new("system.getServerTimezone", |_, _| async {
            Ok(json!(timezone()))
        })
        .description("return the timezone server")
        .params(json!({})),
    ]
}
