//! `event.from`: typed batches of object changes, and mapping of lower-case event classes to datamodel names.

use std::collections::HashMap;

use serde_json::Value;
use xapi_types::{RawRecord, Ref};

use crate::client::CallFlags;
use crate::watch::FieldFilter;
use crate::{Client, Error, Result};

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Add,
    Mod,
    Del,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        match s {
            "add" => Some(Op::Add),
            "mod" => Some(Op::Mod),
            "del" => Some(Op::Del),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Mod => "mod",
            Op::Del => "del",
        }
    }
}

/// One object's change. `snapshot` is the full record after the change (`None` for `Del`).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectChange {
    /// Datamodel spelling (`VM`, `host`, `VM_guest_metrics`), mapped back from the lower-case event class.
    pub class: String,
    pub obj_ref: Ref,
    pub op: Op,
    pub snapshot: Option<RawRecord>,
}

/// A decoded `event.from` result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventBatch {
    pub changes: Vec<ObjectChange>,
    /// Row counts of every table, keys lower-case (`vm`, `task`).
    pub valid_ref_counts: HashMap<String, i64>,
    /// Pass back to the next `event.from`.
    pub token: String,
}

/// Maps lower-case event classes to datamodel names: first the names the caller subscribed with, then the schema.
#[derive(Debug, Clone, Default)]
pub struct ClassNames {
    by_lower: HashMap<String, String>,
}

impl ClassNames {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        ClassNames {
            by_lower: names
                .into_iter()
                .map(|n| (n.to_ascii_lowercase(), n.to_owned()))
                .collect(),
        }
    }

    pub fn resolve(&self, raw: String) -> String {
        if let Some(n) = self.by_lower.get(&raw) {
            return n.clone();
        }
        if let Some(c) = xapi_types::schema::class(&raw) {
            return c.name.to_owned();
        }
        raw
    }
}

/// Decode an `event.from` result by move.
pub fn parse_event_batch(v: Value, names: &ClassNames) -> Result<EventBatch> {
    parse_event_batch_retained(v, names, None)
}

/// [`parse_event_batch`] keeping only the snapshot fields `fields` accepts.
pub(crate) fn parse_event_batch_retained(
    v: Value,
    names: &ClassNames,
    fields: Option<&FieldFilter>,
) -> Result<EventBatch> {
    let Value::Object(mut m) = v else {
        return Err(Error::structure("event.from did not return a struct"));
    };
    let token = match m.remove("token") {
        Some(Value::String(t)) => t,
        _ => return Err(Error::structure("event.from result has no token")),
    };
    let valid_ref_counts = match m.remove("valid_ref_counts") {
        Some(Value::Object(c)) => c
            .into_iter()
            .filter_map(|(k, v)| {
                let n = v
                    .as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))?;
                Some((k, n))
            })
            .collect(),
        _ => HashMap::new(),
    };
    let events = match m.remove("events") {
        Some(Value::Array(a)) => a,
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        None => Vec::new(),
        Some(_) => return Err(Error::structure("event.from events is not an array")),
    };
    let mut changes = Vec::with_capacity(events.len());
    for ev in events {
        let Value::Object(mut ev) = ev else {
            return Err(Error::structure("event record is not a struct"));
        };
        let (Some(Value::String(class)), Some(Value::String(r)), Some(Value::String(op))) =
            (ev.remove("class"), ev.remove("ref"), ev.remove("operation"))
        else {
            return Err(Error::structure(
                "event record lacks class, ref or operation",
            ));
        };
        let Some(op) = Op::parse(&op) else {
            tracing::warn!(op, "ignoring event with unknown operation");
            continue;
        };
        let class = names.resolve(class);
        let snapshot = match (op, ev.remove("snapshot")) {
            (Op::Del, _) => None,
            (_, Some(Value::Object(mut s))) => {
                if let Some(f) = fields {
                    s.retain(|k, _| f.keeps(&class, k));
                }
                Some(RawRecord::from_map(&s))
            }
            (_, _) => {
                return Err(Error::structure(format!(
                    "{} event on {r} has no snapshot",
                    op.as_str()
                )))
            }
        };
        changes.push(ObjectChange {
            class,
            obj_ref: Ref(r),
            op,
            snapshot,
        });
    }
    Ok(EventBatch {
        changes,
        valid_ref_counts,
        token,
    })
}

/// Seconds added to the server-side `event.from` timeout for the client-side one (as XO: 60.1 s → 66 s).
pub(crate) const EVENT_TIMEOUT_MARGIN: f64 = 6.0;

impl Client {
    /// `event.from(classes, token, timeout_secs)`: blocks until something changed or the timeout passed.
    /// Not counted against `max_concurrency`; the client-side timeout is `timeout_secs` + 6 s.
    pub async fn event_from(
        &self,
        classes: &[String],
        token: &str,
        timeout_secs: f64,
    ) -> Result<EventBatch> {
        let names = ClassNames::new(classes.iter().map(String::as_str));
        let v = self
            .event_from_raw(classes, token, timeout_secs, true)
            .await?;
        parse_event_batch(v, &names)
    }

    pub(crate) async fn event_from_raw(
        &self,
        classes: &[String],
        token: &str,
        timeout_secs: f64,
        relogin: bool,
    ) -> Result<Value> {
        let timeout_secs = if timeout_secs.is_finite() && timeout_secs >= 0.0 {
            timeout_secs
        } else {
            60.0
        };
        let client_timeout =
            std::time::Duration::from_secs_f64(timeout_secs + EVENT_TIMEOUT_MARGIN);
        let params = vec![
            Value::Array(classes.iter().map(|c| Value::String(c.clone())).collect()),
            Value::String(token.to_owned()),
            Value::from(timeout_secs),
        ];
        let flags = CallFlags {
            timeout: Some(client_timeout),
            limited: false,
            relogin,
        };
        self.call_with("event.from", params, flags).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_batch_by_move() {
        let v = json!({
            "events": [
                {"id": "5", "timestamp": "0.0", "class": "vm", "operation": "mod", "ref": "OpaqueRef:a",
                 "snapshot": {"uuid": "u", "power_state": "Running"}},
                {"id": "6", "timestamp": "0.0", "class": "vm_guest_metrics", "operation": "del", "ref": "OpaqueRef:b"},
                {"id": "7", "timestamp": "0.0", "class": "vm", "operation": "weird", "ref": "OpaqueRef:c"}
            ],
            "valid_ref_counts": {"vm": 3, "task": "2"},
            "token": "00000000000000000007,00000000000000000000"
        });
        let names = ClassNames::new(["VM", "VM_guest_metrics"]);
        let b = parse_event_batch(v, &names).unwrap();
        assert_eq!(b.token, "00000000000000000007,00000000000000000000");
        assert_eq!(b.valid_ref_counts["task"], 2);
        assert_eq!(b.changes.len(), 2);
        assert_eq!(b.changes[0].class, "VM");
        assert_eq!(b.changes[0].op, Op::Mod);
        assert_eq!(
            b.changes[0]
                .snapshot
                .as_ref()
                .unwrap()
                .get_str("power_state")
                .unwrap(),
            "Running"
        );
        assert_eq!(b.changes[1].class, "VM_guest_metrics");
        assert_eq!(b.changes[1].snapshot, None);
    }

    #[test]
    fn rejects_malformed_batches() {
        let names = ClassNames::default();
        assert!(matches!(
            parse_event_batch(json!([]), &names),
            Err(Error::Codec(_))
        ));
        assert!(matches!(
            parse_event_batch(json!({"events": []}), &names),
            Err(Error::Codec(_))
        ));
        let no_snap =
            json!({"events": [{"class": "vm", "operation": "add", "ref": "r"}], "token": "t"});
        assert!(matches!(
            parse_event_batch(no_snap, &names),
            Err(Error::Codec(_))
        ));
        let no_ref = json!({"events": [{"class": "vm", "operation": "add"}], "token": "t"});
        assert!(matches!(
            parse_event_batch(no_ref, &names),
            Err(Error::Codec(_))
        ));
    }
}
