//! Method parameter validation in XO's schema dialect.
//!
//! [`ParamsSchema::compile`] translates XO's dialect (`_xoJsonSchema.mjs`) into standard JSON Schema:
//! properties required unless `optional: true`, `additionalProperties: false` unless the object declares no
//! properties or a `'*'` wildcard (which becomes `additionalProperties`), strings `minLength: 1` unless
//! `minLength`/`format`/`pattern` is given, `enum` schemas untouched. [`ParamsSchema::validate`] then checks
//! a params object like ajv v8 configured as XO does (`allErrors`, `useDefaults`, `allowUnionTypes`, no
//! coercion) and reports ajv's error objects `{instancePath, schemaPath, keyword, params, message}`, which
//! are part of the wire contract (xo-cli prints them).
//!
//! Why not the `jsonschema` crate: the ajv error objects are the contract and `jsonschema` reports different
//! paths and kinds (one error for all additional properties, no `missingProperty`), it does not inject
//! defaults, and it adds a large dependency tree to a 2-core build for the dozen keywords XO's method
//! schemas use (type, properties, required, additionalProperties, items, enum, minLength, maxLength, pattern,
//! minimum, maximum, minItems, maxItems, uniqueItems, nullable).

use std::collections::HashMap;

use regex::Regex;
use serde_json::{json, Map, Value};

/// A schema that cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// `params` is not an object of property schemas.
    #[error("params must be an object of property schemas")]
    NotAMap,
    /// A `pattern` is not a valid regular expression.
    #[error("invalid pattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
}

/// A compiled method params schema.
#[derive(Debug, Clone)]
pub struct ParamsSchema {
    schema: Value,
    patterns: HashMap<String, Regex>,
}

fn is_type(schema: &Map<String, Value>, t: &str) -> bool {
    match schema.get("type") {
        Some(Value::String(s)) => s == t,
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(t)),
        _ => false,
    }
}

/// XO dialect → standard JSON Schema (same rules as xo-server's `xoToJsonSchema`).
pub fn xo_to_json_schema(mut schema: Value) -> Value {
    let Some(obj) = schema.as_object_mut() else {
        return schema;
    };
    if obj.contains_key("enum") {
        return schema;
    }
    if is_type(obj, "array") {
        match obj.get_mut("items") {
            Some(Value::Array(items)) => {
                for it in items.iter_mut() {
                    *it = xo_to_json_schema(it.take());
                }
            }
            Some(items @ Value::Object(_)) => *items = xo_to_json_schema(items.take()),
            _ => {}
        }
    }
    if is_type(obj, "object") {
        let mut properties = match obj.remove("properties") {
            Some(Value::Object(p)) => p,
            _ => Map::new(),
        };
        for v in properties.values_mut() {
            *v = xo_to_json_schema(v.take());
        }
        match obj.get("additionalProperties") {
            None => match properties.remove("*") {
                None => {
                    obj.insert(
                        "additionalProperties".into(),
                        Value::Bool(properties.is_empty()),
                    );
                }
                Some(wild) => {
                    obj.insert("additionalProperties".into(), wild);
                }
            },
            Some(Value::Object(_)) => {
                let ap = obj.remove("additionalProperties").unwrap_or_default();
                obj.insert("additionalProperties".into(), xo_to_json_schema(ap));
            }
            Some(_) => {}
        }
        if !obj.contains_key("required") {
            let mut required = Vec::new();
            for (k, v) in properties.iter_mut() {
                let optional = v.get("optional").and_then(Value::as_bool).unwrap_or(false);
                if let Some(o) = v.as_object_mut() {
                    o.remove("optional");
                }
                if !optional {
                    required.push(Value::String(k.clone()));
                }
            }
            if !required.is_empty() {
                obj.insert("required".into(), Value::Array(required));
            }
        }
        obj.insert("properties".into(), Value::Object(properties));
    }
    if is_type(obj, "string")
        && !obj.contains_key("minLength")
        && !obj.contains_key("format")
        && !obj.contains_key("pattern")
    {
        obj.insert("minLength".into(), json!(1));
    }
    schema
}

fn collect_patterns(schema: &Value, out: &mut HashMap<String, Regex>) -> Result<(), SchemaError> {
    match schema {
        Value::Object(o) => {
            if let Some(Value::String(p)) = o.get("pattern") {
                if !out.contains_key(p) {
                    let re = Regex::new(p).map_err(|e| SchemaError::Pattern {
                        pattern: p.clone(),
                        reason: e.to_string(),
                    })?;
                    out.insert(p.clone(), re);
                }
            }
            for (k, v) in o {
                if k != "enum" && k != "default" {
                    collect_patterns(v, out)?;
                }
            }
        }
        Value::Array(a) => {
            for v in a {
                collect_patterns(v, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn has_type(data: &Value, t: &str) -> bool {
    match t {
        "string" => data.is_string(),
        "number" => data.is_number(),
        "integer" => match data {
            Value::Number(n) => {
                n.is_i64()
                    || n.is_u64()
                    || n.as_f64()
                        .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
            }
            _ => false,
        },
        "boolean" => data.is_boolean(),
        "object" => data.is_object(),
        "array" => data.is_array(),
        "null" => data.is_null(),
        _ => false,
    }
}

struct Ctx<'a> {
    patterns: &'a HashMap<String, Regex>,
    errors: Vec<Value>,
}

impl Ctx<'_> {
    fn err(&mut self, ip: &str, sp: &str, keyword: &str, params: Value, message: String) {
        self.errors.push(json!({
            "instancePath": ip,
            "schemaPath": format!("{sp}/{keyword}"),
            "keyword": keyword,
            "params": params,
            "message": message,
        }));
    }

    fn validate(&mut self, schema: &Value, data: &mut Value, ip: &str, sp: &str) {
        let s = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                self.errors.push(json!({
                    "instancePath": ip, "schemaPath": sp, "keyword": "false schema",
                    "params": {}, "message": "boolean schema is false",
                }));
                return;
            }
            Value::Object(s) => s,
            _ => return,
        };
        // type (nullable admits null)
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::String(x) => vec![x.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let nullable = s.get("nullable") == Some(&Value::Bool(true));
            let admitted = types.iter().any(|t| has_type(data, t)) || (nullable && data.is_null());
            if !types.is_empty() && !admitted {
                self.err(
                    ip,
                    sp,
                    "type",
                    json!({ "type": t }),
                    format!("must be {}", types.join(",")),
                );
            }
        }
        if let Some(Value::Array(allowed)) = s.get("enum") {
            if !allowed.iter().any(|a| json_eq(a, data)) {
                self.err(
                    ip,
                    sp,
                    "enum",
                    json!({ "allowedValues": allowed }),
                    "must be equal to one of the allowed values".into(),
                );
            }
        }
        match data {
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                for (kw, cmp, ok) in [
                    (
                        "maximum",
                        "<=",
                        &(|x: f64, l: f64| x <= l) as &dyn Fn(f64, f64) -> bool,
                    ),
                    ("minimum", ">=", &|x, l| x >= l),
                    ("exclusiveMaximum", "<", &|x, l| x < l),
                    ("exclusiveMinimum", ">", &|x, l| x > l),
                ] {
                    if let Some(limit) = s.get(kw).filter(|l| l.is_number()) {
                        if !ok(x, limit.as_f64().unwrap_or(f64::NAN)) {
                            self.err(
                                ip,
                                sp,
                                kw,
                                json!({ "comparison": cmp, "limit": limit }),
                                format!("must be {cmp} {limit}"),
                            );
                        }
                    }
                }
            }
            Value::String(st) => {
                let len = st.chars().count() as u64;
                if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
                    if len > max {
                        self.err(
                            ip,
                            sp,
                            "maxLength",
                            json!({ "limit": max }),
                            format!("must NOT have more than {max} characters"),
                        );
                    }
                }
                if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
                    if len < min {
                        self.err(
                            ip,
                            sp,
                            "minLength",
                            json!({ "limit": min }),
                            format!("must NOT have fewer than {min} characters"),
                        );
                    }
                }
                if let Some(Value::String(p)) = s.get("pattern") {
                    if let Some(re) = self.patterns.get(p) {
                        if !re.is_match(st) {
                            self.err(
                                ip,
                                sp,
                                "pattern",
                                json!({ "pattern": p }),
                                format!("must match pattern \"{p}\""),
                            );
                        }
                    }
                }
            }
            Value::Array(items) => {
                if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
                    if items.len() as u64 > max {
                        self.err(
                            ip,
                            sp,
                            "maxItems",
                            json!({ "limit": max }),
                            format!("must NOT have more than {max} items"),
                        );
                    }
                }
                if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
                    if (items.len() as u64) < min {
                        self.err(
                            ip,
                            sp,
                            "minItems",
                            json!({ "limit": min }),
                            format!("must NOT have fewer than {min} items"),
                        );
                    }
                }
                if s.get("uniqueItems") == Some(&Value::Bool(true)) {
                    'outer: for j in (0..items.len()).rev() {
                        for i in (0..j).rev() {
                            if json_eq(&items[i], &items[j]) {
                                self.err(
                                    ip,
                                    sp,
                                    "uniqueItems",
                                    json!({ "i": i, "j": j }),
                                    format!("must NOT have duplicate items (items ## {i} and {j} are identical)"),
                                );
                                break 'outer;
                            }
                        }
                    }
                }
                match s.get("items") {
                    Some(Value::Array(tuple)) => {
                        for (i, (sch, item)) in tuple.iter().zip(items.iter_mut()).enumerate() {
                            self.validate(
                                sch,
                                item,
                                &format!("{ip}/{i}"),
                                &format!("{sp}/items/{i}"),
                            );
                        }
                    }
                    Some(sch) => {
                        for (i, item) in items.iter_mut().enumerate() {
                            self.validate(sch, item, &format!("{ip}/{i}"), &format!("{sp}/items"));
                        }
                    }
                    None => {}
                }
            }
            Value::Object(obj) => {
                let props = s.get("properties").and_then(Value::as_object);
                if let Some(props) = props {
                    for (k, p) in props {
                        if let Some(d) = p.get("default") {
                            if !obj.contains_key(k) {
                                obj.insert(k.clone(), d.clone());
                            }
                        }
                    }
                }
                if let Some(Value::Array(req)) = s.get("required") {
                    for r in req.iter().filter_map(Value::as_str) {
                        if !obj.contains_key(r) {
                            self.err(
                                ip,
                                sp,
                                "required",
                                json!({ "missingProperty": r }),
                                format!("must have required property '{r}'"),
                            );
                        }
                    }
                }
                match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        for k in obj.keys() {
                            if !props.is_some_and(|p| p.contains_key(k)) {
                                self.err(
                                    ip,
                                    sp,
                                    "additionalProperties",
                                    json!({ "additionalProperty": k }),
                                    "must NOT have additional properties".into(),
                                );
                            }
                        }
                    }
                    Some(ap @ Value::Object(_)) => {
                        for (k, v) in obj.iter_mut() {
                            if !props.is_some_and(|p| p.contains_key(k)) {
                                self.validate(
                                    ap,
                                    v,
                                    &format!("{ip}/{}", escape_pointer(k)),
                                    &format!("{sp}/additionalProperties"),
                                );
                            }
                        }
                    }
                    _ => {}
                }
                if let Some(props) = props {
                    for (k, p) in props {
                        if let Some(v) = obj.get_mut(k) {
                            self.validate(
                                p,
                                v,
                                &format!("{ip}/{}", escape_pointer(k)),
                                &format!("{sp}/properties/{}", escape_pointer(k)),
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

impl ParamsSchema {
    /// Compiles a method's XO-dialect params map (`{name: schema}`).
    pub fn compile(params: &Value) -> Result<Self, SchemaError> {
        if !params.is_object() {
            return Err(SchemaError::NotAMap);
        }
        let schema = xo_to_json_schema(json!({ "type": "object", "properties": params.clone() }));
        let mut patterns = HashMap::new();
        collect_patterns(&schema, &mut patterns)?;
        Ok(Self { schema, patterns })
    }

    /// The translated standard JSON Schema.
    pub fn json_schema(&self) -> &Value {
        &self.schema
    }

    /// Validates `params` in place (injecting defaults); returns ajv-style errors, empty when valid.
    pub fn validate(&self, params: &mut Value) -> Vec<Value> {
        let mut ctx = Ctx {
            patterns: &self.patterns,
            errors: Vec::new(),
        };
        ctx.validate(&self.schema, params, "", "#");
        ctx.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(params: Value, data: Value) -> (Value, Vec<Value>) {
        let s = ParamsSchema::compile(&params).unwrap();
        let mut d = data;
        let e = s.validate(&mut d);
        (d, e)
    }

    #[test]
    fn translation_follows_xo_rules() {
        let s = xo_to_json_schema(json!({"type": "object", "properties": {
            "id": {"type": "string"},
            "n": {"type": ["integer", "string"], "optional": true},
            "e": {"enum": ["a"], "type": "string"},
            "o": {"type": "object", "properties": {"*": {"type": "number"}}},
            "free": {"type": "object"},
            "p": {"type": "string", "pattern": "x"},
        }}));
        let mut req: Vec<&str> = s["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        req.sort_unstable();
        assert_eq!(req, ["e", "free", "id", "o", "p"]);
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(s["properties"]["id"]["minLength"], json!(1));
        assert_eq!(s["properties"]["n"]["minLength"], json!(1));
        assert!(s["properties"]["n"].get("optional").is_none());
        assert!(s["properties"]["e"].get("minLength").is_none());
        assert_eq!(
            s["properties"]["o"]["additionalProperties"],
            json!({"type": "number"})
        );
        assert_eq!(s["properties"]["free"]["additionalProperties"], json!(true));
        assert!(s["properties"]["p"].get("minLength").is_none());
    }

    #[test]
    fn ajv_error_shapes() {
        let (_, e) = check(json!({"method": {"type": "string"}}), json!({}));
        assert_eq!(
            e,
            vec![
                json!({"instancePath":"","schemaPath":"#/required","keyword":"required",
                "params":{"missingProperty":"method"},"message":"must have required property 'method'"})
            ]
        );
        let (_, e) = check(
            json!({"force": {"type": "boolean", "optional": true}}),
            json!({"force": 1, "foo": 2}),
        );
        assert_eq!(e.len(), 2);
        assert_eq!(e[0]["keyword"], "additionalProperties");
        assert_eq!(e[0]["params"], json!({"additionalProperty": "foo"}));
        assert_eq!(e[0]["message"], "must NOT have additional properties");
        assert_eq!(e[0]["schemaPath"], "#/additionalProperties");
        assert_eq!(
            e[1],
            json!({"instancePath":"/force","schemaPath":"#/properties/force/type","keyword":"type",
                "params":{"type":"boolean"},"message":"must be boolean"})
        );
        let (_, e) = check(
            json!({"n": {"type": ["integer", "string"]}}),
            json!({"n": 1.5}),
        );
        assert_eq!(e[0]["message"], "must be integer,string");
        assert_eq!(e[0]["params"], json!({"type": ["integer", "string"]}));
        let (_, e) = check(
            json!({"n": {"type": ["integer", "string"]}}),
            json!({"n": ""}),
        );
        assert_eq!(e[0]["keyword"], "minLength");
        assert_eq!(e[0]["message"], "must NOT have fewer than 1 characters");
    }

    #[test]
    fn no_coercion_and_integers() {
        assert_eq!(
            check(json!({"n": {"type": "integer"}}), json!({"n": "10"}))
                .1
                .len(),
            1
        );
        assert!(check(json!({"n": {"type": "integer"}}), json!({"n": 10}))
            .1
            .is_empty());
        assert!(check(json!({"n": {"type": "integer"}}), json!({"n": 10.0}))
            .1
            .is_empty());
        assert_eq!(
            check(
                json!({"n": {"type": "integer", "minimum": 0}}),
                json!({"n": -1})
            )
            .1[0]["message"],
            "must be >= 0"
        );
    }

    #[test]
    fn defaults_are_injected_and_satisfy_required() {
        let (d, e) = check(
            json!({"c": {"type": "boolean", "default": true}}),
            json!({}),
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(d, json!({"c": true}));
    }

    #[test]
    fn nested_items_enum_pattern_unique() {
        let params = json!({
            "tokens": {"type": "array", "items": {"type": "string"}, "uniqueItems": true, "minItems": 1},
            "mode": {"enum": ["a", "b"]},
            "color": {"type": "string", "pattern": "^#?([0-9A-Fa-f]{6})$", "nullable": true},
            "client": {"type": "object", "optional": true, "properties": {"id": {"type": "string"}}},
        });
        let (_, e) = check(
            params.clone(),
            json!({"tokens": ["a", 1, "a"], "mode": "c", "color": "red", "client": {"x": 1}}),
        );
        let mut kw: Vec<_> = e
            .iter()
            .map(|e| {
                (
                    e["keyword"].as_str().unwrap(),
                    e["instancePath"].as_str().unwrap(),
                )
            })
            .collect();
        kw.sort_by_key(|(_, path)| *path);
        // per instance: required before additionalProperties, uniqueItems before items (ajv's keyword order)
        assert_eq!(
            kw,
            vec![
                ("required", "/client"),
                ("additionalProperties", "/client"),
                ("pattern", "/color"),
                ("enum", "/mode"),
                ("uniqueItems", "/tokens"),
                ("type", "/tokens/1"),
            ]
        );
        assert!(
            check(params, json!({"tokens": ["a"], "mode": "a", "color": null}))
                .1
                .is_empty()
        );
    }

    #[test]
    fn bad_schemas_are_refused() {
        assert!(ParamsSchema::compile(&json!([])).is_err());
        assert!(ParamsSchema::compile(&json!({"x": {"type": "string", "pattern": "("}})).is_err());
    }
}
