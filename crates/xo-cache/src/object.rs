//! `XoObject`: an immutable XO object, serialised once, shared by `Arc` between the store, queries and
//! every subscriber.
//!
//! Memory: the object is kept as its JSON text only, zstd-packed against its type's dictionary ([`Packed`]), plus
//! id/type/ref/pool, which lookups and indexes need. A full load's objects are made plain and packed once they are
//! published ([`XoObject::pack`]): the text does not change, only its form. The parsed tree is built on first
//! [`XoObject::value`] call and cached in that object (methods touch few objects); whole-store scans
//! ([`XoObject::matches`], used by `getAllObjects` filters) parse into a temporary instead, so a filtered listing
//! does not make every object keep its tree.

use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use serde_json::Value;

use crate::jsval::Record;
use crate::packed::{Family, Packed};

/// An XO object (`{id, type, $pool, _xapiRef, …}`) with its JSON text computed once.
#[derive(Debug)]
pub struct XoObject {
    id: Arc<str>,
    kind: Arc<str>,
    xapi_ref: Arc<str>,
    pool: Option<Arc<str>>,
    /// Parsed form, built on demand from `json`.
    value: OnceLock<Value>,
    /// The text, plain until [`XoObject::pack`] for a full load's objects, packed otherwise.
    json: RwLock<Packed>,
    json_len: usize,
}

impl Clone for XoObject {
    fn clone(&self) -> Self {
        XoObject {
            id: self.id.clone(),
            kind: self.kind.clone(),
            xapi_ref: self.xapi_ref.clone(),
            pool: self.pool.clone(),
            value: self.value.clone(),
            json: RwLock::new(self.json.read().clone()),
            json_len: self.json_len,
        }
    }
}

impl PartialEq for XoObject {
    fn eq(&self, other: &Self) -> bool {
        self.same_json(other)
    }
}

impl XoObject {
    /// Wrap a transformed object. `None` when it has no string `id`. Integral floats become integers
    /// (`480.0` → `480`), as `JSON.stringify` writes them.
    pub fn new(obj: Record) -> Option<Self> {
        let o = XoObject::new_unpacked(obj)?;
        o.pack();
        Some(o)
    }

    /// [`XoObject::new`] with the text left plain until [`XoObject::pack`] (a full load packs its objects once
    /// they are out).
    pub fn new_unpacked(mut obj: Record) -> Option<Self> {
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
        let text = serde_json::to_string(&obj).ok()?;
        Some(XoObject {
            id,
            kind,
            xapi_ref,
            pool,
            value: OnceLock::new(),
            json_len: text.len(),
            json: RwLock::new(Packed::Plain(text.into_boxed_str())),
        })
    }

    /// Pack the text against the type's dictionary, if it is still plain.
    pub fn pack(&self) {
        let packed = match &*self.json.read() {
            Packed::Plain(text) => Packed::new(Family::Object, &self.kind, text),
            Packed::Zstd { .. } => return,
        };
        *self.json.write() = packed;
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

    /// The object as JSON value (for field access). Parsed from the JSON text on first use, then cached
    /// in this object; prefer [`XoObject::matches`] / [`XoObject::with_value`] for scans over many objects.
    pub fn value(&self) -> &Value {
        self.value.get_or_init(|| self.parse())
    }

    /// A field of the object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.value().get(key)
    }

    /// Run `f` on the parsed object without caching the tree (uses the cached tree when there is one).
    pub fn with_value<R>(&self, f: impl FnOnce(&Value) -> R) -> R {
        match self.value.get() {
            Some(v) => f(v),
            None => f(&self.parse()),
        }
    }

    /// An owned copy of the parsed object (parsed straight from the text when no tree is cached; the
    /// tree is not kept).
    pub fn to_value(&self) -> Value {
        match self.value.get() {
            Some(v) => v.clone(),
            None => self.parse(),
        }
    }

    /// Whether the object passes a `getAllObjects` filter (no tree kept; `Filter::All` parses nothing).
    pub fn matches(&self, filter: &crate::Filter) -> bool {
        match filter {
            crate::Filter::All => true,
            f => self.with_value(|v| f.matches(v)),
        }
    }

    fn parse(&self) -> Value {
        // The text was produced by serde_json from a Value: it always parses back.
        serde_json::from_str(&self.json.read().text()).unwrap_or(Value::Null)
    }

    /// The serialised JSON text (computed once at creation, unpacked on each call).
    pub fn json(&self) -> String {
        self.json.read().text().into_owned()
    }

    /// Append the JSON text to `out`.
    pub fn write_json(&self, out: &mut String) {
        self.json.read().unpack_into(out);
    }

    /// Length of the JSON text.
    pub fn json_len(&self) -> usize {
        self.json_len
    }

    /// Bytes the packed JSON text takes.
    pub fn packed_len(&self) -> usize {
        self.json.read().packed_len()
    }

    /// Whether both serialise to the same JSON text.
    pub fn same_json(&self, other: &XoObject) -> bool {
        std::ptr::eq(self, other)
            || (self.json_len == other.json_len && self.json.read().same_text(&other.json.read()))
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
        o.write_json(&mut out);
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
        assert_eq!(o.json(), r#"{"a":[1.5,3],"id":"x","n":2,"type":"VM"}"#);
        assert_eq!(items_json([&o]), format!("{{\"x\":{}}}", o.json()));
    }
}

#[cfg(test)]
mod pack_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn packing_keeps_the_text_and_equality() {
        let big = |n: u32| {
            json!({"id": "p", "type": "test-pack", "name_label": "a VM with a long name", "n": n,
                "tags": ["one", "two", "three"], "other": "x".repeat(200)})
            .as_object()
            .cloned()
            .unwrap()
        };
        let plain = XoObject::new_unpacked(big(1)).unwrap();
        let packed = XoObject::new(big(1)).unwrap();
        assert_eq!(plain.packed_len(), plain.json_len());
        assert!(packed.packed_len() < packed.json_len());
        assert!(plain.same_json(&packed) && packed.same_json(&plain) && plain.same_json(&plain));
        assert!(!plain.same_json(&XoObject::new(big(2)).unwrap()));
        let text = plain.json();
        plain.pack();
        assert!(plain.packed_len() < plain.json_len());
        assert_eq!(plain.json(), text);
        assert_eq!(packed.json(), text);
        let mut out = String::new();
        plain.clone().write_json(&mut out);
        assert_eq!(out, text);
        assert_eq!(plain.to_value()["n"], 1);
    }
}

#[cfg(test)]
mod lazy_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scans_do_not_keep_the_tree() {
        let o = XoObject::new(
            json!({"id": "x", "type": "VM", "power_state": "Running"})
                .as_object()
                .cloned()
                .unwrap(),
        )
        .unwrap();
        let f = crate::Filter::from_param(Some(&json!({"power_state": "Running"}))).unwrap();
        assert!(o.matches(&f));
        assert!(o.matches(&crate::Filter::All));
        assert_eq!(o.to_value()["type"], "VM");
        assert!(o.value.get().is_none());
        assert_eq!(o.get("power_state"), Some(&json!("Running")));
        assert!(o.value.get().is_some());
        assert_eq!(o.to_value(), *o.value());
    }
}
