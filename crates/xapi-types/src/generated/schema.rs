//! Generated schema tables.
use crate::schema::{ClassSpec, EnumSpec};
pub static CLASSES: &[ClassSpec] = &[];
pub static ENUMS: &[EnumSpec] = &[];
