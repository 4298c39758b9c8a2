//! Store errors.

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The underlying database failed (I/O, corruption detected by sled).
    #[error("database error: {0}")]
    Db(#[from] sled::Error),
    /// A record could not be decoded: the stored bytes are not the expected JSON.
    #[error("corrupt record {id:?} in {collection}: {reason}")]
    Corrupt {
        /// Collection (tree) name.
        collection: &'static str,
        /// Record key.
        id: String,
        /// Decoder message.
        reason: String,
    },
    /// A record could not be encoded.
    #[error("cannot encode record: {0}")]
    Encode(String),
    /// Another user already has this email.
    #[error("a user with email {0:?} already exists")]
    DuplicateEmail(String),
    /// Another group already has this name.
    #[error("a group named {0:?} already exists")]
    DuplicateGroupName(String),
    /// Another server already has this host.
    #[error("a server with host {0:?} already exists")]
    DuplicateHost(String),
    /// No record with this id.
    #[error("no such {collection} {id}")]
    NotFound {
        /// Collection (tree) name.
        collection: &'static str,
        /// Requested id.
        id: String,
    },
    /// An invalid value was given (empty email, …).
    #[error("invalid value: {0}")]
    Invalid(String),
    /// Password hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The database was written by a newer xo-store.
    #[error("database schema version {found} is newer than supported version {supported}")]
    TooNew {
        /// Version found on disk.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// The schema version key holds garbage.
    #[error("unreadable schema version {0:?}")]
    BadVersion(String),
    /// A migration failed; the database is left at version `from`.
    #[error("migration from schema version {from} failed: {reason}")]
    Migration {
        /// Version the migration started from.
        from: u32,
        /// Why it failed.
        reason: String,
    },
}

impl From<sled::transaction::TransactionError<StoreError>> for StoreError {
    fn from(e: sled::transaction::TransactionError<StoreError>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => StoreError::Db(e),
        }
    }
}
