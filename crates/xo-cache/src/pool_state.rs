//! Per-pool derivation state: the pool's XAPI records, the XO object each produced, and the dependency
//! indexes that say which objects to re-derive when a record changes.
//!
//! Memory: records are kept as the compact JSON text of the fields transforms read ([`RawRecord`]), zstd-packed
//! against their class's dictionary ([`Packed`]), decoded on demand while objects are derived and forgotten again
//! after each derivation pass (a full load is derived in chunks, so only a chunk's worth of decoded records exists
//! at any time).

use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use serde_json::Value;
use tracing::{debug, warn};
use xapi_types::RawRecord;

use crate::hash::{HashMap, HashSet};
use crate::jsval::Record;
use crate::lookup::{Deps, Lookup};
use crate::object::XoObject;
use crate::packed::{Family, Packed};
use crate::ref_set::RefSet;
use crate::sync::{ChangeOp, ObjectChange};
use crate::transform;

/// What a change of the pool's objects amounts to.
#[derive(Debug, Default)]
pub(crate) struct PoolDiff {
    /// New or changed objects.
    pub upserts: Vec<Arc<XoObject>>,
    /// Ids of objects that are gone.
    pub removed: Vec<Arc<str>>,
}

impl PoolDiff {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removed.is_empty()
    }
}

/// A transform's dependencies with refs shared with the record table.
#[derive(Debug, Default)]
struct StoredDeps {
    content: Box<[Arc<str>]>,
    links: Box<[Arc<str>]>,
    fields: Box<[(Arc<str>, Fields)]>,
}

/// Threads a full load's derivation is spread over (the target machines have 2 cores).
const DERIVE_THREADS: usize = 2;

/// Objects derived per chunk of a full load; decoded records are forgotten between chunks.
const DERIVE_CHUNK: usize = 4096;

/// Classes (lower-case) whose records are indexed by uuid: the targets of the uuid links transforms follow
/// ([`crate::Ctx::rec_by_uuid`]: a VDI's `vhd-parent`). Other classes are not, which saves an entry and a scan of
/// the record per record.
const UUID_INDEXED: &[&str] = &["vdi"];

/// One XAPI record: its class, its trimmed JSON text (packed), the uuid of an [`UUID_INDEXED`] class's record, and
/// its decoded form while a derivation needs it.
#[derive(Debug)]
struct Stored {
    class: Arc<str>,
    text: Packed,
    indexed_uuid: Option<Box<str>>,
    decoded: OnceLock<Record>,
}

impl Stored {
    /// A record, packed at once or (`pack == false`: a full load, packed after its derivation) kept plain for now.
    fn new(class: Arc<str>, text: RawRecord, pack: bool) -> Stored {
        let indexed_uuid = UUID_INDEXED
            .contains(&&*class)
            .then(|| text.get_str("uuid").map(String::into_boxed_str))
            .flatten();
        let mut s = Stored {
            text: Packed::Plain(text.into_text()),
            class,
            indexed_uuid,
            decoded: OnceLock::new(),
        };
        if pack {
            s.pack();
        }
        s
    }

    /// Pack a plain text.
    fn pack(&mut self) {
        if let Packed::Plain(text) = &self.text {
            self.text = Packed::new(Family::Record, &self.class, text);
        }
    }

    /// The uuid, for records of [`UUID_INDEXED`] classes.
    fn indexed_uuid(&self) -> Option<String> {
        self.indexed_uuid.as_deref().map(str::to_owned)
    }

    /// The record as a tree (unpacked and parsed: the text is always a JSON object).
    fn decode(&self) -> Record {
        xapi_types::tree::decode_object(&self.text.text())
    }

    fn uuid(&self) -> Option<String> {
        match self.decoded.get() {
            Some(rec) => rec.get("uuid").and_then(|v| v.as_str()).map(str::to_owned),
            None => RawRecord::parse(&self.text.text()).ok()?.get_str("uuid"),
        }
    }
}

/// Field names of a field-scoped dependency.
type Fields = &'static [&'static str];

/// A field list compared and hashed by identity (the lists are `static`s in the transforms): hashing
/// the names themselves made indexing the field-scoped dependencies of a full load slow.
#[derive(Debug, Clone, Copy)]
struct FieldsKey(Fields);

impl PartialEq for FieldsKey {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for FieldsKey {}

impl std::hash::Hash for FieldsKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.0.as_ptr() as usize).hash(state);
        self.0.len().hash(state);
    }
}

#[derive(Debug, Default)]
pub(crate) struct PoolState {
    records: HashMap<Arc<str>, Stored>,
    /// Refs whose record is currently decoded (see [`PoolState::forget_decoded`]).
    decoded: Mutex<Vec<Arc<str>>>,
    /// During a full load's derivation: the uuids of the records decoded and forgotten so far, so that the objects
    /// derived last (SRs, networks, hosts: they list thousands of VDIs, VIFs, VMs by id) need not decode them again.
    load_uuids: HashMap<Arc<str>, Box<str>>,
    uuids: HashMap<String, Arc<str>>,
    classes: HashMap<String, Arc<str>>,
    pool_ref: Option<Arc<str>>,
    pool_uuid: Option<String>,
    objects: HashMap<Arc<str>, Arc<XoObject>>,
    deps: HashMap<Arc<str>, StoredDeps>,
    rev_content: HashMap<Arc<str>, RefSet<Arc<str>>>,
    rev_links: HashMap<Arc<str>, RefSet<Arc<str>>>,
    rev_fields: HashMap<Arc<str>, RefSet<(Arc<str>, FieldsKey)>>,
    /// Set when the pool was removed from the store: late writers must not touch the index.
    pub removed: bool,
}

impl Lookup for PoolState {
    fn get_any(&self, r: &str) -> Option<(&str, &Record)> {
        let (key, s) = self.records.get_key_value(r)?;
        let rec = s.decoded.get_or_init(|| {
            self.decoded.lock().push(key.clone());
            s.decode()
        });
        Some((&*s.class, rec))
    }

    fn uuid_of(&self, r: &str) -> Option<Option<String>> {
        let s = self.records.get(r)?;
        if s.decoded.get().is_none() {
            if let Some(u) = self.load_uuids.get(r) {
                return Some(Some(u.to_string()));
            }
        }
        self.get_any(r)
            .map(|(_, rec)| rec.get("uuid").and_then(Value::as_str).map(str::to_owned))
    }

    fn pool_uuid(&self) -> Option<&str> {
        self.pool_uuid.as_deref()
    }

    fn ref_of_uuid(&self, uuid: &str) -> Option<&str> {
        self.uuids.get(uuid).map(|r| &**r)
    }
}

impl PoolState {
    /// Build from a full load (`class → [(ref, record)]`). Records and objects are left plain: call
    /// [`PoolState::pack`] once the objects are published.
    pub fn from_records(
        records: std::collections::HashMap<String, Vec<(String, RawRecord)>>,
    ) -> PoolState {
        PoolState::from_records_in_chunks(records, DERIVE_CHUNK)
    }

    /// [`PoolState::from_records`] deriving `chunk` objects at a time.
    fn from_records_in_chunks(
        records: std::collections::HashMap<String, Vec<(String, RawRecord)>>,
        chunk: usize,
    ) -> PoolState {
        let started = std::time::Instant::now();
        let mut st = PoolState::default();
        let mut hints = FamilyHints::default();
        for (class, recs) in records {
            let class = st.intern(&class);
            for (r, rec) in recs {
                let r: Arc<str> = r.into();
                if &*class == "pool" {
                    st.pool_ref = Some(r.clone());
                }
                let rec = trimmed(rec);
                hints.note(&r, &class, &rec);
                st.insert_record(r, Stored::new(class.clone(), rec, false));
            }
        }
        st.refresh_pool_uuid();
        let stored = started.elapsed();
        st.rebuild_all(Some(hints), chunk);
        debug!(
            records = st.records.len(),
            objects = st.objects.len(),
            store_ms = stored.as_millis() as u64,
            derive_ms = (started.elapsed() - stored).as_millis() as u64,
            "full load derived"
        );
        st
    }

    /// Pack the records and objects still plain (a full load's: [`PoolState::from_records`] leaves them plain,
    /// to be out sooner), on up to [`DERIVE_THREADS`] threads.
    pub fn pack(&mut self) {
        let mut plain: Vec<&mut Stored> = self
            .records
            .values_mut()
            .filter(|s| matches!(s.text, Packed::Plain(_)))
            .collect();
        let per_thread = plain.len().div_ceil(DERIVE_THREADS).max(1);
        std::thread::scope(|scope| {
            for part in plain.chunks_mut(per_thread) {
                scope.spawn(move || part.iter_mut().for_each(|s| s.pack()));
            }
        });
        let objects: Vec<&Arc<XoObject>> = self.objects.values().collect();
        let per_thread = objects.len().div_ceil(DERIVE_THREADS).max(1);
        std::thread::scope(|scope| {
            for part in objects.chunks(per_thread) {
                scope.spawn(move || part.iter().for_each(|o| o.pack()));
            }
        });
        let kib = |n: usize| n >> 10;
        debug!(
            records = self.records.len(),
            records_kib = kib(self.records.values().map(|s| s.text.packed_len()).sum()),
            objects = self.objects.len(),
            objects_kib = kib(self.objects.values().map(|o| o.packed_len()).sum()),
            objects_text_kib = kib(self.objects.values().map(|o| o.json_len()).sum()),
            "records and objects packed"
        );
    }

    /// Insert/replace a record, keeping the uuid index; returns whether it existed.
    fn insert_record(&mut self, r: Arc<str>, rec: Stored) -> bool {
        if let Some(u) = rec.indexed_uuid() {
            self.uuids.insert(u, r.clone());
        }
        self.records.insert(r, rec).is_some()
    }

    /// Remove a record and its uuid index entry; returns whether it existed.
    fn remove_record(&mut self, r: &Arc<str>) -> bool {
        match self.records.remove(r) {
            Some(rec) => {
                if let Some(u) = rec.indexed_uuid() {
                    if self.uuids.get(&u).is_some_and(|x| x == r) {
                        self.uuids.remove(&u);
                    }
                }
                true
            }
            None => false,
        }
    }

    /// Drop the decoded form of every record decoded since the last call (their text stays).
    /// Returns how many there were. `remember`: keep their uuids in [`PoolState::load_uuids`].
    fn forget_decoded(&mut self, remember: bool) -> usize {
        let refs = std::mem::take(self.decoded.get_mut());
        let n = refs.len();
        for r in refs {
            let Some(s) = self.records.get_mut(&r) else {
                continue;
            };
            let Some(rec) = s.decoded.take() else {
                continue;
            };
            if remember {
                if let Some(Value::String(u)) = rec.get("uuid") {
                    self.load_uuids.insert(r, u.as_str().into());
                }
            }
        }
        n
    }

    fn intern(&mut self, class: &str) -> Arc<str> {
        let lc = class.to_ascii_lowercase();
        if let Some(c) = self.classes.get(&lc) {
            return c.clone();
        }
        let c: Arc<str> = lc.clone().into();
        self.classes.insert(lc, c.clone());
        c
    }

    fn refresh_pool_uuid(&mut self) -> bool {
        let uuid = self
            .pool_ref
            .as_ref()
            .and_then(|r| self.records.get(r))
            .and_then(Stored::uuid);
        let changed = uuid != self.pool_uuid;
        self.pool_uuid = uuid;
        changed
    }

    pub fn pool_uuid_str(&self) -> Option<&str> {
        self.pool_uuid.as_deref()
    }

    pub fn objects(&self) -> impl Iterator<Item = &Arc<XoObject>> {
        self.objects.values()
    }

    pub fn object_by_ref(&self, r: &str) -> Option<Arc<XoObject>> {
        self.objects.get(r).cloned()
    }

    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// Forget everything (objects included); returns the ids that were present.
    pub fn clear(&mut self) -> Vec<Arc<str>> {
        let ids = self.objects.values().map(|o| o.id_arc()).collect();
        let removed = self.removed;
        *self = PoolState::default();
        self.removed = removed;
        ids
    }

    /// Derive every object again (`hints`: the full load's family hints, else they are read from the records).
    fn rebuild_all(&mut self, hints: Option<FamilyHints>, chunk_size: usize) {
        self.objects.clear();
        self.deps.clear();
        self.rev_content.clear();
        self.rev_links.clear();
        self.rev_fields.clear();
        let mut refs: Vec<Arc<str>> = self
            .records
            .iter()
            .filter(|(_, s)| transform::is_transformed(&s.class))
            .map(|(r, _)| r.clone())
            .collect();
        let hints = hints.unwrap_or_else(|| self.family_hints());
        hints.order(&self.records, &mut refs);
        drop(hints);
        // Transform + serialise in parallel (read-only over the records), then index sequentially; chunk by
        // chunk, forgetting decoded records in between.
        let mut decodes = 0;
        for chunk in refs.chunks(chunk_size.max(1)) {
            let derived = self.derive_many(chunk);
            decodes += self.forget_decoded(true);
            for (r, (obj, deps)) in chunk.iter().zip(derived) {
                self.link(r, deps);
                if let Some(o) = obj {
                    self.objects.insert(r.clone(), o);
                }
            }
        }
        let sets = self
            .rev_content
            .values_mut()
            .chain(self.rev_links.values_mut());
        sets.for_each(RefSet::shrink);
        self.rev_fields.values_mut().for_each(RefSet::shrink);
        self.load_uuids = HashMap::default();
        debug!(objects = refs.len(), decodes, "objects derived");
    }

    /// The family hints of the stored records (unpacked one by one).
    fn family_hints(&self) -> FamilyHints {
        let mut hints = FamilyHints::default();
        for (r, s) in &self.records {
            if let Ok(rec) = RawRecord::parse(&s.text.text()) {
                hints.note(r, &s.class, &rec);
            }
        }
        hints
    }

    /// Transform and serialise `refs` on up to [`DERIVE_THREADS`] threads (the records are only read).
    fn derive_many(&self, refs: &[Arc<str>]) -> Vec<(Option<Arc<XoObject>>, Deps)> {
        let one = |r: &Arc<str>| -> (Option<Arc<XoObject>>, Deps) {
            let Some((class, rec)) = self.get_any(r) else {
                return (None, Deps::default());
            };
            let (obj, deps) = transform::to_xo_with_deps(class, r, rec, self);
            let obj = obj.and_then(|map| match XoObject::new_unpacked(map) {
                Some(o) => Some(Arc::new(o)),
                None => {
                    warn!(xapi_ref = %r, "transformed object has no id; dropped");
                    None
                }
            });
            (obj, deps)
        };
        let threads = DERIVE_THREADS.min(refs.len() / 1000).max(1);
        if threads == 1 {
            return refs.iter().map(one).collect();
        }
        let chunk = refs.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = refs
                .chunks(chunk)
                .map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
                .collect();
            let mut out = Vec::with_capacity(refs.len());
            for h in handles {
                match h.join() {
                    Ok(v) => out.extend(v),
                    // A transform panicked: propagate it as a single-threaded run would.
                    Err(e) => std::panic::resume_unwind(e),
                }
            }
            out
        })
    }

    /// Record `r`'s dependencies in the reverse indexes.
    fn link(&mut self, r: &Arc<str>, deps: Deps) {
        let stored = self.store_deps(deps);
        for d in stored.content.iter() {
            self.rev_content
                .entry(d.clone())
                .or_default()
                .insert(r.clone());
        }
        for d in stored.links.iter() {
            self.rev_links
                .entry(d.clone())
                .or_default()
                .insert(r.clone());
        }
        for (d, f) in stored.fields.iter() {
            self.rev_fields
                .entry(d.clone())
                .or_default()
                .insert((r.clone(), FieldsKey(f)));
        }
        self.deps.insert(r.clone(), stored);
    }

    /// Share dependency refs with the record table (or the reverse indexes) instead of owning copies.
    fn store_deps(&self, deps: Deps) -> StoredDeps {
        let share =
            |v: Vec<String>, rev: &HashMap<Arc<str>, RefSet<Arc<str>>>| -> Box<[Arc<str>]> {
                let mut out: Vec<Arc<str>> = Vec::with_capacity(v.len());
                for d in v {
                    let shared = match self.records.get_key_value(d.as_str()) {
                        Some((k, _)) => k.clone(),
                        None => match rev.get_key_value(d.as_str()) {
                            Some((k, _)) => k.clone(),
                            None => Arc::from(d),
                        },
                    };
                    out.push(shared);
                }
                out.into_boxed_slice()
            };
        let fields = deps
            .fields
            .into_iter()
            .map(|(d, f)| {
                let shared = match self.records.get_key_value(d.as_str()) {
                    Some((k, _)) => k.clone(),
                    None => match self.rev_fields.get_key_value(d.as_str()) {
                        Some((k, _)) => k.clone(),
                        None => Arc::from(d),
                    },
                };
                (shared, f)
            })
            .collect();
        StoredDeps {
            content: share(deps.content, &self.rev_content),
            links: share(deps.links, &self.rev_links),
            fields,
        }
    }

    fn unlink_deps(&mut self, r: &Arc<str>) {
        if let Some(old) = self.deps.remove(r) {
            for d in old.content.iter() {
                if let Some(set) = self.rev_content.get_mut(d) {
                    set.remove(r);
                    if set.is_empty() {
                        self.rev_content.remove(d);
                    }
                }
            }
            for (d, f) in old.fields.iter() {
                if let Some(set) = self.rev_fields.get_mut(d) {
                    set.remove(&(r.clone(), FieldsKey(f)));
                    if set.is_empty() {
                        self.rev_fields.remove(d);
                    }
                }
            }
            for d in old.links.iter() {
                if let Some(set) = self.rev_links.get_mut(d) {
                    set.remove(r);
                    if set.is_empty() {
                        self.rev_links.remove(d);
                    }
                }
            }
        }
    }

    /// (Re-)derive the XO object of `r`; returns (old, new).
    fn derive(&mut self, r: &Arc<str>) -> Pair {
        let old = self.objects.get(r).cloned();
        self.unlink_deps(r);
        let Some((class, rec)) = self.get_any(r) else {
            self.objects.remove(r);
            return (old, None);
        };
        if !transform::is_transformed(class) {
            return (old, None);
        }
        let (obj, deps) = transform::to_xo_with_deps(class, r, rec, self);
        self.link(r, deps);
        let new = match obj {
            None => None,
            Some(map) => match XoObject::new(map) {
                // Unchanged: keep the previous Arc (and its identity).
                Some(o) => match &old {
                    Some(prev) if prev.same_json(&o) => old.clone(),
                    _ => Some(Arc::new(o)),
                },
                None => {
                    warn!(xapi_ref = %r, "transformed object has no id; dropped");
                    None
                }
            },
        };
        match &new {
            Some(o) => {
                self.objects.insert(r.clone(), o.clone());
            }
            None => {
                self.objects.remove(r);
            }
        }
        (old, new)
    }

    /// Apply incremental record changes; returns the resulting object diff.
    pub fn apply_changes(&mut self, changes: Vec<ObjectChange>) -> PoolDiff {
        let mut content: HashSet<Arc<str>> = HashSet::default();
        let mut existence: HashSet<Arc<str>> = HashSet::default();
        // Fields changed by `mod`s of records that existed before (existence changes dirty everything).
        let mut changed_fields: HashMap<Arc<str>, HashSet<String>> = HashMap::default();
        let mut pool_touched = false;
        for ch in changes {
            let class = self.intern(&ch.class);
            let r: Arc<str> = match self.records.get_key_value(ch.r#ref.as_str()) {
                Some((k, _)) => k.clone(),
                None => ch.r#ref.as_str().into(),
            };
            if &*class == "pool" {
                pool_touched = true;
            }
            match ch.op {
                ChangeOp::Del => {
                    if self.remove_record(&r) {
                        existence.insert(r.clone());
                        content.insert(r);
                    }
                }
                ChangeOp::Add | ChangeOp::Mod => {
                    let Some(snapshot) = ch.snapshot else {
                        debug!(class = %class, xapi_ref = %r, "add/mod without snapshot ignored");
                        continue;
                    };
                    let text = trimmed(snapshot);
                    if &*class == "pool" {
                        self.pool_ref = Some(r.clone());
                    }
                    let new = text.decode();
                    if let Some(old) = self.records.get(&r) {
                        let old = old.decode();
                        let set = changed_fields.entry(r.clone()).or_default();
                        for (k, v) in &new {
                            if old.get(k) != Some(v) {
                                set.insert(k.clone());
                            }
                        }
                        for k in old.keys() {
                            if !new.contains_key(k) {
                                set.insert(k.clone());
                            }
                        }
                    }
                    let stored = Stored::new(class, text, true);
                    // Already decoded: keep it for this batch's derivations.
                    let _ = stored.decoded.set(new);
                    self.decoded.get_mut().push(r.clone());
                    let existed = self.insert_record(r.clone(), stored);
                    if !existed {
                        existence.insert(r.clone());
                    }
                    content.insert(r);
                }
            }
        }
        if pool_touched && self.refresh_pool_uuid() {
            // `$pool` of every object changes: rebuild everything.
            let before: Vec<Arc<XoObject>> = self.objects.values().cloned().collect();
            self.rebuild_all(None, DERIVE_CHUNK);
            self.pack();
            return diff_sets(before, self.objects.values().cloned().collect());
        }
        let mut dirty: HashSet<Arc<str>> = HashSet::default();
        for r in &content {
            dirty.insert(r.clone());
            if let Some(set) = self.rev_content.get(&**r) {
                dirty.extend(set.iter().cloned());
            }
        }
        for r in &existence {
            if let Some(set) = self.rev_links.get(&**r) {
                dirty.extend(set.iter().cloned());
            }
        }
        for r in &content {
            let Some(set) = self.rev_fields.get(&**r) else {
                continue;
            };
            let set = set.iter();
            let changed = if existence.contains(r) {
                None
            } else {
                changed_fields.get(r)
            };
            for (dep, fields) in set {
                let hit = match changed {
                    None => true,
                    Some(c) => fields.0.iter().any(|f| c.contains(*f)),
                };
                if hit {
                    dirty.insert(dep.clone());
                }
            }
        }
        let mut pairs = Vec::with_capacity(dirty.len());
        for r in dirty {
            pairs.push(self.derive(&r));
        }
        let _ = self.forget_decoded(false);
        diff_pairs(pairs)
    }
}

/// What a full load's derivation order is made from: the VM each record hangs off (records of classes with a `VM`
/// field — VBDs, VIFs, consoles…) and the VBDs of each VDI.
#[derive(Debug, Default)]
struct FamilyHints {
    vm_of: HashMap<Arc<str>, Box<str>>,
    vbds_of_vdi: HashMap<Arc<str>, Vec<Box<str>>>,
}

impl FamilyHints {
    fn note(&mut self, r: &Arc<str>, class: &str, rec: &RawRecord) {
        if class == "vdi" {
            if let Some(Value::Array(vbds)) = rec.get("VBDs") {
                let vbds = vbds.iter().filter_map(|b| b.as_str()).map(Box::from);
                self.vbds_of_vdi.insert(r.clone(), vbds.collect());
            }
            return;
        }
        if class == "vm" || xapi_types::schema::class(class).is_none_or(|c| c.field("VM").is_none())
        {
            return;
        }
        if let Some(vm) = rec.get_str("VM").filter(|vm| vm != crate::lookup::NULL_REF) {
            self.vm_of.insert(r.clone(), vm.into());
        }
    }

    /// Sort `refs` so that each VM comes next to what hangs off it (and the VDIs behind its VBDs): a chunk then
    /// decodes most of its records once rather than once per chunk that reads them. Records of no VM come last:
    /// SRs, networks and hosts list the VDIs, VIFs and VMs by id, known by then ([`PoolState::load_uuids`]).
    fn order(&self, records: &HashMap<Arc<str>, Stored>, refs: &mut [Arc<str>]) {
        refs.sort_by_cached_key(|r| {
            let key = self.key(records, r);
            (key.is_none(), key)
        });
    }

    /// The VM `r` hangs off (itself for a VM).
    fn key(&self, records: &HashMap<Arc<str>, Stored>, r: &Arc<str>) -> Option<String> {
        let s = records.get(r)?;
        match &*s.class {
            "vm" => Some(r.to_string()),
            "vdi" => self
                .vbds_of_vdi
                .get(r)?
                .iter()
                .find_map(|b| self.vm_of.get(&**b).map(|vm| vm.to_string())),
            _ => self.vm_of.get(r).map(|vm| vm.to_string()),
        }
    }
}

/// Only the fields some transform reads, as compact text (the record itself when it is already trimmed, as the
/// pool watcher's records are).
fn trimmed(rec: RawRecord) -> RawRecord {
    rec.into_retained(crate::fields::is_read)
}

/// The object of one record before and after a change.
type Pair = (Option<Arc<XoObject>>, Option<Arc<XoObject>>);

/// Diff of (old, new) per record.
fn diff_pairs(pairs: Vec<Pair>) -> PoolDiff {
    let mut diff = PoolDiff::default();
    let mut up_ids: HashSet<Arc<str>> = HashSet::default();
    let mut gone: Vec<Arc<str>> = Vec::new();
    for (old, new) in pairs {
        match (old, new) {
            (None, None) => {}
            (Some(o), None) => gone.push(o.id_arc()),
            (None, Some(n)) => {
                up_ids.insert(n.id_arc());
                diff.upserts.push(n);
            }
            (Some(o), Some(n)) => {
                if o.id() != n.id() {
                    gone.push(o.id_arc());
                    up_ids.insert(n.id_arc());
                    diff.upserts.push(n);
                } else if !Arc::ptr_eq(&o, &n) && !o.same_json(&n) {
                    up_ids.insert(n.id_arc());
                    diff.upserts.push(n);
                }
            }
        }
    }
    diff.removed = gone.into_iter().filter(|id| !up_ids.contains(id)).collect();
    diff
}

/// Diff of two whole object sets (matched by id).
pub(crate) fn diff_sets(before: Vec<Arc<XoObject>>, after: Vec<Arc<XoObject>>) -> PoolDiff {
    let mut old: HashMap<Arc<str>, Arc<XoObject>> =
        before.into_iter().map(|o| (o.id_arc(), o)).collect();
    let mut diff = PoolDiff::default();
    for n in after {
        match old.remove(n.id()) {
            Some(o) if Arc::ptr_eq(&o, &n) || o.same_json(&n) => {}
            _ => diff.upserts.push(n),
        }
    }
    diff.removed = old.into_keys().collect();
    diff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture pool (tests/fixtures/pool.json) as the watcher hands it over.
    fn fixture() -> std::collections::HashMap<String, Vec<(String, RawRecord)>> {
        let text = include_str!("../tests/fixtures/pool.json");
        let v: std::collections::HashMap<String, Vec<(String, Value)>> =
            serde_json::from_str(text).expect("fixture parses");
        v.into_iter()
            .map(|(class, recs)| {
                let recs = recs
                    .into_iter()
                    .map(|(r, rec)| (r, RawRecord::parse(&rec.to_string()).expect("record")))
                    .collect();
                (class, recs)
            })
            .collect()
    }

    #[test]
    fn small_chunks_derive_the_same_objects() {
        // One chunk, then chunks of 3 objects: records are forgotten between chunks, and the SR, network and host
        // objects (derived last) take the ids of records decoded in earlier chunks from `load_uuids`.
        let whole = PoolState::from_records_in_chunks(fixture(), usize::MAX);
        let mut chunked = PoolState::from_records_in_chunks(fixture(), 3);
        assert!(whole.objects.len() > 20, "{}", whole.objects.len());
        assert_eq!(whole.objects.len(), chunked.objects.len());
        for (r, o) in &whole.objects {
            assert_eq!(o.json(), chunked.objects[r].json(), "{r}");
        }
        assert!(chunked.load_uuids.is_empty());
        assert!(chunked.decoded.get_mut().is_empty());
        // Same dependencies: a change reaches the same objects.
        assert_eq!(whole.deps.len(), chunked.deps.len());
        for (r, d) in &whole.deps {
            let c = &chunked.deps[r];
            let set = |v: &[Arc<str>]| v.iter().cloned().collect::<HashSet<Arc<str>>>();
            assert_eq!(set(&d.links), set(&c.links), "{r}");
            assert_eq!(set(&d.content), set(&c.content), "{r}");
        }
    }
}
