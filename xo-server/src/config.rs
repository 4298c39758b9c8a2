//! Server configuration: defaults, TOML file, `XO_*` environment overrides (CLI flags are applied by main).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// An environment variable holds an unusable value.
    #[error("invalid value for {var}: {reason}")]
    Env {
        /// Variable name.
        var: String,
        /// Why.
        reason: String,
    },
}

/// Argon2id cost for new password hashes.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Argon2Config {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for Argon2Config {
    fn default() -> Self {
        let d = xo_store::HashParams::default();
        Self {
            m_cost: d.m_cost,
            t_cost: d.t_cost,
            p_cost: d.p_cost,
        }
    }
}

impl From<Argon2Config> for xo_store::HashParams {
    fn from(c: Argon2Config) -> Self {
        Self {
            m_cost: c.m_cost,
            t_cost: c.t_cost,
            p_cost: c.p_cost,
        }
    }
}

/// Everything xo-server can be configured with. TOML keys are the field names.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (`XO_LISTEN`). Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Serve HTTPS (`XO_HTTPS`); implied when `cert` and `key` are set; without them a self-signed
    /// certificate is generated.
    pub https: bool,
    /// PEM certificate chain (`XO_CERT`).
    pub cert: Option<PathBuf>,
    /// PEM private key (`XO_KEY`).
    pub key: Option<PathBuf>,
    /// Directory of the database (`XO_DATA_DIR`). Default `./xo-data`.
    pub data_dir: PathBuf,
    /// Start simulated pools in-process (`XO_DEMO`).
    pub demo: bool,
    /// Password hashing cost.
    pub argon2: Argon2Config,
    /// Validity of tokens created without `expiresIn` (ms). Default 30 days.
    pub default_token_validity_ms: i64,
    /// Longest accepted `expiresIn` (ms). Default half a year.
    pub max_token_validity_ms: i64,
    /// After a failed sign-in, further attempts for the same user name fail during this delay (ms).
    pub sign_in_throttle_ms: u64,
    /// Largest accepted WebSocket message (bytes); bigger ones close the connection with 1009.
    pub max_message_bytes: usize,
    /// Frames (responses and notifications) that may wait for a slow client before it is cut off.
    pub send_queue: usize,
    /// Requests processed at once per connection.
    pub max_in_flight: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            https: false,
            cert: None,
            key: None,
            data_dir: PathBuf::from("xo-data"),
            demo: false,
            argon2: Argon2Config::default(),
            default_token_validity_ms: 30 * 24 * 3600 * 1000,
            max_token_validity_ms: 182 * 24 * 3600 * 1000,
            sign_in_throttle_ms: 2000,
            max_message_bytes: 16 << 20,
            send_queue: 1024,
            max_in_flight: 64,
        }
    }
}

fn parse_bool(var: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(ConfigError::Env {
            var: var.into(),
            reason: format!("not a boolean: {v:?}"),
        }),
    }
}

impl Config {
    /// A configuration for tests and embedding: listens on `127.0.0.1:0`, stores in `data_dir`, hashes
    /// passwords with cheap Argon2 parameters (never use it in production).
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        let light = xo_store::HashParams::light();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            argon2: Argon2Config {
                m_cost: light.m_cost,
                t_cost: light.t_cost,
                p_cost: light.p_cost,
            },
            ..Self::default()
        }
    }

    /// Parses a TOML document (missing keys take their defaults).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Applies `XO_LISTEN`, `XO_DATA_DIR`, `XO_HTTPS`, `XO_CERT`, `XO_KEY`, `XO_DEMO` from `vars`.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (k, v) in vars {
            match k.as_str() {
                "XO_LISTEN" => {
                    self.listen = v.parse().map_err(|e| ConfigError::Env {
                        var: k.clone(),
                        reason: format!("{e}"),
                    })?
                }
                "XO_DATA_DIR" => self.data_dir = PathBuf::from(v),
                "XO_HTTPS" => self.https = parse_bool(&k, &v)?,
                "XO_CERT" => self.cert = Some(PathBuf::from(v)),
                "XO_KEY" => self.key = Some(PathBuf::from(v)),
                "XO_DEMO" => self.demo = parse_bool(&k, &v)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether the listener speaks TLS.
    pub fn uses_tls(&self) -> bool {
        self.https || (self.cert.is_some() && self.key.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_documents_the_defaults() {
        let c = Config::from_toml(include_str!("../config.example.toml")).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn defaults_then_file_then_env() {
        let mut c = Config::from_toml(
            "listen = \"0.0.0.0:9000\"\ndata_dir = \"/d\"\n[argon2]\nm_cost = 64\n",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.argon2.m_cost, 64);
        assert_eq!(c.argon2.t_cost, Argon2Config::default().t_cost);
        assert!(!c.uses_tls());
        c.apply_env([
            ("XO_LISTEN".into(), "127.0.0.1:1".into()),
            ("XO_HTTPS".into(), "yes".into()),
        ])
        .unwrap();
        assert_eq!(c.listen.port(), 1);
        assert!(c.uses_tls());
        assert!(c.apply_env([("XO_DEMO".into(), "maybe".into())]).is_err());
        assert!(c.apply_env([("XO_LISTEN".into(), "nope".into())]).is_err());
        assert!(Config::from_toml("bogus = 1").is_err());
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }
}
