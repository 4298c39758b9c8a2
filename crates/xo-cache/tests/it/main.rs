//! xo-cache integration tests, one binary: store, sync, transform snapshots, trimmed records.

mod store;
mod support;
mod sync;
mod transform_snapshots;
mod trimmed_records;
