//! A small XML → JSON reader with xml2js's `{mergeAttrs: true, explicitArray: false}` shape, as used by
//! XO's `parseXml` (template `disks`, VM `recommendations`, xscontainer docker data).

use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

const MAX_DEPTH: usize = 64;

struct Frame {
    name: String,
    obj: Map<String, Value>,
    text: String,
}

fn attrs(e: &BytesStart<'_>) -> Option<Map<String, Value>> {
    let mut obj = Map::new();
    for a in e.attributes() {
        let a = a.ok()?;
        let key = std::str::from_utf8(a.key.as_ref()).ok()?.to_owned();
        let val = a.unescape_value().ok()?.into_owned();
        obj.insert(key, Value::String(val));
    }
    Some(obj)
}

fn finish(frame: Frame) -> Value {
    if frame.obj.is_empty() {
        return Value::String(frame.text);
    }
    let mut obj = frame.obj;
    if !frame.text.trim().is_empty() {
        obj.insert("_".to_owned(), Value::String(frame.text));
    }
    Value::Object(obj)
}

fn attach(parent: &mut Map<String, Value>, name: String, value: Value) {
    match parent.get_mut(&name) {
        Some(Value::Array(arr)) => arr.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            parent.insert(name, value);
        }
    }
}

/// Parse `text` into `{root: value}`. `None` on malformed XML or an empty document.
pub fn parse(text: &str) -> Option<Value> {
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Map<String, Value>> = None;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                if root.is_some() || stack.len() >= MAX_DEPTH {
                    return None;
                }
                let name = std::str::from_utf8(e.name().as_ref()).ok()?.to_owned();
                stack.push(Frame {
                    name,
                    obj: attrs(&e)?,
                    text: String::new(),
                });
            }
            Event::Empty(e) => {
                let name = std::str::from_utf8(e.name().as_ref()).ok()?.to_owned();
                let value = finish(Frame {
                    name: String::new(),
                    obj: attrs(&e)?,
                    text: String::new(),
                });
                match stack.last_mut() {
                    Some(parent) => attach(&mut parent.obj, name, value),
                    None if root.is_none() => {
                        let mut m = Map::new();
                        m.insert(name, value);
                        root = Some(m);
                    }
                    None => return None,
                }
            }
            Event::End(_) => {
                let frame = stack.pop()?;
                let name = frame.name.clone();
                let value = finish(frame);
                match stack.last_mut() {
                    Some(parent) => attach(&mut parent.obj, name, value),
                    None => {
                        let mut m = Map::new();
                        m.insert(name, value);
                        root = Some(m);
                    }
                }
            }
            Event::Text(t) => {
                let s = t.unescape().ok()?;
                match stack.last_mut() {
                    Some(f) => f.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return None,
                }
            }
            Event::CData(t) => {
                let s = std::str::from_utf8(&t).ok()?.to_owned();
                stack.last_mut()?.text.push_str(&s);
            }
            Event::DocType(_) => return None,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return None;
    }
    root.map(Value::Object)
}

/// xo-server's `ensureArray`: `undefined` → `[]`, array → itself, anything else → `[x]`.
pub fn ensure_array(v: Option<Value>) -> Vec<Value> {
    match v {
        None => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(other) => vec![other],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_attributes_and_collapses_single_children() {
        let v = parse(r#"<provision><disk device="0" size="10737418240" sr="" bootable="true" type="system"/></provision>"#)
            .unwrap();
        assert_eq!(
            v,
            json!({"provision": {"disk": {"device": "0", "size": "10737418240", "sr": "", "bootable": "true", "type": "system"}}})
        );
        let v = parse("<r><a x=\"1\"/><a x=\"2\"/><b>text</b></r>").unwrap();
        assert_eq!(
            v,
            json!({"r": {"a": [{"x": "1"}, {"x": "2"}], "b": "text"}})
        );
    }

    #[test]
    fn malformed_is_none() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("<a><b></a>"), None);
        assert_eq!(parse("not xml"), None);
    }
}
