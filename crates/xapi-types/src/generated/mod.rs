//! Code generated from `spec/xenapi.json` by `cargo xtask codegen`: do not edit by hand.
//!
//! The files are emitted already laid out and excluded from rustfmt so that regeneration is byte-stable
//! (the `generated_files_are_up_to_date` test compares them with a fresh in-memory generation).

#[rustfmt::skip]
pub mod error_codes;
#[rustfmt::skip]
pub mod records;
#[rustfmt::skip]
pub mod schema;
