//! One RPC over a [`Transport`]: JSON-RPC v2 first, XML-RPC fallback, XML-RPC results coerced by the schema.

use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use xapi_types::schema::{self, MessageSpec, Type};
use xapi_types::{jsonrpc, raw, xmlrpc, CodecError, RawRecord, Ref};

use crate::http::{HttpResponse, Transport};
use crate::{Error, Result};

/// The RPC dialect spoken with a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /jsonrpc`, JSON-RPC v2.
    JsonRpc,
    /// `POST /`, XAPI's XML-RPC.
    XmlRpc,
}

/// The datamodel entry for a wire method name (`VM.start`, `Async.VM.start`), and whether it is the async form.
pub(crate) fn message_spec(method: &str) -> Option<(&'static MessageSpec, bool)> {
    let (is_async, sync) = match method.strip_prefix("Async.") {
        Some(rest) => (true, rest),
        None => (false, method),
    };
    let (class, msg) = sync.split_once('.')?;
    let spec = schema::class(class)?.message(msg)?;
    Some((spec, is_async))
}

/// The result type of a sync method, if the schema knows it.
pub(crate) fn result_type(method: &str) -> Option<Type> {
    match message_spec(method)? {
        (_, true) => Some(Type::Ref("task")),
        (spec, false) => Some(spec.result),
    }
}

/// Canonicalise an XML-RPC-decoded value by the method's result type (raw if the method is unknown). Lenient on
/// enum values this build does not know (a newer server may send them, as JSON-RPC would pass them through).
pub(crate) fn coerce_result(method: &str, value: Value) -> Result<Value> {
    match result_type(method) {
        Some(ty) => schema::canonicalise(&ty, value).map_err(|e| {
            Error::structure(format!(
                "result of {method} does not fit its schema type: {e}"
            ))
        }),
        None => Ok(value),
    }
}

fn media_type_is(resp: &HttpResponse, expected: &str) -> bool {
    resp.content_type
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mt| mt.trim().eq_ignore_ascii_case(expected))
}

/// A successful answer whose result is not decoded yet: the JSON-RPC response body (already checked to be a
/// success envelope) or an XML-RPC value, already canonicalised. Decode it as a tree ([`Answer::into_value`]) or
/// straight into compact records ([`Answer::into_records`]).
pub(crate) enum Answer {
    /// The body and where its `result` lies in it.
    Json {
        body: Bytes,
        result: Range<usize>,
    },
    Value(Value),
}

impl Answer {
    pub fn into_value(self) -> Result<Value> {
        match self {
            Answer::Json { body, .. } => decode_json(&body),
            Answer::Value(v) => Ok(v),
        }
    }

    /// A `get_all_records` result as raw records: the JSON text of each record is kept, never parsed into a tree.
    /// Only the fields `keep` accepts are kept (the others are never copied).
    pub fn into_records(
        self,
        class: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<(Ref, RawRecord)>> {
        let records = match self {
            Answer::Json { body, result } => match std::str::from_utf8(&body[result]) {
                Ok(text) => raw::records_from_json_retained(text, keep),
                Err(e) => Err(CodecError::Json(e.to_string())),
            },
            Answer::Value(v) => raw::records_from_value_retained(v, keep),
        };
        records.map_err(|e| Error::structure(format!("{class}.get_all_records: {e}")))
    }
}

/// A JSON-RPC response envelope with its members left as text.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    jsonrpc: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    fn parse(body: &'a [u8]) -> Result<Envelope<'a>> {
        let env: Envelope<'a> =
            serde_json::from_slice(body).map_err(|e| CodecError::Json(e.to_string()))?;
        if env.jsonrpc.as_deref().is_some_and(|v| v != "2.0") {
            return Err(Error::structure("unsupported jsonrpc version"));
        }
        Ok(env)
    }

    /// Where the `result` text lies in `body` (`None` for an error envelope), so that it is never looked for again.
    fn outcome(&self, body: &[u8]) -> Result<Option<Range<usize>>> {
        if self.error.is_some() {
            return Ok(None);
        }
        let text = self
            .result
            .map(RawValue::get)
            .ok_or_else(|| Error::structure("response has neither result nor error"))?;
        let start = text.as_ptr() as usize - body.as_ptr() as usize;
        Ok(Some(start..start + text.len()))
    }
}

/// Check a JSON-RPC body: a success envelope is kept for later decoding (bare `NaN`/`Infinity` tokens XAPI may
/// write are rewritten first); an error envelope becomes the XAPI error.
fn check_json(body: Bytes) -> Result<Answer> {
    let (body, outcome) = match Envelope::parse(&body).and_then(|env| env.outcome(&body)) {
        Ok(outcome) => (body, outcome),
        Err(e) => match crate::compact::replace_non_finite(&body) {
            Some(fixed) => {
                let fixed = Bytes::from(fixed);
                let outcome = Envelope::parse(&fixed)?.outcome(&fixed)?;
                (fixed, outcome)
            }
            None => return Err(e),
        },
    };
    match outcome {
        Some(result) => Ok(Answer::Json { body, result }),
        None => match jsonrpc::decode_response(&body)?.result {
            Err(e) => Err(e.into()),
            Ok(_) => Err(Error::structure("error envelope without an error")),
        },
    }
}

/// Perform one call. `params` already carries the session id when the method takes one.
pub(crate) async fn call(
    transport: &Transport,
    id: u64,
    method: &str,
    params: &[Value],
) -> Result<Answer> {
    match transport.protocol() {
        Some(Protocol::XmlRpc) => call_xml(transport, method, params).await,
        Some(Protocol::JsonRpc) => {
            let resp = post_json(transport, id, method, params).await?;
            if resp.status != 200 || !media_type_is(&resp, "application/json") {
                return Err(Error::Http {
                    status: resp.status,
                    path: transport.endpoint.path("/jsonrpc"),
                });
            }
            check_json(resp.body)
        }
        None => {
            let resp = post_json(transport, id, method, params).await?;
            if resp.status == 200 && media_type_is(&resp, "application/json") {
                let v = check_json(resp.body);
                if !matches!(v, Err(Error::Codec(_))) {
                    transport.set_protocol(Some(Protocol::JsonRpc));
                }
                return v;
            }
            tracing::debug!(
                status = resp.status,
                content_type = resp.content_type.as_deref().unwrap_or(""),
                "no JSON-RPC at {}, falling back to XML-RPC",
                transport.endpoint.url()
            );
            let v = call_xml(transport, method, params).await;
            if v.is_ok() || matches!(v, Err(Error::Xapi(_))) {
                transport.set_protocol(Some(Protocol::XmlRpc));
            }
            v
        }
    }
}

async fn post_json(
    transport: &Transport,
    id: u64,
    method: &str,
    params: &[Value],
) -> Result<HttpResponse> {
    let body = jsonrpc::encode_call(jsonrpc::Version::V2, &Value::from(id), method, params);
    transport
        .post(
            &transport.endpoint.path("/jsonrpc"),
            "application/json",
            body,
        )
        .await
}

/// Decode a JSON-RPC response. Successes are parsed once, with compact maps ([`crate::compact`]); failures go
/// through xapi-types' codec (small bodies), which knows both the v1 and v2 error shapes.
fn decode_json(body: &[u8]) -> Result<Value> {
    let parsed = crate::compact::from_slice(body).map_err(|e| CodecError::Json(e.to_string()))?;
    let Value::Object(mut envelope) = parsed else {
        return Err(Error::structure("response is not a JSON object"));
    };
    if envelope
        .get("jsonrpc")
        .is_some_and(|v| v.as_str() != Some("2.0"))
    {
        return Err(Error::structure("unsupported jsonrpc version"));
    }
    match envelope.get("error") {
        None | Some(Value::Null) => envelope
            .remove("result")
            .ok_or_else(|| Error::structure("response has neither result nor error")),
        Some(_) => Ok(jsonrpc::decode_response(body)?.result?),
    }
}

async fn call_xml(transport: &Transport, method: &str, params: &[Value]) -> Result<Answer> {
    let types: Option<Vec<Type>> =
        message_spec(method).map(|(m, _)| m.params.iter().map(|p| p.ty).collect());
    let types = types.as_deref().and_then(|t| t.get(..params.len()));
    let body = xmlrpc::encode_call(method, params, types);
    let path = transport.endpoint.path("/");
    let resp = transport.post(&path, "text/xml", body.into_bytes()).await?;
    if resp.status != 200 {
        return Err(Error::Http {
            status: resp.status,
            path,
        });
    }
    let value = xmlrpc::decode_response(&resp.body)??;
    coerce_result(method, value).map(Answer::Value)
}

/// Parse a task's `result` field (the XML-RPC serialisation of the return value, e.g. `<value>OpaqueRef:…</value>`;
/// `""` for void) and canonicalise it by the sync method's result type when known.
pub(crate) fn parse_task_result(method: Option<&str>, text: &str) -> Result<Value> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Value::String(String::new()));
    }
    let doc = format!("<?xml version=\"1.0\"?><methodResponse><params><param>{text}</param></params></methodResponse>");
    let value = xmlrpc::decode_response(doc.as_bytes())??;
    match method {
        Some(m) => coerce_result(m, value),
        None => Ok(value),
    }
}
