//! Failures of a command and the exit code of each class (documented in `docs/cli.md`).

use xo_lib::codes;

/// Exit code: the server answered a call with an error.
pub const EXIT_API: u8 = 1;
/// Exit code: bad command line (unknown command, bad params, missing `@=file`…).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: cannot reach the server, TLS failure, connection lost, transfer network error.
pub const EXIT_CONNECTION: u8 = 3;
/// Exit code: not registered, invalid credentials, expired or revoked token.
pub const EXIT_AUTH: u8 = 4;
/// Exit code: local file or configuration I/O.
pub const EXIT_IO: u8 = 5;

/// A failed command: its class and the message printed on stderr.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Exit 2.
    #[error("{0}")]
    Usage(String),
    /// Exit 3.
    #[error("{0}")]
    Connection(String),
    /// Exit 4.
    #[error("{0}")]
    Auth(String),
    /// Exit 1.
    #[error("{0}")]
    Api(String),
    /// Exit 5.
    #[error("{0}")]
    Io(String),
}

impl Failure {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Api(_) => EXIT_API,
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Connection(_) => EXIT_CONNECTION,
            Failure::Auth(_) => EXIT_AUTH,
            Failure::Io(_) => EXIT_IO,
        }
    }
}

impl From<xo_lib::Error> for Failure {
    fn from(e: xo_lib::Error) -> Self {
        use xo_lib::Error as E;
        let text = e.to_string();
        match e {
            E::InvalidUrl { .. } | E::SessionMethod(_) => Failure::Usage(text),
            E::Connect { .. }
            | E::ConnectionClosed
            | E::NotConnected
            | E::Transfer(_)
            | E::Timeout => Failure::Connection(text),
            E::Api(ref a) if a.is_authentication() => Failure::Auth(text),
            E::Api(ref a) if a.code == codes::INVALID_PARAMETERS => Failure::Usage(text),
            E::HttpStatus { ref body, .. } => Failure::Api(match transfer_error(body) {
                Some(why) => format!("{text}: {why}"),
                None => text,
            }),
            E::Api(_) | E::Decode(_) => Failure::Api(text),
            E::Io(_) => Failure::Io(text),
        }
    }
}

/// What a failed transfer's answer says: xo-server answers an upload with a JSON-RPC response, whose error (with
/// its data, e.g. the XAPI error) tells why.
fn transfer_error(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    let e = v.get("error")?;
    let api = xo_lib::ApiError::from_json(e);
    // a XAPI error's message already names its code and parameters: its data would say it twice
    let says_it = |d: &serde_json::Value| {
        d.get("code")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|c| api.message.contains(c))
    };
    Some(match &api.data {
        Some(d) if !d.is_null() && !says_it(d) => format!("{api} {d}"),
        _ => api.to_string(),
    })
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xo_lib::ApiError;

    #[test]
    fn classes() {
        let api = |code| {
            Failure::from(xo_lib::Error::Api(ApiError {
                code,
                message: "m".into(),
                data: None,
            }))
            .exit_code()
        };
        assert_eq!(api(3), EXIT_AUTH);
        assert_eq!(api(2), EXIT_API);
        assert_eq!(api(10), EXIT_USAGE);
        assert_eq!(
            Failure::from(xo_lib::Error::ConnectionClosed).exit_code(),
            EXIT_CONNECTION
        );
        assert_eq!(
            Failure::from(std::io::Error::other("x")).exit_code(),
            EXIT_IO
        );
    }

    #[test]
    fn failed_uploads_say_why() {
        let failure = |status, reason: &str, body: &str| {
            Failure::from(xo_lib::Error::HttpStatus {
                status,
                reason: reason.into(),
                body: body.into(),
            })
        };
        let f = failure(
            500,
            "Internal Server Error",
            r#"{"id":0,"jsonrpc":"2.0","error":{"code":-32000,"message":"SR_OPERATION_NOT_SUPPORTED(OpaqueRef:x)","data":{"code":"SR_OPERATION_NOT_SUPPORTED","params":["OpaqueRef:x"]}}}"#,
        );
        assert_eq!(f.exit_code(), EXIT_API);
        assert_eq!(
            f.to_string(),
            "500 Internal Server Error: SR_OPERATION_NOT_SUPPORTED(OpaqueRef:x) (code -32000)"
        );
        // an XO error's data tells more than its message
        let f = failure(
            500,
            "Internal Server Error",
            r#"{"id":0,"jsonrpc":"2.0","error":{"code":1,"message":"no such object","data":{"id":"x","type":"SR"}}}"#,
        );
        assert_eq!(
            f.to_string(),
            r#"500 Internal Server Error: no such object (code 1) {"id":"x","type":"SR"}"#
        );
        // an answer that is not JSON-RPC is left out
        assert_eq!(
            failure(404, "Not Found", "not found\n").to_string(),
            "404 Not Found"
        );
    }
}
