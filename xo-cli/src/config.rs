//! The configuration file shared with Xen Orchestra's xo-cli:
//! `$XDG_CONFIG_HOME/xo-cli/config.json` (default `~/.config/xo-cli/config.json`) holding
//! `{"allowUnauthorized", "clientId", "server", "token"}`. Unknown keys are preserved; the file is
//! written atomically with mode 0600 (it holds a token).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::failure::Failure;

/// The loaded file.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    data: Map<String, Value>,
}

/// Where the file lives: `$XDG_CONFIG_HOME/xo-cli/config.json` when `XDG_CONFIG_HOME` is an absolute
/// path, else `$HOME/.config/xo-cli/config.json`.
pub fn path() -> Result<PathBuf, Failure> {
    let dir = match std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from) {
        Some(d) if d.is_absolute() => d,
        _ => match std::env::var_os("HOME") {
            Some(h) if !h.is_empty() => PathBuf::from(h).join(".config"),
            _ => {
                return Err(Failure::Io(
                    "cannot locate the configuration: set HOME or XDG_CONFIG_HOME".into(),
                ))
            }
        },
    };
    Ok(dir.join("xo-cli").join("config.json"))
}

impl ConfigFile {
    /// Loads the file (missing ⇒ empty).
    pub fn load() -> Result<Self, Failure> {
        Self::load_from(path()?)
    }

    /// Loads a given file (missing ⇒ empty).
    pub fn load_from(path: PathBuf) -> Result<Self, Failure> {
        let data = match std::fs::read_to_string(&path) {
            Ok(text) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(Failure::Io(format!(
                        "{}: not a JSON object; fix or delete it",
                        path.display()
                    )))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(Failure::Io(format!("{}: {e}", path.display()))),
        };
        Ok(Self { path, data })
    }

    /// File path.
    pub fn file(&self) -> &Path {
        &self.path
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.data
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// `server`.
    pub fn server(&self) -> Option<&str> {
        self.str("server")
    }

    /// `token`.
    pub fn token(&self) -> Option<&str> {
        self.str("token")
    }

    /// `allowUnauthorized`.
    pub fn allow_unauthorized(&self) -> bool {
        self.data.get("allowUnauthorized").and_then(Value::as_bool) == Some(true)
    }

    /// `clientId`, created (random base36, like xo-cli) when missing.
    pub fn client_id(&mut self) -> String {
        if let Some(id) = self.str("clientId") {
            return id.to_owned();
        }
        use rand::Rng;
        const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut rng = rand::thread_rng();
        let id: String = (0..11)
            .map(|_| DIGITS[rng.gen_range(0..DIGITS.len())] as char)
            .collect();
        self.data.insert("clientId".into(), id.clone().into());
        id
    }

    /// Records a registration.
    pub fn register(&mut self, server: &str, token: &str, allow_unauthorized: bool) {
        self.data.insert("server".into(), server.into());
        self.data.insert("token".into(), token.into());
        self.data
            .insert("allowUnauthorized".into(), allow_unauthorized.into());
    }

    /// Forgets `server` and `token`.
    pub fn unregister(&mut self) {
        self.data.remove("server");
        self.data.remove("token");
    }

    /// Writes the file (directory created, temp file + rename, mode 0600).
    pub fn save(&self) -> Result<(), Failure> {
        let fail = |e: std::io::Error| Failure::Io(format!("{}: {e}", self.path.display()));
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(fail)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut text = serde_json::to_string(&Value::Object(self.data.clone()))
            .map_err(|e| Failure::Io(e.to_string()))?;
        text.push('\n');
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(fail)?;
        f.write_all(text.as_bytes()).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &self.path).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("xo-cli/config.json");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, r#"{"other": 1, "clientId": "abc"}"#).unwrap();
        let mut c = ConfigFile::load_from(p.clone()).unwrap();
        assert_eq!(c.client_id(), "abc");
        c.register("http://h", "tok", true);
        c.save().unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"other": 1, "clientId": "abc", "server": "http://h", "token": "tok", "allowUnauthorized": true})
        );
        let mut c = ConfigFile::load_from(p.clone()).unwrap();
        assert!(c.allow_unauthorized());
        c.unregister();
        c.save().unwrap();
        let c = ConfigFile::load_from(p.clone()).unwrap();
        assert_eq!((c.server(), c.token()), (None, None));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&p, "[1]").unwrap();
        assert!(ConfigFile::load_from(p).is_err());
        let mut fresh = ConfigFile::load_from(dir.path().join("none.json")).unwrap();
        let id = fresh.client_id();
        assert_eq!(id.len(), 11);
        assert_eq!(fresh.client_id(), id);
    }
}
