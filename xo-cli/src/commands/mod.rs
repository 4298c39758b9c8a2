//! The commands, and the connection they share (registered server and token, or `--url`).

pub mod call;
pub mod introspect;
pub mod objects;
pub mod register;
pub mod transfer;
pub mod watch;

use xo_lib::{Credentials, Options, Xo};

use crate::config::ConfigFile;
use crate::failure::Failure;
use crate::output::Format;

/// Global options every command sees.
#[derive(Debug, Clone)]
pub struct Global {
    /// `--url`.
    pub url: Option<String>,
    /// `--allowUnauthorized`.
    pub allow_unauthorized: bool,
    /// `--json`.
    pub json: bool,
    /// `--table`.
    pub table: bool,
}

impl Global {
    /// The output format, given a command's own `--json` / `--table`.
    pub fn format(&self, json: bool, table: bool) -> Format {
        Format::choose(self.json || json, self.table || table)
    }
}

/// Connects to the registered server (or `--url`) and signs in with the stored token.
pub async fn connect(g: &Global) -> Result<Xo, Failure> {
    connect_with(g, |o| o).await
}

/// [`connect`] with extra options (e.g. reconnection).
pub async fn connect_with(
    g: &Global,
    extra: impl FnOnce(Options) -> Options,
) -> Result<Xo, Failure> {
    let config = ConfigFile::load()?;
    let (url, token, allow) = match &g.url {
        Some(u) => (
            u.clone(),
            None,
            g.allow_unauthorized || config.allow_unauthorized(),
        ),
        None => {
            let Some(server) = config.server() else {
                return Err(Failure::Auth(
                    "not registered: run xo-cli --register <XO-Server URL> <username>".into(),
                ));
            };
            let Some(token) = config.token() else {
                return Err(Failure::Auth(format!(
                    "no token in {}: run xo-cli --register again",
                    config.file().display()
                )));
            };
            (
                server.to_owned(),
                Some(token.to_owned()),
                g.allow_unauthorized || config.allow_unauthorized(),
            )
        }
    };
    let mut options = Options::new(url).allow_unauthorized(allow);
    if let Some(t) = token {
        options = options.credentials(Credentials::token(t));
    }
    match Xo::connect(extra(options)).await {
        Ok(xo) => Ok(xo),
        Err(e) if e.is_authentication() => Err(Failure::Auth(format!(
            "{e}: the token is invalid or expired; run xo-cli --register again"
        ))),
        Err(e) => Err(e.into()),
    }
}
