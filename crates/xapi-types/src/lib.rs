//! XAPI wire vocabulary: the datamodel schema (generated from `spec/xenapi.json`), refs, errors and sans-IO codecs.
//!
//! Values on the wire are carried as [`Value`] (`serde_json::Value`) with these conventions, the same for
//! XML-RPC and JSON-RPC:
//! - `int` → JSON integer (`i64`); `float` → JSON number; `bool` → `true`/`false`;
//! - `string`, `X ref`, `enum`, `datetime` → JSON string (datetimes in XAPI form `YYYYMMDDTHH:MM:SSZ`);
//! - `t set` → array; `(k -> v) map` → object (keys stringified); records → object; `void` → `""`.
//!
//! XML-RPC is untyped on output (ints look like strings), so decoders give the raw shape and
//! [`schema::coerce`] turns it into the canonical form above using the datamodel type (servers validating
//! input); [`schema::canonicalise`] does the same but tolerates enum values unknown to this crate (clients
//! reading a possibly newer server); [`records::decode`] goes on to a typed record such as [`records::VmRecord`].
//!
//! # Regenerating the datamodel tables
//!
//! [`generated`] (schema tables, error codes, typed records) is produced from `spec/xenapi.json` by the
//! generator in `xtask/src/codegen.rs`:
//!
//! ```text
//! cargo xtask codegen           # rewrite crates/xapi-types/src/generated/*.rs
//! cargo xtask codegen --check   # fail if they are stale
//! ```
//!
//! The test `tests/it/generated.rs::generated_files_are_up_to_date` fails when the committed files differ from
//! a fresh generation. To type another class, add it to `RECORD_CLASSES` in the generator; to declare an error
//! code XAPI raises without the datamodel declaring it, add it to `EXTRA_ERROR_CODES`.

pub mod datetime;
pub mod error;
pub mod generated;
pub mod jsonrpc;
pub mod raw;
pub mod records;
pub mod refs;
pub mod schema;
pub mod tree;
pub mod xmlrpc;

pub use error::{CodecError, XapiError};
pub use raw::RawRecord;
pub use refs::Ref;
pub use schema::{ClassSpec, EnumSpec, FieldSpec, MessageSpec, ParamSpec, Qualifier, Type};
pub use serde_json::Value;
