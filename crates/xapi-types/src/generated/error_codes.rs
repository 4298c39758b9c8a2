//! Generated error codes.
pub const INTERNAL_ERROR: &str = "INTERNAL_ERROR";
