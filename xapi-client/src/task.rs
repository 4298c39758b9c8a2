//! Async calls: `Async.<method>` → task ref, awaited through task events (see [`crate::task_hub`]), result parsed.

use serde_json::{Map, Value};
use xapi_types::{Ref, XapiError};

use crate::client::CallFlags;
use crate::{rpc, Client, Error, Result};

fn status_of(rec: &Map<String, Value>) -> &str {
    rec.get("status")
        .and_then(Value::as_str)
        .unwrap_or("pending")
}

/// The outcome of a finished task record: its parsed `result` on success (typed by `method`'s result type when the
/// schema knows it), its `error_info` as [`Error::Xapi`] on failure or cancellation.
pub fn task_outcome(method: Option<&str>, rec: &Map<String, Value>) -> Result<Value> {
    match status_of(rec) {
        "success" => rpc::parse_task_result(
            method,
            rec.get("result").and_then(Value::as_str).unwrap_or(""),
        ),
        "failure" | "cancelled" => {
            let desc: Vec<String> = match rec.get("error_info") {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let desc = if desc.is_empty() && status_of(rec) == "cancelled" {
                vec!["TASK_CANCELLED".to_owned()]
            } else {
                desc
            };
            Err(Error::Xapi(XapiError::from_description(desc)))
        }
        other => Err(Error::structure(format!(
            "task is not finished (status {other})"
        ))),
    }
}

impl Client {
    /// Start `Async.<method>` and return the task ref (to await with [`Client::wait_task`] or cancel).
    pub async fn start_async(&self, method: &str, params: Vec<Value>) -> Result<Ref> {
        match self.call(&format!("Async.{method}"), params).await? {
            Value::String(s) => Ok(Ref(s)),
            _ => Err(Error::structure(format!(
                "Async.{method} did not return a task ref"
            ))),
        }
    }

    /// Run `method` as an async task, wait for it through task events, destroy the task and return its result
    /// (parsed from the task's XML-RPC `result` text, typed by `method`'s result type).
    pub async fn call_async(&self, method: &str, params: Vec<Value>) -> Result<Value> {
        let task = self.start_async(method, params).await?;
        let rec = self.wait_task(&task).await;
        if let Err(e) = self
            .call("task.destroy", vec![Value::String(task.0.clone())])
            .await
        {
            tracing::debug!(%task, "task.destroy failed: {e}");
        }
        task_outcome(Some(method), &rec?)
    }

    /// `task.cancel`: the operation then fails with `TASK_CANCELLED` (non-cancellable: `OPERATION_NOT_ALLOWED`).
    pub async fn cancel_task(&self, task: &Ref) -> Result<()> {
        self.call_with(
            "task.cancel",
            vec![Value::String(task.0.clone())],
            CallFlags::default(),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn failure_and_cancel_outcomes() {
        let r = rec(
            json!({"status": "failure", "error_info": ["VM_BAD_POWER_STATE", "OpaqueRef:x", "halted", "running"]}),
        );
        match task_outcome(None, &r) {
            Err(Error::Xapi(e)) => {
                assert_eq!(e.code, "VM_BAD_POWER_STATE");
                assert_eq!(e.params.len(), 3);
            }
            other => panic!("unexpected {other:?}"),
        }
        let r = rec(json!({"status": "cancelled", "error_info": []}));
        assert_eq!(
            task_outcome(None, &r).unwrap_err().xapi_code(),
            Some("TASK_CANCELLED")
        );
        let r = rec(json!({"status": "pending"}));
        assert!(matches!(task_outcome(None, &r), Err(Error::Codec(_))));
    }

    #[test]
    fn void_success_outcome() {
        let r = rec(json!({"status": "success", "result": ""}));
        assert_eq!(task_outcome(Some("VM.start"), &r).unwrap(), json!(""));
    }
}
