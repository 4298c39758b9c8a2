//! Typed records for the classes most code touches (pool, host, VM, VBD, VDI, SR, …), generated; see
//! [`crate::generated::records`]. Each deserialises from the canonical [`crate::Value`] form of a record.
//!
//! Enum-typed fields use generated Rust enums (e.g. [`VmPowerState`]) whose serde names are the datamodel
//! spellings; a value unknown to this crate becomes the `Unrecognised` variant instead of failing.
//! Datetimes are `String`s in XAPI form, refs are [`crate::Ref`], sets `Vec`, maps `BTreeMap`, and anything
//! the generator cannot type statically (nested records, options) a [`crate::Value`].

pub use crate::generated::records::*;

use crate::schema::{canonicalise, CoerceError};
use crate::{Type, Value};

/// The value of an absent datetime field: the epoch, XAPI's "unset".
pub fn epoch() -> String {
    crate::datetime::EPOCH.to_owned()
}

/// A typed record of one datamodel class.
pub trait Record: serde::de::DeserializeOwned + serde::Serialize {
    /// The class name as spelled in the datamodel (`VM`, `host`).
    const CLASS: &'static str;
}

/// Why a value could not be turned into a typed record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record does not fit its class: {0}")]
    Coerce(#[from] CoerceError),
    #[error("record does not deserialise: {0}")]
    Shape(#[from] serde_json::Error),
}

/// Canonicalise a raw decoded record (e.g. straight from XML-RPC) with [`canonicalise`] (enum values this
/// crate does not know are tolerated and become `Unrecognised`) and deserialise it.
pub fn decode<T: Record>(value: Value) -> Result<T, RecordError> {
    let canonical = canonicalise(&Type::Record(T::CLASS), value)?;
    Ok(serde_json::from_value(canonical)?)
}

/// A typed record back in canonical [`Value`] form.
pub fn encode<T: Record>(record: &T) -> Result<Value, RecordError> {
    Ok(serde_json::to_value(record)?)
}
