//! Configured tags (`packages/xo-server/src/api/tag.mjs`): `tag.set` gives a tag a colour (admins),
//! `tag.getAllConfigured` lists the configured tags. Kept in the store's settings under one key.

use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use super::opt_str;
use super::resolve::schema;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::{Access, Method};

/// The settings key holding `{<tag>: {color?}}`.
const KEY: &str = "configuredTags";

/// Serialises the read-modify-write of the settings entry.
static WRITE: Mutex<()> = Mutex::new(());

fn configured(ctx: &Ctx) -> Result<Map<String, Value>, ApiError> {
    Ok(match ctx.app.store().setting(KEY)? {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    })
}

/// XO's `setConfiguredTag`: `color` sets the colour (as given), `null` removes the tag's configuration,
/// absent leaves a colour unchanged.
async fn set(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let id = opt_str(&p, "id").unwrap_or_default().to_owned();
    let _w = WRITE.lock();
    let mut all = configured(&ctx)?;
    match p.get("color") {
        Some(Value::Null) => {
            all.remove(&id);
        }
        Some(c) => {
            all.insert(id, json!({ "color": c }));
        }
        None => {
            all.entry(id).or_insert_with(|| json!({}));
        }
    }
    ctx.app.store().set_setting(KEY, &Value::Object(all))?;
    Ok(Value::Bool(true))
}

/// `[{id, color?}]`, sorted by tag.
async fn get_all_configured(ctx: Ctx, _p: Map<String, Value>) -> Result<Value, ApiError> {
    let all = configured(&ctx)?;
    let mut out: Vec<Value> = all
        .into_iter()
        .map(|(id, conf)| {
            let mut t = Map::new();
            t.insert("id".into(), id.into());
            if let Some(c) = conf.get("color") {
                t.insert("color".into(), c.clone());
            }
            Value::Object(t)
        })
        .collect();
    out.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(Value::Array(out))
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("tag.set", set)
            .description("Set a tag configuration")
            .params(schema(r#"{"id": {"type": "string"}, "color": {"nullable": true, "optional": true, "pattern": "^#?([0-9A-Fa-f]{6})$", "type": "string"}}"#))
            .access(Access::Admin),
        Method::new("tag.getAllConfigured", get_all_configured)
            .description("Get all configured tags")
            .params(json!({})),
    ]
}
