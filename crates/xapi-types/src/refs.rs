//! Opaque object references (`OpaqueRef:<uuid>`), including the null ref.

use std::fmt;

/// An XAPI object reference. Opaque to clients; compared by string.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Ref(pub String);

impl Ref {
    /// The null reference `OpaqueRef:NULL`.
    pub const NULL_STR: &'static str = "OpaqueRef:NULL";

    pub fn null() -> Self {
        Ref(Self::NULL_STR.to_owned())
    }

    /// `OpaqueRef:<uuid>` from a uuid string.
    pub fn from_uuid(uuid: &str) -> Self {
        Ref(format!("OpaqueRef:{uuid}"))
    }

    /// True for `OpaqueRef:NULL` and for the empty string (which XO also treats as null).
    pub fn is_null(&self) -> bool {
        self.0 == Self::NULL_STR || self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Ref {
    /// The null reference.
    fn default() -> Self {
        Self::null()
    }
}

impl fmt::Debug for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Ref {
    fn from(s: &str) -> Self {
        Ref(s.to_owned())
    }
}

impl From<String> for Ref {
    fn from(s: String) -> Self {
        Ref(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_forms() {
        assert!(Ref::null().is_null());
        assert!(Ref::from("").is_null());
        assert!(!Ref::from_uuid("5ec2d621-7b62-f571-d38b-754341a973e5").is_null());
    }
}
