//! The context a method handler receives: the application, the calling connection and the caller.

use std::sync::Arc;

use xo_store::{Permission, User};

use crate::app::App;
use crate::connection::Connection;
use crate::error::ApiError;

/// Per-call context.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The application.
    pub app: App,
    /// The connection the call came from.
    pub connection: Arc<Connection>,
    /// The signed-in user, loaded fresh for this call.
    pub user: Option<User>,
}

impl Ctx {
    /// The signed-in user or `unauthorized()`.
    pub fn user(&self) -> Result<&User, ApiError> {
        self.user
            .as_ref()
            .ok_or_else(|| ApiError::unauthorized(None, None, None))
    }

    /// Whether the caller is an administrator.
    pub fn is_admin(&self) -> bool {
        self.user
            .as_ref()
            .is_some_and(|u| u.permission == Permission::Admin)
    }
}
