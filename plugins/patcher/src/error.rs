//! Patcher errors.

/// What can go wrong while listing or installing patches.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The catalogue is not the expected XML.
    #[error("invalid updates catalogue: {0}")]
    Catalogue(String),
    /// A download answered a non-2xx status.
    #[error("download of {url} failed: HTTP {status}")]
    Download { url: String, status: u16 },
    /// Connection / TLS / URL problems.
    #[error("transport error: {0}")]
    Transport(String),
    /// A download exceeded the configured bound.
    #[error("{url} is larger than {max} bytes")]
    TooLarge { url: String, max: u64 },
    /// The update archive cannot be read.
    #[error("invalid update archive: {0}")]
    Zip(String),
    /// A patch (or one of its requirements) is not in the catalogue.
    #[error("unknown patch {0}")]
    UnknownPatch(String),
    /// An XAPI call failed.
    #[error(transparent)]
    Xapi(#[from] xapi_client::Error),
    /// The installation was aborted between two patches.
    #[error("aborted")]
    Aborted,
    /// The XCP-ng updater plugin reported an error.
    #[error("updater plugin: {0}")]
    Updater(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
