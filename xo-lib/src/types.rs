//! Typed shapes of the common calls: credentials, the signed-in user, method introspection, token
//! options, notifications.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// What `session.signIn` receives.
#[derive(Clone)]
pub enum Credentials {
    /// `{email, password, otp?}`.
    Password {
        /// E-mail (XO aliases `username` to it).
        email: String,
        /// Password.
        password: String,
        /// One-time password when the account has TOTP.
        otp: Option<String>,
    },
    /// `{token}` (from `token.create`).
    Token(String),
    /// Anything an authentication plugin understands.
    Custom(Map<String, Value>),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { email, .. } => f
                .debug_struct("Password")
                .field("email", email)
                .finish_non_exhaustive(),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
            Credentials::Custom(m) => f
                .debug_tuple("Custom")
                .field(&m.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

impl Credentials {
    /// `{email, password}`.
    pub fn password(email: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Password {
            email: email.into(),
            password: password.into(),
            otp: None,
        }
    }

    /// `{token}`.
    pub fn token(token: impl Into<String>) -> Self {
        Credentials::Token(token.into())
    }

    /// The `session.signIn` params.
    pub fn to_params(&self) -> Value {
        match self {
            Credentials::Password {
                email,
                password,
                otp,
            } => {
                let mut v = json!({ "email": email, "password": password });
                if let Some(o) = otp {
                    v["otp"] = o.clone().into();
                }
                v
            }
            Credentials::Token(t) => json!({ "token": t }),
            Credentials::Custom(m) => Value::Object(m.clone()),
        }
    }
}

/// The public properties of a user (`session.signIn`, `session.getUser`, `user.getAll`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// User id.
    pub id: String,
    /// E-mail / user name.
    pub email: String,
    /// `none`, `read`, `write` or `admin`.
    #[serde(default)]
    pub permission: String,
    /// Group ids.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Preferences.
    #[serde(default)]
    pub preferences: Map<String, Value>,
    /// External providers that manage this user.
    #[serde(
        default,
        rename = "authProviders",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_providers: Option<Value>,
}

impl User {
    /// Whether the user is an administrator.
    pub fn is_admin(&self) -> bool {
        self.permission == "admin"
    }
}

/// Who may call a method (the `permission` of `system.getMethodsInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permission {
    /// `permission: null`: no sign-in needed.
    None,
    /// `permission` absent: any signed-in user.
    User,
    /// Any other value (XO only uses `admin`).
    Level(String),
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Permission::None => f.write_str("none (no sign-in needed)"),
            Permission::User => f.write_str("user (signed in)"),
            Permission::Level(l) => f.write_str(l),
        }
    }
}

/// One entry of `system.getMethodsInfo`.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodInfo {
    /// Description, if set.
    pub description: Option<String>,
    /// Raw XO-dialect params map (`name → JSON schema`, with `optional`, `default`, `'*'`).
    pub params: Map<String, Value>,
    /// Who may call it.
    pub permission: Permission,
}

impl MethodInfo {
    /// Parses one entry (lenient: missing members get defaults).
    pub fn from_json(v: &Value) -> Self {
        let permission = match v.get("permission") {
            None => Permission::User,
            Some(Value::Null) => Permission::None,
            Some(Value::String(s)) => Permission::Level(s.clone()),
            Some(other) => Permission::Level(other.to_string()),
        };
        Self {
            description: v
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned),
            params: v
                .get("params")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            permission,
        }
    }

    /// The params rendered like xo-cli: `name=<type>` (type arrays joined with `|`, `unknown type` when
    /// absent), bracketed when optional or defaulted, in declaration order.
    pub fn usage_params(&self) -> Vec<String> {
        self.params
            .iter()
            .map(|(name, schema)| {
                let ty = match schema.get("type") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|t| t.as_str().map_or_else(|| t.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join("|"),
                    _ => "unknown type".to_owned(),
                };
                let optional = schema.get("optional").and_then(Value::as_bool) == Some(true)
                    || schema.get("default").is_some();
                if optional {
                    format!("[{name}=<{ty}>]")
                } else {
                    format!("{name}=<{ty}>")
                }
            })
            .collect()
    }

    /// `name p1=<t> [p2=<t>]`.
    pub fn usage(&self, name: &str) -> String {
        let mut s = name.to_owned();
        for p in self.usage_params() {
            s.push(' ');
            s.push_str(&p);
        }
        s
    }
}

/// Options of `token.create`.
#[derive(Clone, Debug, Default)]
pub struct TokenOptions {
    /// Free-form description.
    pub description: Option<String>,
    /// Client id: an existing token of the same client is replaced/renewed.
    pub client_id: Option<String>,
    /// Validity: a duration string like `30d`, `12h`, `1 hour`, or milliseconds as a number.
    pub expires_in: Option<Value>,
}

impl TokenOptions {
    /// The call params.
    pub fn to_params(&self) -> Value {
        let mut v = json!({});
        if let Some(d) = &self.description {
            v["description"] = d.clone().into();
        }
        if let Some(c) = &self.client_id {
            v["client"] = json!({ "id": c });
        }
        if let Some(e) = &self.expires_in {
            v["expiresIn"] = e.clone();
        }
        v
    }
}

/// A notification from the server (`{method, params}`, no id).
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// Method (`all` for object changes).
    pub method: String,
    /// Params.
    pub params: Value,
}

/// An `all` notification decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum ObjectsChange {
    /// Objects added or updated: full objects by id.
    Enter(Map<String, Value>),
    /// Ids of removed objects.
    Exit(Vec<String>),
}

impl Notification {
    /// Decodes an `all` notification; `None` for anything else.
    pub fn objects_change(&self) -> Option<ObjectsChange> {
        if self.method != "all" {
            return None;
        }
        let items = self.params.get("items")?.as_object()?;
        match self.params.get("type")?.as_str()? {
            "enter" => Some(ObjectsChange::Enter(items.clone())),
            "exit" => Some(ObjectsChange::Exit(items.keys().cloned().collect())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_info_usage() {
        let info = MethodInfo::from_json(&json!({
            "params": {"id": {"type": "string"}, "force": {"type": "boolean", "optional": true},
                       "delay": {"type": ["number", "string"], "default": 0}, "format": {"enum": ["xva"]}},
            "permission": null,
        }));
        assert_eq!(info.permission, Permission::None);
        let usage = info.usage("vm.x");
        assert!(usage.starts_with("vm.x "));
        for part in [
            "id=<string>",
            "[force=<boolean>]",
            "[delay=<number|string>]",
            "format=<unknown type>",
        ] {
            assert!(usage.contains(part), "{usage}");
        }
        assert_eq!(
            MethodInfo::from_json(&json!({})).permission,
            Permission::User
        );
        assert_eq!(
            MethodInfo::from_json(&json!({"permission": "admin"})).permission,
            Permission::Level("admin".into())
        );
    }

    #[test]
    fn credentials_are_redacted() {
        let c = Credentials::password("a@b", "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(!format!("{:?}", Credentials::token("t0k")).contains("t0k"));
        assert_eq!(c.to_params()["password"], "s3cret");
    }

    #[test]
    fn objects_change() {
        let n = Notification {
            method: "all".into(),
            params: json!({"type": "exit", "items": {"a": 0}}),
        };
        assert_eq!(
            n.objects_change(),
            Some(ObjectsChange::Exit(vec!["a".into()]))
        );
        let n = Notification {
            method: "other".into(),
            params: json!({}),
        };
        assert_eq!(n.objects_change(), None);
    }
}
