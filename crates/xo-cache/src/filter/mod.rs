//! `xo.getAllObjects` filters: an object (lodash `_.matches`, partial deep equality) or a string
//! (complex-matcher syntax).

pub mod complex;
pub mod matches;

use serde_json::Value;

pub use complex::{Node, ParseError};

/// A filter over XO objects.
#[derive(Debug, Clone)]
pub enum Filter {
    /// Everything.
    All,
    /// lodash `_.matches(pattern)`.
    Pattern(Value),
    /// A parsed complex-matcher expression.
    Complex(Node),
}

/// A filter parameter that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// The complex-matcher string does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Neither an object nor a string.
    #[error("filter must be an object or a string")]
    BadType,
}

impl Filter {
    /// From the `filter` param of `xo.getAllObjects` (`None`/`null` = everything).
    pub fn from_param(v: Option<&Value>) -> Result<Filter, FilterError> {
        match v {
            None | Some(Value::Null) => Ok(Filter::All),
            Some(Value::String(s)) => Ok(Filter::Complex(complex::parse(s)?)),
            Some(obj @ Value::Object(_)) => Ok(Filter::Pattern(obj.clone())),
            Some(_) => Err(FilterError::BadType),
        }
    }

    /// Whether `value` passes.
    pub fn matches(&self, value: &Value) -> bool {
        match self {
            Filter::All => true,
            Filter::Pattern(p) => matches::is_match(value, p),
            Filter::Complex(n) => n.matches(value),
        }
    }
}
