//! Code generated from `spec/xenapi.json` by `cargo xtask codegen`: do not edit by hand.

pub mod error_codes;
pub mod records;
pub mod schema;
