//! Collection queries shared by REST collections: `fields=a,b.c|*`, `filter=<complex matcher>`, `limit=N`,
//! `ndjson=true`; items rendered as hrefs or as picked objects with their `href`.

use std::collections::HashMap;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

use super::RestError;

/// A parsed collection query.
#[derive(Debug, Clone)]
pub struct CollectionQuery {
    /// `None`: hrefs; `Some(None)`: whole objects (`*`); `Some(Some(fields))`: those fields.
    pub fields: Option<Option<Vec<String>>>,
    /// Complex-matcher filter.
    pub filter: Option<xo_cache::filter::Node>,
    /// At most this many items.
    pub limit: Option<usize>,
    /// One JSON document per line (`application/x-ndjson`).
    pub ndjson: bool,
}

impl CollectionQuery {
    /// From the query string parameters.
    pub fn parse(q: &HashMap<String, String>) -> Result<CollectionQuery, RestError> {
        let fields = q.get("fields").map(|f| {
            (f != "*").then(|| {
                f.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
        });
        let filter = match q.get("filter") {
            None => None,
            Some(f) => Some(
                xo_cache::filter::complex::parse(f)
                    .map_err(|e| RestError::BadRequest(format!("invalid filter: {e}")))?,
            ),
        };
        let limit = match q.get("limit") {
            None => None,
            Some(l) => Some(
                l.parse::<f64>()
                    .ok()
                    .filter(|n| !n.is_nan())
                    .map(|n| n.max(0.0) as usize)
                    .ok_or_else(|| RestError::BadRequest(format!("invalid limit: {l}")))?,
            ),
        };
        let ndjson = q.get("ndjson").is_some_and(|v| v == "true" || v.is_empty());
        Ok(CollectionQuery {
            fields,
            filter,
            limit,
            ndjson,
        })
    }

    /// Whether `object` passes the filter.
    pub fn matches(&self, object: &Value) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(object))
    }

    /// The response for `objects` (already filtered and limited), `href_of` giving each one's href.
    pub fn respond(&self, objects: Vec<Value>, href_of: impl Fn(&Value) -> String) -> Response {
        let items: Vec<Value> = objects
            .into_iter()
            .map(|o| {
                let href = href_of(&o);
                match &self.fields {
                    None => Value::String(href),
                    Some(fields) => {
                        let mut m = match fields {
                            None => o.as_object().cloned().unwrap_or_default(),
                            Some(fields) => pick(&o, fields),
                        };
                        m.insert("href".into(), Value::String(href));
                        Value::Object(m)
                    }
                }
            })
            .collect();
        if self.ndjson {
            let mut body = String::new();
            for i in &items {
                body.push_str(&i.to_string());
                body.push('\n');
            }
            return ([(CONTENT_TYPE, "application/x-ndjson")], body).into_response();
        }
        Json(Value::Array(items)).into_response()
    }
}

/// lodash `pick(object, paths)`: the listed (dotted) paths that exist, nested as in `object`.
pub fn pick(object: &Value, paths: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    for path in paths {
        let parts: Vec<&str> = path.split('.').collect();
        let mut v = object;
        let mut found = true;
        for p in &parts {
            match v.get(p) {
                Some(x) => v = x,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        let mut nested = v.clone();
        for p in parts[1..].iter().rev() {
            let mut m = Map::new();
            m.insert((*p).to_owned(), nested);
            nested = Value::Object(m);
        }
        merge(&mut out, parts[0], nested);
    }
    out
}

/// Deep-merges `value` into `out[key]` (objects merge, anything else replaces).
fn merge(out: &mut Map<String, Value>, key: &str, value: Value) {
    match (out.get_mut(key), value) {
        (Some(Value::Object(existing)), Value::Object(new)) => {
            for (k, v) in new {
                merge(existing, &k, v);
            }
        }
        (_, value) => {
            out.insert(key.to_owned(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pick_follows_dotted_paths() {
        let o = json!({"id": "a", "status": "success", "properties": {"name": "n", "method": "m"}});
        assert_eq!(
            Value::Object(pick(
                &o,
                &["id".into(), "properties.name".into(), "missing".into()]
            )),
            json!({"id": "a", "properties": {"name": "n"}})
        );
    }

    #[test]
    fn bad_queries_are_rejected() {
        let q = |k: &str, v: &str| HashMap::from([(k.to_owned(), v.to_owned())]);
        assert!(CollectionQuery::parse(&q("limit", "x")).is_err());
        assert!(CollectionQuery::parse(&q("filter", "(")).is_err());
        let c = CollectionQuery::parse(&q("fields", "*")).unwrap();
        assert!(matches!(c.fields, Some(None)));
    }
}
