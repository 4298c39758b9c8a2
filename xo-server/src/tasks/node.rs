//! One task log entry (a root task or a sub-task) and its JSON shape, as XO's `@vates/task/combineEvents`
//! consolidates it: `{id, properties, start, status, end?, result?, infos?, warnings?, tasks?, abortionRequestedAt?}`.

use serde_json::{Map, Value};

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Running.
    Pending,
    /// Ended normally.
    Success,
    /// Ended with an error.
    Failure,
    /// Ended after an abort was requested.
    Aborted,
    /// Never ended (its owner went away, or its root ended first).
    Interrupted,
}

impl Status {
    /// XO's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Success => "success",
            Status::Failure => "failure",
            Status::Aborted => "aborted",
            Status::Interrupted => "interrupted",
        }
    }
}

/// A task and its sub-tasks.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) id: String,
    pub(crate) properties: Map<String, Value>,
    pub(crate) start: i64,
    pub(crate) end: Option<i64>,
    pub(crate) status: Status,
    pub(crate) result: Option<Value>,
    pub(crate) infos: Vec<Value>,
    pub(crate) warnings: Vec<Value>,
    pub(crate) tasks: Vec<Node>,
    pub(crate) abortion_requested_at: Option<i64>,
}

impl Node {
    pub(crate) fn new(id: String, properties: Map<String, Value>, start: i64) -> Node {
        Node {
            id,
            properties,
            start,
            end: None,
            status: Status::Pending,
            result: None,
            infos: Vec::new(),
            warnings: Vec::new(),
            tasks: Vec::new(),
            abortion_requested_at: None,
        }
    }

    /// The descendant at `path` (indices into `tasks`), or self for an empty path.
    pub(crate) fn at_mut(&mut self, path: &[usize]) -> Option<&mut Node> {
        let mut n = self;
        for &i in path {
            n = n.tasks.get_mut(i)?;
        }
        Some(n)
    }

    /// Ends every still pending descendant as `interrupted` at `now`.
    pub(crate) fn interrupt_pending_children(&mut self, now: i64) {
        for t in &mut self.tasks {
            if t.status == Status::Pending {
                t.status = Status::Interrupted;
                t.end = Some(now);
            }
            t.interrupt_pending_children(now);
        }
    }

    /// The JSON log entry.
    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), Value::String(self.id.clone()));
        m.insert("properties".into(), Value::Object(self.properties.clone()));
        m.insert("start".into(), self.start.into());
        m.insert("status".into(), self.status.as_str().into());
        if let Some(end) = self.end {
            m.insert("end".into(), end.into());
        }
        if let Some(r) = &self.result {
            m.insert("result".into(), r.clone());
        }
        if !self.infos.is_empty() {
            m.insert("infos".into(), Value::Array(self.infos.clone()));
        }
        if !self.warnings.is_empty() {
            m.insert("warnings".into(), Value::Array(self.warnings.clone()));
        }
        if !self.tasks.is_empty() {
            m.insert(
                "tasks".into(),
                Value::Array(self.tasks.iter().map(Node::to_json).collect()),
            );
        }
        if let Some(at) = self.abortion_requested_at {
            m.insert("abortionRequestedAt".into(), at.into());
        }
        Value::Object(m)
    }
}
