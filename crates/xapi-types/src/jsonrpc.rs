//! Sans-IO JSON-RPC codec with XAPI's dialect (v1 and v2, `error` as `[code, params…]` or `{code: 1, message, data}`).

use crate::{CodecError, Value, XapiError};

/// Protocol version: v2 iff the request carries `"jsonrpc": "2.0"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A decoded request. `id` is kept as raw JSON (int or string) and echoed verbatim.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub version: Version,
    pub id: Value,
    pub method: String,
    pub params: Vec<Value>,
}

/// Parse a request body as XAPI does: `jsonrpc` absent ⇒ v1, `"2.0"` ⇒ v2, anything else malformed; `method`
/// required; `params` an array (v2 may omit it); `id` required and non-null.
pub fn decode_call(body: &[u8]) -> Result<Call, CodecError> {
    let Value::Object(mut obj) = parse(body)? else {
        return Err(structure("request is not a JSON object"));
    };
    let version = version_of(&obj)?;
    let method = match obj.remove("method") {
        Some(Value::String(m)) if !m.is_empty() => m,
        _ => return Err(structure("missing or non-string method")),
    };
    let params = match (obj.remove("params"), version) {
        (Some(Value::Array(p)), _) => p,
        (None | Some(Value::Null), Version::V2) => Vec::new(),
        // rpclib passes a v2 by-name object as one positional argument.
        (Some(p @ Value::Object(_)), Version::V2) => vec![p],
        _ => return Err(structure("params must be an array")),
    };
    let id = match obj.remove("id") {
        Some(id @ Value::String(_)) => id,
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Value::Number(n),
        Some(Value::Null) | None => return Err(structure("id is required and must not be null")),
        Some(_) => return Err(structure("id must be a number or a string")),
    };
    Ok(Call {
        version,
        id,
        method,
        params,
    })
}

/// Encode a request (v1 omits the `jsonrpc` member).
pub fn encode_call(version: Version, id: &Value, method: &str, params: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(b'{');
    if version == Version::V2 {
        out.extend_from_slice(br#""jsonrpc":"2.0","#);
    }
    out.extend_from_slice(br#""method":"#);
    push_json(&mut out, &Value::String(method.to_owned()));
    out.extend_from_slice(br#","params":["#);
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json(&mut out, p);
    }
    out.extend_from_slice(br#"],"id":"#);
    push_json(&mut out, id);
    out.push(b'}');
    out
}

/// Encode a response: v1 `{"result", "error": null|[code, …], "id"}`, v2 `{"jsonrpc":"2.0","result"|"error":
/// {"code":1,"message":CODE,"data":[params]},"id"}`.
pub fn encode_response(version: Version, id: &Value, result: &Result<Value, XapiError>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(b'{');
    match (version, result) {
        (Version::V1, Ok(v)) => {
            out.extend_from_slice(br#""result":"#);
            push_json(&mut out, v);
            out.extend_from_slice(br#","error":null"#);
        }
        (Version::V1, Err(e)) => {
            out.extend_from_slice(br#""result":null,"error":"#);
            push_json(&mut out, &Value::from(e.to_description()));
        }
        (Version::V2, Ok(v)) => {
            out.extend_from_slice(br#""jsonrpc":"2.0","result":"#);
            push_json(&mut out, v);
        }
        (Version::V2, Err(e)) => {
            out.extend_from_slice(br#""jsonrpc":"2.0","error":{"code":1,"message":"#);
            push_json(&mut out, &Value::String(e.code.clone()));
            out.extend_from_slice(br#","data":"#);
            push_json(&mut out, &Value::from(e.params.clone()));
            out.push(b'}');
        }
    }
    out.extend_from_slice(br#","id":"#);
    push_json(&mut out, id);
    out.push(b'}');
    out
}

/// A decoded response: the echoed id and the outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub id: Value,
    pub result: Result<Value, XapiError>,
}

/// Parse a v1 or v2 response.
///
/// `error` as an array is v1's `[code, params…]`; as an object it is v2's `{code, message: CODE, data:
/// [params…]}` (a non-array `data` becomes one param). Non-string params are kept as their JSON text.
pub fn decode_response(body: &[u8]) -> Result<Response, CodecError> {
    let Value::Object(mut obj) = parse_response(body)? else {
        return Err(structure("response is not a JSON object"));
    };
    if let Some(v) = obj.get("jsonrpc") {
        if v.as_str() != Some("2.0") {
            return Err(structure("unsupported jsonrpc version"));
        }
    }
    let id = obj.remove("id").unwrap_or(Value::Null);
    let result = match obj.remove("error") {
        None | Some(Value::Null) => Ok(obj
            .remove("result")
            .ok_or_else(|| structure("response has neither result nor error"))?),
        Some(Value::Array(desc)) => Err(XapiError::from_description(
            desc.iter().map(text_of).collect(),
        )),
        Some(Value::Object(mut err)) => {
            let code = match err.remove("message") {
                Some(Value::String(m)) if !m.is_empty() => m,
                _ => return Err(structure("error object without a message")),
            };
            let params = match err.remove("data") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items.iter().map(text_of).collect(),
                Some(other) => vec![text_of(&other)],
            };
            Err(XapiError { code, params })
        }
        Some(_) => return Err(structure("error must be null, an array or an object")),
    };
    Ok(Response { id, result })
}

fn structure(msg: &str) -> CodecError {
    CodecError::Structure(msg.to_owned())
}

fn parse(body: &[u8]) -> Result<Value, CodecError> {
    serde_json::from_slice(body).map_err(|e| CodecError::Json(e.to_string()))
}

/// Parse a response, tolerating the non-standard `NaN` / `Infinity` / `-Infinity` XAPI may emit for odd
/// floats: they become the strings `"nan"`, `"inf"`, `"-inf"` (the same text the XML-RPC decoder keeps for
/// non-finite doubles; [`crate::schema::coerce`] rejects them as floats).
fn parse_response(body: &[u8]) -> Result<Value, CodecError> {
    match parse(body) {
        Ok(v) => Ok(v),
        Err(e) => match replace_non_finite(body) {
            Some(fixed) => parse(&fixed),
            None => Err(e),
        },
    }
}

/// Rewrite bare `NaN`/`Infinity`/`-Infinity` tokens outside strings; `None` if there are none.
fn replace_non_finite(body: &[u8]) -> Option<Vec<u8>> {
    const TOKENS: [(&[u8], &[u8]); 3] = [
        (b"-Infinity", b"\"-inf\""),
        (b"Infinity", b"\"inf\""),
        (b"NaN", b"\"nan\""),
    ];
    let mut out = Vec::with_capacity(body.len());
    let (mut i, mut in_string, mut changed) = (0, false, false);
    'outer: while i < body.len() {
        let c = body[i];
        if in_string {
            out.push(c);
            if c == b'\\' {
                if let Some(n) = body.get(i + 1) {
                    out.push(*n);
                    i += 1;
                }
            } else if c == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_string = true;
        } else {
            for (token, replacement) in TOKENS {
                if body[i..].starts_with(token) {
                    out.extend_from_slice(replacement);
                    i += token.len();
                    changed = true;
                    continue 'outer;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    changed.then_some(out)
}

fn version_of(obj: &serde_json::Map<String, Value>) -> Result<Version, CodecError> {
    match obj.get("jsonrpc") {
        None => Ok(Version::V1),
        Some(Value::String(v)) if v == "2.0" => Ok(Version::V2),
        Some(_) => Err(structure("unsupported jsonrpc version")),
    }
}

fn push_json(out: &mut Vec<u8>, v: &Value) {
    // Serialising a `Value` into a Vec cannot fail (no I/O, keys are strings).
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_v1_and_v2_calls() {
        let v1 = decode_call(
            br#"{"method":"session.login_with_password","params":["root","pw"],"id":3}"#,
        )
        .unwrap();
        assert_eq!(v1.version, Version::V1);
        assert_eq!(v1.id, json!(3));
        assert_eq!(v1.params, vec![json!("root"), json!("pw")]);
        let v2 =
            decode_call(br#"{"jsonrpc":"2.0","method":"system.listMethods","id":"abc"}"#).unwrap();
        assert_eq!(v2.version, Version::V2);
        assert_eq!(v2.id, json!("abc"));
        assert!(v2.params.is_empty());
        let by_name =
            decode_call(br#"{"jsonrpc":"2.0","method":"m","params":{"a":1},"id":1}"#).unwrap();
        assert_eq!(by_name.params, vec![json!({"a": 1})]);
    }

    #[test]
    fn rejects_malformed_calls() {
        for body in [
            &b""[..],
            b"[]",
            b"{not json",
            br#"{"jsonrpc":"1.0","method":"m","params":[],"id":1}"#,
            br#"{"jsonrpc":2,"method":"m","params":[],"id":1}"#,
            br#"{"params":[],"id":1}"#,
            br#"{"method":5,"params":[],"id":1}"#,
            br#"{"method":"m","id":1}"#,
            br#"{"method":"m","params":{},"id":1}"#,
            br#"{"jsonrpc":"2.0","method":"m","params":"x","id":1}"#,
            br#"{"method":"m","params":[]}"#,
            br#"{"method":"m","params":[],"id":null}"#,
            br#"{"method":"m","params":[],"id":[1]}"#,
            br#"{"method":"m","params":[],"id":1.5}"#,
            br#"{"method":"m","params":null,"id":1}"#,
        ] {
            assert!(
                decode_call(body).is_err(),
                "accepted {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn encodes_calls() {
        let v1 = encode_call(
            Version::V1,
            &json!(1),
            "VM.start",
            &[json!("s"), json!(false)],
        );
        assert_eq!(v1, br#"{"method":"VM.start","params":["s",false],"id":1}"#);
        let v2 = encode_call(Version::V2, &json!("x"), "m", &[]);
        assert_eq!(
            v2,
            br#"{"jsonrpc":"2.0","method":"m","params":[],"id":"x"}"#
        );
        let back = decode_call(&v2).unwrap();
        assert_eq!((back.version, back.method.as_str()), (Version::V2, "m"));
    }

    #[test]
    fn encodes_responses_exactly() {
        let err = XapiError::new("SESSION_INVALID", ["OpaqueRef:x"]);
        assert_eq!(
            encode_response(Version::V1, &json!(1), &Ok(json!({"a": 1.5}))),
            br#"{"result":{"a":1.5},"error":null,"id":1}"#
        );
        assert_eq!(
            encode_response(Version::V1, &json!(1), &Err(err.clone())),
            br#"{"result":null,"error":["SESSION_INVALID","OpaqueRef:x"],"id":1}"#
        );
        assert_eq!(
            encode_response(Version::V2, &json!("i"), &Ok(json!(""))),
            br#"{"jsonrpc":"2.0","result":"","id":"i"}"#
        );
        assert_eq!(
            encode_response(Version::V2, &json!(7), &Err(err)),
            br#"{"jsonrpc":"2.0","error":{"code":1,"message":"SESSION_INVALID","data":["OpaqueRef:x"]},"id":7}"#
        );
    }

    #[test]
    fn response_round_trips() {
        let err = XapiError::new("VM_BAD_POWER_STATE", ["OpaqueRef:v", "halted", "running"]);
        for version in [Version::V1, Version::V2] {
            for result in [Ok(json!({"x": [1, 2]})), Err(err.clone())] {
                let body = encode_response(version, &json!(9), &result);
                assert_eq!(
                    decode_response(&body).unwrap(),
                    Response {
                        id: json!(9),
                        result
                    }
                );
            }
        }
    }

    #[test]
    fn decodes_odd_error_shapes() {
        let r =
            decode_response(br#"{"error":{"code":1,"message":"X","data":"one"},"id":1}"#).unwrap();
        assert_eq!(r.result, Err(XapiError::new("X", ["one"])));
        let r = decode_response(br#"{"error":{"code":1,"message":"X"},"id":1}"#).unwrap();
        assert_eq!(r.result, Err(XapiError::code("X")));
        let r = decode_response(br#"{"result":null,"error":["E",3],"id":1}"#).unwrap();
        assert_eq!(r.result, Err(XapiError::new("E", ["3"])));
        let r = decode_response(br#"{"result":null,"error":[],"id":1}"#).unwrap();
        assert_eq!(r.result.unwrap_err().code, "INTERNAL_ERROR");
    }

    #[test]
    fn tolerates_non_finite_floats() {
        let r = decode_response(br#"{"result":{"a":NaN,"b":[Infinity,-Infinity],"s":"NaN \" Infinity"},"error":null,"id":1}"#)
            .unwrap();
        assert_eq!(
            r.result,
            Ok(json!({"a": "nan", "b": ["inf", "-inf"], "s": "NaN \" Infinity"}))
        );
        assert!(decode_response(br#"{"result":Nope,"id":1}"#).is_err());
    }

    #[test]
    fn rejects_malformed_responses() {
        for body in [
            &b"{"[..],
            b"42",
            br#"{"id":1}"#,
            br#"{"error":"boom","id":1}"#,
            br#"{"error":{"code":1},"id":1}"#,
            br#"{"jsonrpc":"3.0","result":1,"id":1}"#,
        ] {
            assert!(
                decode_response(body).is_err(),
                "accepted {}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
