//! JavaScript-flavoured coercions used by the transforms, so XO's `+x`, `Boolean(x)`, `x === 'true'` and
//! `parseDateTime` behave the same on canonical XAPI values.

use serde_json::{Map, Value};

/// A XAPI record (or any JSON object) in canonical form.
pub type Record = Map<String, Value>;

/// JS `Number(string)`: whitespace-trimmed decimal (with optional exponent), `0x`/`0o`/`0b` integers,
/// `Infinity`; empty string is 0; anything else is NaN (`None`).
pub fn str_to_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return Some(0.0);
    }
    let radix = |p: &str, r: u32| -> Option<f64> {
        if p.is_empty() {
            return None;
        }
        u64::from_str_radix(p, r).ok().map(|n| n as f64)
    };
    let lower = t.to_ascii_lowercase();
    if let Some(p) = lower.strip_prefix("0x") {
        return radix(p, 16);
    }
    if let Some(p) = lower.strip_prefix("0o") {
        return radix(p, 8);
    }
    if let Some(p) = lower.strip_prefix("0b") {
        return radix(p, 2);
    }
    match t {
        "Infinity" | "+Infinity" => return Some(f64::INFINITY),
        "-Infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    // Only digits, sign, dot and exponent are allowed (Rust would also take "inf"/"nan").
    let b = t.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let mut digits = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    let norm = t.strip_suffix('.').unwrap_or(t);
    norm.parse::<f64>().ok()
}

/// JS unary `+` on a (possibly absent) value. `None` = NaN.
pub fn to_f64(v: Option<&Value>) -> Option<f64> {
    match v {
        None => None,
        Some(Value::Null) => Some(0.0),
        Some(Value::Bool(b)) => Some(if *b { 1.0 } else { 0.0 }),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => str_to_number(s),
        Some(Value::Array(a)) => match a.as_slice() {
            [] => Some(0.0),
            [one] => match one {
                Value::Array(_) | Value::Object(_) => None,
                other => to_f64(Some(other)),
            },
            _ => None,
        },
        Some(Value::Object(_)) => None,
    }
}

/// A number as JSON the way `JSON.stringify` writes it: integral values as integers, NaN/∞ as `null`.
pub fn number_value(n: f64) -> Value {
    if !n.is_finite() {
        return Value::Null;
    }
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        return Value::from(n as i64);
    }
    serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
}

/// JS `+x` serialised: a number or `null` for NaN.
pub fn num(v: Option<&Value>) -> Value {
    to_f64(v).map_or(Value::Null, number_value)
}

/// JS `Boolean(x)`.
pub fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(_) | Value::Object(_)) => true,
    }
}

/// `x === 'true'`.
pub fn is_true_str(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::String(s)) if s == "true")
}

/// The string value of a field, if it is a string.
pub fn get_str<'a>(rec: &'a Record, key: &str) -> Option<&'a str> {
    rec.get(key).and_then(Value::as_str)
}

/// A map field (`{}` when absent or not an object).
pub fn get_map<'a>(rec: &'a Record, key: &str) -> Option<&'a Record> {
    rec.get(key).and_then(Value::as_object)
}

/// A set field as a slice (empty when absent).
pub fn get_arr<'a>(rec: &'a Record, key: &str) -> &'a [Value] {
    rec.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Field of a map field: `obj.map_field.key`.
pub fn map_entry<'a>(rec: &'a Record, map: &str, key: &str) -> Option<&'a Value> {
    get_map(rec, map).and_then(|m| m.get(key))
}

/// A field copied as is; `None` (omitted, like JS `undefined`) when absent.
pub fn raw(rec: &Record, key: &str) -> Option<Value> {
    rec.get(key).cloned()
}

/// XO's `toTimestamp(parseDateTime(x))`: seconds since the epoch, `null` when unset (epoch/0), absent or
/// unparsable.
pub fn to_timestamp(v: Option<&Value>) -> Value {
    match v {
        None => Value::Null,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f != 0.0 => number_value(f),
            _ => Value::Null,
        },
        Some(Value::String(s)) => {
            if let Some(f) = str_to_number(s) {
                return if f == 0.0 || f.is_nan() {
                    Value::Null
                } else {
                    number_value(f)
                };
            }
            match xapi_types::datetime::parse_unix(s) {
                Some(0) | None => Value::Null,
                Some(secs) => Value::from(secs),
            }
        }
        Some(_) => Value::Null,
    }
}

/// Timestamp as a number for comparisons (`null` → 0, like JS `null < x`).
pub fn timestamp_f64(v: Option<&Value>) -> f64 {
    to_timestamp(v).as_f64().unwrap_or(0.0)
}

/// Insert `value` under `key` unless it is `None` (JS `undefined` is dropped by `JSON.stringify`).
pub fn put(obj: &mut Record, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        obj.insert(key.to_owned(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn js_number_coercion() {
        assert_eq!(str_to_number(""), Some(0.0));
        assert_eq!(str_to_number(" 12 "), Some(12.0));
        assert_eq!(str_to_number("1675817747."), Some(1_675_817_747.0));
        assert_eq!(str_to_number("1.5e3"), Some(1500.0));
        assert_eq!(str_to_number("0x10"), Some(16.0));
        assert_eq!(str_to_number("inf"), None);
        assert_eq!(str_to_number("nan"), None);
        assert_eq!(str_to_number("12abc"), None);
        assert_eq!(str_to_number("."), None);
        assert_eq!(num(None), Value::Null);
        assert_eq!(num(Some(&json!("42"))), json!(42));
        assert_eq!(num(Some(&json!(0.25))), json!(0.25));
        assert_eq!(num(Some(&json!(true))), json!(1));
    }

    #[test]
    fn timestamps_follow_parse_date_time() {
        assert_eq!(to_timestamp(None), Value::Null);
        assert_eq!(to_timestamp(Some(&json!(0))), Value::Null);
        assert_eq!(to_timestamp(Some(&json!(1678040309))), json!(1678040309));
        assert_eq!(
            to_timestamp(Some(&json!("19700101T00:00:00Z"))),
            Value::Null
        );
        assert_eq!(
            to_timestamp(Some(&json!("20230305T18:18:29Z"))),
            json!(1678040309)
        );
        assert_eq!(
            to_timestamp(Some(&json!("20230305T18:18:29+01:00"))),
            json!(1678036709)
        );
        assert_eq!(to_timestamp(Some(&json!("0"))), Value::Null);
        assert_eq!(to_timestamp(Some(&json!("1675817747."))), json!(1675817747));
        assert_eq!(
            to_timestamp(Some(&json!("1647628715.91"))),
            json!(1647628715.91)
        );
        assert_eq!(to_timestamp(Some(&json!("XXX 03/10/2010"))), Value::Null);
    }

    #[test]
    fn truthiness() {
        assert!(!truthy(None));
        assert!(!truthy(Some(&json!(""))));
        assert!(!truthy(Some(&json!(0))));
        assert!(truthy(Some(&json!({}))));
        assert!(truthy(Some(&json!("x"))));
    }
}
