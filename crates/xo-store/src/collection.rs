//! A typed view of one sled tree: records are JSON documents keyed by their id.

use std::marker::PhantomData;

use serde::{de::DeserializeOwned, Serialize};

use crate::{layout, Group, Result, Server, StoreError, Token, User};

/// A record type stored in a [`Collection`].
pub trait Record: Serialize + DeserializeOwned {
    /// Tree name.
    const COLLECTION: &'static str;
    /// Key of this record.
    fn id(&self) -> &str;
}

/// `impl Record` for record types keyed by their `id` field.
macro_rules! keyed_by_id {
    ($($t:ty => $tree:expr),* $(,)?) => {$(
        impl Record for $t {
            const COLLECTION: &'static str = $tree;
            fn id(&self) -> &str {
                &self.id
            }
        }
    )*};
}

keyed_by_id!(
    User => layout::USERS,
    Group => layout::GROUPS,
    Server => layout::SERVERS,
    Token => layout::TOKENS,
);

/// Typed access to one tree. Writes here are not flushed: [`crate::Store`] flushes before returning.
pub struct Collection<T> {
    tree: sled::Tree,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("tree", &self.tree.name())
            .finish()
    }
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Self {
            tree: self.tree.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Record> Collection<T> {
    pub(crate) fn open(db: &sled::Db) -> Result<Self> {
        Ok(Self {
            tree: db.open_tree(T::COLLECTION)?,
            _t: PhantomData,
        })
    }

    /// The underlying tree (for transactions).
    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    pub(crate) fn decode(key: &[u8], bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            collection: T::COLLECTION,
            id: String::from_utf8_lossy(key).into_owned(),
            reason: e.to_string(),
        })
    }

    pub(crate) fn encode(record: &T) -> Result<Vec<u8>> {
        serde_json::to_vec(record).map_err(|e| StoreError::Encode(e.to_string()))
    }

    /// The record with this id; `Err(Corrupt)` when its bytes do not decode.
    pub fn get(&self, id: &str) -> Result<Option<T>> {
        match self.tree.get(id.as_bytes())? {
            Some(bytes) => Self::decode(id.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every decodable record, in key order. Records that do not decode are skipped with a warning so that
    /// one bad record does not hide the others (fetch it with [`Collection::get`] to see the error).
    pub fn all(&self) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (k, v) = item?;
            match Self::decode(&k, &v) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(error = %e, "skipping undecodable record"),
            }
        }
        Ok(out)
    }

    /// The record with this id, `Err(NotFound)` when there is none.
    pub(crate) fn require(&self, id: &str) -> Result<T> {
        self.get(id)?.ok_or_else(|| StoreError::NotFound {
            collection: T::COLLECTION,
            id: id.to_owned(),
        })
    }

    /// `Err(duplicate())` when another record (another id) has the same key as `record` (`same`).
    pub(crate) fn check_unique(
        &self,
        record: &T,
        same: impl Fn(&T, &T) -> bool,
        duplicate: impl FnOnce() -> StoreError,
    ) -> Result<()> {
        if self
            .all()?
            .iter()
            .any(|other| other.id() != record.id() && same(other, record))
        {
            return Err(duplicate());
        }
        Ok(())
    }

    /// Replaces an existing record (`Err(NotFound)` first) whose key must stay unique (see
    /// [`Collection::check_unique`]).
    pub(crate) fn replace_unique(
        &self,
        record: &T,
        same: impl Fn(&T, &T) -> bool,
        duplicate: impl FnOnce() -> StoreError,
    ) -> Result<()> {
        self.require(record.id())?;
        self.check_unique(record, same, duplicate)?;
        self.put(record)
    }

    /// Removes every record matching `pred`; returns how many.
    pub(crate) fn remove_where(&self, pred: impl Fn(&T) -> bool) -> Result<usize> {
        let mut n = 0;
        for r in self.all()? {
            if pred(&r) {
                self.remove(r.id())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Inserts or replaces a record.
    pub(crate) fn put(&self, record: &T) -> Result<()> {
        self.tree
            .insert(record.id().as_bytes(), Self::encode(record)?)?;
        Ok(())
    }

    /// Removes a record; `true` if it existed.
    pub(crate) fn remove(&self, id: &str) -> Result<bool> {
        Ok(self.tree.remove(id.as_bytes())?.is_some())
    }

    /// Number of keys in the tree.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}
