//! Server URLs: `http(s)://host[:port][/base]` (or `ws(s)://`, or no scheme ⇒ secure) turned into the
//! WebSocket endpoint `<base>/api/` and used to resolve one-shot transfer paths (`$getFrom`/`$sendTo`).

use crate::error::Error;

/// A parsed server URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    secure: bool,
    host: String,
    port: u16,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.http_base())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Endpoint {
    /// Parses `url` like xo-lib: trailing slashes dropped, `/api/` appended (a trailing `/api` is
    /// accepted too), `http`→`ws`, `https`→`wss`, no scheme ⇒ `wss`. A user-info part
    /// (`https://<token>@host/`) is kept as a token.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = url.trim();
        let (secure, rest) = match trimmed.split_once("://") {
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "http" | "ws" => (false, rest),
                "https" | "wss" => (true, rest),
                _ => return Err(bad("scheme must be http, https, ws or wss")),
            },
            None => (true, trimmed),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let path = tail.split(['?', '#']).next().unwrap_or("");
        let (token, hostport) = match authority.rsplit_once('@') {
            Some((user, hp)) => {
                let user = user.split(':').next().unwrap_or("");
                ((!user.is_empty()).then(|| percent_decode(user)), hp)
            }
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("garbage after IPv6 address")),
            };
            (format!("[{h}]"), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (hostport.to_owned(), None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(bad("missing host"));
        }
        if host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
            return Err(bad("invalid host"));
        }
        let port = match port {
            None => {
                if secure {
                    443
                } else {
                    80
                }
            }
            Some(p) => p.parse::<u16>().map_err(|_| bad("invalid port"))?,
        };
        let mut base = path.trim_end_matches('/').to_owned();
        if base.ends_with("/api") {
            base.truncate(base.len() - 4);
        }
        Ok(Self {
            secure,
            host,
            port,
            base,
            token,
        })
    }

    /// Whether TLS is used (`https`/`wss`).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Host name or address (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Host without IPv6 brackets (for DNS / SNI).
    pub fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The token given as user-info in the URL, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// `host[:port]` as sent in the `Host` header (default ports omitted).
    pub fn authority(&self) -> String {
        let default = if self.secure { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `http(s)://host[:port][/base]` (no trailing slash).
    pub fn http_base(&self) -> String {
        let scheme = if self.secure { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority(), self.base)
    }

    /// The WebSocket URL of the API: `ws(s)://host[:port][/base]/api/`.
    pub fn ws_url(&self) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        format!("{scheme}://{}{}/api/", self.authority(), self.base)
    }

    /// Resolves a transfer path (`/api/<token>…`, relative, or absolute `http(s)://…`) against the
    /// API URL, like `new URL(path, "http(s)://host/api/")`. Returns `(endpoint, path-and-query)`.
    pub fn resolve(&self, path: &str) -> Result<(Endpoint, String), Error> {
        let lower = path.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let ep = Endpoint::parse(path)?;
            let after = &path[path.find("://").map_or(0, |i| i + 3)..];
            let pq = after.find('/').map_or("/", |i| &after[i..]);
            return Ok((ep, strip_fragment(pq).to_owned()));
        }
        let pq = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("{}/api/{path}", self.base)
        };
        Ok((self.clone(), strip_fragment(&pq).to_owned()))
    }
}

fn strip_fragment(s: &str) -> &str {
    s.split('#').next().unwrap_or(s)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_api_path() {
        let e = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(e.ws_url(), "ws://127.0.0.1:8080/api/");
        assert!(!e.is_secure());
        let e = Endpoint::parse("https://xo.example.org/").unwrap();
        assert_eq!(e.ws_url(), "wss://xo.example.org/api/");
        assert_eq!(e.port(), 443);
        let e = Endpoint::parse("xo.example.org:8443").unwrap();
        assert_eq!(e.ws_url(), "wss://xo.example.org:8443/api/");
        let e = Endpoint::parse("ws://h/sub/api/").unwrap();
        assert_eq!(e.ws_url(), "ws://h/sub/api/");
        let e = Endpoint::parse("https://tok%2Den@[::1]:9/").unwrap();
        assert_eq!(e.token(), Some("tok-en"));
        assert_eq!(e.bare_host(), "::1");
        assert_eq!(e.ws_url(), "wss://[::1]:9/api/");
        assert!(!format!("{e:?}").contains("tok-en"));
    }

    #[test]
    fn bad_urls() {
        for u in [
            "ftp://h",
            "http://",
            "http://h:port",
            "http://[::1",
            "http://h:99999",
        ] {
            assert!(
                matches!(Endpoint::parse(u), Err(Error::InvalidUrl { .. })),
                "{u}"
            );
        }
    }

    #[test]
    fn resolve_transfer_paths() {
        let e = Endpoint::parse("ws://127.0.0.1:1/base").unwrap();
        let (ep, p) = e.resolve("/api/abc/x%20y.xva").unwrap();
        assert_eq!((ep.port(), p.as_str()), (1, "/api/abc/x%20y.xva"));
        let (_, p) = e.resolve("tok").unwrap();
        assert_eq!(p, "/base/api/tok");
        let (ep, p) = e.resolve("https://other:2/dl?x=1#f").unwrap();
        assert_eq!((ep.host(), ep.port(), p.as_str()), ("other", 2, "/dl?x=1"));
    }
}
