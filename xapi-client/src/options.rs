//! Client configuration: where to connect, credentials, TLS policy, concurrency and timeouts.

use std::fmt;
use std::time::Duration;

use crate::Secret;

/// How to reach and log into a pool.
#[derive(Clone)]
pub struct ClientOptions {
    /// `https://host[:port]` or `http://host[:port]` of any pool member (the master is found via `HOST_IS_SLAVE`).
    pub url: String,
    pub username: String,
    pub password: Secret,
    /// Accept any server certificate (XAPI hosts are usually self-signed), as XO's `allowUnauthorized`.
    pub allow_unauthorized: bool,
    /// Extra trusted root certificates (DER), on top of webpki-roots.
    pub extra_roots: Vec<Vec<u8>>,
    /// Maximum RPCs in flight at once (long-polling `event.from` calls are not counted).
    pub max_concurrency: usize,
    /// Per-call timeout (connect + request + full response).
    pub call_timeout: Duration,
    /// Largest response body accepted (default 1 GiB); bigger answers fail with [`crate::Error::Transport`].
    pub max_response_bytes: usize,
    /// Sent as `originator` at login (XAPI keeps at most 500 sessions per originator).
    pub originator: String,
    /// HTTP proxy for all XAPI traffic (RPCs and HTTP transfers), as XO's `httpProxy`:
    /// `http://[user[:password]@]host[:port]`. Each connection opens a `CONNECT` tunnel (with `Basic`
    /// proxy credentials when the URL has them) and TLS runs inside it. A secret: it may hold a password.
    pub http_proxy: Option<Secret>,
}

impl ClientOptions {
    pub fn new(
        url: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<Secret>,
    ) -> Self {
        ClientOptions {
            url: url.into(),
            username: username.into(),
            password: password.into(),
            allow_unauthorized: false,
            extra_roots: Vec::new(),
            max_concurrency: 16,
            call_timeout: Duration::from_secs(120),
            max_response_bytes: 1 << 30,
            originator: "xo-rs".to_owned(),
            http_proxy: None,
        }
    }

    /// Tunnel every connection through this HTTP proxy (see [`ClientOptions::http_proxy`]); an empty
    /// URL means no proxy.
    pub fn http_proxy(mut self, url: impl Into<Secret>) -> Self {
        let url = url.into();
        self.http_proxy = (!url.expose().trim().is_empty()).then_some(url);
        self
    }

    pub fn allow_unauthorized(mut self, yes: bool) -> Self {
        self.allow_unauthorized = yes;
        self
    }

    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    pub fn call_timeout(mut self, t: Duration) -> Self {
        self.call_timeout = t;
        self
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("allow_unauthorized", &self.allow_unauthorized)
            .field("extra_roots", &self.extra_roots.len())
            .field("max_concurrency", &self.max_concurrency)
            .field("call_timeout", &self.call_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("originator", &self.originator)
            .field(
                "http_proxy",
                &self.http_proxy.as_ref().map(|p| redact_proxy(p.expose())),
            )
            .finish()
    }
}

/// A proxy URL without its credentials (`http://***@host:port`), for logs and `Debug`.
pub(crate) fn redact_proxy(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_option_never_shows_credentials() {
        let o = ClientOptions::new("https://h", "root", "pw")
            .http_proxy("http://u:s3cret@127.0.0.1:3128");
        let dbg = format!("{o:?}");
        assert!(!dbg.contains("s3cret") && !dbg.contains("u:"), "{dbg}");
        assert!(dbg.contains("http://***@127.0.0.1:3128"), "{dbg}");
        assert_eq!(
            redact_proxy("http://p.example:8080"),
            "http://p.example:8080"
        );
        assert_eq!(redact_proxy("u:p@h:1/x@y"), "***@h:1/x@y");
        assert!(ClientOptions::new("https://h", "r", "p")
            .http_proxy("  ")
            .http_proxy
            .is_none());
    }
}
