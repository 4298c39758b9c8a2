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
    let _ = body;
    todo!()
}

/// Encode a request (v1 omits the `jsonrpc` member).
pub fn encode_call(version: Version, id: &Value, method: &str, params: &[Value]) -> Vec<u8> {
    let _ = (version, id, method, params);
    todo!()
}

/// Encode a response: v1 `{"result", "error": null|[code, …], "id"}`, v2 `{"jsonrpc":"2.0","result"|"error":
/// {"code":1,"message":CODE,"data":[params]},"id"}`.
pub fn encode_response(version: Version, id: &Value, result: &Result<Value, XapiError>) -> Vec<u8> {
    let _ = (version, id, result);
    todo!()
}

/// A decoded response: the echoed id and the outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub id: Value,
    pub result: Result<Value, XapiError>,
}

/// Parse a v1 or v2 response.
pub fn decode_response(body: &[u8]) -> Result<Response, CodecError> {
    let _ = body;
    todo!()
}
