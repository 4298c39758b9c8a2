//! Authentication: the provider chain behind `session.signIn` (local password, token, then pluggable
//! providers), with per-user-name throttling after a failure.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use xo_store::User;

use crate::app::{now_ms, App};
use crate::error::ApiError;

/// A successful authentication.
#[derive(Debug, Clone)]
pub struct AuthSuccess {
    /// Authenticated user.
    pub user_id: String,
    /// Connection lifetime bound (ms epoch), from a token.
    pub expiration: Option<i64>,
    /// Skip the OTP check.
    pub bypass_otp: bool,
}

/// An external authentication provider (e.g. the LDAP plugin). Returns `Ok(None)` when the credentials
/// are not for it; errors are logged and the next provider is tried.
pub trait AuthProvider: Send + Sync + 'static {
    /// Provider name (for logs).
    fn name(&self) -> &str;
    /// Tries to authenticate.
    fn authenticate(
        &self,
        app: App,
        credentials: Map<String, Value>,
    ) -> BoxFuture<'static, Result<Option<AuthSuccess>, String>>;
}

const LAST_USES_KEPT: usize = 10;

/// Runs the provider chain; on success returns the user and the connection expiry.
pub async fn authenticate(
    app: &App,
    credentials: Map<String, Value>,
    ip: &str,
) -> Result<(User, Option<i64>), ApiError> {
    let username = credentials
        .get("email")
        .or_else(|| credentials.get("username"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(name) = &username {
        let delay = Duration::from_millis(app.config().sign_in_throttle_ms);
        if let Some(last) = app.inner.throttle.lock().get(name) {
            if last.elapsed() < delay {
                return Err(ApiError::internal("too fast authentication tries"));
            }
        }
    }
    if credentials.get("password").and_then(Value::as_str) == Some("") {
        return Err(ApiError::internal("empty password"));
    }
    let result = run_providers(app, &credentials, username.as_deref(), ip).await?;
    match result {
        Some(ok) => {
            if let Some(name) = &username {
                app.inner.throttle.lock().remove(name);
            }
            let user = app
                .store()
                .user(&ok.user_id)?
                .ok_or_else(ApiError::invalid_credentials)?;
            if !ok.bypass_otp && user.preferences.get("otp").is_some_and(|v| !v.is_null()) {
                // TOTP verification is not implemented: such users must sign in with a token.
                return Err(ApiError::invalid_credentials());
            }
            Ok((user, ok.expiration))
        }
        None => {
            if let Some(name) = username {
                let mut t = app.inner.throttle.lock();
                if t.len() > 10_000 {
                    t.clear();
                }
                t.insert(name, Instant::now());
            }
            Err(ApiError::invalid_credentials())
        }
    }
}

async fn run_providers(
    app: &App,
    credentials: &Map<String, Value>,
    username: Option<&str>,
    ip: &str,
) -> Result<Option<AuthSuccess>, ApiError> {
    // 1. local password
    if let (Some(name), Some(password)) = (
        username,
        credentials.get("password").and_then(Value::as_str),
    ) {
        if let Some(user) = app.store().user_by_email(name)? {
            let external = user.auth_providers.as_ref().is_some_and(|p| !p.is_empty());
            if !external && user.pw_hash.is_some() {
                let store = app.store().clone();
                let pw = password.to_owned();
                let ok = tokio::task::spawn_blocking(move || {
                    store.verify_password(&user, &pw).then_some(user.id)
                })
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
                if let Some(user_id) = ok {
                    return Ok(Some(AuthSuccess {
                        user_id,
                        expiration: None,
                        bypass_otp: false,
                    }));
                }
            }
        }
    }
    // 2. token
    if let Some(secret) = credentials.get("token").and_then(Value::as_str) {
        if let Some(mut token) = app.store().token_by_secret(secret)? {
            let now = now_ms();
            if token.expiration > now {
                token.last_uses.remove(ip);
                token
                    .last_uses
                    .insert(ip.to_owned(), json!({ "timestamp": now }));
                while token.last_uses.len() > LAST_USES_KEPT {
                    let oldest = token
                        .last_uses
                        .iter()
                        .min_by_key(|(_, v)| v["timestamp"].as_i64().unwrap_or(0))
                        .map(|(k, _)| k.clone());
                    match oldest {
                        Some(k) => token.last_uses.remove(&k),
                        None => break,
                    };
                }
                let (user_id, expiration) = (token.user_id.clone(), token.expiration);
                if let Err(e) = app.store().update_token(&token) {
                    tracing::warn!(error = %e, "cannot record token use");
                }
                return Ok(Some(AuthSuccess {
                    user_id,
                    expiration: Some(expiration),
                    bypass_otp: true,
                }));
            }
        }
    }
    // 3. pluggable providers
    let providers = app.inner.auth_providers.read().clone();
    for p in providers {
        match p.authenticate(app.clone(), credentials.clone()).await {
            Ok(Some(ok)) => return Ok(Some(ok)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(provider = p.name(), error = %e, "authentication provider failed")
            }
        }
    }
    Ok(None)
}
