//! `plugin.*` (admin only): list, configure, load/unload, autoload, purge, test.

use serde_json::{json, Map, Value};

use super::req_str;
use crate::context::Ctx;
use crate::plugins::Plugins;
use crate::registry::{Access, Method};

fn id_param() -> Value {
    json!({"id": {"type": "string"}})
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("plugin.get", |ctx: Ctx, _| async move {
            Plugins::of(&ctx.app)?.get_all()
        })
        .description("returns a list of all installed plugins")
        .params(json!({}))
        .access(Access::Admin),
        Method::new(
            "plugin.configure",
            |ctx: Ctx, mut p: Map<String, Value>| async move {
                let id = req_str(&p, "id")?.to_owned();
                let configuration = p.remove("configuration").unwrap_or(Value::Null);
                Plugins::of(&ctx.app)?.configure(&id, configuration).await?;
                Ok(Value::Bool(true))
            },
        )
        .description("sets the configuration of a plugin")
        .params(json!({"id": {"type": "string"}, "configuration": {}}))
        .access(Access::Admin),
        Method::new(
            "plugin.disableAutoload",
            |ctx: Ctx, p: Map<String, Value>| async move {
                Plugins::of(&ctx.app)?.set_autoload(req_str(&p, "id")?, false)?;
                Ok(Value::Bool(true))
            },
        )
        .description("")
        .params(id_param())
        .access(Access::Admin),
        Method::new(
            "plugin.enableAutoload",
            |ctx: Ctx, p: Map<String, Value>| async move {
                Plugins::of(&ctx.app)?.set_autoload(req_str(&p, "id")?, true)?;
                Ok(Value::Bool(true))
            },
        )
        .description("enables a plugin, allowing it to be loaded")
        .params(id_param())
        .access(Access::Admin),
        Method::new(
            "plugin.load",
            |ctx: Ctx, p: Map<String, Value>| async move {
                Plugins::of(&ctx.app)?.load(req_str(&p, "id")?).await?;
                Ok(Value::Bool(true))
            },
        )
        .description("loads a plugin")
        .params(id_param())
        .access(Access::Admin),
        Method::new(
            "plugin.purgeConfiguration",
            |ctx: Ctx, p: Map<String, Value>| async move {
                Plugins::of(&ctx.app)?
                    .purge_configuration(req_str(&p, "id")?)
                    .await?;
                Ok(Value::Bool(true))
            },
        )
        .description("removes a plugin configuration")
        .params(id_param())
        .access(Access::Admin),
        Method::new(
            "plugin.test",
            |ctx: Ctx, mut p: Map<String, Value>| async move {
                let id = req_str(&p, "id")?.to_owned();
                let data = p.remove("data").unwrap_or(Value::Null);
                Plugins::of(&ctx.app)?.test(&id, data).await?;
                Ok(Value::Bool(true))
            },
        )
        .description("Test a plugin with its current configuration")
        .params(json!({"id": {"type": "string"}, "data": {"optional": true}}))
        .access(Access::Admin),
        Method::new(
            "plugin.unload",
            |ctx: Ctx, p: Map<String, Value>| async move {
                Plugins::of(&ctx.app)?.unload(req_str(&p, "id")?).await?;
                Ok(Value::Bool(true))
            },
        )
        .description("unloads a plugin")
        .params(id_param())
        .access(Access::Admin),
    ]
}
