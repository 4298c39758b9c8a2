//! Schema versioning: the registry of migrations and the code that runs them at open time.
//!
//! Version history:
//! - 1: users, groups, servers, tokens, settings, plugins trees; no email index.
//! - 2: `users_by_email` index; user records normalised (`permission`, `groups`, `preferences` always present).

use serde_json::Value;

use crate::{layout, Result, StoreError};

/// Schema version written by this build.
pub const SCHEMA_VERSION: u32 = 2;

/// One step of the migration path: turns a database at version `from` into version `from + 1`.
struct Migration {
    from: u32,
    description: &'static str,
    run: fn(&sled::Db) -> Result<()>,
}

/// The registry, in order. Append a step (and bump [`SCHEMA_VERSION`]) for every layout change.
const MIGRATIONS: &[Migration] = &[Migration {
    from: 1,
    description: "build the users_by_email index and normalise user records",
    run: v1_to_v2,
}];

/// `(from_version, description)` of every registered migration.
pub fn migrations() -> impl Iterator<Item = (u32, &'static str)> {
    MIGRATIONS.iter().map(|m| (m.from, m.description))
}

pub(crate) fn read_version(db: &sled::Db) -> Result<Option<u32>> {
    let meta = db.open_tree(layout::META)?;
    match meta.get(layout::SCHEMA_VERSION_KEY)? {
        None => Ok(None),
        Some(v) => {
            let s = String::from_utf8_lossy(&v).into_owned();
            s.parse().map(Some).map_err(|_| StoreError::BadVersion(s))
        }
    }
}

fn write_version(db: &sled::Db, v: u32) -> Result<()> {
    db.open_tree(layout::META)?
        .insert(layout::SCHEMA_VERSION_KEY, v.to_string().as_bytes())?;
    db.flush()?;
    Ok(())
}

/// Brings the database to [`SCHEMA_VERSION`]. A database without a version key is new if it holds no data
/// (stamped with the current version) and version 1 otherwise.
pub(crate) fn migrate(db: &sled::Db) -> Result<()> {
    let mut version = match read_version(db)? {
        Some(v) => v,
        None => {
            let has_data = [
                layout::USERS,
                layout::GROUPS,
                layout::SERVERS,
                layout::TOKENS,
            ]
            .iter()
            .map(|t| db.open_tree(t).map(|t| !t.is_empty()))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .any(|b| b);
            if has_data {
                1
            } else {
                write_version(db, SCHEMA_VERSION)?;
                return Ok(());
            }
        }
    };
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    while version < SCHEMA_VERSION {
        let step = MIGRATIONS
            .iter()
            .find(|m| m.from == version)
            .ok_or(StoreError::Migration {
                from: version,
                reason: "no migration registered".into(),
            })?;
        tracing::info!(
            from = version,
            to = version + 1,
            what = step.description,
            "migrating store"
        );
        (step.run)(db).map_err(|e| match e {
            e @ StoreError::Migration { .. } => e,
            e => StoreError::Migration {
                from: version,
                reason: e.to_string(),
            },
        })?;
        version += 1;
        write_version(db, version)?;
    }
    Ok(())
}

fn v1_to_v2(db: &sled::Db) -> Result<()> {
    let users = db.open_tree(layout::USERS)?;
    let index = db.open_tree(layout::USERS_BY_EMAIL)?;
    index.clear()?;
    for item in users.iter() {
        let (k, v) = item?;
        let id = String::from_utf8_lossy(&k).into_owned();
        let mut record: Value = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
            collection: layout::USERS,
            id: id.clone(),
            reason: e.to_string(),
        })?;
        let obj = record.as_object_mut().ok_or_else(|| StoreError::Corrupt {
            collection: layout::USERS,
            id: id.clone(),
            reason: "not an object".into(),
        })?;
        let email = obj
            .get("email")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if email.is_empty() {
            return Err(StoreError::Corrupt {
                collection: layout::USERS,
                id,
                reason: "no email".into(),
            });
        }
        if index.insert(email.as_bytes(), k.as_ref())?.is_some() {
            return Err(StoreError::DuplicateEmail(email));
        }
        obj.entry("id").or_insert_with(|| Value::String(id.clone()));
        obj.entry("permission").or_insert_with(|| "none".into());
        if !obj.get("groups").is_some_and(Value::is_array) {
            obj.insert("groups".into(), Value::Array(vec![]));
        }
        if !obj.get("preferences").is_some_and(Value::is_object) {
            obj.insert("preferences".into(), Value::Object(Default::default()));
        }
        let bytes = serde_json::to_vec(&record).map_err(|e| StoreError::Encode(e.to_string()))?;
        users.insert(k, bytes)?;
    }
    db.flush()?;
    Ok(())
}
