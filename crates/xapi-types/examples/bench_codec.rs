//! Rough throughput figures for encoding/decoding/coercing a pool-sized `VM.get_all_records` (prints, asserts nothing).

use std::time::Instant;
use xapi_types::schema::{self, coerce, default_value};
use xapi_types::{xmlrpc, Type, Value};

fn main() {
    let vm = schema::class("VM").expect("VM class");
    let mut all = serde_json::Map::new();
    for i in 0..1000 {
        let mut rec = serde_json::Map::new();
        for f in vm.fields {
            rec.insert(f.name.to_owned(), default_value(f));
        }
        rec.insert("name_label".into(), Value::String(format!("vm{i}")));
        all.insert(format!("OpaqueRef:{i:08}"), Value::Object(rec));
    }
    let value = Value::Object(all);
    let ty = Type::Map(&Type::Ref("VM"), &Type::Record("VM"));

    let t = Instant::now();
    let xml = xmlrpc::encode_response(&Ok(value.clone()), &ty);
    println!(
        "encode 1000 VM records: {:?} ({} bytes)",
        t.elapsed(),
        xml.len()
    );
    let t = Instant::now();
    let raw = xmlrpc::decode_response(xml.as_bytes())
        .expect("decodes")
        .expect("success");
    println!("decode: {:?}", t.elapsed());
    let t = Instant::now();
    let canonical = coerce(&ty, raw).expect("coerces");
    println!("coerce: {:?}", t.elapsed());
    assert_eq!(canonical, value);
}
