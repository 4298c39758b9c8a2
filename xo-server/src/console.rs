//! The console route `/api/consoles/<id>` (spec xo-api.md §2.4): a WebSocket carrying a VM's (or a host's dom0)
//! RFB console as binary frames, for noVNC.
//!
//! Everything is checked before the upgrade is accepted, each failure with its own HTTP status:
//! 1. authentication — the `token` cookie (as XO's web UI sends it) or an `Authorization: Bearer <token>` header,
//!    validated through the sign-in provider chain (`{token}` credentials, like XO's `authenticateUser`): `401`;
//! 2. the object — the id of a `VM` or a `VM-controller`, or of a `host` (its control domain's console): `404`;
//! 3. the `operate` permission on it (administrators always pass; others through the installed
//!    [`Permissions`] checker, i.e. the ACL plugin): `403`;
//! 4. a console to open — the VM runs (`409` otherwise), has an `rfb` console (`409`), its pool is connected
//!    (`503`), and the host accepts the `CONNECT` tunnel, made with the pool client's session and TLS trust
//!    policy (`502`, `503` when the host's console-session limit is reached, `504` on timeout).
//!
//! Then bytes are pumped unchanged both ways by [`console_proxy::pump`] (backpressure, bounded reads, idle and
//! overall limits, clean close on either side). A session opened with a token ends at the token's expiry.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use console_proxy::{ConsoleTarget, Limits, ProxyError};
use serde_json::{json, Map, Value};
use xo_store::{Permission, User};

use crate::app::{now_ms, App};
use crate::error::ApiError;
use crate::methods::resolve::Permissions;
use crate::xapi::{Pools, XoObject};

/// Settings of the console route; install a different one with [`crate::AppBuilder::extension`].
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// Limits of each proxied session (connect timeout, idle and overall limits, read chunk size).
    pub limits: Limits,
    /// Largest WebSocket message (and frame) accepted from the client; RFB client messages are small.
    pub max_client_message: usize,
}

impl Default for ConsoleSettings {
    /// [`Limits::default`] (10 s to connect, 30 min idle, no overall limit, 64 KiB reads) and 1 MiB messages.
    fn default() -> Self {
        ConsoleSettings {
            limits: Limits::default(),
            max_client_message: 1 << 20,
        }
    }
}

/// A refusal before the upgrade: an HTTP status and a one-line explanation.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut res = (self.status, format!("{}\n", self.message)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}

/// `GET /api/consoles/<id>`: every check, the console tunnel, then the upgrade and the pump.
pub(crate) async fn console_upgrade(
    State(app): State<App>,
    Path(id): Path<String>,
    ConnectInfo(crate::http::PeerAddr(peer)): ConnectInfo<crate::http::PeerAddr>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match prepare(&app, &id, &peer.ip().to_string(), &headers, ws).await {
        Ok(res) => res,
        Err(refusal) => {
            tracing::debug!(object = %id, status = %refusal.status, reason = %refusal.message, "console refused");
            refusal.into_response()
        }
    }
}

async fn prepare(
    app: &App,
    id: &str,
    ip: &str,
    headers: &HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Refusal> {
    let (user, expiration) = authenticate(app, headers, ip).await?;
    let pools =
        Pools::of(app).map_err(|e| Refusal::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    pools.wait_connecting().await;
    let vm = console_vm(&pools, id)?;
    check_operate(app, &user, &vm)?;
    // Not a WebSocket request: the extractor's answer (400/405/426), before any console is opened.
    let ws = ws.map_err(|r| Refusal::new(r.status(), r.body_text()))?;
    let settings = app
        .extension::<ConsoleSettings>()
        .map_or_else(ConsoleSettings::default, |s| (*s).clone());
    let mut limits = settings.limits.clone();
    if let Some(exp) = expiration {
        let left = Duration::from_millis(exp.saturating_sub(now_ms()).max(0) as u64);
        limits.total = Some(limits.total.map_or(left, |t| t.min(left)));
    }
    let target = console_target(&pools, &vm).await?;
    let tunnel = console_proxy::open_console(&target, &limits)
        .await
        .map_err(open_refusal)?;
    tracing::info!(user = %user.email, object = %vm.id(), "console opened");
    let (user_email, object) = (user.email.clone(), vm.id().to_owned());
    Ok(ws
        .protocols(["binary"])
        .max_message_size(settings.max_client_message)
        .max_frame_size(settings.max_client_message)
        .on_upgrade(move |socket| async move {
            match console_proxy::pump(socket, tunnel, &limits).await {
                Ok(stats) => tracing::info!(
                    user = %user_email, %object, end = ?stats.end,
                    to_console = stats.bytes_to_console, to_client = stats.bytes_to_client,
                    "console closed"
                ),
                Err(e) => {
                    tracing::info!(user = %user_email, %object, error = %e, "console closed on error")
                }
            }
        }))
}

/// The token of the request: `Authorization: Bearer …` first, else the `token` cookie.
fn request_token(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_owned())
        });
    bearer.or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.split_once('='))
            .find(|(k, _)| k.trim() == "token")
            .map(|(_, v)| v.trim().trim_matches('"').to_owned())
    })
}

/// The user behind the request's token (and the token's expiry), through the sign-in provider chain.
async fn authenticate(
    app: &App,
    headers: &HeaderMap,
    ip: &str,
) -> Result<(User, Option<i64>), Refusal> {
    let token = request_token(headers)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Refusal::new(StatusCode::UNAUTHORIZED, "authentication required"))?;
    let mut credentials = Map::new();
    credentials.insert("token".into(), Value::String(token));
    crate::auth::authenticate(app, credentials, ip)
        .await
        .map_err(|e| match e {
            ApiError::Rpc { code: 3, .. } => {
                Refusal::new(StatusCode::UNAUTHORIZED, "invalid credentials")
            }
            other => Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        })
}

/// The VM whose console `id` designates: a `VM` or `VM-controller` itself, a `host`'s control domain.
fn console_vm(pools: &Pools, id: &str) -> Result<Arc<XoObject>, Refusal> {
    let not_found = || Refusal::new(StatusCode::NOT_FOUND, format!("no such VM or host {id}"));
    let obj = pools.object(id).ok_or_else(not_found)?;
    match obj.kind() {
        "VM" | "VM-controller" => Ok(obj),
        "host" => obj
            .get("controlDomain")
            .and_then(Value::as_str)
            .and_then(|dom0| pools.object(dom0))
            .filter(|o| o.kind() == "VM-controller")
            .ok_or_else(|| {
                Refusal::new(
                    StatusCode::CONFLICT,
                    format!("host {id} has no control domain"),
                )
            }),
        _ => Err(not_found()),
    }
}

/// XO's `checkPermission(vm, 'operate')`: administrators pass, others need the checker's grant.
fn check_operate(app: &App, user: &User, vm: &XoObject) -> Result<(), Refusal> {
    if user.permission == Permission::Admin {
        return Ok(());
    }
    let pairs = [(vm.id().to_owned(), "operate".to_owned())];
    let denied = match app.extension::<Permissions>() {
        Some(p) => p.0.first_denied(user, &pairs).is_some(),
        None => true,
    };
    if denied {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!("not enough permissions: operate on {}", vm.id()),
        ));
    }
    Ok(())
}

/// Where the VM's RFB console is, with the pool client's session and TLS policy.
async fn console_target(pools: &Pools, vm: &XoObject) -> Result<ConsoleTarget, Refusal> {
    let state = vm.get("power_state").and_then(Value::as_str).unwrap_or("");
    if state != "Running" && state != "Paused" {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            format!("VM {} is {state}: no console", vm.id()),
        ));
    }
    let unreachable = |e: ApiError| Refusal::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    let client = pools.client_for_object(vm.id()).map_err(unreachable)?;
    let bad_gateway = |e: ApiError| Refusal::new(StatusCode::BAD_GATEWAY, e.to_string());
    let consoles = client
        .call("VM.get_consoles", vec![json!(vm.xapi_ref())])
        .await
        .map_err(bad_gateway)?;
    let mut location = None;
    for c in consoles.as_array().into_iter().flatten() {
        let rec = client
            .call("console.get_record", vec![c.clone()])
            .await
            .map_err(bad_gateway)?;
        if rec.get("protocol").and_then(Value::as_str) == Some("rfb") {
            location = rec
                .get("location")
                .and_then(Value::as_str)
                .filter(|l| !l.is_empty())
                .map(str::to_owned);
            if location.is_some() {
                break;
            }
        }
    }
    let location = location.ok_or_else(|| {
        Refusal::new(
            StatusCode::CONFLICT,
            format!("VM {} has no graphical console", vm.id()),
        )
    })?;
    let raw = client.raw();
    let session = raw.session_id().ok_or_else(|| {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pool's XAPI session is not established",
        )
    })?;
    let pool_url = raw.url();
    let opts = raw.options();
    // A pool reached over plain HTTP serves its consoles that way too.
    let location = match (
        pool_url.starts_with("http://"),
        location.strip_prefix("https://"),
    ) {
        (true, Some(rest)) => format!("http://{rest}"),
        _ => location,
    };
    let mut target =
        ConsoleTarget::new(location, session.expose()).allow_unauthorized(opts.allow_unauthorized);
    target.extra_roots = opts.extra_roots.clone();
    target.default_port = url_port(&pool_url);
    Ok(target)
}

/// The explicit port of an `http(s)://host[:port][/…]` URL.
fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let port = match authority.rsplit_once(']') {
        Some((_, tail)) => tail.strip_prefix(':')?,
        None => authority.rsplit_once(':')?.1,
    };
    port.parse().ok()
}

fn open_refusal(e: ProxyError) -> Refusal {
    let status = match &e {
        ProxyError::Refused { status: 503, .. } => StatusCode::SERVICE_UNAVAILABLE,
        ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    Refusal::new(status, format!("console unavailable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_bearer_or_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(request_token(&h), None);
        h.insert(header::COOKIE, "a=b; token=c00kie; x=y".parse().unwrap());
        assert_eq!(request_token(&h).as_deref(), Some("c00kie"));
        h.insert(header::AUTHORIZATION, "Bearer  b3arer ".parse().unwrap());
        assert_eq!(request_token(&h).as_deref(), Some("b3arer"));
        h.insert(header::AUTHORIZATION, "Basic Zm9v".parse().unwrap());
        assert_eq!(request_token(&h).as_deref(), Some("c00kie"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "notoken=1; tokens=2".parse().unwrap());
        assert_eq!(request_token(&h), None);
    }

    #[test]
    fn ports_of_urls() {
        assert_eq!(url_port("https://127.0.0.1:4443"), Some(4443));
        assert_eq!(url_port("https://127.0.0.1:4443/"), Some(4443));
        assert_eq!(url_port("https://h.example"), None);
        assert_eq!(url_port("https://[::1]:8443/x"), Some(8443));
        assert_eq!(url_port("https://[::1]/x"), None);
        assert_eq!(url_port("nonsense"), None);
    }
}
