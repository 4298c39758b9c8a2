//! JSON-RPC 2.0 framing as xo-server does it (ids kept as raw JSON and echoed verbatim, params by name,
//! notifications ignored) and the call pipeline (`callApiMethod`): method lookup, user load, permission,
//! `ns=`→`id=` rewrite, `?`-suffixed ignorable keys, schema validation, handler (inside an `API call` task,
//! [`crate::tasks::api_call`]), error masking.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use xo_store::Permission;

use crate::app::App;
use crate::connection::Connection;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::{Access, Reply};

/// A parsed incoming frame.
#[derive(Debug)]
pub enum Frame {
    /// A call to answer.
    Request {
        /// The id exactly as sent.
        id: Box<RawValue>,
        /// Method name.
        method: String,
        /// Params object (`{}` when absent; positional arrays become `{"0": …}`).
        params: Map<String, Value>,
    },
    /// A message that gets no answer (notification, `id: null`, response from the client).
    Ignore,
    /// A frame answered with an error right away (serialised response).
    Reply(String),
}

/// Serialises a success response: `{"id":…,"jsonrpc":"2.0","result":…}`.
pub fn response_ok(id: &RawValue, result: &Value) -> String {
    format!(
        r#"{{"id":{},"jsonrpc":"2.0","result":{}}}"#,
        id.get(),
        result
    )
}

/// Serialises a success response whose result is JSON text ([`Reply::Json`]) or a value.
pub fn response_reply(id: &RawValue, result: &Reply) -> String {
    match result {
        Reply::Value(v) => response_ok(id, v),
        Reply::Json(text) => format!(r#"{{"id":{},"jsonrpc":"2.0","result":{}}}"#, id.get(), text),
    }
}

/// Serialises an error response: `{"error":…,"id":…,"jsonrpc":"2.0"}`.
pub fn response_err(id: &RawValue, error: &Value) -> String {
    format!(r#"{{"error":{},"id":{},"jsonrpc":"2.0"}}"#, error, id.get())
}

fn null_id() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("`null` is valid JSON")
}

/// Parses one text frame.
pub fn parse_frame(text: &str) -> Frame {
    let fields: HashMap<String, Box<RawValue>> = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(_) => {
            return match serde_json::from_str::<Value>(text) {
                // valid JSON but not an object (batch arrays, scalars)
                Ok(_) => Frame::Reply(response_err(
                    &null_id(),
                    &ApiError::invalid_request("not a JSON-RPC request object").to_json(false),
                )),
                Err(_) => Frame::Reply(response_err(
                    &null_id(),
                    &ApiError::invalid_json().to_json(false),
                )),
            };
        }
    };
    let Some(id) = fields.get("id").filter(|id| id.get() != "null") else {
        return Frame::Ignore;
    };
    let id = id.clone();
    let Some(method) = fields.get("method") else {
        // a response or garbage with an id: nothing to do
        return Frame::Ignore;
    };
    let method = match serde_json::from_str::<Value>(method.get()) {
        Ok(Value::String(m)) => m,
        _ => {
            return Frame::Reply(response_err(
                &id,
                &ApiError::invalid_request("method must be a string").to_json(false),
            ))
        }
    };
    let params = match fields
        .get("params")
        .map(|p| serde_json::from_str::<Value>(p.get()))
    {
        None | Some(Ok(Value::Null)) => Map::new(),
        Some(Ok(Value::Object(m))) => m,
        Some(Ok(Value::Array(a))) => a
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        Some(_) => {
            return Frame::Reply(response_err(
                &id,
                &ApiError::invalid_request("params must be an object").to_json(false),
            ))
        }
    };
    Frame::Request { id, method, params }
}

/// Runs one call through the pipeline; returns the result (a method returning `null` answers `true`) and
/// whether the caller was an administrator (which decides how internal errors are shown).
pub async fn call(
    app: &App,
    connection: &Arc<Connection>,
    name: &str,
    mut params: Map<String, Value>,
) -> (Result<Reply, ApiError>, bool) {
    // 1. method
    let Some(method) = app.registry().get(name) else {
        return (Err(ApiError::method_not_found(name)), false);
    };
    // 2. user, loaded fresh
    let user = match connection.user_id() {
        None => None,
        Some(id) => match app.store().user(&id) {
            Ok(Some(u)) => Some(u),
            Ok(None) => return (Err(ApiError::no_such_object(&id, Some("user"))), false),
            Err(e) => return (Err(e.into()), false),
        },
    };
    let admin = user
        .as_ref()
        .is_some_and(|u| u.permission == Permission::Admin);
    let result = async {
        // 4. `_log` is accepted (and ignored) for admins only
        if params.remove("_log").is_some() && !admin {
            return Err(ApiError::unauthorized(Some("admin"), None, None));
        }
        // 5. method-level permission
        match method.get_access() {
            Access::Anonymous => {}
            Access::User if user.is_none() => return Err(ApiError::unauthorized(None, None, None)),
            Access::Admin if user.is_none() => {
                return Err(ApiError::unauthorized(Some("admin"), None, None))
            }
            Access::Admin if !admin => {
                return Err(ApiError::unauthorized(Some("admin"), None, None))
            }
            _ => {}
        }
        // 6. `<namespace>=` → `id=`
        if !params.contains_key("id") {
            let namespace = name.split('.').next().unwrap_or_default();
            if let Some(Value::Object(spec)) = method.get_params() {
                if spec.contains_key("id") && !spec.contains_key(namespace) {
                    if let Some(Value::String(_)) = params.get(namespace) {
                        if let Some(v) = params.remove(namespace) {
                            params.insert("id".into(), v);
                        }
                    }
                }
            }
        }
        // 7. ignorable `key?` params
        let ignorable: Vec<String> = params
            .keys()
            .filter(|k| k.len() > 1 && k.ends_with('?'))
            .cloned()
            .collect();
        let mut renamed = Vec::new();
        for k in ignorable {
            let plain = k[..k.len() - 1].to_owned();
            if params.contains_key(&plain) {
                return Err(ApiError::internal("conflicting keys"));
            }
            if let Some(v) = params.remove(&k) {
                params.insert(plain.clone(), v);
                renamed.push(plain);
            }
        }
        // 8. validation
        if let Some(schema) = method.schema() {
            let mut value = Value::Object(std::mem::take(&mut params));
            let mut errors = schema.validate(&mut value);
            if let Value::Object(m) = value {
                params = m;
            }
            errors.retain(|e| {
                let dropped = e["keyword"] == "additionalProperties"
                    && e["instancePath"] == ""
                    && e["params"]["additionalProperty"]
                        .as_str()
                        .is_some_and(|k| renamed.iter().any(|r| r == k));
                if dropped {
                    if let Some(k) = e["params"]["additionalProperty"].as_str() {
                        params.remove(k);
                    }
                }
                !dropped
            });
            if !errors.is_empty() {
                return Err(ApiError::invalid_parameters(errors));
            }
        }
        // 10. run
        let task = crate::tasks::api_call::prepare(
            app.tasks(),
            name,
            &params,
            user.as_ref().map(|u| u.id.as_str()),
        );
        let ctx = Ctx {
            app: app.clone(),
            connection: connection.clone(),
            user,
        };
        // The task records a value; a text answer is kept aside (its task records `null`).
        let text = parking_lot::Mutex::new(None);
        let fut = async {
            match method.call(ctx, params).await? {
                Reply::Value(v) => Ok(v),
                Reply::Json(t) => {
                    *text.lock() = Some(t);
                    Ok(Value::Null)
                }
            }
        };
        let out = crate::tasks::api_call::run(task, fut).await;
        match (out, text.into_inner()) {
            (Ok(_), Some(t)) => Ok(Reply::Json(t)),
            (Ok(Value::Null), None) => Ok(Reply::Value(Value::Bool(true))),
            (out, _) => out.map(Reply::Value),
        }
    }
    .await;
    if let Err(e) = &result {
        tracing::debug!(method = name, code = e.code(), "call failed");
    }
    (result, admin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_replies_are_written_as_they_are() {
        let id = RawValue::from_string("-12".into()).unwrap();
        let text = Reply::Json(r#"{"a":{"id":"a","n":1.5}}"#.into());
        let value = Reply::Value(serde_json::json!({"a": {"id": "a", "n": 1.5}}));
        let expected = r#"{"id":-12,"jsonrpc":"2.0","result":{"a":{"id":"a","n":1.5}}}"#;
        assert_eq!(response_reply(&id, &text), expected);
        assert_eq!(response_reply(&id, &value), expected);
    }

    #[test]
    fn frames_are_classified() {
        match parse_frame(r#"{"id":-9007199254740991,"jsonrpc":"2.0","method":"a.b"}"#) {
            Frame::Request { id, method, params } => {
                assert_eq!(id.get(), "-9007199254740991");
                assert_eq!(method, "a.b");
                assert!(params.is_empty());
            }
            f => panic!("{f:?}"),
        }
        match parse_frame(r#"{"id":123456789012345678901234567890,"method":"a.b","params":[1]}"#) {
            Frame::Request { id, params, .. } => {
                assert_eq!(id.get(), "123456789012345678901234567890");
                assert_eq!(params["0"], 1);
            }
            f => panic!("{f:?}"),
        }
        assert!(matches!(
            parse_frame(r#"{"jsonrpc":"2.0","method":"a.b"}"#),
            Frame::Ignore
        ));
        assert!(matches!(
            parse_frame(r#"{"id":null,"method":"a.b"}"#),
            Frame::Ignore
        ));
        let Frame::Reply(r) = parse_frame("not json") else {
            panic!()
        };
        assert_eq!(
            r,
            r#"{"error":{"code":-32700,"message":"invalid JSON"},"id":null,"jsonrpc":"2.0"}"#
        );
        let Frame::Reply(r) = parse_frame("[1,2]") else {
            panic!()
        };
        assert!(r.contains("-32600"));
        let Frame::Reply(r) = parse_frame(r#"{"id":"x","method":5}"#) else {
            panic!()
        };
        assert!(r.contains("-32600") && r.contains(r#""id":"x""#));
        let Frame::Reply(r) = parse_frame(r#"{"id":1,"method":"a.b","params":"s"}"#) else {
            panic!()
        };
        assert!(r.contains("-32600"));
    }
}
