//! `/rest/v0/tasks`: `GET` (list: hrefs, or objects with `fields=`; `filter=`, `limit=`, `ndjson=true`),
//! `DELETE` (forget every finished task), `GET /{id}` (the task; `?wait=result` answers once it ended, any other
//! `wait` value at its next change), `DELETE /{id}` (forget a finished task), `GET /{id}/actions`,
//! `POST /{id}/actions/abort` (202, `Location` of the task).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::header::LOCATION;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::auth::Admin;
use super::collection::CollectionQuery;
use super::{RestError, PREFIX};
use crate::app::App;

fn href(id: &str) -> String {
    format!("{PREFIX}/tasks/{id}")
}

fn is_pending(task: &Value) -> bool {
    task["status"] == "pending"
}

/// `GET /rest/v0/tasks`.
pub async fn list(
    State(app): State<App>,
    _admin: Admin,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, RestError> {
    let q = CollectionQuery::parse(&q)?;
    let tasks = app.tasks().list(|t| q.matches(t), q.limit);
    Ok(q.respond(tasks, |t| href(t["id"].as_str().unwrap_or_default())))
}

/// `DELETE /rest/v0/tasks`.
pub async fn clear(State(app): State<App>, _admin: Admin) -> Response {
    app.tasks().clear();
    (StatusCode::OK, "OK").into_response()
}

/// `GET /rest/v0/tasks/{id}[?wait=result|…]`.
pub async fn get_one(
    State(app): State<App>,
    _admin: Admin,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, RestError> {
    let Some(wait) = q.get("wait") else {
        return Ok(Json(app.tasks().get(&id)?).into_response());
    };
    let until_end = wait == "result";
    let (current, mut rx) = app.tasks().watch(&id)?;
    if until_end && !is_pending(&current) {
        return Ok(Json(current).into_response());
    }
    let mut last = current;
    loop {
        if rx.changed().await.is_err() {
            // the task left the log: answer with the last state seen
            return Ok(Json(last).into_response());
        }
        let Some(v) = rx.borrow_and_update().clone() else {
            continue;
        };
        if !until_end || !is_pending(&v) {
            return Ok(Json((*v).clone()).into_response());
        }
        last = (*v).clone();
    }
}

/// `DELETE /rest/v0/tasks/{id}`.
pub async fn delete(
    State(app): State<App>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, RestError> {
    app.tasks().delete(&id)?;
    Ok((StatusCode::OK, "OK").into_response())
}

/// `GET /rest/v0/tasks/{id}/actions`: `abort` while the task is pending.
pub async fn actions(
    State(app): State<App>,
    _admin: Admin,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, RestError> {
    let q = CollectionQuery::parse(&q)?;
    let task = app.tasks().get(&id)?;
    let actions = if is_pending(&task) {
        vec![serde_json::json!({"id": "abort"})]
    } else {
        Vec::new()
    };
    Ok(q.respond(actions, |a| {
        format!(
            "{}/actions/{}",
            href(&id),
            a["id"].as_str().unwrap_or_default()
        )
    }))
}

/// `POST /rest/v0/tasks/{id}/actions/abort`.
pub async fn abort(
    State(app): State<App>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, RestError> {
    app.tasks().abort(&id)?;
    let location = href(&id);
    Ok((
        StatusCode::ACCEPTED,
        [(LOCATION, location.clone())],
        location,
    )
        .into_response())
}
