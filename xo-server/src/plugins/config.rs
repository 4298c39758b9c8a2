//! Plugin configurations: validation against the plugin's standard JSON schema (boon), default values,
//! and secrets (obfuscated on output, kept on input when the placeholder comes back).

use serde_json::{json, Map, Value};

/// XO's placeholder for secret values in `plugin.get` (`@vates/obfuscate`).
pub const OBFUSCATED: &str = "obfuscated-q3oi6d9X8uenGvdLnHk2";
/// The other placeholder XO uses (PBD `device_config`); also accepted as "keep the stored secret".
pub const OBFUSCATED_ALT: &str = "* obfuscated *";

/// Validation failures as ajv-like error objects (`{instancePath, schemaPath, keyword, message}`).
pub fn validate(schema: &Value, instance: &Value) -> Result<(), Vec<Value>> {
    const LOC: &str = "urn:xo-server:plugin-schema";
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    let compiled = match compiler.add_resource(LOC, schema.clone()) {
        Ok(()) => compiler.compile(LOC, &mut schemas),
        Err(e) => Err(e),
    };
    let index = compiled.map_err(|e| {
        vec![
            json!({"instancePath": "", "schemaPath": "#", "keyword": "$schema",
            "message": format!("invalid schema: {e}")}),
        ]
    })?;
    let Err(e) = schemas.validate(instance, index) else {
        return Ok(());
    };
    let out = e.basic_output();
    let mut errors = Vec::new();
    collect(&out, &mut errors);
    if errors.is_empty() {
        errors.push(
            json!({"instancePath": "", "schemaPath": "#", "keyword": "", "message": e.to_string()}),
        );
    }
    Err(errors)
}

fn collect(unit: &boon::OutputUnit, errors: &mut Vec<Value>) {
    match &unit.error {
        boon::OutputError::Leaf(kind) => {
            let mut path = unit.keyword_location.clone();
            // boon names this location after its error kind, not the keyword
            if let Some(p) = path.strip_suffix("/additionalProperty") {
                path = format!("{p}/additionalProperties");
            }
            let keyword = path.rsplit('/').next().unwrap_or("").to_owned();
            errors.push(json!({
                "instancePath": unit.instance_location.to_string(),
                "schemaPath": format!("#{path}"),
                "keyword": keyword,
                "message": kind.to_string(),
            }));
        }
        boon::OutputError::Branch(units) => {
            for u in units {
                collect(u, errors);
            }
        }
    }
}

/// A copy of `value` with the schema's `default`s filled in where properties are absent (recursively
/// through `properties`), as ajv's `useDefaults`.
pub fn with_defaults(schema: &Value, value: &Value) -> Value {
    let mut v = value.clone();
    fill(schema, &mut v);
    v
}

fn fill(schema: &Value, v: &mut Value) {
    let (Some(props), Value::Object(obj)) =
        (schema.get("properties").and_then(Value::as_object), v)
    else {
        return;
    };
    for (k, s) in props {
        if !obj.contains_key(k) {
            if let Some(d) = s.get("default") {
                obj.insert(k.clone(), d.clone());
            }
        }
        if let Some(child) = obj.get_mut(k) {
            fill(s, child);
        }
    }
}

fn is_secret_key(k: &str) -> bool {
    k == "token"
        || k == "passphrase"
        || k == "encryptionKey"
        || k.to_ascii_lowercase().contains("password")
}

fn is_placeholder(v: &Value) -> bool {
    matches!(v, Value::String(s) if s == OBFUSCATED || s == OBFUSCATED_ALT)
}

/// `value` with every secret string replaced by [`OBFUSCATED`]: strings under the keys `token`,
/// `passphrase`, `encryptionKey` or any key containing `password` (case-insensitive), and values whose
/// schema property has `"writeOnly": true`.
pub fn obfuscate(value: &Value, schema: Option<&Value>) -> Value {
    match value {
        Value::Object(m) => {
            let props = schema
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object);
            Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        let s = props.and_then(|p| p.get(k));
                        let write_only =
                            s.and_then(|s| s.get("writeOnly")).and_then(Value::as_bool)
                                == Some(true);
                        let out = if (is_secret_key(k) && v.is_string())
                            || (write_only && !v.is_null())
                        {
                            Value::String(OBFUSCATED.into())
                        } else {
                            obfuscate(v, s)
                        };
                        (k.clone(), out)
                    })
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(a) => {
            let items = schema.and_then(|s| s.get("items"));
            Value::Array(a.iter().map(|v| obfuscate(v, items)).collect())
        }
        other => other.clone(),
    }
}

/// Replaces every placeholder in `new` by the value at the same place in `old` (XO's `merge`): a client
/// sending back what `plugin.get` showed keeps the stored secrets.
pub fn merge_secrets(new: &mut Value, old: &Value) {
    match (new, old) {
        (Value::Object(n), Value::Object(o)) => {
            for (k, v) in n.iter_mut() {
                match o.get(k) {
                    Some(ov) if is_placeholder(v) => *v = ov.clone(),
                    Some(ov) => merge_secrets(v, ov),
                    None => {}
                }
            }
        }
        (Value::Array(n), Value::Array(o)) => {
            for (v, ov) in n.iter_mut().zip(o) {
                if is_placeholder(v) {
                    *v = ov.clone();
                } else {
                    merge_secrets(v, ov);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "uri": {"type": "string", "pattern": "^ldaps?://"},
                "port": {"type": "integer", "default": 389},
                "bind": {"type": "object", "properties": {"dn": {"type": "string"}, "password": {"type": "string"}}},
                "apiKey": {"type": "string", "writeOnly": true},
            },
            "required": ["uri"],
            "additionalProperties": false,
        })
    }

    #[test]
    fn validation_reports_ajv_like_errors() {
        assert!(validate(&schema(), &json!({"uri": "ldap://x"})).is_ok());
        let e = validate(
            &schema(),
            &json!({"uri": "http://x", "port": "a", "extra": 1}),
        )
        .unwrap_err();
        let keywords: Vec<&str> = e.iter().filter_map(|e| e["keyword"].as_str()).collect();
        assert!(keywords.contains(&"pattern"), "{e:?}");
        assert!(keywords.contains(&"type"), "{e:?}");
        assert!(keywords.contains(&"additionalProperties"), "{e:?}");
        assert!(e.iter().any(|e| e["instancePath"] == "/port"), "{e:?}");
        let e = validate(&schema(), &json!({})).unwrap_err();
        assert_eq!(e[0]["keyword"], "required");
        // a schema that does not compile is an error, not a panic
        assert!(validate(&json!({"type": 12}), &json!({})).is_err());
    }

    #[test]
    fn defaults_are_filled() {
        let v = with_defaults(&schema(), &json!({"uri": "ldap://x"}));
        assert_eq!(v["port"], 389);
        let v = with_defaults(&schema(), &json!({"uri": "ldap://x", "port": 636}));
        assert_eq!(v["port"], 636);
    }

    #[test]
    fn secrets_are_obfuscated_and_merged_back() {
        let stored = json!({"uri": "ldap://x", "bind": {"dn": "cn=a", "password": "s3cret"},
            "apiKey": "k", "list": [{"token": "t"}]});
        let shown = obfuscate(&stored, Some(&schema()));
        assert_eq!(shown["bind"]["password"], OBFUSCATED);
        assert_eq!(shown["bind"]["dn"], "cn=a");
        assert_eq!(shown["apiKey"], OBFUSCATED);
        assert_eq!(shown["list"][0]["token"], OBFUSCATED);
        assert_eq!(shown["uri"], "ldap://x");
        assert!(!shown.to_string().contains("s3cret"));
        let mut back = shown.clone();
        back["uri"] = json!("ldaps://y");
        back["apiKey"] = json!(OBFUSCATED_ALT);
        merge_secrets(&mut back, &stored);
        assert_eq!(back["bind"]["password"], "s3cret");
        assert_eq!(back["apiKey"], "k");
        assert_eq!(back["list"][0]["token"], "t");
        assert_eq!(back["uri"], "ldaps://y");
        // a new secret replaces the stored one
        let mut new = json!({"bind": {"password": "other"}});
        merge_secrets(&mut new, &stored);
        assert_eq!(new["bind"]["password"], "other");
    }
}
