//! Decoders never panic: every prefix and many byte mutations of valid messages give `Ok` or `Err`.

use serde_json::json;
use xapi_types::{jsonrpc, xmlrpc, Type, XapiError};

/// A tiny deterministic generator (no external randomness in tests).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn samples() -> Vec<Vec<u8>> {
    let value = json!({"a": ["x", 1, 2.5, true, null, {"b": "c&<>"}], "t": "20250319T04:16:24Z"});
    vec![
        xmlrpc::encode_response(&Ok(value.clone()), &Type::Any).into_bytes(),
        xmlrpc::encode_response(&Err(XapiError::new("HANDLE_INVALID", ["VM", "x"])), &Type::Void).into_bytes(),
        xmlrpc::encode_call("VM.start", &[json!("s"), value.clone()], None).into_bytes(),
        b"<?xml version='1.0'?>\n<methodCall>\n<methodName>m</methodName>\n<params>\n<param>\n<value><array><data>\n\
<value><int>1</int></value>\n<value><dateTime.iso8601>20250319T04:16:24</dateTime.iso8601></value>\n</data></array></value>\n\
</param>\n</params>\n</methodCall>\n"
            .to_vec(),
        jsonrpc::encode_call(jsonrpc::Version::V2, &json!(1), "VM.start", std::slice::from_ref(&value)),
        jsonrpc::encode_response(jsonrpc::Version::V1, &json!("id"), &Ok(value)),
        jsonrpc::encode_response(jsonrpc::Version::V2, &json!(3), &Err(XapiError::code("SESSION_INVALID"))),
    ]
}

fn exercise(body: &[u8]) {
    let _ = xmlrpc::decode_call(body);
    let _ = xmlrpc::decode_response(body);
    let _ = xmlrpc::decode_value(&String::from_utf8_lossy(body));
    let _ = jsonrpc::decode_call(body);
    let _ = jsonrpc::decode_response(body);
}

#[test]
fn every_prefix_decodes_without_panic() {
    for sample in samples() {
        for end in 0..=sample.len() {
            exercise(&sample[..end]);
        }
    }
}

#[test]
fn mutations_decode_without_panic() {
    let mut rng = Lcg(42);
    let alphabet = b"<>/&;\"' \n=abcdefghijklmnopqrstuvwxyz0123456789{}[]:,.-+\\\x00\xff";
    for sample in samples() {
        for _ in 0..2000 {
            let mut body = sample.clone();
            for _ in 0..(1 + rng.next() % 4) {
                let pos = (rng.next() as usize) % body.len();
                match rng.next() % 3 {
                    0 => body[pos] = alphabet[(rng.next() as usize) % alphabet.len()],
                    1 => {
                        body.remove(pos);
                    }
                    _ => body.insert(pos, alphabet[(rng.next() as usize) % alphabet.len()]),
                }
                if body.is_empty() {
                    break;
                }
            }
            exercise(&body);
        }
    }
}

#[test]
fn valid_samples_decode() {
    let s = samples();
    assert!(xmlrpc::decode_response(&s[0]).unwrap().is_ok());
    assert_eq!(
        xmlrpc::decode_response(&s[1]).unwrap().unwrap_err().code,
        "HANDLE_INVALID"
    );
    assert_eq!(xmlrpc::decode_call(&s[2]).unwrap().method, "VM.start");
    assert_eq!(
        xmlrpc::decode_call(&s[3]).unwrap().params,
        vec![json!([1, "20250319T04:16:24"])]
    );
    assert_eq!(jsonrpc::decode_call(&s[4]).unwrap().method, "VM.start");
    assert!(jsonrpc::decode_response(&s[5]).unwrap().result.is_ok());
    assert!(jsonrpc::decode_response(&s[6]).unwrap().result.is_err());
}
