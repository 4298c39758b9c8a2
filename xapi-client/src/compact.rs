//! JSON decoding into `serde_json::Value` with compact maps: entries are collected then bulk-built into the B-tree
//! (`FromIterator` fills nodes completely; one-by-one inserts leave them about half full), and arrays are shrunk
//! to fit. About a quarter less memory for big record sets, and no slower.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parse JSON text into a [`Value`] with compact maps. XAPI may write non-finite floats as bare `NaN`, `Infinity`
/// or `-Infinity` (not JSON): if the text fails to parse and has such tokens outside strings, they are read as
/// `null` (NaN) and ±`f64::MAX`.
pub(crate) fn from_slice(body: &[u8]) -> serde_json::Result<Value> {
    match serde_json::from_slice::<Compact>(body) {
        Ok(c) => Ok(c.0),
        Err(e) => match replace_non_finite(body) {
            Some(fixed) => serde_json::from_slice::<Compact>(&fixed).map(|c| c.0),
            None => Err(e),
        },
    }
}

/// Rewrite bare `NaN` / `Infinity` / `-Infinity` tokens outside strings; `None` if there are none.
pub(crate) fn replace_non_finite(body: &[u8]) -> Option<Vec<u8>> {
    const MAX: &[u8] = b"1.7976931348623157e308";
    let mut out = Vec::with_capacity(body.len() + 64);
    let (mut in_string, mut escaped, mut changed) = (false, false, false);
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            out.push(b);
            i += 1;
            continue;
        }
        let rest = &body[i..];
        if b == b'"' {
            in_string = true;
        } else if rest.starts_with(b"NaN") {
            out.extend_from_slice(b"null");
            (i, changed) = (i + 3, true);
            continue;
        } else if rest.starts_with(b"Infinity") {
            out.extend_from_slice(MAX);
            (i, changed) = (i + 8, true);
            continue;
        } else if rest.starts_with(b"-Infinity") {
            out.push(b'-');
            out.extend_from_slice(MAX);
            (i, changed) = (i + 9, true);
            continue;
        }
        out.push(b);
        i += 1;
    }
    changed.then_some(out)
}

struct Compact(Value);

impl<'de> Deserialize<'de> for Compact {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CompactVisitor)
    }
}

struct CompactVisitor;

impl<'de> Visitor<'de> for CompactVisitor {
    type Value = Compact;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Compact, E> {
        Ok(Compact(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Compact, E> {
        Ok(Compact(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Compact, E> {
        Ok(Compact(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Compact, E> {
        Ok(Compact(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Compact, E> {
        Ok(Compact(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Compact, E> {
        Ok(Compact(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Compact, E> {
        Ok(Compact(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Compact, E> {
        Ok(Compact(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Compact, D::Error> {
        Compact::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Compact, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Compact(v)) = seq.next_element()? {
            out.push(v);
        }
        out.shrink_to_fit();
        Ok(Compact(Value::Array(out)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Compact, A::Error> {
        let mut entries: Vec<(String, Value)> = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((k, Compact(v))) = map.next_entry::<String, Compact>()? {
            entries.push((k, v));
        }
        // Duplicate keys: the last one wins, as with serde_json's own Map.
        Ok(Compact(Value::Object(
            entries.into_iter().collect::<Map<String, Value>>(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_value_as_serde_json() {
        let text = br#"{"b": [1, -2, 3.5, "x\u00e9\n", true, null, {}], "a": {"z": {}, "y": [], "k": "v"}, "a": 7}"#;
        let ours = from_slice(text).unwrap();
        let theirs: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours["a"], 7);
        assert!(from_slice(b"{\"a\": [1, 2").is_err());
        assert!(from_slice(b"").is_err());
    }

    #[test]
    fn non_finite_floats_outside_strings() {
        let text = br#"{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN \" Infinity", "d": 1.5}"#;
        let v = from_slice(text).unwrap();
        assert_eq!(v["a"], Value::Null);
        assert_eq!(v["b"][0].as_f64(), Some(f64::MAX));
        assert_eq!(v["b"][1].as_f64(), Some(-f64::MAX));
        assert_eq!(v["c"], "NaN \" Infinity");
        assert_eq!(v["d"], 1.5);
        assert!(from_slice(b"{\"a\": Nope}").is_err());
    }
}
