//! The simulated pool's object store: versioned rows per class, inverse `Set(Ref)` maintenance, tombstones.
//!
//! # Model
//! - One [`Table`] per datamodel class (keyed by the class name exactly as the datamodel spells it: `VM`, `host`,
//!   `VM_guest_metrics`, `message`, …). Class arguments of every method are resolved with
//!   [`xapi_types::schema::class`], so `"vm"` also works; unknown classes give `HANDLE_INVALID [class, ref]` (reads)
//!   or `INTERNAL_ERROR` (create).
//! - A row ([`Row`]) is a record in canonical value form (`serde_json::Map`, see `xapi_types` crate docs) holding
//!   **every** field of its class (missing ones are filled with [`xapi_types::schema::default_value`] at create;
//!   keys that are not fields of the class are dropped) plus its `created` / `modified` generations.
//! - A global generation counter ([`Db::generation`]) is bumped once per write operation (`create`, `set_field`,
//!   `update`, `destroy`, `touch`); every row touched by that operation — including the other ends of relations —
//!   gets that generation as `modified`. The `message` class is special (as in XAPI): it uses its own counter
//!   ([`Db::message_generation`]), the second component of `event.from` tokens.
//! - Inverse relations: when a field of type `X ref` that mirrors a `Set(X ref)` field on the target class changes
//!   (e.g. `VBD.VM` ↔ `VM.VBDs`, `VDI.SR` ↔ `SR.VDIs`, `VM.resident_on` ↔ `host.resident_VMs`,
//!   `VM.snapshot_of` ↔ `VM.snapshots`), the DB removes the ref from the old target's set and adds it to the new
//!   target's set, and both targets get a `mod` at the same generation. Pairs come from [`inverse_pairs`]: an explicit
//!   table for ambiguous cases plus the heuristic "the only `C ref` field of X mirrors `C.<set of X ref>`".
//!   Never write such `Set(Ref)` fields directly; set the single-ref side.
//! - Deletions leave a [`Tombstone`] (class, ref, created, deleted generation) in a bounded queue
//!   ([`Db::set_tombstone_limit`]); once one is dropped, tokens older than its deletion are answered `EVENTS_LOST`
//!   ([`Db::forgotten_upto`]).
//! - A bounded change log ([`Db::changes_after`]) records every `add`/`mod`/`del` uncoalesced, for the legacy
//!   `event.next`.
//!
//! The `Db` is not synchronised: the pool keeps it in a `parking_lot::Mutex` next to a `Condvar` notified after
//! each write batch (see `PoolState` in `state.rs`: use `PoolState::write(|db| …)` so waiters wake).
//!
//! # API summary (all `class` parameters are datamodel class names)
//! - `Db::new()`; `generation()`, `message_generation()`.
//! - `new_ref() -> Ref` (a fresh `OpaqueRef:<uuid>`), `new_uuid() -> String`.
//! - `create(class, Ref, Map) -> Result<Ref>` / `insert(class, Map) -> Result<Ref>` (fresh ref). Fills defaults and
//!   a uuid when absent or empty; `DB_UNIQUENESS_CONSTRAINT_VIOLATION` on a duplicate uuid.
//! - `get(class, &Ref) -> Option<&Map>`, `record(class, &Ref) -> Result<&Map>` (`HANDLE_INVALID [class, ref]`),
//!   `field(class, &Ref, name) -> Result<&Value>`, `exists`, `row(class, &Ref) -> Option<&Row>`.
//! - `set_field(class, &Ref, name, Value) -> Result<()>` (no type/qualifier check: that is the RPC layer's job;
//!   unknown field → `INTERNAL_ERROR`), `update(class, &Ref, |&mut Map| -> R) -> Result<R>` (one generation for
//!   the whole closure; inverses fixed afterwards), `destroy(class, &Ref) -> Result<()>`, `touch(class, &Ref) ->
//!   Result<u64>` (no-op modification, returns the new generation; used by `event.inject`).
//! - `find_by_uuid(class, uuid) -> Option<Ref>`, `find_by_uuid_any(uuid)`, `class_of(&Ref) -> Option<&'static str>`,
//!   `all(class) -> impl Iterator<(&Ref, &Map)>`, `rows(class)` (with generations), `refs(class) -> Vec<Ref>`,
//!   `count(class)`, `table_counts()` (every DB table, for `valid_ref_counts`), `find(class, |&Map| -> bool)`.

use std::collections::{HashMap, VecDeque};
use std::sync::OnceLock;

use serde_json::Map;
use xapi_types::schema::{self, ClassSpec, Type};
use xapi_types::{Ref, Value, XapiError};

/// A record: field name → canonical value.
pub type Record = Map<String, Value>;

/// The class whose rows use the message generation counter.
pub const MESSAGE_CLASS: &str = "message";

/// Classes that are not DB tables (no rows, absent from `valid_ref_counts`).
pub const NON_TABLE_CLASSES: &[&str] = &[
    "event",
    "auth",
    "data_source",
    "sr_stat",
    "probe_result",
    "vdi_nbd_server_info",
    "message",
];

/// Classes whose changes never produce events.
pub const NO_EVENT_CLASSES: &[&str] = &[
    "session",
    "user",
    "secret",
    "event",
    "data_source",
    "auth",
    "sr_stat",
    "probe_result",
    "vdi_nbd_server_info",
];

/// Default bound of the tombstone queue.
pub const DEFAULT_TOMBSTONE_LIMIT: usize = 100_000;
/// Default bound of the legacy change log.
pub const DEFAULT_CHANGELOG_LIMIT: usize = 200_000;

/// One stored object.
#[derive(Debug, Clone)]
pub struct Row {
    pub fields: Record,
    /// Generation of creation.
    pub created: u64,
    /// Generation of the last modification (== `created` right after creation).
    pub modified: u64,
}

/// A deleted object, remembered for `del` events.
#[derive(Debug, Clone)]
pub struct Tombstone {
    pub class: &'static str,
    pub r: Ref,
    pub created: u64,
    pub deleted: u64,
}

/// Operation recorded in the change log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Add,
    Mod,
    Del,
}

impl ChangeOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Add => "add",
            ChangeOp::Mod => "mod",
            ChangeOp::Del => "del",
        }
    }
}

/// An uncoalesced change (legacy event system). `id` is a monotonic sequence number (not a generation).
#[derive(Debug, Clone)]
pub struct Change {
    pub id: u64,
    pub class: &'static str,
    pub r: Ref,
    pub op: ChangeOp,
}

/// How [`Db::link`] changes a mirror set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Add,
    /// Add a ref that was just created (cannot already be there).
    AddFresh,
    Remove,
}

/// The rows of one class.
#[derive(Debug, Default)]
pub struct Table {
    pub rows: HashMap<Ref, Row>,
    by_uuid: HashMap<String, Ref>,
}

/// A relation maintained by the DB: `class.field` (a `X ref`) is mirrored by `target.set_field` (a `class ref set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InversePair {
    pub class: &'static str,
    pub field: &'static str,
    pub target: &'static str,
    pub set_field: &'static str,
}

/// Ambiguous relations resolved by hand: (set class, set field, single-ref class, single-ref field).
const EXPLICIT_PAIRS: &[(&str, &str, &str, &str)] = &[
    ("VM", "snapshots", "VM", "snapshot_of"),
    ("VM", "children", "VM", "parent"),
    ("VM", "VTPMs", "VTPM", "VM"),
    ("host", "resident_VMs", "VM", "resident_on"),
    ("PIF", "bond_master_of", "Bond", "master"),
    ("PIF", "VLAN_slave_of", "VLAN", "tagged_PIF"),
    ("PIF", "tunnel_access_PIF_of", "tunnel", "access_PIF"),
    ("PIF", "tunnel_transport_PIF_of", "tunnel", "transport_PIF"),
    (
        "PIF",
        "sriov_physical_PIF_of",
        "network_sriov",
        "physical_PIF",
    ),
    (
        "PIF",
        "sriov_logical_PIF_of",
        "network_sriov",
        "logical_PIF",
    ),
    ("VDI", "snapshots", "VDI", "snapshot_of"),
    ("PGPU", "resident_VGPUs", "VGPU", "resident_on"),
];

/// Every relation the DB maintains, derived from the schema once.
pub fn inverse_pairs() -> &'static [InversePair] {
    static PAIRS: OnceLock<Vec<InversePair>> = OnceLock::new();
    PAIRS.get_or_init(|| {
        let mut out = Vec::new();
        for c in schema::classes() {
            for f in c.fields {
                let Type::Set(Type::Ref(x)) = f.ty else {
                    continue;
                };
                if let Some(&(_, _, oc, of)) = EXPLICIT_PAIRS
                    .iter()
                    .find(|p| p.0 == c.name && p.1 == f.name)
                {
                    if let Some(ocs) = schema::class(oc) {
                        if let Some(ofs) = ocs.field(of) {
                            out.push(InversePair {
                                class: ocs.name,
                                field: ofs.name,
                                target: c.name,
                                set_field: f.name,
                            });
                        }
                    }
                    continue;
                }
                let Some(xc) = schema::class(x) else { continue };
                let cands: Vec<_> = xc
                    .fields
                    .iter()
                    .filter(|g| matches!(g.ty, Type::Ref(t) if t == c.name))
                    .collect();
                if cands.len() == 1 {
                    out.push(InversePair {
                        class: xc.name,
                        field: cands[0].name,
                        target: c.name,
                        set_field: f.name,
                    });
                }
            }
        }
        out
    })
}

fn pairs_of(class: &str) -> impl Iterator<Item = &'static InversePair> + '_ {
    inverse_pairs().iter().filter(move |p| p.class == class)
}

/// `HANDLE_INVALID [class, ref]`.
pub fn handle_invalid(class: &str, r: &Ref) -> XapiError {
    XapiError::new("HANDLE_INVALID", [class.to_owned(), r.0.clone()])
}

/// Resolve a class name to its datamodel spec.
pub fn class_spec(class: &str) -> Option<&'static ClassSpec> {
    schema::class(class)
}

/// The object store. See the module docs.
#[derive(Debug)]
pub struct Db {
    tables: HashMap<&'static str, Table>,
    class_index: HashMap<Ref, &'static str>,
    generation: u64,
    message_generation: u64,
    tombstones: VecDeque<Tombstone>,
    message_tombstones: VecDeque<Tombstone>,
    tombstone_limit: usize,
    forgotten_upto: u64,
    forgotten_messages_upto: u64,
    changelog: VecDeque<Change>,
    changelog_limit: usize,
    change_seq: u64,
    /// Disk content of the VDIs (shared with the HTTP transfer handlers).
    pub vdi_data: std::sync::Arc<crate::vdi_data::VdiStore>,
}

impl Default for Db {
    fn default() -> Self {
        Self::new()
    }
}

impl Db {
    pub fn new() -> Self {
        let mut tables = HashMap::new();
        for c in schema::classes() {
            tables.insert(c.name, Table::default());
        }
        Db {
            tables,
            class_index: HashMap::new(),
            generation: 0,
            message_generation: 0,
            tombstones: VecDeque::new(),
            message_tombstones: VecDeque::new(),
            tombstone_limit: DEFAULT_TOMBSTONE_LIMIT,
            forgotten_upto: 0,
            forgotten_messages_upto: 0,
            changelog: VecDeque::new(),
            changelog_limit: DEFAULT_CHANGELOG_LIMIT,
            change_seq: 0,
            vdi_data: Default::default(),
        }
    }

    /// A fresh `OpaqueRef:<uuid v4>`.
    pub fn new_ref() -> Ref {
        Ref::from_uuid(&Self::new_uuid())
    }

    /// A fresh uuid v4 string.
    pub fn new_uuid() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    /// Current DB generation (the last one used by a write).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Current message generation.
    pub fn message_generation(&self) -> u64 {
        self.message_generation
    }

    /// Bound the tombstone queues (drops the oldest now if needed).
    pub fn set_tombstone_limit(&mut self, limit: usize) {
        self.tombstone_limit = limit;
        self.trim_tombstones();
    }

    /// Bound the legacy change log.
    pub fn set_changelog_limit(&mut self, limit: usize) {
        self.changelog_limit = limit;
        self.trim_changelog();
    }

    /// Highest deletion generation whose tombstone was dropped: tokens below it must get `EVENTS_LOST`.
    pub fn forgotten_upto(&self) -> u64 {
        self.forgotten_upto
    }

    /// Same for messages (message generation).
    pub fn forgotten_messages_upto(&self) -> u64 {
        self.forgotten_messages_upto
    }

    /// Remembered deletions (DB generation).
    pub fn tombstones(&self) -> impl Iterator<Item = &Tombstone> {
        self.tombstones.iter()
    }

    /// Remembered message deletions (message generation).
    pub fn message_tombstones(&self) -> impl Iterator<Item = &Tombstone> {
        self.message_tombstones.iter()
    }

    /// Drop the change log (e.g. after seeding: nobody registered before can have been waiting on it); ids keep
    /// counting, so a cursor older than now answers `EVENTS_LOST`.
    pub fn forget_history(&mut self) {
        self.changelog = VecDeque::new();
    }

    /// Change log entries with `id > after`, and whether entries after `after` were already dropped.
    pub fn changes_after(&self, after: u64) -> (Vec<Change>, bool) {
        let lost = self.changelog.front().is_some_and(|c| c.id > after + 1);
        let lost = lost || (self.changelog.is_empty() && self.change_seq > after);
        let v = self
            .changelog
            .iter()
            .filter(|c| c.id > after)
            .cloned()
            .collect();
        (v, lost)
    }

    /// The id of the last change-log entry.
    pub fn change_seq(&self) -> u64 {
        self.change_seq
    }

    fn canon(class: &str) -> Option<&'static str> {
        schema::class(class).map(|c| c.name)
    }

    fn table(&self, class: &str) -> Option<&Table> {
        self.tables
            .get(class)
            .or_else(|| Self::canon(class).and_then(|c| self.tables.get(c)))
    }

    fn bump(&mut self, class: &str) -> u64 {
        if class == MESSAGE_CLASS {
            self.message_generation += 1;
            self.message_generation
        } else {
            self.generation += 1;
            self.generation
        }
    }

    fn log(&mut self, class: &'static str, r: &Ref, op: ChangeOp) {
        if NO_EVENT_CLASSES.contains(&class) {
            return;
        }
        self.change_seq += 1;
        self.changelog.push_back(Change {
            id: self.change_seq,
            class,
            r: r.clone(),
            op,
        });
        self.trim_changelog();
    }

    fn trim_changelog(&mut self) {
        while self.changelog.len() > self.changelog_limit {
            self.changelog.pop_front();
        }
    }

    fn trim_tombstones(&mut self) {
        while self.tombstones.len() > self.tombstone_limit {
            if let Some(t) = self.tombstones.pop_front() {
                self.forgotten_upto = self.forgotten_upto.max(t.deleted);
            }
        }
        while self.message_tombstones.len() > self.tombstone_limit {
            if let Some(t) = self.message_tombstones.pop_front() {
                self.forgotten_messages_upto = self.forgotten_messages_upto.max(t.deleted);
            }
        }
    }

    /// Create a row with a fresh ref. See [`Db::create`].
    pub fn insert(&mut self, class: &str, fields: Record) -> Result<Ref, XapiError> {
        self.create(class, Self::new_ref(), fields)
    }

    /// Create a row: fills every missing field with its default, generates a uuid if absent/empty, maintains
    /// inverse relations. Errors: unknown class or ref already present → `INTERNAL_ERROR`; duplicate uuid →
    /// `DB_UNIQUENESS_CONSTRAINT_VIOLATION [class, "uuid", uuid]`.
    pub fn create(&mut self, class: &str, r: Ref, mut fields: Record) -> Result<Ref, XapiError> {
        let spec = schema::class(class)
            .ok_or_else(|| XapiError::internal(format!("unknown class {class}")))?;
        let cname = spec.name;
        if self.class_index.contains_key(&r) || r.is_null() {
            return Err(XapiError::internal(format!("ref {r} already exists")));
        }
        let mut rec = Record::new();
        let defaults = default_record(spec);
        for f in spec.fields {
            let v = match fields.remove(f.name) {
                Some(v) => v,
                None => defaults
                    .get(f.name)
                    .cloned()
                    .unwrap_or_else(|| schema::default_value(f)),
            };
            rec.insert(f.name.to_owned(), v);
        }
        if spec.field("uuid").is_some() {
            let empty = rec
                .get("uuid")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            if empty {
                rec.insert("uuid".into(), Value::String(Self::new_uuid()));
            }
            let u = rec
                .get("uuid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if self
                .tables
                .get(cname)
                .is_some_and(|t| t.by_uuid.contains_key(&u))
            {
                return Err(XapiError::new(
                    "DB_UNIQUENESS_CONSTRAINT_VIOLATION",
                    [cname, "uuid", u.as_str()],
                ));
            }
        }
        let g = self.bump(cname);
        // Inverse relations of the new row.
        let links: Vec<(&'static InversePair, Ref)> = pairs_of(cname)
            .filter_map(|p| ref_of(rec.get(p.field)).map(|t| (p, t)))
            .collect();
        let table = self.tables.entry(cname).or_default();
        if let Some(u) = rec.get("uuid").and_then(Value::as_str) {
            table.by_uuid.insert(u.to_owned(), r.clone());
        }
        table.rows.insert(
            r.clone(),
            Row {
                fields: rec,
                created: g,
                modified: g,
            },
        );
        self.class_index.insert(r.clone(), cname);
        self.log(cname, &r, ChangeOp::Add);
        for (p, t) in links {
            self.link(p, &t, &r, Link::AddFresh, g);
        }
        Ok(r)
    }

    /// Add or remove `member` in `target`'s mirror set.
    fn link(&mut self, p: &InversePair, target: &Ref, member: &Ref, how: Link, g: u64) {
        let Some(row) = self
            .tables
            .get_mut(p.target)
            .and_then(|t| t.rows.get_mut(target))
        else {
            return;
        };
        let set = row
            .fields
            .entry(p.set_field.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if !set.is_array() {
            *set = Value::Array(Vec::new());
        }
        let Value::Array(items) = set else { return };
        // A brand-new member cannot be present yet: skip the linear search (keeps bulk creation linear).
        let pos = match how {
            Link::AddFresh => None,
            _ => items
                .iter()
                .position(|v| v.as_str() == Some(member.as_str())),
        };
        let changed = match (how, pos) {
            (Link::Add | Link::AddFresh, None) => {
                items.push(Value::String(member.0.clone()));
                true
            }
            (Link::Remove, Some(i)) => {
                items.remove(i);
                true
            }
            _ => false,
        };
        if changed {
            row.modified = g;
            let target = target.clone();
            self.log(p.target, &target, ChangeOp::Mod);
        }
    }

    /// The record, if present.
    pub fn get(&self, class: &str, r: &Ref) -> Option<&Record> {
        self.row(class, r).map(|row| &row.fields)
    }

    /// The row with its generations, if present.
    pub fn row(&self, class: &str, r: &Ref) -> Option<&Row> {
        self.table(class)?.rows.get(r)
    }

    /// The record or `HANDLE_INVALID [class, ref]`.
    pub fn record(&self, class: &str, r: &Ref) -> Result<&Record, XapiError> {
        self.get(class, r)
            .ok_or_else(|| handle_invalid(Self::canon(class).unwrap_or(class), r))
    }

    /// One field, or `HANDLE_INVALID` (no such row) / `INTERNAL_ERROR` (no such field).
    pub fn field(&self, class: &str, r: &Ref, name: &str) -> Result<&Value, XapiError> {
        self.record(class, r)?
            .get(name)
            .ok_or_else(|| XapiError::internal(format!("no field {class}.{name}")))
    }

    pub fn exists(&self, class: &str, r: &Ref) -> bool {
        self.row(class, r).is_some()
    }

    /// Set one field (bumps the generation, fixes inverse relations).
    pub fn set_field(
        &mut self,
        class: &str,
        r: &Ref,
        name: &str,
        value: Value,
    ) -> Result<(), XapiError> {
        let spec = schema::class(class).ok_or_else(|| handle_invalid(class, r))?;
        if spec.field(name).is_none() {
            return Err(XapiError::internal(format!(
                "no field {}.{name}",
                spec.name
            )));
        }
        let name = name.to_owned();
        self.update(class, r, move |rec| {
            rec.insert(name, value);
        })
    }

    /// Modify a row in place with one generation bump; inverse relations and the uuid index are fixed
    /// afterwards. `HANDLE_INVALID` if the row does not exist.
    pub fn update<R>(
        &mut self,
        class: &str,
        r: &Ref,
        f: impl FnOnce(&mut Record) -> R,
    ) -> Result<R, XapiError> {
        let cname = Self::canon(class).ok_or_else(|| handle_invalid(class, r))?;
        if !self.exists(cname, r) {
            return Err(handle_invalid(cname, r));
        }
        let pairs: Vec<&'static InversePair> = pairs_of(cname).collect();
        let g = self.bump(cname);
        let table = self
            .tables
            .get_mut(cname)
            .ok_or_else(|| handle_invalid(cname, r))?;
        let row = table
            .rows
            .get_mut(r)
            .ok_or_else(|| handle_invalid(cname, r))?;
        let before: Vec<Option<Ref>> = pairs
            .iter()
            .map(|p| ref_of(row.fields.get(p.field)))
            .collect();
        let old_uuid = row.fields.get("uuid").cloned();
        let out = f(&mut row.fields);
        row.modified = g;
        let after: Vec<Option<Ref>> = pairs
            .iter()
            .map(|p| ref_of(row.fields.get(p.field)))
            .collect();
        let new_uuid = row.fields.get("uuid").cloned();
        if old_uuid != new_uuid {
            if let Some(u) = old_uuid.as_ref().and_then(Value::as_str) {
                table.by_uuid.remove(u);
            }
            if let Some(u) = new_uuid.as_ref().and_then(Value::as_str) {
                table.by_uuid.insert(u.to_owned(), r.clone());
            }
        }
        self.log(cname, r, ChangeOp::Mod);
        for ((p, b), a) in pairs.iter().zip(before).zip(after) {
            if b != a {
                if let Some(b) = b {
                    self.link(p, &b, r, Link::Remove, g);
                }
                if let Some(a) = a {
                    self.link(p, &a, r, Link::Add, g);
                }
            }
        }
        Ok(out)
    }

    /// A no-op modification at a new generation (for `event.inject`); returns that generation.
    pub fn touch(&mut self, class: &str, r: &Ref) -> Result<u64, XapiError> {
        self.update(class, r, |_| ())?;
        let cname = Self::canon(class).unwrap_or(class);
        Ok(if cname == MESSAGE_CLASS {
            self.message_generation
        } else {
            self.generation
        })
    }

    /// Delete a row (tombstone + inverse relations). `HANDLE_INVALID` if absent.
    pub fn destroy(&mut self, class: &str, r: &Ref) -> Result<(), XapiError> {
        let cname = Self::canon(class).ok_or_else(|| handle_invalid(class, r))?;
        let table = self
            .tables
            .get_mut(cname)
            .ok_or_else(|| handle_invalid(cname, r))?;
        let row = table
            .rows
            .remove(r)
            .ok_or_else(|| handle_invalid(cname, r))?;
        if let Some(u) = row.fields.get("uuid").and_then(Value::as_str) {
            table.by_uuid.remove(u);
        }
        self.class_index.remove(r);
        let g = self.bump(cname);
        let t = Tombstone {
            class: cname,
            r: r.clone(),
            created: row.created,
            deleted: g,
        };
        if cname == MESSAGE_CLASS {
            self.message_tombstones.push_back(t);
        } else if !NO_EVENT_CLASSES.contains(&cname) {
            self.tombstones.push_back(t);
        }
        self.trim_tombstones();
        self.log(cname, r, ChangeOp::Del);
        for p in pairs_of(cname).collect::<Vec<_>>() {
            if let Some(t) = ref_of(row.fields.get(p.field)) {
                self.link(p, &t, r, Link::Remove, g);
            }
        }
        Ok(())
    }

    /// The ref of the object of `class` with this uuid.
    pub fn find_by_uuid(&self, class: &str, uuid: &str) -> Option<Ref> {
        self.table(class)?.by_uuid.get(uuid).cloned()
    }

    /// Any object with this uuid: (class, ref).
    pub fn find_by_uuid_any(&self, uuid: &str) -> Option<(&'static str, Ref)> {
        self.tables
            .iter()
            .find_map(|(c, t)| t.by_uuid.get(uuid).map(|r| (*c, r.clone())))
    }

    /// The class of an existing ref.
    pub fn class_of(&self, r: &Ref) -> Option<&'static str> {
        self.class_index.get(r).copied()
    }

    /// Every (ref, record) of a class (empty for unknown classes).
    pub fn all<'a>(&'a self, class: &str) -> impl Iterator<Item = (&'a Ref, &'a Record)> + 'a {
        self.table(class)
            .into_iter()
            .flat_map(|t| t.rows.iter().map(|(r, row)| (r, &row.fields)))
    }

    /// Every (ref, row) of a class, with generations.
    pub fn rows<'a>(&'a self, class: &str) -> impl Iterator<Item = (&'a Ref, &'a Row)> + 'a {
        self.table(class).into_iter().flat_map(|t| t.rows.iter())
    }

    /// Refs of a class matching a predicate.
    pub fn find(&self, class: &str, mut pred: impl FnMut(&Record) -> bool) -> Vec<Ref> {
        self.all(class)
            .filter(|(_, rec)| pred(rec))
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Every ref of a class.
    pub fn refs(&self, class: &str) -> Vec<Ref> {
        self.all(class).map(|(r, _)| r.clone()).collect()
    }

    /// Number of rows of a class.
    pub fn count(&self, class: &str) -> usize {
        self.table(class).map_or(0, |t| t.rows.len())
    }

    /// Total number of rows.
    pub fn total(&self) -> usize {
        self.tables.values().map(|t| t.rows.len()).sum()
    }

    /// (class, rows) for every DB table (all classes but [`NON_TABLE_CLASSES`]).
    pub fn table_counts(&self) -> Vec<(&'static str, usize)> {
        schema::classes()
            .iter()
            .filter(|c| !NON_TABLE_CLASSES.contains(&c.name))
            .map(|c| (c.name, self.count(c.name)))
            .collect()
    }
}

/// A non-null ref held in a value, if any.
pub fn ref_of(v: Option<&Value>) -> Option<Ref> {
    let s = v?.as_str()?;
    let r = Ref::from(s);
    (!r.is_null()).then_some(r)
}

/// Shorthand to build a record: `rec([("name_label", json!("x"))])`.
pub fn rec<K: Into<String>>(items: impl IntoIterator<Item = (K, Value)>) -> Record {
    items.into_iter().map(|(k, v)| (k.into(), v)).collect()
}

/// The record of a class with every field at its default (computed once per class).
pub fn default_record(spec: &ClassSpec) -> &'static Record {
    static CACHE: OnceLock<HashMap<&'static str, Record>> = OnceLock::new();
    static EMPTY: OnceLock<Record> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        schema::classes()
            .iter()
            .map(|c| {
                (
                    c.name,
                    c.fields
                        .iter()
                        .map(|f| (f.name.to_owned(), schema::default_value(f)))
                        .collect(),
                )
            })
            .collect()
    });
    cache
        .get(spec.name)
        .unwrap_or_else(|| EMPTY.get_or_init(Record::new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn db_with_vm() -> (Db, Ref) {
        let mut db = Db::new();
        let vm = db
            .insert("VM", rec([("name_label", json!("vm1"))]))
            .unwrap();
        (db, vm)
    }

    #[test]
    fn create_fills_all_fields_and_uuid() {
        let (db, vm) = db_with_vm();
        let r = db.get("VM", &vm).unwrap();
        let spec = schema::class("VM").unwrap();
        assert_eq!(r.len(), spec.fields.len());
        assert!(!r["uuid"].as_str().unwrap().is_empty());
        assert_eq!(
            db.find_by_uuid("vm", r["uuid"].as_str().unwrap()),
            Some(vm.clone())
        );
        assert_eq!(db.class_of(&vm), Some("VM"));
    }

    #[test]
    fn inverse_sets_follow_single_refs() {
        let (mut db, vm) = db_with_vm();
        let vm2 = db
            .insert("VM", rec([("name_label", json!("vm2"))]))
            .unwrap();
        let g0 = db.generation();
        let vbd = db.insert("VBD", rec([("VM", json!(vm.0))])).unwrap();
        assert_eq!(db.generation(), g0 + 1);
        assert_eq!(db.field("VM", &vm, "VBDs").unwrap(), &json!([vbd.0]));
        assert_eq!(db.row("VM", &vm).unwrap().modified, g0 + 1);
        db.set_field("VBD", &vbd, "VM", json!(vm2.0)).unwrap();
        assert_eq!(db.field("VM", &vm, "VBDs").unwrap(), &json!([]));
        assert_eq!(db.field("VM", &vm2, "VBDs").unwrap(), &json!([vbd.0]));
        db.destroy("VBD", &vbd).unwrap();
        assert_eq!(db.field("VM", &vm2, "VBDs").unwrap(), &json!([]));
        assert!(db.tombstones().any(|t| t.r == vbd));
    }

    #[test]
    fn explicit_pairs_resolve() {
        let p = inverse_pairs();
        assert!(p
            .iter()
            .any(|p| p.class == "VM" && p.field == "resident_on" && p.set_field == "resident_VMs"));
        assert!(p
            .iter()
            .any(|p| p.class == "VDI" && p.field == "SR" && p.set_field == "VDIs"));
        assert!(!p.iter().any(|p| p.class == "VM" && p.field == "affinity"));
    }

    #[test]
    fn missing_rows_are_handle_invalid() {
        let mut db = Db::new();
        let r = Ref::from("OpaqueRef:nope");
        let e = db.record("vm", &r).unwrap_err();
        assert_eq!(
            e.to_description(),
            vec!["HANDLE_INVALID", "VM", "OpaqueRef:nope"]
        );
        assert_eq!(db.destroy("VM", &r).unwrap_err().code, "HANDLE_INVALID");
        assert_eq!(
            db.set_field("VM", &r, "name_label", json!("x"))
                .unwrap_err()
                .code,
            "HANDLE_INVALID"
        );
    }

    #[test]
    fn duplicate_uuid_rejected() {
        let mut db = Db::new();
        db.insert("SR", rec([("uuid", json!("u1"))])).unwrap();
        let e = db.insert("SR", rec([("uuid", json!("u1"))])).unwrap_err();
        assert_eq!(e.code, "DB_UNIQUENESS_CONSTRAINT_VIOLATION");
    }

    #[test]
    fn tombstone_limit_sets_forgotten() {
        let mut db = Db::new();
        db.set_tombstone_limit(1);
        let a = db.insert("SR", Record::new()).unwrap();
        let b = db.insert("SR", Record::new()).unwrap();
        db.destroy("SR", &a).unwrap();
        let g = db.generation();
        db.destroy("SR", &b).unwrap();
        assert_eq!(db.forgotten_upto(), g);
    }

    #[test]
    fn messages_use_their_own_generation() {
        let mut db = Db::new();
        let g = db.generation();
        db.insert("message", rec([("name", json!("X"))])).unwrap();
        assert_eq!(db.generation(), g);
        assert_eq!(db.message_generation(), 1);
    }

    #[test]
    fn changelog_records_inverse_mods() {
        let (mut db, vm) = db_with_vm();
        let seq = db.change_seq();
        db.insert("VIF", rec([("VM", json!(vm.0))])).unwrap();
        let (ch, lost) = db.changes_after(seq);
        assert!(!lost);
        assert_eq!(ch.len(), 2);
        assert_eq!(ch[1].op, ChangeOp::Mod);
        assert_eq!(ch[1].r, vm);
    }
}
