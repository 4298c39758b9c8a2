//! lodash `_.isMatch(object, source)` on JSON: every key of `source` must match in `object`, recursively;
//! arrays in `source` match when each of their elements matches some element of the object's array.

use serde_json::Value;

fn eq_partial(obj: &Value, src: &Value) -> bool {
    match (obj, src) {
        (Value::Object(o), Value::Object(s)) => s
            .iter()
            .all(|(k, sv)| o.get(k).is_some_and(|ov| eq_partial(ov, sv))),
        (Value::Array(o), Value::Array(s)) => {
            // lodash: sizes may differ only when the object's array is longer.
            if s.len() > o.len() {
                return false;
            }
            s.iter().all(|sv| o.iter().any(|ov| eq_partial(ov, sv)))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// `_.isMatch(object, source)`.
pub fn is_match(object: &Value, source: &Value) -> bool {
    match source {
        Value::Object(s) => match object {
            Value::Object(_) => eq_partial(object, source),
            // A non-object matches an empty source only.
            _ => s.is_empty(),
        },
        other => eq_partial(object, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partial_deep_equality() {
        let vm = json!({"type": "VM", "power_state": "Running", "tags": ["a", "b"], "CPUs": {"max": 4, "number": 2}});
        assert!(is_match(&vm, &json!({})));
        assert!(is_match(&vm, &json!({"type": "VM"})));
        assert!(is_match(
            &vm,
            &json!({"type": "VM", "power_state": "Running"})
        ));
        assert!(!is_match(&vm, &json!({"type": "host"})));
        assert!(is_match(&vm, &json!({"CPUs": {"max": 4}})));
        assert!(!is_match(&vm, &json!({"CPUs": {"max": 4.5}})));
        assert!(is_match(&vm, &json!({"tags": ["b"]})));
        assert!(!is_match(&vm, &json!({"tags": ["c"]})));
        assert!(!is_match(&vm, &json!({"missing": null})));
        assert!(!is_match(&vm, &json!({"CPUs": 4})));
    }
}
