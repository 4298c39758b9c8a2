//! `XoObject`: an immutable XO object, parsed and serialised once, shared by `Arc` between the store,
//! queries and every subscriber.

use std::sync::Arc;

use serde_json::Value;

use crate::jsval::Record;

/// An XO object (`{id, type, $pool, _xapiRef, …}`) with its JSON text computed once.
#[derive(Debug, Clone, PartialEq)]
pub struct XoObject {
    id: Arc<str>,
    kind: Arc<str>,
    xapi_ref: Arc<str>,
    pool: Option<Arc<str>>,
    value: Value,
    json: Arc<str>,
}

impl XoObject {
    /// Wrap a transformed object. `None` when it has no string `id`. Integral floats become integers
    /// (`480.0` → `480`), as `JSON.stringify` writes them.
    pub fn new(mut obj: Record) -> Option<Self> {
        for v in obj.values_mut() {
            js_numbers(v);
        }
        let id: Arc<str> = obj.get("id")?.as_str()?.into();
        let kind: Arc<str> = obj.get("type").and_then(Value::as_str).unwrap_or("").into();
        let xapi_ref: Arc<str> = obj
            .get("_xapiRef")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into();
        let pool = obj.get("$pool").and_then(Value::as_str).map(Arc::from);
        let value = Value::Object(obj);
        let json: Arc<str> = serde_json::to_string(&value).ok()?.into();
        Some(XoObject {
            id,
            kind,
            xapi_ref,
            pool,
            value,
            json,
        })
    }

    /// The XO id (usually the XAPI uuid).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Shared id.
    pub fn id_arc(&self) -> Arc<str> {
        self.id.clone()
    }

    /// The XO type (`VM`, `host`, `VM-template`, …).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The XAPI ref it came from.
    pub fn xapi_ref(&self) -> &str {
        &self.xapi_ref
    }

    /// The pool uuid (`$pool`).
    pub fn pool(&self) -> Option<&str> {
        self.pool.as_deref()
    }

    /// The object as JSON value (for filters and field access).
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// A field of the object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.value.get(key)
    }

    /// The serialised JSON text (computed once at creation).
    pub fn json(&self) -> &Arc<str> {
        &self.json
    }
}

/// Rewrite integral floats as integers, recursively.
pub(crate) fn js_numbers(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                *v = crate::jsval::number_value(f);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(js_numbers),
        Value::Object(m) => m.values_mut().for_each(js_numbers),
        _ => {}
    }
}

/// Write `{"<id>":<object>,…}` from pre-serialised objects (no re-serialisation).
pub fn items_json<'a>(objects: impl IntoIterator<Item = &'a XoObject>) -> String {
    let mut out = String::from("{");
    let mut first = true;
    for o in objects {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&serde_json::to_string(o.id()).unwrap_or_else(|_| "\"\"".into()));
        out.push(':');
        out.push_str(o.json());
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn needs_a_string_id_and_serialises_once() {
        let no_id = json!({"type": "VM"}).as_object().cloned().unwrap();
        assert!(XoObject::new(no_id).is_none());
        let bad_id = json!({"id": 3}).as_object().cloned().unwrap();
        assert!(XoObject::new(bad_id).is_none());
        let o = XoObject::new(
            json!({"id": "x", "type": "VM", "n": 2.0, "a": [1.5, 3.0]})
                .as_object()
                .cloned()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(o.id(), "x");
        assert_eq!(o.kind(), "VM");
        assert_eq!(&**o.json(), r#"{"a":[1.5,3],"id":"x","n":2,"type":"VM"}"#);
        assert_eq!(items_json([&o]), format!("{{\"x\":{}}}", o.json()));
    }
}
