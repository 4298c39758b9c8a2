//! Decoding a JSON object's text into a `serde_json` tree faster than `serde_json::from_str`: each object's members
//! are collected first and the map built in one go (`BTreeMap`'s bulk build from sorted input) instead of inserted
//! key by key (string comparisons on every insert: half of xo-cache's full-load derivation time). Same result as
//! `serde_json::from_str::<Value>`: the last of duplicate keys wins, non-finite floats cannot occur in JSON.
//! [`crate::RawRecord::decode`] uses it.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The object in `text`; an empty map if `text` is not a JSON object (record texts always are).
pub fn decode_object(text: &str) -> Map<String, Value> {
    let mut de = serde_json::Deserializer::from_str(text);
    match AnyValue.deserialize(&mut de) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// A JSON value, with maps bulk-built.
#[derive(Clone, Copy)]
struct AnyValue;

impl<'de> DeserializeSeed<'de> for AnyValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnyValue {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Number::from_f64(f).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(self)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members: Vec<(String, Value)> = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(k) = map.next_key::<String>()? {
            members.push((k, map.next_value_seed(self)?));
        }
        Ok(Value::Object(members.into_iter().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_as_serde_json() {
        for text in [
            r#"{"b":1,"a":[true,null,-3,2.5,1e300,{"z":"x","y":{}}],"c":"é\n","a2":18446744073709551615}"#,
            r#"{"dup":1,"dup":2,"other_config":{"k":"v","a":"b"},"VBDs":[]}"#,
            "{}",
        ] {
            let expected: Map<String, Value> = serde_json::from_str(text).unwrap();
            assert_eq!(decode_object(text), expected, "{text}");
        }
        assert_eq!(decode_object(r#"{"dup":1,"dup":2}"#)["dup"], 2);
        assert!(decode_object("[1]").is_empty());
        assert!(decode_object("{bad").is_empty());
    }
}
