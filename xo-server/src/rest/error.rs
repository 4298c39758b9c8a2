//! REST failures as HTTP statuses with a short plain-text body (XO answers with `res.sendStatus(…)`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A REST failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    /// 400: the request cannot be served as sent.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no or wrong credentials.
    #[error("Unauthorized")]
    Unauthorized,
    /// 403: signed in, but not an administrator.
    #[error("Forbidden")]
    Forbidden,
    /// 404: no such object.
    #[error("Not Found")]
    NotFound,
    /// 409: the object is in the wrong state (e.g. deleting a running task).
    #[error("{0}")]
    Conflict(String),
}

impl RestError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            RestError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RestError::Unauthorized => StatusCode::UNAUTHORIZED,
            RestError::Forbidden => StatusCode::FORBIDDEN,
            RestError::NotFound => StatusCode::NOT_FOUND,
            RestError::Conflict(_) => StatusCode::CONFLICT,
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        (self.status(), self.to_string()).into_response()
    }
}

impl From<crate::tasks::TaskError> for RestError {
    fn from(e: crate::tasks::TaskError) -> Self {
        match e {
            crate::tasks::TaskError::NoSuchTask(_) => RestError::NotFound,
            crate::tasks::TaskError::Pending(_) => RestError::Conflict(e.to_string()),
        }
    }
}
