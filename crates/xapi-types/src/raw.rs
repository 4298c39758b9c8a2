//! XAPI records kept as the compact JSON text they arrived in ([`RawRecord`]): about a third of the memory of a
//! parsed `serde_json` tree, and no allocation per field. Decode the whole record, a few fields, or keep only
//! the fields you need, when you need them.
//!
//! The text is validated (a JSON object) when the record is made, so the decoders cannot fail afterwards. Values
//! are in the canonical form of the crate root (JSON-RPC records already are; XML-RPC ones are canonicalised by
//! the caller before [`RawRecord::from_map`]).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::{CodecError, Ref};

/// One XAPI record as compact JSON text (an object).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RawRecord(Box<str>);

impl RawRecord {
    /// Validate `text` as a JSON object and keep it.
    pub fn parse(text: &str) -> Result<RawRecord, CodecError> {
        let raw: &RawValue =
            serde_json::from_str(text).map_err(|e| CodecError::Json(e.to_string()))?;
        RawRecord::from_raw(raw)
    }

    /// Keep an already-validated JSON value if it is an object.
    pub fn from_raw(raw: &RawValue) -> Result<RawRecord, CodecError> {
        let text = raw.get().trim();
        if text.starts_with('{') {
            Ok(RawRecord(text.into()))
        } else {
            Err(CodecError::Structure(
                "a record is not a JSON object".into(),
            ))
        }
    }

    /// Serialise a decoded record.
    pub fn from_map(map: &Map<String, Value>) -> RawRecord {
        // Serialising a `Map<String, Value>` cannot fail (string keys, finite numbers by construction).
        RawRecord(
            serde_json::to_string(map)
                .unwrap_or_else(|_| "{}".into())
                .into(),
        )
    }

    /// The JSON text, owned (no copy).
    pub fn into_text(self) -> Box<str> {
        self.0
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Bytes of JSON text held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty (never: a record is at least `{}`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The whole record.
    pub fn decode(&self) -> Map<String, Value> {
        crate::tree::decode_object(&self.0)
    }

    /// Only the fields `keep` accepts; the others are skipped without being built.
    pub fn decode_fields(&self, keep: impl Fn(&str) -> bool) -> Map<String, Value> {
        let mut de = serde_json::Deserializer::from_str(&self.0);
        de.deserialize_map(FieldsVisitor(keep)).unwrap_or_default()
    }

    /// One field, if present.
    pub fn get(&self, field: &str) -> Option<Value> {
        let mut de = serde_json::Deserializer::from_str(&self.0);
        de.deserialize_map(FieldVisitor(field)).ok().flatten()
    }

    /// One string field, if present and a string.
    pub fn get_str(&self, field: &str) -> Option<String> {
        match self.get(field)? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A record with only the fields `keep` accepts, copied as text (values are not parsed into trees).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> RawRecord {
        match retain_text(&self.0, keep) {
            Ok(text) => RawRecord(text.into()),
            Err(_) => self.clone(),
        }
    }

    /// [`RawRecord::retain`] by value: the record itself when `keep` accepts every field (nothing is copied).
    pub fn into_retained(self, keep: impl Fn(&str) -> bool) -> RawRecord {
        let mut de = serde_json::Deserializer::from_str(&self.0);
        match de.deserialize_map(AllKeptVisitor(&keep)) {
            Ok(true) => self,
            _ => self.retain(keep),
        }
    }

    /// [`RawRecord::from_raw`] keeping only the fields `keep` accepts: the others are never copied.
    pub fn from_raw_retained(
        raw: &RawValue,
        keep: impl Fn(&str) -> bool,
    ) -> Result<RawRecord, CodecError> {
        let text = raw.get().trim();
        if !text.starts_with('{') {
            return Err(CodecError::Structure(
                "a record is not a JSON object".into(),
            ));
        }
        retain_text(text, keep)
            .map(|t| RawRecord(t.into()))
            .map_err(|e| CodecError::Json(e.to_string()))
    }
}

impl fmt::Debug for RawRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawRecord({})", self.0)
    }
}

impl Serialize for RawRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match serde_json::from_str::<&RawValue>(&self.0) {
            Ok(raw) => raw.serialize(s),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}

impl From<&Map<String, Value>> for RawRecord {
    fn from(map: &Map<String, Value>) -> Self {
        RawRecord::from_map(map)
    }
}

struct FieldsVisitor<F>(F);

impl<'de, F: Fn(&str) -> bool> Visitor<'de> for FieldsVisitor<F> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            if (self.0)(&k) {
                out.push((k.into_owned(), map.next_value::<Value>()?));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        // Bulk-built maps fill their nodes completely.
        Ok(out.into_iter().collect())
    }
}

struct AllKeptVisitor<'f, F>(&'f F);

impl<'de, F: Fn(&str) -> bool> Visitor<'de> for AllKeptVisitor<'_, F> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            if !(self.0)(&k) {
                return Ok(false);
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(true)
    }
}

struct FieldVisitor<'f>(&'f str);

impl<'de> Visitor<'de> for FieldVisitor<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            if found.is_none() && k == self.0 {
                found = Some(map.next_value::<Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// The fields of JSON object `text` that `keep` accepts, as compact JSON object text.
fn retain_text(text: &str, keep: impl Fn(&str) -> bool) -> serde_json::Result<String> {
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(RetainVisitor {
        keep,
        len: text.len(),
    })
}

struct RetainVisitor<F> {
    keep: F,
    len: usize,
}

impl<'de, F: Fn(&str) -> bool> Visitor<'de> for RetainVisitor<F> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = String::with_capacity(self.len);
        out.push('{');
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            let v = map.next_value::<&'de RawValue>()?;
            if (self.keep)(&k) {
                if out.len() > 1 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(&*k).map_err(de::Error::custom)?);
                out.push(':');
                out.push_str(v.get());
            }
        }
        out.push('}');
        out.shrink_to_fit();
        Ok(out)
    }
}

/// A `get_all_records` result (`{ref: record}`) given as JSON text, split into records without parsing values.
pub fn records_from_json(result: &str) -> Result<Vec<(Ref, RawRecord)>, CodecError> {
    records_from_json_retained(result, |_| true)
}

/// [`records_from_json`] keeping only the fields `keep` accepts in each record.
pub fn records_from_json_retained(
    result: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<(Ref, RawRecord)>, CodecError> {
    let mut de = serde_json::Deserializer::from_str(result);
    let out = RecordsSeed(keep)
        .deserialize(&mut de)
        .map_err(|e| CodecError::Json(e.to_string()))?;
    de.end().map_err(|e| CodecError::Json(e.to_string()))?;
    Ok(out)
}

/// A `get_all_records` result already decoded (XML-RPC, canonical form) as raw records.
pub fn records_from_value(result: Value) -> Result<Vec<(Ref, RawRecord)>, CodecError> {
    records_from_value_retained(result, |_| true)
}

/// [`records_from_value`] keeping only the fields `keep` accepts in each record.
pub fn records_from_value_retained(
    result: Value,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<(Ref, RawRecord)>, CodecError> {
    match result {
        Value::Object(m) => m
            .into_iter()
            .map(|(r, rec)| match rec {
                Value::Object(mut rec) => {
                    rec.retain(|k, _| keep(k));
                    Ok((Ref(r), RawRecord::from_map(&rec)))
                }
                _ => Err(CodecError::Structure(format!("record {r} is not a struct"))),
            })
            .collect(),
        // XML-RPC cannot tell an empty struct from an empty string when the schema is unknown.
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        _ => Err(CodecError::Structure("records are not a struct".into())),
    }
}

struct RecordsSeed<F>(F);

impl<'de, F: Fn(&str) -> bool> DeserializeSeed<'de> for RecordsSeed<F> {
    type Value = Vec<(Ref, RawRecord)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(RecordsVisitor(self.0))
    }
}

struct RecordsVisitor<F>(F);

impl<'de, F: Fn(&str) -> bool> Visitor<'de> for RecordsVisitor<F> {
    type Value = Vec<(Ref, RawRecord)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of records")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        if s.is_empty() {
            Ok(Vec::new())
        } else {
            Err(E::custom("records are not a struct"))
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(r) = map.next_key::<String>()? {
            let raw = map.next_value::<&'de RawValue>()?;
            let rec = RawRecord::from_raw_retained(raw, &self.0)
                .map_err(|_| de::Error::custom(format!("record {r} is not a struct")))?;
            out.push((Ref(r), rec));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_whole_and_partial() {
        let r = RawRecord::parse(
            r#"{"uuid":"u1","name_label":"vm \"a\"","VCPUs_max":4,"other_config":{"k":"v"},"tags":["x"]}"#,
        )
        .unwrap();
        assert_eq!(r.decode()["VCPUs_max"], 4);
        assert_eq!(r.get("name_label"), Some(json!("vm \"a\"")));
        assert_eq!(r.get_str("uuid").as_deref(), Some("u1"));
        assert_eq!(r.get("missing"), None);
        let some = r.decode_fields(|k| k == "tags" || k == "uuid");
        assert_eq!(Value::Object(some), json!({"uuid": "u1", "tags": ["x"]}));
        let kept = r.retain(|k| k != "VCPUs_max");
        assert_eq!(
            Value::Object(kept.decode()),
            json!({"uuid": "u1", "name_label": "vm \"a\"", "other_config": {"k": "v"}, "tags": ["x"]})
        );
        assert_eq!(r.retain(|_| false).as_str(), "{}");
        assert_eq!(r.clone().into_retained(|_| true), r);
        assert_eq!(
            r.clone().into_retained(|k| k == "uuid").as_str(),
            r#"{"uuid":"u1"}"#
        );
        assert_eq!(
            serde_json::to_value(&r).unwrap()["other_config"],
            json!({"k": "v"})
        );
    }

    #[test]
    fn escaped_keys_survive_retain() {
        let r = RawRecord::parse(r#"{"a\"b":1,"c\u0041":2}"#).unwrap();
        let kept = r.retain(|_| true);
        assert_eq!(Value::Object(kept.decode()), json!({"a\"b": 1, "cA": 2}));
    }

    #[test]
    fn round_trips_maps() {
        let m = json!({"uuid": "u", "n": 1.5, "s": [1, 2]});
        let Value::Object(m) = m else { unreachable!() };
        assert_eq!(RawRecord::from_map(&m).decode(), m);
    }

    #[test]
    fn rejects_non_objects() {
        assert!(RawRecord::parse("[1]").is_err());
        assert!(RawRecord::parse("{").is_err());
        assert!(RawRecord::parse("\"x\"").is_err());
    }

    #[test]
    fn splits_record_sets() {
        let recs = records_from_json(
            r#"{"OpaqueRef:1":{"uuid":"a"}, "OpaqueRef:2" : {"uuid":"b","x":[1,{"y":2}]}}"#,
        )
        .unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].0, Ref("OpaqueRef:2".into()));
        assert_eq!(recs[1].1.as_str(), r#"{"uuid":"b","x":[1,{"y":2}]}"#);
        assert_eq!(records_from_json(r#""""#).unwrap(), vec![]);
        assert!(records_from_json(r#"{"OpaqueRef:1":3}"#).is_err());
        assert!(records_from_json(r#"{"OpaqueRef:1":{}} x"#).is_err());
        assert!(records_from_json("[]").is_err());
        let v = json!({"OpaqueRef:1": {"uuid": "a"}});
        assert_eq!(
            records_from_value(v).unwrap()[0].1.get_str("uuid").unwrap(),
            "a"
        );
        assert!(records_from_value(json!({"OpaqueRef:1": 1})).is_err());
        assert_eq!(records_from_value(json!("")).unwrap(), vec![]);
        let kept =
            records_from_json_retained(r#"{"OpaqueRef:1":{"uuid":"a","big":[1,2,3]}}"#, |k| {
                k == "uuid"
            })
            .unwrap();
        assert_eq!(kept[0].1.as_str(), r#"{"uuid":"a"}"#);
        let kept =
            records_from_value_retained(json!({"OpaqueRef:1": {"uuid": "a", "big": [1]}}), |k| {
                k == "uuid"
            })
            .unwrap();
        assert_eq!(kept[0].1.as_str(), r#"{"uuid":"a"}"#);
    }
}
