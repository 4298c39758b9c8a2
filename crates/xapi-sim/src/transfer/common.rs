//! What every transfer handler shares (spec §6 common rules): query and cookie parsing, authentication
//! (cookie → query → Basic, else 401), the `task_id` task the handler completes, and XAPI-style answers.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use xapi_types::{Ref, Type, Value, XapiError};

use super::body::{full, Body};
use crate::state::PoolState;

/// Realm of the 401 challenge.
pub(crate) const REALM: &str = "xapi";

/// Decoded query string (first value of each key wins; `all` keeps repeats, e.g. `vm_uuid`).
#[derive(Debug, Default)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding (`+` is a space).
pub(crate) fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    pub(crate) fn parse(q: Option<&str>) -> Self {
        let pairs = q
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (url_decode(k), url_decode(v)),
                None => (url_decode(p), String::new()),
            })
            .collect();
        Query { pairs }
    }

    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn has(&self, k: &str) -> bool {
        self.pairs.iter().any(|(a, _)| a == k)
    }

    pub(crate) fn all(&self, k: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `true`-ish flag (`k`, `k=true`, `k=yes`, `k=1`).
    pub(crate) fn flag(&self, k: &str) -> bool {
        self.get(k).is_some_and(|v| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "" | "true" | "yes" | "1" | "on"
            )
        })
    }
}

/// Cookies of the request (`name=value` pairs of every `Cookie` header).
pub(crate) fn cookies(h: &HeaderMap) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for v in h.get_all(header::COOKIE) {
        for part in v.to_str().unwrap_or_default().split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                out.entry(k.trim().to_owned())
                    .or_insert_with(|| url_decode(v.trim()));
            }
        }
    }
    out
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The authenticated caller of one request.
#[derive(Debug)]
pub(crate) struct Caller {
    pub session: Ref,
    /// A session made from Basic credentials, logged out when the handler ends.
    pub temporary: bool,
}

/// Everything a handler needs from its request head.
#[derive(Debug)]
pub(crate) struct Head {
    pub query: Query,
    pub cookies: HashMap<String, String>,
    pub headers: HeaderMap,
}

impl Head {
    pub(crate) fn of<B>(req: &http::Request<B>) -> Self {
        Head {
            query: Query::parse(req.uri().query()),
            cookies: cookies(req.headers()),
            headers: req.headers().clone(),
        }
    }

    /// `session_id` from the cookie, then the query; then Basic credentials (a temporary session).
    pub(crate) fn authenticate(&self, pool: &PoolState, host: &Ref) -> Option<Caller> {
        let sid = self
            .cookies
            .get("session_id")
            .map(String::as_str)
            .or_else(|| self.query.get("session_id"));
        if let Some(s) = sid {
            let r = Ref::from(s);
            return pool.session_valid(&r).then_some(Caller {
                session: r,
                temporary: false,
            });
        }
        let auth = self.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let b64 = auth
            .strip_prefix("Basic ")
            .or_else(|| auth.strip_prefix("basic "))?;
        let creds = String::from_utf8(b64_decode(b64)?).ok()?;
        let (user, pass) = creds.split_once(':')?;
        if user != pool.config.user || pass != pool.config.password {
            return None;
        }
        let s = pool.create_session(user, host, "http-basic", false);
        Some(Caller {
            session: s,
            temporary: true,
        })
    }

    /// The client's `task_id` (query, then cookie), if it names a task.
    pub(crate) fn client_task(&self, pool: &PoolState) -> Option<Ref> {
        let t = self
            .query
            .get("task_id")
            .or_else(|| self.cookies.get("task_id").map(String::as_str))?;
        let r = Ref::from(t);
        pool.read(|db| db.exists("task", &r)).then_some(r)
    }
}

/// The task a handler runs in: the client's, or an internal one destroyed at the end.
#[derive(Debug)]
pub(crate) struct TaskCtx {
    pub task: Ref,
    internal: bool,
    caller: Option<Caller>,
    pool: Arc<PoolState>,
}

impl TaskCtx {
    pub(crate) fn new(
        pool: &Arc<PoolState>,
        head: &Head,
        host: &Ref,
        label: &str,
        caller: Caller,
    ) -> Self {
        match head.client_task(pool) {
            Some(task) => TaskCtx {
                task,
                internal: false,
                caller: Some(caller),
                pool: pool.clone(),
            },
            None => TaskCtx {
                task: pool.create_task(label, "", host, false),
                internal: true,
                caller: Some(caller),
                pool: pool.clone(),
            },
        }
    }

    /// Complete the task (success with `result` typed by `ty`, or failure), then clean up.
    pub(crate) fn finish(mut self, outcome: &Result<Value, XapiError>, ty: &Type) {
        match outcome {
            Ok(_) => tracing::debug!(task = %self.task, "transfer succeeded"),
            Err(e) => tracing::debug!(task = %self.task, code = %e.code, "transfer failed"),
        }
        self.pool.complete_task(&self.task, outcome, ty);
        self.cleanup();
    }

    fn cleanup(&mut self) {
        if self.internal {
            let t = self.task.clone();
            self.pool.write(|db| {
                let _ = db.destroy("task", &t);
            });
            self.internal = false;
        }
        if let Some(c) = self.caller.take() {
            if c.temporary {
                self.pool.destroy_session(&c.session);
            }
        }
    }
}

impl Drop for TaskCtx {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Fail the client's task (if any) with `err` — for requests refused before a handler really starts.
pub(crate) fn fail_client_task(pool: &PoolState, head: &Head, err: &XapiError) {
    if let Some(t) = head.client_task(pool) {
        pool.complete_task(&t, &Err(err.clone()), &Type::Void);
    }
}

/// A headers-only / small text answer.
pub(crate) fn status(code: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(full(Full::new(Bytes::from_static(text.as_bytes()))));
    *r.status_mut() = code;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// `401 Unauthorised` with the Basic challenge; the client's task fails `SESSION_AUTHENTICATION_FAILED`.
pub(crate) fn unauthorised(pool: &PoolState, head: &Head) -> Response<Body> {
    fail_client_task(
        pool,
        head,
        &XapiError::new(
            "SESSION_AUTHENTICATION_FAILED",
            ["", "Authentication failure"],
        ),
    );
    let mut r = status(StatusCode::UNAUTHORIZED, "");
    if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{REALM}\"")) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// Add the transfer headers (`task-id`, no caching, `Connection: close`).
pub(crate) fn transfer_headers(r: &mut Response<Body>, task: &Ref, content_type: &'static str) {
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(task.as_str()) {
        h.insert("task-id", v);
    }
    h.insert(header::SERVER, HeaderValue::from_static("xapi/25.6"));
}

/// Resolve `r` given as a ref or a uuid of `class`.
pub(crate) fn resolve(pool: &PoolState, class: &str, s: &str) -> Option<Ref> {
    pool.read(|db| {
        let r = Ref::from(s);
        if db.exists(class, &r) {
            Some(r)
        } else {
            db.find_by_uuid(class, s)
        }
    })
}
