//! Authentication providers plugins add to `session.signIn`'s chain.

use serde_json::{Map, Value};

use crate::BoxFuture;

/// A successful authentication by a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOutcome {
    /// The XO user id.
    pub user_id: String,
    /// Lifetime bound of the connection (ms epoch).
    pub expiration: Option<i64>,
    /// Skip the OTP check.
    pub bypass_otp: bool,
}

/// An external authentication provider. `Ok(None)`: the credentials are not for it; errors are logged by
/// the server and the next provider is tried.
pub trait AuthProvider: Send + Sync + 'static {
    /// Unique name (used to remove it).
    fn name(&self) -> &str;
    /// Tries the credentials `session.signIn` received (any keys: `{username, password}`, …).
    fn authenticate(
        &self,
        credentials: Map<String, Value>,
    ) -> BoxFuture<'static, Result<Option<AuthOutcome>, String>>;
}
