//! Generated typed records.
