//! Sans-IO XML-RPC codec with XAPI's dialect (untyped `<value>` strings, `1`/`0` booleans, `Status` envelopes).
//!
//! Encoding follows rpclib's `Xmlrpc` byte for byte on the server side (see `encode_response`); decoding is
//! lenient in what it accepts (typed or untyped strings, whitespace between tags, `<nil/>`, `<base64>` …) but
//! never panics: anything malformed is a [`CodecError`].

use crate::{CodecError, Type, Value, XapiError};
use quick_xml::events::Event;
use serde_json::Map;

/// A decoded `<methodCall>`: params in their raw decoded shape (`<value>42</value>` is the string `"42"`;
/// `<int>`/`<i4>`/`<i8>` are numbers; `<double>` a float; `<boolean>` a bool; `<dateTime.iso8601>` a string;
/// `<nil/>` null). Use [`crate::schema::coerce`] with the message's param types to canonicalise.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodCall {
    pub method: String,
    pub params: Vec<Value>,
}

const PROLOG: &str = "<?xml version=\"1.0\"?>";

/// Deepest element nesting accepted by the decoder (guards the recursive interpreter's stack).
const MAX_DEPTH: usize = 200;

// ---------------------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------------------

/// A parsed XML element: name, child elements and its direct text content (concatenated).
#[derive(Debug, Default)]
struct Node {
    name: String,
    children: Vec<Node>,
    text: String,
}

fn xml_err(e: impl std::fmt::Display) -> CodecError {
    CodecError::Xml(e.to_string())
}

fn structure(msg: impl Into<String>) -> CodecError {
    CodecError::Structure(msg.into())
}

/// Parse a whole document into its root element.
fn parse_tree(body: &[u8]) -> Result<Node, CodecError> {
    let text = std::str::from_utf8(body).map_err(xml_err)?;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let ev = reader.read_event().map_err(xml_err)?;
        match ev {
            Event::Start(e) => {
                if root.is_some() {
                    return Err(xml_err("content after the root element"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(structure("nesting too deep"));
                }
                let name = std::str::from_utf8(e.name().as_ref())
                    .map_err(xml_err)?
                    .to_owned();
                stack.push(Node {
                    name,
                    ..Node::default()
                });
            }
            Event::Empty(e) => {
                let name = std::str::from_utf8(e.name().as_ref())
                    .map_err(xml_err)?
                    .to_owned();
                let node = Node {
                    name,
                    ..Node::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err(xml_err("content after the root element")),
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or_else(|| xml_err("unbalanced end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(xml_err)?;
                match stack.last_mut() {
                    Some(node) => node.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err(xml_err("text outside the root element")),
                }
            }
            Event::CData(t) => {
                let s = std::str::from_utf8(&t).map_err(xml_err)?.to_owned();
                match stack.last_mut() {
                    Some(node) => node.text.push_str(&s),
                    None => return Err(xml_err("CDATA outside the root element")),
                }
            }
            Event::DocType(_) => return Err(xml_err("DOCTYPE not allowed")),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(xml_err("unexpected end of document"));
    }
    root.ok_or_else(|| xml_err("empty document"))
}

impl Node {
    /// The single child element named `name`.
    fn child(&self, name: &str) -> Result<&Node, CodecError> {
        let mut it = self.children.iter().filter(|c| c.name == name);
        match (it.next(), it.next()) {
            (Some(c), None) => Ok(c),
            (None, _) => Err(structure(format!("<{}> lacks <{name}>", self.name))),
            (Some(_), Some(_)) => Err(structure(format!("<{}> has several <{name}>", self.name))),
        }
    }

    fn expect(&self, name: &str) -> Result<&Node, CodecError> {
        if self.name == name {
            Ok(self)
        } else {
            Err(structure(format!(
                "expected <{name}>, found <{}>",
                self.name
            )))
        }
    }

    /// The only child element, if the node has exactly one (whitespace text is allowed around it).
    fn only_child(&self) -> Result<Option<&Node>, CodecError> {
        match self.children.as_slice() {
            [] => Ok(None),
            [c] if self.text.trim().is_empty() => Ok(Some(c)),
            [_] => Err(structure(format!(
                "<{}> mixes text and elements",
                self.name
            ))),
            _ => Err(structure(format!("<{}> has several children", self.name))),
        }
    }

    fn leaf_text(&self) -> Result<&str, CodecError> {
        if self.children.is_empty() {
            Ok(&self.text)
        } else {
            Err(structure(format!(
                "<{}> must not contain elements",
                self.name
            )))
        }
    }
}

fn parse_int(text: &str, tag: &str) -> Result<Value, CodecError> {
    let t = text.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    t.parse::<i64>()
        .map(Value::from)
        .map_err(|_| structure(format!("bad <{tag}> value {t:?}")))
}

/// Interpret a `<value>` element.
fn value_of(node: &Node, depth: usize) -> Result<Value, CodecError> {
    node.expect("value")?;
    if depth > MAX_DEPTH {
        return Err(structure("nesting too deep"));
    }
    let Some(inner) = node.only_child()? else {
        // Untyped: the text itself is the string (whitespace kept).
        return Ok(Value::String(node.text.clone()));
    };
    match inner.name.as_str() {
        "string" => Ok(Value::String(inner.leaf_text()?.to_owned())),
        "int" | "i4" | "i8" => parse_int(inner.leaf_text()?, &inner.name),
        "boolean" => Ok(Value::Bool(inner.leaf_text()?.trim() == "1")),
        "double" => {
            let t = inner.leaf_text()?.trim();
            let f: f64 = t
                .parse()
                .map_err(|_| structure(format!("bad <double> value {t:?}")))?;
            // Non-finite doubles cannot be JSON numbers: keep their text (coerce to float rejects them).
            Ok(serde_json::Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(t.to_owned())))
        }
        "dateTime.iso8601" => Ok(Value::String(inner.leaf_text()?.trim().to_owned())),
        "base64" => Ok(Value::String(
            inner
                .leaf_text()?
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect(),
        )),
        "nil" => {
            inner.leaf_text()?;
            Ok(Value::Null)
        }
        // `<array/>` and `<array></array>` are empty arrays, as rpclib reads them.
        "array" if inner.children.is_empty() && inner.text.trim().is_empty() => {
            Ok(Value::Array(Vec::new()))
        }
        "array" => {
            let data = inner.child("data")?;
            if !data.text.trim().is_empty() {
                return Err(structure("text inside <data>"));
            }
            data.children
                .iter()
                .map(|v| value_of(v, depth + 1))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        "struct" => {
            if !inner.text.trim().is_empty() {
                return Err(structure("text inside <struct>"));
            }
            let mut map = Map::new();
            for member in &inner.children {
                member.expect("member")?;
                let name = member.child("name")?.leaf_text()?.to_owned();
                let value = value_of(member.child("value")?, depth + 1)?;
                map.insert(name, value);
            }
            Ok(Value::Object(map))
        }
        other => Err(structure(format!("unknown value type <{other}>"))),
    }
}

fn params_of(params: &Node) -> Result<Vec<Value>, CodecError> {
    if !params.text.trim().is_empty() {
        return Err(structure("text inside <params>"));
    }
    params
        .children
        .iter()
        .map(|p| {
            p.expect("param")?;
            value_of(p.child("value")?, 0)
        })
        .collect()
}

/// Parse a request body.
pub fn decode_call(body: &[u8]) -> Result<MethodCall, CodecError> {
    let root = parse_tree(body)?;
    root.expect("methodCall")?;
    let method = root.child("methodName")?.leaf_text()?.trim().to_owned();
    if method.is_empty() {
        return Err(structure("empty <methodName>"));
    }
    let params = match root.children.iter().find(|c| c.name == "params") {
        Some(p) => params_of(p)?,
        None => Vec::new(),
    };
    Ok(MethodCall { method, params })
}

/// Parse a standalone `<value>…</value>` fragment (e.g. a task's `result` field) into its raw decoded shape.
/// An empty or whitespace-only text is the empty string (what XAPI stores for void results).
pub fn decode_value(text: &str) -> Result<Value, CodecError> {
    if text.trim().is_empty() {
        return Ok(Value::String(String::new()));
    }
    value_of(&parse_tree(text.as_bytes())?, 0)
}

fn error_param(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parse a response: `Ok(Ok(value))` on `Success` (value in raw decoded shape), `Ok(Err(e))` on `Failure`,
/// the bare value when there is no `Status` member.
///
/// A standard XML-RPC `<fault>` (never sent by XAPI) becomes `INTERNAL_ERROR ["XML-RPC fault <code>: <text>"]`.
pub fn decode_response(body: &[u8]) -> Result<Result<Value, XapiError>, CodecError> {
    let root = parse_tree(body)?;
    root.expect("methodResponse")?;
    if let Some(fault) = root.children.iter().find(|c| c.name == "fault") {
        let v = value_of(fault.child("value")?, 0)?;
        let code = v.get("faultCode").map(error_param).unwrap_or_default();
        let text = v.get("faultString").map(error_param).unwrap_or_default();
        return Ok(Err(XapiError::internal(format!(
            "XML-RPC fault {code}: {text}"
        ))));
    }
    let params = params_of(root.child("params")?)?;
    let [value] = <[Value; 1]>::try_from(params)
        .map_err(|p| structure(format!("response has {} params, expected 1", p.len())))?;
    let Value::Object(mut map) = value else {
        return Ok(Ok(value));
    };
    // As rpclib: a struct is an envelope only when Status and its companion member are both there;
    // anything else is a bare value.
    match map.get("Status").and_then(Value::as_str) {
        Some("Success") if map.contains_key("Value") => {
            Ok(Ok(map.remove("Value").unwrap_or_default()))
        }
        Some("Failure") if map.contains_key("ErrorDescription") => {
            match map.remove("ErrorDescription") {
                Some(Value::Array(items)) => Ok(Err(XapiError::from_description(
                    items.iter().map(error_param).collect(),
                ))),
                _ => Err(structure("ErrorDescription is not an array")),
            }
        }
        _ => Ok(Ok(Value::Object(map))),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------------------

/// Who is writing: the server (rpclib style: untyped strings and ints) or a client (`<string>`, ints as
/// decimal strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Server,
    Client,
}

/// Escape text as rpclib does: `< > & "` only; control characters other than tab, LF and CR dropped.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
}

/// Format a float like C's `printf("%.16g", f)` (what XAPI emits inside `<double>`).
pub fn format_double(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    const P: i32 = 16;
    let sci = format!("{:.*e}", (P - 1) as usize, f);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    fn strip(s: &str) -> &str {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.')
        } else {
            s
        }
    }
    if !(-4..P).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip(mantissa), exp.abs())
    } else {
        let fixed = format!("{:.*}", (P - 1 - exp) as usize, f);
        strip(&fixed).to_owned()
    }
}

/// A scalar leaf in untyped form: bare in server mode, `<string>` in client mode.
fn push_text_value(out: &mut String, s: &str, mode: Mode) {
    match mode {
        Mode::Server => {
            out.push_str("<value>");
            escape_into(out, s);
            out.push_str("</value>");
        }
        Mode::Client => {
            out.push_str("<value><string>");
            escape_into(out, s);
            out.push_str("</string></value>");
        }
    }
}

fn push_double(out: &mut String, f: f64) {
    out.push_str("<value><double>");
    out.push_str(&format_double(f));
    out.push_str("</double></value>");
}

fn push_bool(out: &mut String, b: bool) {
    out.push_str(if b {
        "<value><boolean>1</boolean></value>"
    } else {
        "<value><boolean>0</boolean></value>"
    });
}

fn push_array<'v>(
    out: &mut String,
    items: impl IntoIterator<Item = (&'v Value, &'static Type)>,
    mode: Mode,
) {
    out.push_str("<value><array><data>");
    for (v, t) in items {
        encode_into(out, v, t, mode);
    }
    out.push_str("</data></array></value>");
}

fn push_member(out: &mut String, name: &str, value: &Value, ty: &Type, mode: Mode) {
    out.push_str("<member><name>");
    escape_into(out, name);
    out.push_str("</name>");
    encode_into(out, value, ty, mode);
    out.push_str("</member>");
}

/// Encode an integer-valued number as text, or `None` if the number is not integral.
fn int_text(n: &serde_json::Number) -> Option<String> {
    if n.is_i64() || n.is_u64() {
        return Some(n.to_string());
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 9.3e18).then(|| format!("{}", f as i64))
}

/// Encode by the value's own shape.
fn encode_any(out: &mut String, value: &Value, mode: Mode) {
    match value {
        Value::Null => out.push_str("<value><nil/></value>"),
        Value::Bool(b) => push_bool(out, *b),
        Value::Number(n) if n.is_i64() || n.is_u64() => push_text_value(out, &n.to_string(), mode),
        Value::Number(n) => push_double(out, n.as_f64().unwrap_or(0.0)),
        Value::String(s) => push_text_value(out, s, mode),
        Value::Array(items) => push_array(out, items.iter().map(|v| (v, &Type::Any)), mode),
        Value::Object(map) => {
            out.push_str("<value><struct>");
            for (k, v) in map {
                push_member(out, k, v, &Type::Any, mode);
            }
            out.push_str("</struct></value>");
        }
    }
}

/// The order XAPI gives event members in.
const EVENT_ORDER: &[&str] = &[
    "id",
    "timestamp",
    "class",
    "operation",
    "ref",
    "obj_uuid",
    "snapshot",
];
/// The order of `event.from`'s batch members.
const BATCH_ORDER: &[&str] = &["events", "valid_ref_counts", "token"];

/// Encode one event record: known members in XAPI's order, `snapshot` typed by the event's class.
fn encode_event(out: &mut String, value: &Value, mode: Mode) {
    let Value::Object(map) = value else {
        return encode_any(out, value, mode);
    };
    let class = map
        .get("class")
        .and_then(Value::as_str)
        .and_then(crate::schema::class);
    out.push_str("<value><struct>");
    for key in EVENT_ORDER {
        if let Some(v) = map.get(*key) {
            match (*key, class) {
                ("snapshot", Some(c)) => push_record_member(out, key, v, c.name, mode),
                _ => push_member(out, key, v, &Type::Any, mode),
            }
        }
    }
    for (k, v) in map
        .iter()
        .filter(|(k, _)| !EVENT_ORDER.contains(&k.as_str()))
    {
        push_member(out, k, v, &Type::Any, mode);
    }
    out.push_str("</struct></value>");
}

fn push_record_member(out: &mut String, name: &str, value: &Value, class: &str, mode: Mode) {
    out.push_str("<member><name>");
    escape_into(out, name);
    out.push_str("</name>");
    encode_record(out, value, class, mode);
    out.push_str("</member>");
}

/// Encode a record of `class`: schema fields in datamodel order, then unknown members.
fn encode_record(out: &mut String, value: &Value, class: &str, mode: Mode) {
    let (Value::Object(map), Some(spec)) = (value, crate::schema::class(class)) else {
        return encode_any(out, value, mode);
    };
    out.push_str("<value><struct>");
    for f in spec.fields {
        if let Some(v) = map.get(f.name) {
            push_member(out, f.name, v, &f.ty, mode);
        }
    }
    for (k, v) in map.iter().filter(|(k, _)| spec.field(k).is_none()) {
        push_member(out, k, v, &Type::Any, mode);
    }
    out.push_str("</struct></value>");
}

fn encode_event_set(out: &mut String, value: &Value, mode: Mode) {
    let Value::Array(items) = value else {
        return encode_any(out, value, mode);
    };
    out.push_str("<value><array><data>");
    for ev in items {
        encode_event(out, ev, mode);
    }
    out.push_str("</data></array></value>");
}

fn encode_into(out: &mut String, value: &Value, ty: &Type, mode: Mode) {
    match (ty, value) {
        (Type::Any, _) => encode_any(out, value, mode),
        (Type::Option(inner), _) => encode_into(out, value, inner, mode),
        (Type::String | Type::Ref(_) | Type::Enum(_), Value::String(s)) => {
            push_text_value(out, s, mode)
        }
        (Type::Int, Value::Number(n)) => match int_text(n) {
            Some(t) => push_text_value(out, &t, mode),
            None => encode_any(out, value, mode),
        },
        (Type::Int, Value::String(s)) => push_text_value(out, s, mode),
        (Type::Float, Value::Number(n)) => push_double(out, n.as_f64().unwrap_or(0.0)),
        (Type::Float, Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(f) => push_double(out, f),
            Err(_) => encode_any(out, value, mode),
        },
        (Type::Bool, Value::Bool(b)) => push_bool(out, *b),
        (Type::DateTime, Value::String(s)) => {
            out.push_str("<value><dateTime.iso8601>");
            match crate::datetime::normalise(s) {
                Some(n) => out.push_str(&n),
                None => escape_into(out, s),
            }
            out.push_str("</dateTime.iso8601></value>");
        }
        (Type::Set(inner), Value::Array(items)) => {
            push_array(out, items.iter().map(|v| (v, *inner)), mode)
        }
        (Type::Map(_, vt), Value::Object(map)) => {
            out.push_str("<value><struct>");
            for (k, v) in map {
                push_member(out, k, v, vt, mode);
            }
            out.push_str("</struct></value>");
        }
        (Type::Record(class), _) => encode_record(out, value, class, mode),
        (Type::Void, Value::Null) => push_text_value(out, "", Mode::Server),
        (Type::EventSet, _) => encode_event_set(out, value, mode),
        (Type::EventBatch, Value::Object(map)) => {
            out.push_str("<value><struct>");
            for key in BATCH_ORDER {
                let Some(v) = map.get(*key) else { continue };
                match (*key, v) {
                    ("events", _) => push_member(out, key, v, &Type::EventSet, mode),
                    ("valid_ref_counts", Value::Object(counts)) => {
                        out.push_str("<member><name>valid_ref_counts</name><value><struct>");
                        for (table, n) in counts {
                            match n.as_i64() {
                                Some(n) => {
                                    out.push_str("<member><name>");
                                    escape_into(out, table);
                                    out.push_str("</name><value><i4>");
                                    out.push_str(&n.to_string());
                                    out.push_str("</i4></value></member>");
                                }
                                None => push_member(out, table, n, &Type::Any, mode),
                            }
                        }
                        out.push_str("</struct></value></member>");
                    }
                    _ => push_member(out, key, v, &Type::Any, mode),
                }
            }
            for (k, v) in map
                .iter()
                .filter(|(k, _)| !BATCH_ORDER.contains(&k.as_str()))
            {
                push_member(out, k, v, &Type::Any, mode);
            }
            out.push_str("</struct></value>");
        }
        // A value that does not have the declared type's shape is encoded as what it is.
        _ => encode_any(out, value, mode),
    }
}

/// Encode one `<value>…</value>` as XAPI does (no prolog), typed by `ty`: e.g. what XAPI stores in a task's
/// `result` field (`<value>OpaqueRef:…</value>`; a void result is stored as `""`, not through this function).
pub fn encode_value(value: &Value, ty: &Type) -> String {
    let mut out = String::new();
    encode_into(&mut out, value, ty, Mode::Server);
    out
}

/// Encode a request as a client should: `<string>` for strings, ints as decimal strings, `<double>` for floats,
/// `<boolean>1|0</boolean>`. `param_types`, when given, directs the encoding (e.g. a float param given as an int).
pub fn encode_call(method: &str, params: &[Value], param_types: Option<&[Type]>) -> String {
    let mut out = String::from(PROLOG);
    out.push_str("<methodCall><methodName>");
    escape_into(&mut out, method);
    out.push_str("</methodName><params>");
    for (i, p) in params.iter().enumerate() {
        let ty = param_types.and_then(|t| t.get(i)).unwrap_or(&Type::Any);
        out.push_str("<param>");
        encode_into(&mut out, p, ty, Mode::Client);
        out.push_str("</param>");
    }
    out.push_str("</params></methodCall>");
    out
}

fn wrap_response(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 80);
    out.push_str(PROLOG);
    out.push_str("<methodResponse><params><param>");
    out.push_str(body);
    out.push_str("</param></params></methodResponse>");
    out
}

/// Encode a response as XAPI does, byte-exact: `{Status: Success, Value}` or `{Status: Failure, ErrorDescription}`,
/// strings and ints as bare `<value>`, typed by `result_type` (datetimes as `<dateTime.iso8601>`,
/// `valid_ref_counts` as `<i4>`, records typed by their class).
pub fn encode_response(result: &Result<Value, XapiError>, result_type: &Type) -> String {
    let mut body = String::from("<value><struct>");
    match result {
        Ok(v) => {
            body.push_str("<member><name>Status</name><value>Success</value></member><member><name>Value</name>");
            if matches!(result_type, Type::Void) && (v.is_null() || v.as_str() == Some("")) {
                body.push_str("<value></value>");
            } else {
                encode_into(&mut body, v, result_type, Mode::Server);
            }
            body.push_str("</member>");
        }
        Err(e) => {
            body.push_str(
                "<member><name>Status</name><value>Failure</value></member>\
                 <member><name>ErrorDescription</name><value><array><data>",
            );
            for s in e.to_description() {
                push_text_value(&mut body, &s, Mode::Server);
            }
            body.push_str("</data></array></value></member>");
        }
    }
    body.push_str("</struct></value>");
    wrap_response(&body)
}

/// Encode a bare value as the response (no Status wrapper), as `system.listMethods` answers.
pub fn encode_bare_response(value: &Value, result_type: &Type) -> String {
    wrap_response(&encode_value(value, result_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn byte_exact_success_string() {
        let out = encode_response(&Ok(json!("OpaqueRef:abc")), &Type::Ref("VM"));
        assert_eq!(
            out,
            "<?xml version=\"1.0\"?><methodResponse><params><param><value><struct>\
             <member><name>Status</name><value>Success</value></member>\
             <member><name>Value</name><value>OpaqueRef:abc</value></member>\
             </struct></value></param></params></methodResponse>"
        );
    }

    #[test]
    fn byte_exact_failure() {
        let err = XapiError::new("HANDLE_INVALID", ["VM", "OpaqueRef:x<&>\""]);
        let out = encode_response(&Err(err), &Type::Void);
        assert_eq!(
            out,
            "<?xml version=\"1.0\"?><methodResponse><params><param><value><struct>\
             <member><name>Status</name><value>Failure</value></member>\
             <member><name>ErrorDescription</name><value><array><data>\
             <value>HANDLE_INVALID</value><value>VM</value><value>OpaqueRef:x&lt;&amp;&gt;&quot;</value>\
             </data></array></value></member></struct></value></param></params></methodResponse>"
        );
    }

    #[test]
    fn byte_exact_void_and_scalars() {
        let out = encode_response(&Ok(json!("")), &Type::Void);
        assert!(
            out.contains("<member><name>Value</name><value></value></member>"),
            "{out}"
        );
        assert_eq!(encode_value(&json!(42), &Type::Int), "<value>42</value>");
        assert_eq!(encode_value(&json!("42"), &Type::Int), "<value>42</value>");
        assert_eq!(
            encode_value(&json!(true), &Type::Bool),
            "<value><boolean>1</boolean></value>"
        );
        assert_eq!(
            encode_value(&json!(false), &Type::Bool),
            "<value><boolean>0</boolean></value>"
        );
        assert_eq!(
            encode_value(&json!(1), &Type::Float),
            "<value><double>1</double></value>"
        );
        assert_eq!(
            encode_value(&json!(0.1), &Type::Float),
            "<value><double>0.1</double></value>"
        );
        assert_eq!(
            encode_value(&json!("2025-03-19T04:16:24Z"), &Type::DateTime),
            "<value><dateTime.iso8601>20250319T04:16:24Z</dateTime.iso8601></value>"
        );
        assert_eq!(
            encode_value(&json!(["a", "b"]), &Type::Set(&Type::String)),
            "<value><array><data><value>a</value><value>b</value></data></array></value>"
        );
        assert_eq!(
            encode_value(&json!({"k": "v"}), &Type::Map(&Type::String, &Type::String)),
            "<value><struct><member><name>k</name><value>v</value></member></struct></value>"
        );
        assert_eq!(
            encode_value(&json!([]), &Type::Set(&Type::String)),
            "<value><array><data></data></array></value>"
        );
        assert_eq!(
            encode_value(&json!({}), &Type::Any),
            "<value><struct></struct></value>"
        );
        assert_eq!(
            encode_value(&json!(null), &Type::Any),
            "<value><nil/></value>"
        );
        assert_eq!(
            encode_value(&json!(2.5), &Type::Any),
            "<value><double>2.5</double></value>"
        );
        assert_eq!(
            encode_value(&json!("a\u{1}b\nc"), &Type::String),
            "<value>ab\nc</value>"
        );
    }

    #[test]
    fn bare_response() {
        assert_eq!(
            encode_bare_response(&json!(["VM.start"]), &Type::Set(&Type::String)),
            "<?xml version=\"1.0\"?><methodResponse><params><param><value><array><data>\
             <value>VM.start</value></data></array></value></param></params></methodResponse>"
        );
    }

    #[test]
    fn event_batch_encoding() {
        let batch = json!({
            "token": "t",
            "valid_ref_counts": {"vm": 3},
            "events": [{"snapshot": {"x": 1}, "ref": "OpaqueRef:a", "operation": "mod", "class": "nosuchclass",
                        "timestamp": "0.0", "id": "7"}],
        });
        let out = encode_value(&batch, &Type::EventBatch);
        assert_eq!(
            out,
            "<value><struct><member><name>events</name><value><array><data><value><struct>\
             <member><name>id</name><value>7</value></member>\
             <member><name>timestamp</name><value>0.0</value></member>\
             <member><name>class</name><value>nosuchclass</value></member>\
             <member><name>operation</name><value>mod</value></member>\
             <member><name>ref</name><value>OpaqueRef:a</value></member>\
             <member><name>snapshot</name><value><struct><member><name>x</name><value>1</value></member>\
             </struct></value></member></struct></value></data></array></value></member>\
             <member><name>valid_ref_counts</name><value><struct><member><name>vm</name><value><i4>3</i4></value>\
             </member></struct></value></member><member><name>token</name><value>t</value></member>\
             </struct></value>"
        );
    }

    #[test]
    fn double_formatting_matches_printf() {
        for (f, s) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (0.5, "0.5"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (60.1, "60.1"),
            (1e15, "1000000000000000"),
            (1e16, "1e+16"),
            (1.5e20, "1.5e+20"),
            (1e-4, "0.0001"),
            (1.25e-5, "1.25e-05"),
            (123456.789, "123456.789"),
            (f64::INFINITY, "inf"),
            (f64::NAN, "nan"),
        ] {
            assert_eq!(format_double(f), s, "{f}");
        }
    }

    #[test]
    fn client_call_encoding() {
        let out = encode_call(
            "event.from",
            &[json!("OpaqueRef:s"), json!(["*"]), json!(""), json!(60)],
            Some(&[
                Type::Ref("session"),
                Type::Set(&Type::String),
                Type::String,
                Type::Float,
            ]),
        );
        assert_eq!(
            out,
            "<?xml version=\"1.0\"?><methodCall><methodName>event.from</methodName><params>\
             <param><value><string>OpaqueRef:s</string></value></param>\
             <param><value><array><data><value><string>*</string></value></data></array></value></param>\
             <param><value><string></string></value></param>\
             <param><value><double>60</double></value></param></params></methodCall>"
        );
        let untyped = encode_call(
            "m",
            &[json!(1234567890123_i64), json!(true), json!(null)],
            None,
        );
        assert!(untyped.contains("<value><string>1234567890123</string></value>"));
        assert!(untyped.contains("<value><boolean>1</boolean></value>"));
        assert!(untyped.contains("<value><nil/></value>"));
    }

    #[test]
    fn decodes_python_style_call() {
        let body = b"<?xml version='1.0'?>\n<methodCall>\n<methodName>session.login_with_password</methodName>\n\
<params>\n<param>\n<value><string>root</string></value>\n</param>\n<param>\n<value><string>pw</string></value>\n\
</param>\n<param>\n<value><int>42</int></value>\n</param>\n<param>\n<value><boolean>1</boolean></value>\n</param>\n\
<param>\n<value><double>1.5</double></value>\n</param>\n<param>\n<value><array><data>\n<value><i8>-3</i8></value>\n\
</data></array></value>\n</param>\n<param>\n<value><struct>\n<member>\n<name>k</name>\n<value>v w</value>\n\
</member>\n</struct></value>\n</param>\n<param>\n<value><nil/></value></param>\n\
<param><value><dateTime.iso8601>20250319T04:16:24</dateTime.iso8601></value></param>\n\
<param><value/></param><param><value><string/></value></param><param><value><base64>\naGk=\n</base64></value></param>\n\
</params>\n</methodCall>\n";
        let call = decode_call(body).unwrap();
        assert_eq!(call.method, "session.login_with_password");
        assert_eq!(
            call.params,
            vec![
                json!("root"),
                json!("pw"),
                json!(42),
                json!(true),
                json!(1.5),
                json!([-3]),
                json!({"k": "v w"}),
                json!(null),
                json!("20250319T04:16:24"),
                json!(""),
                json!(""),
                json!("aGk="),
            ]
        );
    }

    #[test]
    fn decode_untyped_keeps_whitespace_and_entities() {
        let body = b"<methodCall><methodName>x</methodName><params><param><value> a &amp; &lt;b&gt; </value></param>\
<param><value><boolean>true</boolean></value></param></params></methodCall>";
        let call = decode_call(body).unwrap();
        assert_eq!(call.params, vec![json!(" a & <b> "), json!(false)]);
        let no_params =
            decode_call(b"<methodCall><methodName>system.listMethods</methodName></methodCall>")
                .unwrap();
        assert!(no_params.params.is_empty());
    }

    #[test]
    fn response_round_trips() {
        let v = json!({"a": ["x", {"b": true}], "n": 5, "f": 0.25});
        let decoded = decode_response(encode_response(&Ok(v), &Type::Any).as_bytes()).unwrap();
        assert_eq!(
            decoded,
            Ok(json!({"a": ["x", {"b": true}], "n": "5", "f": 0.25}))
        );
        let e = XapiError::new("VM_BAD_POWER_STATE", ["OpaqueRef:v", "halted", "running"]);
        assert_eq!(
            decode_response(encode_response(&Err(e.clone()), &Type::Void).as_bytes()).unwrap(),
            Err(e)
        );
        let bare =
            decode_response(encode_bare_response(&json!(["a"]), &Type::Any).as_bytes()).unwrap();
        assert_eq!(bare, Ok(json!(["a"])));
        let call =
            decode_call(encode_call("VM.start", &[json!("s"), json!(false)], None).as_bytes())
                .unwrap();
        assert_eq!(call.params, vec![json!("s"), json!(false)]);
    }

    #[test]
    fn decodes_fault_and_odd_failures() {
        let fault = b"<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>4</int>\
</value></member><member><name>faultString</name><value>Too many</value></member></struct></value></fault>\
</methodResponse>";
        let e = decode_response(fault).unwrap().unwrap_err();
        assert_eq!(e.code, "INTERNAL_ERROR");
        assert_eq!(e.params, vec!["XML-RPC fault 4: Too many".to_owned()]);
        let empty_desc = b"<methodResponse><params><param><value><struct><member><name>Status</name>\
<value>Failure</value></member><member><name>ErrorDescription</name><value><array><data></data></array></value>\
</member></struct></value></param></params></methodResponse>";
        assert_eq!(
            decode_response(empty_desc).unwrap().unwrap_err().code,
            "INTERNAL_ERROR"
        );
    }

    #[test]
    fn incomplete_envelopes_are_bare_values() {
        for status in ["Success", "Failure", "Weird"] {
            let body = format!(
                "<methodResponse><params><param><value><struct><member><name>Status</name><value>{status}</value>\
                 </member></struct></value></param></params></methodResponse>"
            );
            assert_eq!(
                decode_response(body.as_bytes()).unwrap(),
                Ok(json!({ "Status": status }))
            );
        }
        let empty = decode_value("<value><array/></value>").unwrap();
        assert_eq!(empty, json!([]));
        assert_eq!(
            decode_value("<value><array>\n</array></value>").unwrap(),
            json!([])
        );
        assert_eq!(decode_value("<value><struct/></value>").unwrap(), json!({}));
    }

    #[test]
    fn decode_value_fragment() {
        assert_eq!(
            decode_value("<value>OpaqueRef:a</value>").unwrap(),
            json!("OpaqueRef:a")
        );
        assert_eq!(decode_value("").unwrap(), json!(""));
        assert!(decode_value("<value><bogus/></value>").is_err());
    }

    #[test]
    fn non_finite_double_kept_as_text() {
        let v = decode_value("<value><double>nan</double></value>").unwrap();
        assert_eq!(v, json!("nan"));
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let bad: &[&[u8]] = &[
            b"",
            b"not xml",
            b"<methodCall>",
            b"<methodCall><methodName>x</methodName></methodCall><extra/>",
            b"<methodCall><methodName>x</methodName><params><param><value><int>abc</int></value></param></params></methodCall>",
            b"<methodCall><methodName>x</methodName><params><param><value><double>x</double></value></param></params></methodCall>",
            b"<methodCall><methodName>x</methodName><params><param><value><struct><member><name>a</name></member></struct></value></param></params></methodCall>",
            b"<methodCall><methodName>x</methodName><params><param><value><array><foo/></array></value></param></params></methodCall>",
            b"<methodCall><methodName>x</methodName><params><param><value><foo>1</foo></value></param></params></methodCall>",
            b"<methodCall><methodName>x</methodName><params><param><value><string>a</string><string>b</string></value></param></params></methodCall>",
            b"<methodCall><methodName>x</methodName><params><param><value>a<string>b</string></value></param></params></methodCall>",
            b"<methodCall><methodName>x</methodName><params><param></param></params></methodCall>",
            b"<methodCall><methodName>x</methodName><params><foo/></params></methodCall>",
            b"<methodCall><methodName></methodName></methodCall>",
            b"<methodCall></methodCall>",
            b"<methodResponse><params></params></methodResponse>",
            b"<methodResponse><params><param><value><struct><member><name>Status</name><value>Failure</value></member><member><name>ErrorDescription</name><value>x</value></member></struct></value></param></params></methodResponse>",
            b"<methodCall><methodName>x</methodName><params><param><value>&bogus;</value></param></params></methodCall>",
            b"<methodCall><methodName>x</methodName></methodCallX>",
            b"<!DOCTYPE x [<!ENTITY a \"b\">]><methodCall><methodName>x</methodName></methodCall>",
            b"\xff\xfe<methodCall/>",
        ];
        for b in bad {
            let call = decode_call(b);
            let resp = decode_response(b);
            assert!(
                call.is_err() && resp.is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(b)
            );
        }
        // Deep nesting is refused, not a stack overflow.
        let deep = format!(
            "<methodCall><methodName>x</methodName><params><param>{}{}</param></params></methodCall>",
            "<value><array><data>".repeat(5000),
            "</data></array></value>".repeat(5000)
        );
        assert!(decode_call(deep.as_bytes()).is_err());
    }
}
