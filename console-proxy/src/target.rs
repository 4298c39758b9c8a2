//! Where a console lives: the `console.location` URL, the XAPI session, TLS policy; and its parsed form.

use std::fmt;
use std::time::Duration;

use crate::ProxyError;

/// An XAPI console to reach.
#[derive(Clone)]
pub struct ConsoleTarget {
    /// `console.location`, e.g. `https://10.0.0.5/console?uuid=…` (guest) or `…/console?ref=OpaqueRef:…` (dom0).
    pub location_url: String,
    /// XAPI session (sent as `session_id` in the query and the cookie). Never logged or printed.
    pub session_id: String,
    /// Accept any TLS certificate (self-signed hosts); signatures are still verified.
    pub allow_unauthorized: bool,
    /// Extra trusted root certificates (DER), used when `allow_unauthorized` is false.
    pub extra_roots: Vec<Vec<u8>>,
    /// Port to use when the location has none (XAPI locations never carry one; a pool reached on a non-default
    /// port wants that port here). `None`: 443 for https, 80 for http.
    pub default_port: Option<u16>,
}

impl ConsoleTarget {
    /// A target with normal certificate verification and default ports.
    pub fn new(location_url: impl Into<String>, session_id: impl Into<String>) -> Self {
        ConsoleTarget {
            location_url: location_url.into(),
            session_id: session_id.into(),
            allow_unauthorized: false,
            extra_roots: Vec::new(),
            default_port: None,
        }
    }

    pub fn allow_unauthorized(mut self, yes: bool) -> Self {
        self.allow_unauthorized = yes;
        self
    }

    pub fn extra_root(mut self, der: Vec<u8>) -> Self {
        self.extra_roots.push(der);
        self
    }

    pub fn default_port(mut self, port: u16) -> Self {
        self.default_port = Some(port);
        self
    }
}

impl fmt::Debug for ConsoleTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleTarget")
            .field("location_url", &self.location_url)
            .field("session_id", &"<redacted>")
            .field("allow_unauthorized", &self.allow_unauthorized)
            .field("extra_roots", &self.extra_roots.len())
            .field("default_port", &self.default_port)
            .finish()
    }
}

/// Limits of one proxied session.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bound on TCP connect + TLS handshake + CONNECT answer.
    pub connect_timeout: Duration,
    /// End the session after this long without a message in either direction (`None`: never).
    pub idle: Option<Duration>,
    /// End the session after this long in total (`None`: never).
    pub total: Option<Duration>,
    /// Largest read from the console, hence largest binary frame sent to the client (bytes, ≥ 1).
    pub chunk: usize,
}

impl Default for Limits {
    /// 10 s to connect, 30 min idle, no overall limit, 64 KiB chunks.
    fn default() -> Self {
        Limits {
            connect_timeout: Duration::from_secs(10),
            idle: Some(Duration::from_secs(30 * 60)),
            total: None,
            chunk: 64 * 1024,
        }
    }
}

/// A parsed console location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    pub tls: bool,
    /// Host as written (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, e.g. `/console?ref=OpaqueRef:…`.
    pub path_and_query: String,
}

impl Location {
    pub(crate) fn parse(url: &str, default_port: Option<u16>) -> Result<Location, ProxyError> {
        let bad = |why: &str| ProxyError::InvalidLocation(format!("{why}: {url}"));
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("scheme must be http or https"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let (h, tail) = r
                .split_once(']')
                .ok_or_else(|| bad("unclosed IPv6 literal"))?;
            (h, tail.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(bad("missing or invalid host"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad("invalid port"))?,
            None => default_port.unwrap_or(if tls { 443 } else { 80 }),
        };
        if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(bad("invalid path"));
        }
        Ok(Location {
            tls,
            host: host.to_owned(),
            port,
            path_and_query: path,
        })
    }

    /// `host:port` for connecting (IPv6 bracketed).
    pub(crate) fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The CONNECT request for this location with `session` in the query and the cookie.
    pub(crate) fn connect_request(&self, session: &str) -> String {
        let enc = encode_component(session);
        let sep = if self.path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "CONNECT {}{sep}session_id={enc} HTTP/1.0\r\nHost: {}\r\nCookie: session_id={enc}\r\n\r\n",
            self.path_and_query,
            self.addr()
        )
    }
}

/// Percent-encode what may not appear raw in a query value or cookie (refs' `:` and `-` stay as they are).
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let l = Location::parse("https://10.0.0.5/console?ref=OpaqueRef:ab-c", None).unwrap();
        assert_eq!(
            l,
            Location {
                tls: true,
                host: "10.0.0.5".into(),
                port: 443,
                path_and_query: "/console?ref=OpaqueRef:ab-c".into()
            }
        );
        let l = Location::parse("http://h.example:8080/console?uuid=u", Some(1)).unwrap();
        assert_eq!(
            (l.tls, l.port, l.addr()),
            (false, 8080, "h.example:8080".into())
        );
        let l = Location::parse("https://[::1]/console?ref=x", Some(4443)).unwrap();
        assert_eq!(l.addr(), "[::1]:4443");
        let l = Location::parse("https://h?ref=x", None).unwrap();
        assert_eq!(l.path_and_query, "/?ref=x");
        for bad in [
            "ftp://h/console",
            "https:///console",
            "https://h:99999/console",
            "https://[::1/console",
            "https://h/con sole",
        ] {
            assert!(matches!(
                Location::parse(bad, None),
                Err(ProxyError::InvalidLocation(_))
            ));
        }
    }

    #[test]
    fn connect_request_carries_the_session() {
        let l = Location::parse("https://10.0.0.5/console?ref=OpaqueRef:c", Some(444)).unwrap();
        assert_eq!(
            l.connect_request("OpaqueRef:s 1&x"),
            "CONNECT /console?ref=OpaqueRef:c&session_id=OpaqueRef:s%201%26x HTTP/1.0\r\nHost: 10.0.0.5:444\r\n\
             Cookie: session_id=OpaqueRef:s%201%26x\r\n\r\n"
        );
        let t = ConsoleTarget::new("https://h/console", "OpaqueRef:secret");
        assert!(!format!("{t:?}").contains("secret"));
    }
}
