//! ACL entries, their ids, roles and the expansion of an action into permissions.

use serde_json::{json, Value};
use xo_plugin::PluginError;

/// Storage key of the entry list.
pub const STORAGE_KEY: &str = "acls";

/// One ACL entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    /// Derived from (subject, object, action): adding the same entry twice is a no-op.
    pub id: String,
    /// User or group id.
    pub subject: String,
    /// XO object id.
    pub object: String,
    /// Role id or permission.
    pub action: String,
}

impl Acl {
    /// An entry with its derived id.
    pub fn new(subject: &str, object: &str, action: &str) -> Self {
        Self {
            id: acl_id(subject, object, action),
            subject: subject.to_owned(),
            object: object.to_owned(),
            action: action.to_owned(),
        }
    }

    /// `{id, subject, object, action}` as `acl.get` returns it.
    pub fn to_json(&self) -> Value {
        json!({ "id": self.id, "subject": self.subject, "object": self.object, "action": self.action })
    }
}

/// XO's ACL id: `multiKeyHash(subject, object, action)` (base64url of npm `multikey-hash`, see
/// [`crate::multikey_hash`]), so ids equal those of an XO database.
pub fn acl_id(subject: &str, object: &str, action: &str) -> String {
    crate::multikey_hash::multikey_hash_id(&[subject, object, action])
}

/// The roles (`role.getAll`).
pub fn roles() -> Value {
    json!([
        {"id": "viewer", "name": "Viewer", "permissions": ["view"]},
        {"id": "operator", "name": "Operator", "permissions": ["view", "operate"]},
        {"id": "admin", "name": "Admin", "permissions": ["view", "operate", "administrate"]},
    ])
}

/// The permissions an action grants: a role's, or the action itself.
pub fn permissions_of(action: &str) -> Vec<&str> {
    match action {
        "viewer" => vec!["view"],
        "operator" => vec!["view", "operate"],
        "admin" => vec!["view", "operate", "administrate"],
        other => vec![other],
    }
}

/// Decodes the stored list (entries without action are XO's legacy ones: `admin`).
pub fn decode(v: &Value) -> Result<Vec<Acl>, PluginError> {
    let list = v
        .as_array()
        .ok_or_else(|| PluginError::failed("stored ACLs are not a list"))?;
    let mut out = Vec::with_capacity(list.len());
    for e in list {
        let field = |k: &str| e.get(k).and_then(Value::as_str);
        let (Some(subject), Some(object)) = (field("subject"), field("object")) else {
            return Err(PluginError::failed(format!("malformed stored ACL {e}")));
        };
        out.push(Acl::new(
            subject,
            object,
            field("action").unwrap_or("admin"),
        ));
    }
    Ok(out)
}

/// Encodes the list for storage.
pub fn encode(acls: &[Acl]) -> Value {
    Value::Array(acls.iter().map(Acl::to_json).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = acl_id("u", "o", "viewer");
        assert_eq!(a, acl_id("u", "o", "viewer"));
        assert_ne!(a, acl_id("u", "o", "admin"));
        assert_ne!(acl_id("ab", "c", "x"), acl_id("a", "bc", "x"));
        assert_eq!(a.len(), 6);
        // XO's id of ("a", "b", "viewer") (node + npm multikey-hash)
        assert_eq!(acl_id("a", "b", "viewer"), "J-k_HQ");
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn roles_expand() {
        assert_eq!(permissions_of("viewer"), ["view"]);
        assert_eq!(permissions_of("operator"), ["view", "operate"]);
        assert_eq!(permissions_of("admin"), ["view", "operate", "administrate"]);
        assert_eq!(permissions_of("custom"), ["custom"]);
    }

    #[test]
    fn decode_checks_shape_and_migrates_legacy() {
        let v = json!([{"subject": "u", "object": "o"}]);
        assert_eq!(decode(&v).unwrap()[0].action, "admin");
        assert!(decode(&json!({})).is_err());
        assert!(decode(&json!([{"subject": 1}])).is_err());
        let acls = vec![Acl::new("u", "o", "viewer")];
        assert_eq!(decode(&encode(&acls)).unwrap(), acls);
    }
}
