//! The event system: `event.from` / `event.inject` / `event.get_current_id` and the legacy
//! `event.register` / `event.unregister` / `event.next` (spec §3).
//!
//! Tokens are `"%020d,%020d"` = (DB generation, message generation). `event.from` coalesces per object from the
//! row generations and tombstones kept by [`crate::db::Db`]; the legacy calls read the DB's bounded change log.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Map};
use xapi_types::schema;
use xapi_types::{Ref, Value, XapiError};

use crate::db::{ChangeOp, Db, MESSAGE_CLASS, NON_TABLE_CLASSES, NO_EVENT_CLASSES};
use crate::rpc::{Ctx, Registry};
use crate::state::LegacyRegistration;

pub(crate) fn register(reg: &mut Registry) {
    reg.register("event.from", from);
    reg.mark_streaming("event.from");
    reg.register("event.inject", inject);
    reg.register("event.get_current_id", get_current_id);
    reg.register("event.register", legacy_register);
    reg.register("event.unregister", legacy_unregister);
    reg.register("event.next", legacy_next);
}

/// Longest wait of a blocking call (XAPI caps non-finite timeouts at 24 h).
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// A parsed subscription entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sub {
    All,
    /// Lower-case class name.
    Class(String),
    /// Lower-case class name and one object.
    Object(String, Ref),
}

/// Parse `event.from` / `event.register` class entries.
pub fn parse_subs(entries: &[Value]) -> Result<Vec<Sub>, XapiError> {
    entries
        .iter()
        .map(|v| {
            let s = v.as_str().unwrap_or_default();
            let bad = || XapiError::new("EVENT_SUBSCRIPTION_PARSE_FAILURE", [s]);
            if s == "*" {
                return Ok(Sub::All);
            }
            match s.split_once('/') {
                None if !s.is_empty() && !s.contains(char::is_whitespace) => {
                    Ok(Sub::Class(s.to_ascii_lowercase()))
                }
                Some((c, r)) if !c.is_empty() && !r.is_empty() && !r.contains('/') => {
                    Ok(Sub::Object(c.to_ascii_lowercase(), Ref::from(r)))
                }
                _ => Err(bad()),
            }
        })
        .collect()
}

fn subscribed(subs: &[Sub], lower: &str) -> bool {
    subs.iter().any(|s| match s {
        Sub::All => true,
        Sub::Class(c) | Sub::Object(c, _) => c == lower,
    })
}

fn wants(subs: &[Sub], lower: &str, r: &Ref) -> bool {
    subs.iter().any(|s| match s {
        Sub::All => true,
        Sub::Class(c) => c == lower,
        Sub::Object(c, o) => c == lower && o == r,
    })
}

/// Parse a token: `""` → (0, 0); `"a,b"`; a bare integer (legacy ids) → (a, 0).
pub fn parse_token(t: &str) -> Result<(u64, u64), XapiError> {
    if t.is_empty() {
        return Ok((0, 0));
    }
    let bad = || XapiError::new("EVENT_FROM_TOKEN_PARSE_FAILURE", [t]);
    match t.split_once(',') {
        Some((a, b)) => Ok((
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        )),
        None => Ok((t.trim().parse().map_err(|_| bad())?, 0)),
    }
}

/// Format a token.
pub fn format_token(g: u64, m: u64) -> String {
    format!("{g:020},{m:020}")
}

fn event(id: u64, class: &str, op: &str, r: &Ref, snapshot: Option<Value>) -> Value {
    let mut e = Map::new();
    e.insert("id".into(), json!(id.to_string()));
    e.insert("timestamp".into(), json!("0.0"));
    e.insert("class".into(), json!(class));
    e.insert("operation".into(), json!(op));
    e.insert("ref".into(), json!(r.0));
    if let Some(s) = snapshot {
        e.insert("snapshot".into(), s);
    }
    Value::Object(e)
}

/// One coalesced event whose snapshot is read from the DB when it is encoded.
#[derive(Debug, Clone)]
pub struct EventStub {
    /// Generation of the change (`0` for messages).
    pub id: u64,
    pub class: &'static str,
    /// `add`, `mod` or `del`.
    pub op: &'static str,
    pub r: Ref,
}

impl EventStub {
    /// The full event record (`snapshot` = the row now; absent for `del`). `None` when the row vanished since
    /// the stub was made (its `del` comes with the next token).
    pub fn to_event(&self, db: &Db) -> Option<Value> {
        let lower = self.class.to_ascii_lowercase();
        if self.op == "del" {
            return Some(event(self.id, &lower, "del", &self.r, None));
        }
        let row = db.get(self.class, &self.r)?;
        Some(event(
            self.id,
            &lower,
            self.op,
            &self.r,
            Some(Value::Object(row.clone())),
        ))
    }
}

/// An `event.from` answer before its snapshots are filled in.
#[derive(Debug, Clone)]
pub struct PendingBatch {
    pub stubs: Vec<EventStub>,
    pub valid_ref_counts: Value,
    pub token: String,
}

impl PendingBatch {
    /// The batch as one value (snapshots cloned from the DB).
    pub fn materialise(&self, db: &Db) -> Value {
        let events = self.stubs.iter().filter_map(|s| s.to_event(db)).collect();
        let mut batch = Map::new();
        batch.insert("events".into(), Value::Array(events));
        batch.insert("valid_ref_counts".into(), self.valid_ref_counts.clone());
        batch.insert("token".into(), Value::String(self.token.clone()));
        Value::Object(batch)
    }
}

/// The coalesced changes since `token` for `subs`, in XAPI's order (messages, adds, mods, dels).
pub fn collect_stubs(db: &Db, subs: &[Sub], token: (u64, u64)) -> Vec<EventStub> {
    let (g, m) = token;
    let mut msgs = Vec::new();
    let mut adds = Vec::new();
    let mut mods = Vec::new();
    let mut dels = Vec::new();
    for c in schema::classes() {
        let lower = c.name.to_ascii_lowercase();
        if NO_EVENT_CLASSES.contains(&c.name) || !subscribed(subs, &lower) {
            continue;
        }
        let is_msg = c.name == MESSAGE_CLASS;
        let since = if is_msg { m } else { g };
        for (r, row) in db.rows(c.name) {
            if row.modified <= since || !wants(subs, &lower, r) {
                continue;
            }
            let stub = |id, op| EventStub {
                id,
                class: c.name,
                op,
                r: r.clone(),
            };
            if is_msg {
                if row.created > since {
                    msgs.push(stub(0, "add"));
                }
            } else if row.created > since {
                adds.push(stub(row.modified, "add"));
            } else {
                mods.push(stub(row.modified, "mod"));
            }
        }
    }
    for t in db.tombstones().chain(db.message_tombstones()) {
        let is_msg = t.class == MESSAGE_CLASS;
        let since = if is_msg { m } else { g };
        let lower = t.class.to_ascii_lowercase();
        if t.deleted > since && t.created <= since && wants(subs, &lower, &t.r) {
            let stub = EventStub {
                id: if is_msg { 0 } else { t.deleted },
                class: t.class,
                op: "del",
                r: t.r.clone(),
            };
            if is_msg {
                msgs.push(stub)
            } else {
                dels.push(stub)
            }
        }
    }
    msgs.extend(adds);
    msgs.extend(mods);
    msgs.extend(dels);
    msgs
}

/// The coalesced events since `token` for `subs`, with snapshots.
pub fn collect(db: &Db, subs: &[Sub], token: (u64, u64)) -> Vec<Value> {
    collect_stubs(db, subs, token)
        .iter()
        .filter_map(|s| s.to_event(db))
        .collect()
}

/// `valid_ref_counts`: rows of every DB table, lower-case keys.
pub fn valid_ref_counts(db: &Db) -> Value {
    let mut m = Map::new();
    for (c, n) in db.table_counts() {
        if !NON_TABLE_CLASSES.contains(&c) {
            m.insert(c.to_ascii_lowercase(), json!(n));
        }
    }
    Value::Object(m)
}

fn session_invalid(s: &Ref) -> XapiError {
    XapiError::new("SESSION_INVALID", [s.0.clone()])
}

/// `event.from(classes, token, timeout)`.
fn from(ctx: &Ctx, params: Vec<Value>) -> Result<Value, XapiError> {
    let pending = from_pending(ctx, params)?;
    Ok(ctx.pool.read(|db| pending.materialise(db)))
}

/// `event.from` up to the point where snapshots are needed: the blocking wait, the coalesced stubs, the counts
/// and the new token. The server fills in snapshots while encoding (no copy of the whole batch).
pub(crate) fn from_pending(ctx: &Ctx, params: Vec<Value>) -> Result<PendingBatch, XapiError> {
    let session = ctx.session.clone().unwrap_or_else(Ref::null);
    let subs = parse_subs(
        params
            .first()
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default(),
    )?;
    let token = parse_token(params.get(1).and_then(Value::as_str).unwrap_or_default())?;
    let timeout = params
        .get(2)
        .and_then(Value::as_f64)
        .unwrap_or(f64::INFINITY);
    let wait = if timeout.is_finite() {
        Duration::from_secs_f64(timeout.max(0.0)).min(MAX_WAIT)
    } else {
        MAX_WAIT
    };
    let deadline = Instant::now() + wait;
    let pool = &ctx.pool;
    let batching = pool.config.event_batching;
    let only_tasks = !subs.is_empty()
        && subs
            .iter()
            .all(|s| matches!(s, Sub::Class(c) | Sub::Object(c, _) if c == "task"));
    if !only_tasks && !batching.is_zero() {
        std::thread::sleep(batching.min(wait));
    }
    loop {
        {
            let mut db = pool.lock();
            loop {
                if !db.exists("session", &session) {
                    return Err(session_invalid(&session));
                }
                if (token.0 > 0 && token.0 < db.forgotten_upto())
                    || (token.1 > 0 && token.1 < db.forgotten_messages_upto())
                {
                    return Err(XapiError::code("EVENTS_LOST"));
                }
                let stubs = collect_stubs(&db, &subs, token);
                let now = Instant::now();
                if !stubs.is_empty() || now >= deadline || pool.is_shutdown() {
                    return Ok(PendingBatch {
                        stubs,
                        valid_ref_counts: valid_ref_counts(&db),
                        token: format_token(db.generation(), db.message_generation()),
                    });
                }
                let seen = (db.generation(), db.message_generation());
                pool.wait_until(&mut db, deadline);
                if (db.generation(), db.message_generation()) != seen {
                    break;
                }
            }
        }
        // Something changed: let a burst coalesce before looking again.
        if !batching.is_zero() {
            std::thread::sleep(batching.min(deadline.saturating_duration_since(Instant::now())));
        }
    }
}

/// `event.inject(class, ref)`: a no-op `mod` at generation g; returns token (g-1, 0).
fn inject(ctx: &Ctx, params: Vec<Value>) -> Result<Value, XapiError> {
    let class = params
        .first()
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let r = Ref::from(params.get(1).and_then(Value::as_str).unwrap_or_default());
    let invalid = || XapiError::new("HANDLE_INVALID", [class.clone(), r.0.clone()]);
    let exact = schema::classes().iter().any(|c| c.name == class);
    if !exact {
        return Err(invalid());
    }
    let g = ctx.pool.write(|db| {
        if db.exists(&class, &r) {
            db.touch(&class, &r).ok()
        } else {
            None
        }
    });
    let g = g.ok_or_else(invalid)?;
    Ok(Value::String(format_token(g.saturating_sub(1), 0)))
}

/// `event.get_current_id()`: the legacy change counter.
fn get_current_id(ctx: &Ctx, _: Vec<Value>) -> Result<Value, XapiError> {
    Ok(json!(ctx.pool.read(|db| db.change_seq())))
}

fn classes_of(params: &[Value]) -> Result<HashSet<String>, XapiError> {
    let subs = parse_subs(
        params
            .first()
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default(),
    )?;
    Ok(subs
        .into_iter()
        .map(|s| match s {
            Sub::All => "*".to_owned(),
            Sub::Class(c) | Sub::Object(c, _) => c,
        })
        .collect())
}

/// `event.register(classes)`.
fn legacy_register(ctx: &Ctx, params: Vec<Value>) -> Result<Value, XapiError> {
    let session = ctx.session.clone().unwrap_or_else(Ref::null);
    let classes = classes_of(&params)?;
    let seq = ctx.pool.read(|db| db.change_seq());
    let mut legacy = ctx.pool.legacy.lock();
    let reg = legacy.entry(session).or_insert_with(|| LegacyRegistration {
        classes: HashSet::new(),
        cursor: seq,
    });
    reg.classes.extend(classes);
    Ok(Value::from(""))
}

/// `event.unregister(classes)`.
fn legacy_unregister(ctx: &Ctx, params: Vec<Value>) -> Result<Value, XapiError> {
    let session = ctx.session.clone().unwrap_or_else(Ref::null);
    let classes = classes_of(&params)?;
    if let Some(reg) = ctx.pool.legacy.lock().get_mut(&session) {
        reg.classes.retain(|c| !classes.contains(c));
    }
    Ok(Value::from(""))
}

/// `event.next()`: every change since the last call (uncoalesced), blocking until there is one.
fn legacy_next(ctx: &Ctx, _: Vec<Value>) -> Result<Value, XapiError> {
    let session = ctx.session.clone().unwrap_or_else(Ref::null);
    let pool = &ctx.pool;
    let limit = pool.config.legacy_queue_limit as u64;
    let deadline = Instant::now() + MAX_WAIT;
    let mut db = pool.lock();
    loop {
        if !db.exists("session", &session) {
            return Err(session_invalid(&session));
        }
        let Some(reg) = pool.legacy.lock().get(&session).cloned() else {
            return Err(XapiError::new(
                "SESSION_NOT_REGISTERED",
                [session.0.clone()],
            ));
        };
        let (changes, lost) = db.changes_after(reg.cursor);
        if lost || db.change_seq().saturating_sub(reg.cursor) > limit {
            if let Some(r) = pool.legacy.lock().get_mut(&session) {
                r.cursor = db.change_seq();
            }
            return Err(XapiError::code("EVENTS_LOST"));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut out = Vec::new();
        for ch in &changes {
            let lower = ch.class.to_ascii_lowercase();
            if !(reg.classes.contains("*") || reg.classes.contains(&lower)) {
                continue;
            }
            let snap = match ch.op {
                ChangeOp::Del => None,
                _ => db.get(ch.class, &ch.r).map(|r| Value::Object(r.clone())),
            };
            let mut ev = event(ch.id, &lower, ch.op.as_str(), &ch.r, snap);
            if let Value::Object(m) = &mut ev {
                m.insert("timestamp".into(), json!(format!("{now}.")));
            }
            out.push(ev);
        }
        if let Some(r) = pool.legacy.lock().get_mut(&session) {
            r.cursor = changes.last().map_or(reg.cursor, |c| c.id);
        }
        if !out.is_empty() {
            return Ok(Value::Array(out));
        }
        if pool.is_shutdown() {
            return Ok(Value::Array(out));
        }
        pool.wait_until(&mut db, deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert_eq!(parse_token("").unwrap(), (0, 0));
        assert_eq!(parse_token(&format_token(12, 3)).unwrap(), (12, 3));
        assert_eq!(
            format_token(12, 3),
            "00000000000000000012,00000000000000000003"
        );
        assert_eq!(parse_token("42").unwrap(), (42, 0));
        let e = parse_token("nope").unwrap_err();
        assert_eq!(
            e.to_description(),
            vec!["EVENT_FROM_TOKEN_PARSE_FAILURE", "nope"]
        );
        assert!(parse_token("1,x").is_err());
    }

    #[test]
    fn subscriptions() {
        let s = parse_subs(&[json!("*"), json!("VM"), json!("host/OpaqueRef:x")]).unwrap();
        assert_eq!(s[1], Sub::Class("vm".into()));
        assert_eq!(s[2], Sub::Object("host".into(), Ref::from("OpaqueRef:x")));
        for bad in ["", "vm/", "/x", "a/b/c"] {
            let e = parse_subs(&[json!(bad)]).unwrap_err();
            assert_eq!(e.code, "EVENT_SUBSCRIPTION_PARSE_FAILURE", "{bad}");
        }
    }
}
