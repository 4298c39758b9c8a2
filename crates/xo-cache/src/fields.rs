//! Which top-level fields of XAPI records the cache keeps: only those a transform can read.
//!
//! A XAPI record carries many fields no XO object uses (a VM ≈ 90 fields, of which the transforms read
//! ≈ 50). Every field a transform reads is named by a string literal in the transform sources (through
//! `rec.get("…")`, the `jsval` helpers or [`crate::Ctx`]'s field-scoped reads), so the set of kept field
//! names is the set of identifier-like string literals of those sources, extracted at first use from the
//! sources themselves (`include_str!`): a transform that starts reading a new field is covered without a
//! list to maintain. Nested values (maps such as `other_config`) are kept whole.
//!
//! `tests/trimmed_records.rs` checks it: every snapshot fixture record gives the same XO object from
//! full and from trimmed records.

use std::sync::LazyLock;

use crate::hash::HashSet;

use crate::jsval::Record;

/// The sources whose string literals name the fields read (non-test code only is scanned).
const SOURCES: &[&str] = &[
    include_str!("transform/mod.rs"),
    include_str!("transform/host.rs"),
    include_str!("transform/message.rs"),
    include_str!("transform/misc.rs"),
    include_str!("transform/network.rs"),
    include_str!("transform/pool.rs"),
    include_str!("transform/sr.rs"),
    include_str!("transform/task.rs"),
    include_str!("transform/vbd.rs"),
    include_str!("transform/vdi.rs"),
    include_str!("transform/vm.rs"),
    include_str!("transform/vm_networks.rs"),
    include_str!("lookup.rs"),
    include_str!("jsval.rs"),
    include_str!("pool_state.rs"),
];

static KEPT: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    let mut set = HashSet::default();
    for src in SOURCES {
        let code = src.split("#[cfg(test)]").next().unwrap_or(src);
        set.extend(literals(code).filter(|l| is_field_name(l)));
    }
    set
});

/// String literal contents of Rust code (comments skipped; `\"` escapes honoured).
fn literals(code: &'static str) -> impl Iterator<Item = &'static str> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            // A char literal: skip it whole (it may be `'"'`). Lifetimes (`'a`) have no closing quote
            // two or three bytes on and are stepped over.
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 3,
            b'\'' if b.get(i + 1) == Some(&b'\\') && b.get(i + 3) == Some(&b'\'') => i += 4,
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if let Some(s) = code.get(start..i.min(b.len())) {
                    out.push(s);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    out.into_iter()
}

/// XAPI field names: ASCII letters, digits, `_`, `-`.
fn is_field_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// Whether some transform may read top-level field `key` of a record.
pub fn is_read(key: &str) -> bool {
    KEPT.contains(key)
}

/// Drop the fields no transform reads.
pub fn trim(rec: &mut Record) {
    rec.retain(|k, _| is_read(k));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_scan() {
        let v: Vec<&str> = literals(
            "a(\"x\") // \"not\"\n let c = '\"'; b(\"y\\\"z\"); fn f<'a>(s: &'a str) {\"w\"}",
        )
        .collect();
        assert_eq!(v, ["x", "y\\\"z", "w"]);
    }

    #[test]
    fn known_fields_are_kept() {
        for f in [
            "uuid",
            "name_label",
            "VBDs",
            "power_state",
            "other_config",
            "metrics",
        ] {
            assert!(is_read(f), "{f}");
        }
        assert!(!is_read("HVM_shadow_multiplier"));
        assert!(!is_read("not a field"));
    }
}
