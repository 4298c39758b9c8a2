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
            E::Api(_) | E::Decode(_) | E::HttpStatus { .. } => Failure::Api(text),
            E::Io(_) => Failure::Io(text),
        }
    }
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
}
