//! Built-in `task.create` / `task.cancel` / `task.destroy` (the status setters are generic).

use serde_json::json;
use xapi_types::{Ref, Value, XapiError};

use crate::rpc::{Ctx, Registry};
use crate::state::str_field;

pub(crate) fn register(reg: &mut Registry) {
    reg.register("task.create", create);
    reg.register("task.cancel", cancel);
    reg.register("task.destroy", destroy);
}

fn as_ref(v: Option<&Value>) -> Ref {
    Ref::from(v.and_then(Value::as_str).unwrap_or_default())
}

/// `task.create(label, description)`: a pending, non-cancellable task on the calling host.
fn create(ctx: &Ctx, params: Vec<Value>) -> Result<Value, XapiError> {
    let label = params.first().and_then(Value::as_str).unwrap_or_default();
    let desc = params.get(1).and_then(Value::as_str).unwrap_or_default();
    Ok(Value::String(
        ctx.pool.create_task(label, desc, &ctx.host, false).0,
    ))
}

/// `task.cancel(task)`: pending + cancellable → `cancelling` (the running operation then ends `cancelled`);
/// otherwise `OPERATION_NOT_ALLOWED`.
fn cancel(ctx: &Ctx, params: Vec<Value>) -> Result<Value, XapiError> {
    let t = as_ref(params.first());
    ctx.pool.write(|db| {
        let rec = db.record("task", &t)?;
        let cancellable = rec
            .get("allowed_operations")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "cancel"));
        if str_field(db, "task", &t, "status") != "pending" || !cancellable {
            return Err(XapiError::new(
                "OPERATION_NOT_ALLOWED",
                ["task is not cancellable"],
            ));
        }
        db.update("task", &t, |r| {
            r.insert("status".into(), json!("cancelling"));
            r.insert("allowed_operations".into(), json!([]));
        })?;
        Ok(Value::from(""))
    })
}

/// `task.destroy(task)`.
fn destroy(ctx: &Ctx, params: Vec<Value>) -> Result<Value, XapiError> {
    let t = as_ref(params.first());
    ctx.pool
        .write(|db| db.destroy("task", &t))
        .map(|_| Value::from(""))
}
