//! XAPI API-level errors (`[code, params…]`) and codec errors.

use std::fmt;

/// An API-level failure as XAPI sends it: `ErrorDescription = [code, param1, …]`.
///
/// Params may contain object refs but never secrets: XAPI does not echo passwords in errors.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub struct XapiError {
    pub code: String,
    pub params: Vec<String>,
}

impl XapiError {
    pub fn new(
        code: impl Into<String>,
        params: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            code: code.into(),
            params: params.into_iter().map(Into::into).collect(),
        }
    }

    /// An error with no parameters.
    pub fn code(code: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            params: Vec::new(),
        }
    }

    /// `INTERNAL_ERROR [text]`.
    pub fn internal(text: impl Into<String>) -> Self {
        Self::new(crate::error::codes::INTERNAL_ERROR, [text.into()])
    }

    /// The wire form `[code, params…]`.
    pub fn to_description(&self) -> Vec<String> {
        std::iter::once(self.code.clone())
            .chain(self.params.iter().cloned())
            .collect()
    }

    /// Parse `[code, params…]`; an empty description becomes `INTERNAL_ERROR`.
    pub fn from_description(desc: Vec<String>) -> Self {
        let mut it = desc.into_iter();
        match it.next() {
            Some(code) => Self {
                code,
                params: it.collect(),
            },
            None => Self::internal("empty error description"),
        }
    }
}

impl fmt::Debug for XapiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XapiError({} {:?})", self.code, self.params)
    }
}

impl fmt::Display for XapiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if !self.params.is_empty() {
            write!(f, " [{}]", self.params.join(", "))?;
        }
        Ok(())
    }
}

/// A malformed message on the wire (transport-level: XAPI answers HTTP 500 to these).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("malformed XML: {0}")]
    Xml(String),
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("unexpected structure: {0}")]
    Structure(String),
}

/// Error codes, generated from the datamodel's error catalogue plus codes raised by XAPI but not declared there.
pub mod codes {
    pub use crate::generated::error_codes::*;
}
