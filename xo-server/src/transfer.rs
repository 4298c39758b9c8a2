//! One-shot transfer URLs (`{"$getFrom": "/api/<token>"}` / `$sendTo`, spec xo-api.md §2.2): a handler is
//! registered under a fresh 43-character token, reachable once, with any HTTP method and no
//! authentication (the URL is the capability), on the same listener as `/api/`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use parking_lot::Mutex;

use crate::app::App;

/// What answers a one-shot URL (called at most once).
pub type TransferHandler = Box<dyn FnOnce(Request) -> BoxFuture<'static, Response> + Send>;

/// The registered one-shot URLs (an [`App`] extension).
#[derive(Default)]
pub struct Transfers {
    handlers: Mutex<HashMap<String, TransferHandler>>,
}

impl std::fmt::Debug for Transfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfers")
            .field("pending", &self.handlers.lock().len())
            .finish()
    }
}

impl Transfers {
    /// The app's registry (created on first use).
    pub fn of(app: &App) -> Arc<Transfers> {
        if let Some(t) = app.extension::<Transfers>() {
            return t;
        }
        let t = Arc::new(Transfers::default());
        app.set_extension(t.clone());
        // another caller may have won the race: use whatever is stored now
        app.extension::<Transfers>().unwrap_or(t)
    }

    /// Registers `handler` and returns its path `/api/<token>[/<suffix>]` (the suffix URI-encoded).
    pub fn register(&self, suffix: Option<&str>, handler: TransferHandler) -> String {
        let mut path = format!("/api/{}", xo_store::new_token_secret());
        if let Some(s) = suffix {
            path.push('/');
            path.push_str(&encode_component(s));
        }
        self.handlers.lock().insert(path.clone(), handler);
        path
    }

    /// Registers a download of `body` (`Content-Type: content_type`) and returns `{"$getFrom": path}`.
    pub fn get_from(
        &self,
        suffix: Option<&str>,
        content_type: &'static str,
        body: impl FnOnce() -> Body + Send + 'static,
    ) -> serde_json::Value {
        let path = self.register(
            suffix,
            Box::new(move |_req| {
                Box::pin(
                    async move { ([(header::CONTENT_TYPE, content_type)], body()).into_response() },
                )
            }),
        );
        serde_json::json!({ "$getFrom": path })
    }

    /// Removes and returns the handler of `path`.
    pub fn take(&self, path: &str) -> Option<TransferHandler> {
        self.handlers.lock().remove(path)
    }

    /// Number of URLs not used yet.
    pub fn pending(&self) -> usize {
        self.handlers.lock().len()
    }
}

fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Router fallback: a registered one-shot URL, else 404.
pub(crate) async fn serve(State(app): State<App>, req: Request) -> Response {
    let handler = app
        .extension::<Transfers>()
        .and_then(|t| t.take(req.uri().path()));
    match handler {
        Some(h) => h(req).await,
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// A streaming body from chunks (for large NDJSON answers).
pub fn chunked_body(chunks: impl Iterator<Item = String> + Send + 'static) -> Body {
    Body::from_stream(futures::stream::iter(
        chunks.map(|c| Ok::<_, std::convert::Infallible>(Bytes::from(c))),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_encoded() {
        assert_eq!(
            encode_component("2026-08-21T10_00_00Z - my vm.xva"),
            "2026-08-21T10_00_00Z%20-%20my%20vm.xva"
        );
        let t = Transfers::default();
        let p = t.register(
            None,
            Box::new(|_| Box::pin(async { StatusCode::OK.into_response() })),
        );
        assert_eq!(p.len(), "/api/".len() + 43);
        assert_eq!(t.pending(), 1);
        assert!(t.take(&p).is_some());
        assert!(t.take(&p).is_none());
    }
}
