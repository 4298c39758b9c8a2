//! Small helpers shared by the operation handlers: typed field reads, parameter decoding, messages, MACs.

use std::collections::BTreeMap;

use serde_json::{json, Map};
use xapi_types::{Ref, Value, XapiError};

use crate::db::{rec, Db, Record};

/// A string field of a record ("" if absent or not a string).
pub fn s<'a>(r: &'a Record, f: &str) -> &'a str {
    r.get(f).and_then(Value::as_str).unwrap_or_default()
}

/// A bool field (false if absent).
pub fn b(r: &Record, f: &str) -> bool {
    r.get(f).and_then(Value::as_bool).unwrap_or(false)
}

/// An int field (numbers or numeric strings; 0 if absent).
pub fn i(r: &Record, f: &str) -> i64 {
    r.get(f).map(int_of).unwrap_or(0)
}

/// A ref field (`OpaqueRef:NULL` if absent).
pub fn rf(r: &Record, f: &str) -> Ref {
    Ref::from(s(r, f))
}

/// A ref-set field.
pub fn refs(r: &Record, f: &str) -> Vec<Ref> {
    r.get(f)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(Ref::from).collect())
        .unwrap_or_default()
}

/// A `(string -> string) map` field.
pub fn smap(r: &Record, f: &str) -> BTreeMap<String, String> {
    r.get(f)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An integer in canonical or raw form.
pub fn int_of(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .unwrap_or(0),
        Value::String(t) => t.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// The record of `class/r` (cloned), or `HANDLE_INVALID`.
pub fn get(db: &Db, class: &str, r: &Ref) -> Result<Record, XapiError> {
    db.record(class, r).cloned()
}

/// Whether `r` is a live row of `class` (null refs are not).
pub fn valid(db: &Db, class: &str, r: &Ref) -> bool {
    !r.is_null() && db.exists(class, r)
}

/// Set several fields of a row in one write.
/// Fields the class does not have are ignored.
pub fn set(db: &mut Db, class: &str, r: &Ref, fields: Vec<(&str, Value)>) -> Result<(), XapiError> {
    let spec = xapi_types::schema::class(class);
    db.update(class, r, |row| {
        for (k, v) in fields {
            if spec.is_none_or(|c| c.field(k).is_some()) {
                row.insert(k.to_owned(), v);
            }
        }
    })
}

/// Set a field only when its value differs (avoids needless events).
pub fn set_if_changed(
    db: &mut Db,
    class: &str,
    r: &Ref,
    field: &str,
    v: Value,
) -> Result<(), XapiError> {
    if db.field(class, r, field)? != &v {
        db.set_field(class, r, field, v)?;
    }
    Ok(())
}

/// The current time in XAPI form.
pub fn now() -> String {
    crate::state::now_xapi()
}

/// Positional parameters of a call (without the session), decoded leniently.
#[derive(Debug)]
pub struct Params<'a> {
    pub method: &'a str,
    pub args: &'a [Value],
}

impl<'a> Params<'a> {
    pub fn new(method: &'a str, args: &'a [Value]) -> Self {
        Params { method, args }
    }

    fn at(&self, n: usize) -> Result<&'a Value, XapiError> {
        self.args.get(n).ok_or_else(|| {
            XapiError::new(
                "MESSAGE_PARAMETER_COUNT_MISMATCH",
                [
                    self.method.to_owned(),
                    (n + 1).to_string(),
                    self.args.len().to_string(),
                ],
            )
        })
    }

    fn bad(&self, n: usize) -> XapiError {
        XapiError::new("FIELD_TYPE_ERROR", [format!("{}#{}", self.method, n)])
    }

    /// A ref parameter.
    pub fn r(&self, n: usize) -> Result<Ref, XapiError> {
        self.at(n)?
            .as_str()
            .map(Ref::from)
            .ok_or_else(|| self.bad(n))
    }

    /// A string parameter.
    pub fn s(&self, n: usize) -> Result<String, XapiError> {
        self.at(n)?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.bad(n))
    }

    /// An optional string parameter (versioned params).
    pub fn s_or(&self, n: usize, d: &str) -> String {
        self.args
            .get(n)
            .and_then(Value::as_str)
            .unwrap_or(d)
            .to_owned()
    }

    /// An int parameter (JSON number or numeric string).
    pub fn i(&self, n: usize) -> Result<i64, XapiError> {
        match self.at(n)? {
            Value::Number(x) => x.as_i64().ok_or_else(|| self.bad(n)),
            Value::String(t) => t.trim().parse().map_err(|_| self.bad(n)),
            _ => Err(self.bad(n)),
        }
    }

    /// A float parameter.
    pub fn f(&self, n: usize) -> Result<f64, XapiError> {
        match self.at(n)? {
            Value::Number(x) => x.as_f64().ok_or_else(|| self.bad(n)),
            Value::String(t) => t.trim().parse().map_err(|_| self.bad(n)),
            _ => Err(self.bad(n)),
        }
    }

    /// A bool parameter (also "true"/"false", 1/0 strings).
    pub fn b(&self, n: usize) -> Result<bool, XapiError> {
        match self.at(n)? {
            Value::Bool(x) => Ok(*x),
            Value::String(t) if t == "true" || t == "1" => Ok(true),
            Value::String(t) if t == "false" || t == "0" => Ok(false),
            Value::Number(x) => Ok(x.as_i64() == Some(1)),
            _ => Err(self.bad(n)),
        }
    }

    /// An optional bool parameter.
    pub fn b_or(&self, n: usize, d: bool) -> Result<bool, XapiError> {
        if self.args.len() > n {
            self.b(n)
        } else {
            Ok(d)
        }
    }

    /// A map / record parameter (`""` from XML-RPC counts as empty).
    pub fn map(&self, n: usize) -> Result<Map<String, Value>, XapiError> {
        match self.at(n)? {
            Value::Object(m) => Ok(m.clone()),
            Value::String(t) if t.is_empty() => Ok(Map::new()),
            _ => Err(self.bad(n)),
        }
    }

    /// An optional map parameter.
    pub fn map_or_empty(&self, n: usize) -> Result<Map<String, Value>, XapiError> {
        if self.args.len() > n {
            self.map(n)
        } else {
            Ok(Map::new())
        }
    }

    /// A set parameter (`""` counts as empty); missing → empty.
    pub fn set_or_empty(&self, n: usize) -> Result<Vec<Value>, XapiError> {
        match self.args.get(n) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(Value::String(t)) if t.is_empty() => Ok(Vec::new()),
            Some(_) => Err(self.bad(n)),
        }
    }
}

/// Post a message (`message` rows live in the DB with their own generation).
pub fn post_message(
    db: &mut Db,
    name: &str,
    priority: i64,
    cls: &str,
    obj_uuid: &str,
    body: &str,
) -> Result<Ref, XapiError> {
    db.insert(
        "message",
        rec([
            ("name", json!(name)),
            ("priority", json!(priority)),
            ("cls", json!(cls)),
            ("obj_uuid", json!(obj_uuid)),
            ("timestamp", json!(now())),
            ("body", json!(body)),
        ]),
    )
}

/// A random locally administered unicast MAC (`xx:xx:xx:xx:xx:xx`).
pub fn random_mac() -> String {
    let mut bytes: [u8; 6] = rand::random();
    bytes[0] = (bytes[0] & 0xfe) | 0x02;
    bytes
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Validate and normalise a MAC (`aa:bb:cc:dd:ee:ff`, also `-` separators); `MAC_INVALID [mac]` otherwise.
pub fn check_mac(mac: &str) -> Result<String, XapiError> {
    let parts: Vec<&str> = mac.split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(parts.join(":").to_ascii_lowercase())
    } else {
        Err(XapiError::new("MAC_INVALID", [mac]))
    }
}

/// `MEMORY_CONSTRAINT_VIOLATION` unless static_min ≤ dynamic_min ≤ dynamic_max ≤ static_max.
pub fn check_memory_constraints(
    smin: i64,
    dmin: i64,
    dmax: i64,
    smax: i64,
) -> Result<(), XapiError> {
    if smin <= dmin && dmin <= dmax && dmax <= smax && smin >= 0 {
        Ok(())
    } else {
        Err(XapiError::new(
            "MEMORY_CONSTRAINT_VIOLATION",
            ["Memory limits must satisfy: static_min <= dynamic_min <= dynamic_max <= static_max"],
        ))
    }
}

/// Decode a constructor argument as the generated `create` does: RW and RO/constructor fields, those without a
/// datamodel default required (`INTERNAL_ERROR [Dispatcher_FieldNotFound("<field>")]`).
pub fn constructor_record(class: &str, v: Value) -> Result<Record, XapiError> {
    use xapi_types::schema::{self, Qualifier};
    let spec = schema::class(class)
        .ok_or_else(|| XapiError::internal(format!("unknown class {class}")))?;
    let Value::Object(mut given) = v else {
        return Err(XapiError::new("FIELD_TYPE_ERROR", ["args"]));
    };
    let mut out = Record::new();
    for f in spec
        .fields
        .iter()
        .filter(|f| f.qualifier != Qualifier::RoRuntime && f.name != "uuid")
    {
        match given.remove(f.name) {
            Some(v) => {
                out.insert(f.name.to_owned(), v);
            }
            None if f.default.is_none() => {
                return Err(XapiError::internal(format!(
                    "Dispatcher_FieldNotFound(\"{}\")",
                    f.name
                )));
            }
            None => {}
        }
    }
    Ok(out)
}

/// The void result `""`.
pub fn void() -> Value {
    Value::String(String::new())
}

/// A ref as a value.
pub fn jr(r: &Ref) -> Value {
    Value::String(r.0.clone())
}

/// `pool` ref (NULL if none).
pub fn pool_ref(db: &Db) -> Ref {
    db.refs("pool").into_iter().next().unwrap_or_else(Ref::null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        let m = random_mac();
        assert_eq!(check_mac(&m).unwrap(), m);
        assert_eq!(check_mac("AA-BB-CC-DD-EE-FF").unwrap(), "aa:bb:cc:dd:ee:ff");
        assert_eq!(check_mac("zz").unwrap_err().code, "MAC_INVALID");
        assert_eq!(
            check_mac("aa:bb:cc:dd:ee").unwrap_err().params,
            vec!["aa:bb:cc:dd:ee"]
        );
    }

    #[test]
    fn memory_constraints() {
        assert!(check_memory_constraints(1, 2, 3, 4).is_ok());
        assert_eq!(
            check_memory_constraints(1, 3, 2, 4).unwrap_err().code,
            "MEMORY_CONSTRAINT_VIOLATION"
        );
    }

    #[test]
    fn params_decode() {
        let args = vec![json!("OpaqueRef:x"), json!("12"), json!(true), json!("")];
        let p = Params::new("VM.x", &args);
        assert_eq!(p.r(0).unwrap().as_str(), "OpaqueRef:x");
        assert_eq!(p.i(1).unwrap(), 12);
        assert!(p.b(2).unwrap());
        assert!(p.map(3).unwrap().is_empty());
        assert_eq!(p.s(9).unwrap_err().code, "MESSAGE_PARAMETER_COUNT_MISMATCH");
        assert_eq!(p.i(2).unwrap_err().code, "FIELD_TYPE_ERROR");
    }
}
