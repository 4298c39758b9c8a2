//! Cross-object access for the transforms: the `Lookup` trait (records by ref) and `Ctx`, which wraps a
//! lookup and records which foreign records a transform read, so the store knows what to re-derive.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::Value;

use crate::jsval::Record;

/// The null reference.
pub const NULL_REF: &str = "OpaqueRef:NULL";

/// Read access to the XAPI records of one pool.
pub trait Lookup {
    /// The record behind `r`, whatever its class, with its class name (lower-case).
    fn get_any(&self, r: &str) -> Option<(&str, &Record)>;

    /// The record behind `r` if it belongs to `class` (compared case-insensitively).
    fn get(&self, class: &str, r: &str) -> Option<&Record> {
        match self.get_any(r) {
            Some((c, rec)) if c.eq_ignore_ascii_case(class) => Some(rec),
            _ => None,
        }
    }

    /// The `uuid` of the record behind `r`: `None` when there is no such record, `Some(None)` when it has no
    /// string uuid. Implementations may answer without decoding the record.
    fn uuid_of(&self, r: &str) -> Option<Option<String>> {
        self.get_any(r)
            .map(|(_, rec)| rec.get("uuid").and_then(Value::as_str).map(str::to_owned))
    }

    /// The uuid of the pool these records belong to (`$pool` of every XO object).
    fn pool_uuid(&self) -> Option<&str>;

    /// The ref of the record whose `uuid` is `uuid` (used to follow uuid links such as `vhd-parent`).
    fn ref_of_uuid(&self, uuid: &str) -> Option<&str> {
        let _ = uuid;
        None
    }
}

/// A simple in-memory lookup: `ref → (class, record)` plus the pool uuid. Handy for tests and tools.
#[derive(Debug, Default, Clone)]
pub struct MapLookup {
    /// Records by ref.
    pub records: HashMap<String, (String, Record)>,
    /// The pool uuid (found from the `pool` record when built with [`MapLookup::from_classes`]).
    pub pool_uuid: Option<String>,
}

impl MapLookup {
    /// Build from `class → [(ref, record)]` (the shape of a full load); class names are lower-cased.
    pub fn from_classes<'a, I>(classes: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a [(String, Record)])>,
    {
        let mut out = MapLookup::default();
        for (class, recs) in classes {
            let class = class.to_ascii_lowercase();
            for (r, rec) in recs {
                if class == "pool" {
                    out.pool_uuid = rec.get("uuid").and_then(Value::as_str).map(str::to_owned);
                }
                out.records.insert(r.clone(), (class.clone(), rec.clone()));
            }
        }
        out
    }

    /// Add one record.
    pub fn insert(&mut self, class: &str, r: &str, rec: Record) {
        let class = class.to_ascii_lowercase();
        if class == "pool" {
            self.pool_uuid = rec.get("uuid").and_then(Value::as_str).map(str::to_owned);
        }
        self.records.insert(r.to_owned(), (class, rec));
    }
}

impl Lookup for MapLookup {
    fn get_any(&self, r: &str) -> Option<(&str, &Record)> {
        self.records.get(r).map(|(c, rec)| (c.as_str(), rec))
    }

    fn pool_uuid(&self) -> Option<&str> {
        self.pool_uuid.as_deref()
    }

    fn ref_of_uuid(&self, uuid: &str) -> Option<&str> {
        self.records
            .iter()
            .find(|(_, (_, rec))| rec.get("uuid").and_then(Value::as_str) == Some(uuid))
            .map(|(r, _)| r.as_str())
    }
}

/// What a transform read besides its own record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Deps {
    /// Refs whose *content* was read: any change of them may change the output.
    pub content: Vec<String>,
    /// Refs only resolved to their uuid: only their appearance/disappearance matters (uuids never change).
    pub links: Vec<String>,
    /// Refs of which only some fields were read: only a change of those fields (or the record's
    /// appearance/disappearance) matters.
    pub fields: Vec<(String, &'static [&'static str])>,
}

/// Transform context: a lookup plus dependency recording.
pub struct Ctx<'a> {
    lookup: &'a dyn Lookup,
    deps: RefCell<Deps>,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("deps", &self.deps)
            .finish_non_exhaustive()
    }
}

fn is_ref(r: &str) -> bool {
    !r.is_empty() && r != NULL_REF
}

impl<'a> Ctx<'a> {
    /// Wrap a lookup.
    pub fn new(lookup: &'a dyn Lookup) -> Self {
        Ctx {
            lookup,
            deps: RefCell::new(Deps::default()),
        }
    }

    /// The dependencies recorded so far.
    pub fn into_deps(self) -> Deps {
        self.deps.into_inner()
    }

    /// The pool uuid (`$pool`); never recorded as a dependency (a pool uuid change rebuilds everything).
    pub fn pool_uuid(&self) -> Option<&'a str> {
        self.lookup.pool_uuid()
    }

    /// Read a foreign record of `class` (content dependency). XO's `obj.$field`.
    pub fn rec(&self, class: &str, r: &str) -> Option<&'a Record> {
        if !is_ref(r) {
            return None;
        }
        self.deps.borrow_mut().content.push(r.to_owned());
        self.lookup.get(class, r)
    }

    /// Read a foreign record of `class` of which only `fields` will be used (field-scoped dependency:
    /// busy fields such as an SR's usage do not trigger re-derivation).
    pub fn rec_fields(
        &self,
        class: &str,
        r: &str,
        fields: &'static [&'static str],
    ) -> Option<&'a Record> {
        if !is_ref(r) {
            return None;
        }
        self.deps.borrow_mut().fields.push((r.to_owned(), fields));
        self.lookup.get(class, r)
    }

    /// Follow a ref field of `rec` to a record of which only `fields` will be used.
    pub fn follow_fields(
        &self,
        rec: &Record,
        field: &str,
        class: &str,
        fields: &'static [&'static str],
    ) -> Option<&'a Record> {
        rec.get(field)
            .and_then(Value::as_str)
            .and_then(|r| self.rec_fields(class, r, fields))
    }

    /// Read a foreign record of `class` designated by its uuid (content dependency on the record found). The
    /// store indexes uuids of the classes in `pool_state::UUID_INDEXED` only (VDIs): add a class there first.
    pub fn rec_by_uuid(&self, class: &str, uuid: &str) -> Option<&'a Record> {
        let r = self.lookup.ref_of_uuid(uuid)?;
        self.rec(class, r)
    }

    /// Like [`Ctx::rec_by_uuid`] with a field-scoped dependency.
    pub fn rec_fields_by_uuid(
        &self,
        class: &str,
        uuid: &str,
        fields: &'static [&'static str],
    ) -> Option<&'a Record> {
        let r = self.lookup.ref_of_uuid(uuid)?;
        self.rec_fields(class, r, fields)
    }

    /// Read a foreign record whose class is unknown (content dependency).
    pub fn rec_any(&self, r: &str) -> Option<(&'a str, &'a Record)> {
        if !is_ref(r) {
            return None;
        }
        self.deps.borrow_mut().content.push(r.to_owned());
        self.lookup.get_any(r)
    }

    /// Follow a ref field of `rec` to the target record (content dependency).
    pub fn follow(&self, rec: &Record, field: &str, class: &str) -> Option<&'a Record> {
        rec.get(field)
            .and_then(Value::as_str)
            .and_then(|r| self.rec(class, r))
    }

    /// XO `$id` of the object behind `r` (its uuid, or the ref when it has none); link dependency.
    pub fn id_of(&self, r: &str) -> Option<String> {
        if !is_ref(r) {
            return None;
        }
        self.deps.borrow_mut().links.push(r.to_owned());
        self.lookup
            .uuid_of(r)
            .map(|uuid| uuid.unwrap_or_else(|| r.to_owned()))
    }

    /// XO `link(obj, field)` for a single ref: the target's id, or `None` (JS `undefined`, omitted on the
    /// wire) when the ref is NULL or unknown.
    pub fn link(&self, rec: &Record, field: &str) -> Option<Value> {
        rec.get(field)
            .and_then(Value::as_str)
            .and_then(|r| self.id_of(r))
            .map(Value::String)
    }

    /// XO `link(obj, field)` for a set of refs: ids in order, `null` for unknown targets; `None` when the
    /// field is absent.
    pub fn link_set(&self, rec: &Record, field: &str) -> Option<Value> {
        let arr = rec.get(field)?.as_array()?;
        Some(Value::Array(
            arr.iter()
                .map(|v| {
                    v.as_str()
                        .and_then(|r| self.id_of(r))
                        .map_or(Value::Null, Value::String)
                })
                .collect(),
        ))
    }
}
