//! Generates the Markdown API reference (`docs/api.md`) from the method registry.

use std::fmt::Write;

use serde_json::Value;

use crate::registry::{Access, Registry};

fn type_label(schema: &Value) -> String {
    if let Some(Value::Array(e)) = schema.get("enum") {
        return e
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(" \\| ");
    }
    let base = match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" \\| "),
        _ => "any".into(),
    };
    match (base.as_str(), schema.get("items")) {
        ("array", Some(items)) => format!("array of {}", type_label(items)),
        _ => base,
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The API reference for every method in `registry`, grouped by namespace.
pub fn api_reference(registry: &Registry) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# xo-server API reference\n");
    let _ = writeln!(
        out,
        "Generated from the method registry by `xo_server::docs::api_reference`; do not edit by hand \
         (`XO_UPDATE_DOCS=1 cargo test -p xo-server --test api api_reference` regenerates it).\n"
    );
    let _ = writeln!(
        out,
        "Calls are JSON-RPC 2.0 over a WebSocket at `/api/`, params by name. Permission: *anonymous* methods \
         need no sign-in, *user* methods any signed-in user, *admin* methods an administrator. Params are \
         required unless marked optional; strings must be non-empty; unknown params are rejected unless \
         their name ends with `?`.\n"
    );
    let methods = registry.methods();
    let mut namespace = "";
    for m in &methods {
        let ns = m.name().split('.').next().unwrap_or_default();
        if ns != namespace {
            let _ = writeln!(out, "## {ns}\n");
            namespace = ns;
        }
        let _ = writeln!(out, "### `{}`\n", m.name());
        if let Some(d) = m.get_description() {
            let _ = writeln!(out, "{}\n", d.trim());
        }
        let access = match m.get_access() {
            Access::Anonymous => "anonymous",
            Access::User => "user",
            Access::Admin => "admin",
        };
        let _ = writeln!(out, "Permission: {access}\n");
        match m.get_params().and_then(Value::as_object) {
            None => {
                let _ = writeln!(out, "Params: free-form (not validated)\n");
            }
            Some(p) if p.is_empty() => {
                let _ = writeln!(out, "Params: none\n");
            }
            Some(p) => {
                let _ = writeln!(
                    out,
                    "| param | type | required | description |\n|---|---|---|---|"
                );
                for (name, s) in p {
                    let optional = s.get("optional").and_then(Value::as_bool).unwrap_or(false);
                    let required = match s.get("default") {
                        Some(d) => format!("no (default `{d}`)"),
                        None if optional => "no".into(),
                        None => "yes".into(),
                    };
                    let desc = s.get("description").and_then(Value::as_str).unwrap_or("");
                    let _ = writeln!(
                        out,
                        "| `{}` | {} | {} | {} |",
                        cell(name),
                        cell(&type_label(s)),
                        required,
                        cell(desc)
                    );
                }
                out.push('\n');
            }
        }
    }
    out
}
