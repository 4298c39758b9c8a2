//! Typed records for the classes most code touches (pool, host, VM, VBD, VDI, SR, …), generated; see
//! [`crate::generated::records`]. Each deserialises from the canonical [`crate::Value`] form of a record.

pub use crate::generated::records::*;
