//! `list-objects [--<property>]... [<property>=<value>]...`: `xo.getAllObjects` with a filter, then the
//! same filter applied locally (so glob values like `name_label=web-*` work), then property picking.

use serde_json::{json, Map, Value};

use crate::commands::Global;
use crate::failure::Failure;
use crate::glob;
use crate::output::{print, render};
use crate::params::parse_value;

/// Parsed `list-objects` arguments.
#[derive(Debug, Default, PartialEq)]
pub struct ListArgs {
    /// Properties to keep (empty: all).
    pub fields: Vec<String>,
    /// `property=value` filters.
    pub filter: Map<String, Value>,
    /// `--json`.
    pub json: bool,
    /// `--table`.
    pub table: bool,
}

/// Parses `--json`, `--table`, `--<property>` and `<property>=<value>`.
pub fn parse(args: &[String]) -> Result<ListArgs, String> {
    let mut out = ListArgs::default();
    for a in args {
        if a == "--json" {
            out.json = true;
        } else if a == "--table" {
            out.table = true;
        } else if let Some(f) = a.strip_prefix("--") {
            if f.is_empty() {
                return Err("invalid arg: --".into());
            }
            out.fields.push(f.to_owned());
        } else if let Some((k, v)) = a.split_once('=') {
            if k.is_empty() {
                return Err(format!("invalid arg: {a}"));
            }
            out.filter.insert(k.to_owned(), parse_value(k, v)?);
        } else {
            return Err(format!(
                "invalid arg: {a} (expected --<property> or <property>=<value>)"
            ));
        }
    }
    Ok(out)
}

/// lodash `matches`-like partial deep equality, where string patterns with glob syntax match as globs.
pub fn matches(pattern: &Value, value: &Value) -> bool {
    match (pattern, value) {
        (Value::Object(p), Value::Object(v)) => p
            .iter()
            .all(|(k, q)| v.get(k).is_some_and(|x| matches(q, x))),
        (Value::Array(p), Value::Array(v)) => p.iter().all(|q| v.iter().any(|x| matches(q, x))),
        (Value::String(p), Value::String(s)) if glob::has_glob(p) => glob::is_match(p, s),
        _ => pattern == value,
    }
}

/// Runs the command.
pub async fn list_objects(g: &Global, args: &[String]) -> Result<(), Failure> {
    let a = parse(args).map_err(Failure::Usage)?;
    // globs are matched locally only; exact values also narrow the server's answer
    let server_filter: Map<String, Value> = a
        .filter
        .iter()
        .filter(|(_, v)| !v.as_str().is_some_and(glob::has_glob))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let xo = super::connect(g).await?;
    let params = if server_filter.is_empty() {
        json!({})
    } else {
        json!({ "filter": server_filter })
    };
    let result = match xo.call("xo.getAllObjects", params).await {
        Err(e) if e.code() == Some(xo_lib::codes::METHOD_NOT_FOUND) => {
            return Err(Failure::Api(
                "this server has no xo.getAllObjects method".into(),
            ))
        }
        r => r?,
    };
    let objects: Vec<Value> = match result {
        Value::Object(m) => m.into_iter().map(|(_, v)| v).collect(),
        Value::Array(a) => a,
        _ => return Err(Failure::Api("xo.getAllObjects: unexpected answer".into())),
    };
    let pattern = Value::Object(a.filter.clone());
    let selected: Vec<Value> = objects
        .into_iter()
        .filter(|o| matches(&pattern, o))
        .map(|o| {
            if a.fields.is_empty() {
                return o;
            }
            let mut picked = Map::new();
            for f in &a.fields {
                if let Some(v) = o.get(f) {
                    picked.insert(f.clone(), v.clone());
                }
            }
            Value::Object(picked)
        })
        .collect();
    print(&render(&Value::Array(selected), g.format(a.json, a.table)));
    xo.close();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_and_matching() {
        let a = parse(&[
            "--id".into(),
            "--name_label".into(),
            "type=VM-template".into(),
            "n=json:2".into(),
        ])
        .unwrap();
        assert_eq!(a.fields, ["id", "name_label"]);
        assert_eq!(
            Value::Object(a.filter.clone()),
            json!({"type": "VM-template", "n": 2})
        );
        assert!(parse(&["oops".into()]).is_err());
        let o = json!({"type": "VM", "name_label": "web-1", "tags": ["a", "b"], "n": 2, "cpus": {"max": 4}});
        assert!(matches(&json!({"type": "VM"}), &o));
        assert!(matches(&json!({"name_label": "web-*"}), &o));
        assert!(!matches(&json!({"name_label": "db-*"}), &o));
        assert!(matches(&json!({"tags": ["b"]}), &o));
        assert!(matches(&json!({"cpus": {"max": 4}}), &o));
        assert!(!matches(&json!({"n": "2"}), &o));
        assert!(!matches(&json!({"missing": "x"}), &o));
    }
}
