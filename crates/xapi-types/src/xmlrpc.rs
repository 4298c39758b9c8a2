//! Sans-IO XML-RPC codec with XAPI's dialect (untyped `<value>` strings, `1`/`0` booleans, `Status` envelopes).

use crate::{CodecError, Type, Value, XapiError};

/// A decoded `<methodCall>`: params in their raw decoded shape (`<value>42</value>` is the string `"42"`;
/// `<int>`/`<i4>`/`<i8>` are numbers; `<double>` a float; `<boolean>` a bool; `<dateTime.iso8601>` a string;
/// `<nil/>` null). Use [`crate::schema::coerce`] with the message's param types to canonicalise.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodCall {
    pub method: String,
    pub params: Vec<Value>,
}

/// Parse a request body.
pub fn decode_call(body: &[u8]) -> Result<MethodCall, CodecError> {
    let _ = body;
    todo!()
}

/// Encode a request as a client should: `<string>` for strings, ints as decimal strings, `<double>` for floats,
/// `<boolean>1|0</boolean>`. `param_types`, when given, directs the encoding (e.g. a float param given as an int).
pub fn encode_call(method: &str, params: &[Value], param_types: Option<&[Type]>) -> String {
    let _ = (method, params, param_types);
    todo!()
}

/// Encode a response as XAPI does, byte-exact: `{Status: Success, Value}` or `{Status: Failure, ErrorDescription}`,
/// strings and ints as bare `<value>`, typed by `result_type` (datetimes as `<dateTime.iso8601>`,
/// `valid_ref_counts` as `<i4>`, records typed by their class).
pub fn encode_response(result: &Result<Value, XapiError>, result_type: &Type) -> String {
    let _ = (result, result_type);
    todo!()
}

/// Encode a bare value as the response (no Status wrapper), as `system.listMethods` answers.
pub fn encode_bare_response(value: &Value, result_type: &Type) -> String {
    let _ = (value, result_type);
    todo!()
}

/// Parse a response: `Ok(Ok(value))` on `Success` (value in raw decoded shape), `Ok(Err(e))` on `Failure`,
/// the bare value when there is no `Status` member.
pub fn decode_response(body: &[u8]) -> Result<Result<Value, XapiError>, CodecError> {
    let _ = body;
    todo!()
}
