//! The cache keeps only the record fields transforms read (`xo_cache::fields`): every fixture record
//! must give the same XO object from full records as from trimmed ones.

use crate::support;

use xo_cache::transform::{to_xo, TRANSFORMED_CLASSES};
use xo_cache::{fields, MapLookup};

#[test]
fn trimmed_records_give_identical_objects() {
    let full = support::lookup_with_misc();
    let mut trimmed = MapLookup {
        records: full.records.clone(),
        pool_uuid: full.pool_uuid.clone(),
    };
    let mut dropped = 0;
    for (_, rec) in trimmed.records.values_mut() {
        let before = rec.len();
        fields::trim(rec);
        dropped += before - rec.len();
    }
    assert!(dropped > 0, "the fixtures have fields no transform reads");
    let mut compared = 0;
    for (r, (class, rec)) in &full.records {
        let a = to_xo(class, r, rec, &full);
        let b = to_xo(class, r, &trimmed.records[r].1, &trimmed);
        assert_eq!(a, b, "{class} {r}");
        if a.is_some() {
            compared += 1;
        }
    }
    let classes: std::collections::HashSet<&str> =
        full.records.values().map(|(c, _)| c.as_str()).collect();
    let covered = TRANSFORMED_CLASSES
        .iter()
        .filter(|c| classes.contains(**c))
        .count();
    assert!(compared > 40, "{compared} objects compared");
    assert!(covered >= 20, "{covered} classes covered");
}
