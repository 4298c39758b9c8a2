//! XO's REST API (`/rest/v0`, spec xo-api.md §2.5), the `tasks` collection only: the XO task log
//! ([`crate::tasks`]) listed, read (optionally waiting for a change or the end), aborted and deleted.
//! Authentication ([`auth`]): cookie `authenticationToken` / `token`, or HTTP Basic; administrators only.

pub mod auth;
pub mod collection;
mod error;
pub mod tasks;

use axum::routing::{get, post};
use axum::Router;

use crate::app::App;
pub use error::RestError;

/// Prefix of every REST route.
pub const PREFIX: &str = "/rest/v0";

/// The REST routes, to merge into the app's router.
pub fn router() -> Router<App> {
    Router::new()
        .route("/rest/v0/tasks", get(tasks::list).delete(tasks::clear))
        .route(
            "/rest/v0/tasks/{id}",
            get(tasks::get_one).delete(tasks::delete),
        )
        .route("/rest/v0/tasks/{id}/actions", get(tasks::actions))
        .route("/rest/v0/tasks/{id}/actions/abort", post(tasks::abort))
}
