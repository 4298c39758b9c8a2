//! Shared test helpers (the `support` module): load the fixture pool.

#![allow(dead_code)]

use std::collections::HashMap;

use serde_json::Value;
use xo_cache::{MapLookup, RawRecord, Record};

pub const POOL_UUID: &str = "b7569d99-30f8-178a-7d94-801de3e29b5b";

/// `class → [(ref, record)]` from tests/fixtures/pool.json.
pub fn pool_records() -> HashMap<String, Vec<(String, Record)>> {
    let text = include_str!("../fixtures/pool.json");
    let v: HashMap<String, Vec<(String, Value)>> =
        serde_json::from_str(text).expect("fixture parses");
    v.into_iter()
        .map(|(class, recs)| {
            let recs = recs
                .into_iter()
                .map(|(r, rec)| match rec {
                    Value::Object(m) => (r, m),
                    _ => panic!("record {r} is not an object"),
                })
                .collect();
            (class, recs)
        })
        .collect()
}

/// Records as the pool watcher hands them over (JSON text).
pub fn raw(
    records: HashMap<String, Vec<(String, Record)>>,
) -> HashMap<String, Vec<(String, RawRecord)>> {
    records
        .into_iter()
        .map(|(class, recs)| {
            let recs = recs
                .into_iter()
                .map(|(r, rec)| (r, RawRecord::from_map(&rec)))
                .collect();
            (class, recs)
        })
        .collect()
}

/// The pool fixture as the watcher hands it over.
pub fn pool_raw() -> HashMap<String, Vec<(String, RawRecord)>> {
    raw(pool_records())
}

/// The pool fixture plus tests/fixtures/misc.json (PCI, GPU, USB, VTPM, bond, patches).
pub fn lookup_with_misc() -> MapLookup {
    let mut l = lookup();
    let text = include_str!("../fixtures/misc.json");
    let v: HashMap<String, Vec<(String, Value)>> =
        serde_json::from_str(text).expect("fixture parses");
    for (class, recs) in v {
        for (r, rec) in recs {
            if let Value::Object(m) = rec {
                l.insert(&class, &r, m);
            }
        }
    }
    l
}

pub fn lookup() -> MapLookup {
    let recs = pool_records();
    MapLookup::from_classes(recs.iter().map(|(c, v)| (c.as_str(), v.as_slice())))
}

/// The record behind `r` with its class.
pub fn record(r: &str) -> (String, Record) {
    let l = lookup();
    let (c, rec) = l.records.get(r).unwrap_or_else(|| panic!("no record {r}"));
    (c.clone(), rec.clone())
}
