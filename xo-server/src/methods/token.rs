//! `token.*`: authentication tokens. The secret is returned once by `token.create`; the store keeps its
//! SHA-256, which is the token `id` seen by `user.getAuthenticationTokens` and accepted (as is the secret)
//! by `token.delete`, `token.deleteOwn` and `token.set`.

use serde_json::{json, Map, Value};
use xo_store::{hash_token_secret, Token};

use super::{opt_str, req_str};
use crate::app::now_ms;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::{Access, Method};

/// Parses a duration like the `ms` npm package: a number of milliseconds, or `"<n> <unit>"` with units
/// ms/s/m/h/d/w/y and their long forms (`"30d"`, `"1 hour"`, `"2.5 hrs"`). `None` when unparsable.
pub fn parse_duration_ms(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() || s.len() > 100 {
                return None;
            }
            let split = s
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
                .unwrap_or(s.len());
            let n: f64 = s[..split].parse().ok()?;
            let unit = s[split..].trim().to_ascii_lowercase();
            let factor = match unit.as_str() {
                "" | "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1.0,
                "s" | "sec" | "secs" | "second" | "seconds" => 1e3,
                "m" | "min" | "mins" | "minute" | "minutes" => 60e3,
                "h" | "hr" | "hrs" | "hour" | "hours" => 3600e3,
                "d" | "day" | "days" => 86400e3,
                "w" | "week" | "weeks" => 7.0 * 86400e3,
                "y" | "yr" | "yrs" | "year" | "years" => 365.25 * 86400e3,
                _ => return None,
            };
            Some(n * factor)
        }
        _ => None,
    }
}

/// The wire form of a token record.
pub(crate) fn token_json(t: &Token) -> Value {
    let mut v = json!({ "id": t.id, "user_id": t.user_id, "created_at": t.created_at, "expiration": t.expiration });
    if let Some(d) = &t.description {
        v["description"] = d.clone().into();
    }
    if let Some(c) = &t.client {
        v["client"] = c.clone();
    }
    if !t.last_uses.is_empty() {
        v["last_uses"] = Value::Object(t.last_uses.clone());
    }
    v
}

/// XO's value matcher (`value-matcher`): objects match partially, `__and`/`__or`/`__not` combine,
/// arrays match when every pattern item matches some item, scalars compare equal.
fn matches(pattern: &Value, value: &Value) -> bool {
    match pattern {
        Value::Object(p) => {
            if let Some(Value::Array(all)) = p.get("__and") {
                return all.iter().all(|q| matches(q, value));
            }
            if let Some(Value::Array(any)) = p.get("__or") {
                return any.iter().any(|q| matches(q, value));
            }
            if let Some(q) = p.get("__not") {
                return !matches(q, value);
            }
            let Value::Object(v) = value else {
                return false;
            };
            p.iter()
                .all(|(k, q)| v.get(k).is_some_and(|x| matches(q, x)))
        }
        Value::Array(items) => {
            let Value::Array(v) = value else { return false };
            items.iter().all(|q| v.iter().any(|x| matches(q, x)))
        }
        _ => pattern == value,
    }
}

/// Stored id for something a client calls a token: the stored id itself or a secret.
fn resolve_id(ctx: &Ctx, given: &str) -> Result<Option<Token>, ApiError> {
    if let Some(t) = ctx.app.store().token(given)? {
        return Ok(Some(t));
    }
    Ok(ctx.app.store().token(&hash_token_secret(given))?)
}

async fn create(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let user_id = ctx.user()?.id.clone();
    let cfg = ctx.app.config();
    let duration = match p.get("expiresIn") {
        None => cfg.default_token_validity_ms as f64,
        Some(v) => {
            parse_duration_ms(v).ok_or_else(|| ApiError::internal("invalid expiresIn duration"))?
        }
    };
    if duration < 60e3 {
        return Err(ApiError::internal("invalid expiresIn duration"));
    }
    if duration > cfg.max_token_validity_ms as f64 {
        return Err(ApiError::internal("too high expiresIn duration"));
    }
    let now = now_ms();
    let client = p.get("client").cloned();
    // The secret of an existing token is not stored, so a token for the same client is replaced rather
    // than reused (XO reuses it): the client still ends up with exactly one valid token.
    if let Some(cid) = client
        .as_ref()
        .and_then(|c| c.get("id"))
        .and_then(Value::as_str)
    {
        for t in ctx.app.store().tokens_of_user(&user_id)? {
            if t.client_id() == Some(cid) {
                ctx.app.store().delete_token(&t.id)?;
            }
        }
    }
    let description = opt_str(&p, "description").map(str::to_owned);
    let (secret, _) = ctx.app.store().create_token(
        &user_id,
        now,
        now.saturating_add(duration as i64),
        description,
        client,
    )?;
    Ok(json!(secret))
}

fn delete_matching(
    ctx: &Ctx,
    p: &Map<String, Value>,
    owner: Option<&str>,
) -> Result<Value, ApiError> {
    let store = ctx.app.store();
    let mut victims = Vec::new();
    if let Some(Value::Array(list)) = p.get("tokens") {
        for t in list.iter().filter_map(Value::as_str) {
            if let Some(tok) = resolve_id(ctx, t)? {
                victims.push(tok);
            }
        }
    }
    if let Some(pattern) = p.get("pattern") {
        for t in store.tokens()? {
            if matches(pattern, &token_json(&t)) {
                victims.push(t);
            }
        }
    }
    for t in victims {
        if owner.is_none_or(|o| o == t.user_id) {
            store.delete_token(&t.id)?;
        }
    }
    Ok(Value::Bool(true))
}

pub(super) fn methods() -> Vec<Method> {
    let selection = json!({
        "tokens": {"type": "array", "optional": true, "items": {"type": "string"}},
        "pattern": {"type": "object", "optional": true},
    });
    vec![
        Method::new("token.create", create)
            .description("create a new authentication token")
            .params(json!({
                "description": {"optional": true, "type": "string"},
                "client": {
                    "description": "client this authentication token belongs to, if a previous token exists, it will be updated and returned",
                    "optional": true, "type": "object",
                    "properties": {"id": {"description": "unique identifier of this client", "type": "string"}},
                },
                "expiresIn": {"optional": true, "type": ["number", "string"]},
            })),
        Method::new("token.delete", |ctx: Ctx, p| async move { delete_matching(&ctx, &p, None) })
            .description("delete matching authentication tokens for all users")
            .params(selection.clone())
            .access(Access::Admin),
        Method::new("token.deleteOwn", |ctx: Ctx, p| async move {
            let me = ctx.user()?.id.clone();
            delete_matching(&ctx, &p, Some(&me))
        })
        .description("delete matching authentication tokens for the current user")
        .params(selection),
        Method::new("token.set", |ctx: Ctx, p: Map<String, Value>| async move {
            let id = req_str(&p, "id")?;
            let me = ctx.user()?.id.clone();
            let mut t = resolve_id(&ctx, id)?
                .filter(|t| t.user_id == me)
                .ok_or_else(|| ApiError::no_such_object(id, Some("token")))?;
            match p.get("description") {
                Some(Value::String(d)) => t.description = Some(d.clone()),
                Some(Value::Null) => t.description = None,
                _ => {}
            }
            ctx.app.store().update_token(&t)?;
            Ok(Value::Bool(true))
        })
        .description("changes the properties of an existing token")
        .params(json!({
            "description": {"type": ["null", "string"], "minLength": 0, "optional": true},
            "id": {"type": "string"},
        })),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_ms() {
        assert_eq!(parse_duration_ms(&json!(1000)), Some(1000.0));
        assert_eq!(parse_duration_ms(&json!("30d")), Some(30.0 * 86400e3));
        assert_eq!(parse_duration_ms(&json!("1 hour")), Some(3600e3));
        assert_eq!(parse_duration_ms(&json!("2.5 hrs")), Some(2.5 * 3600e3));
        assert_eq!(parse_duration_ms(&json!("90")), Some(90.0));
        assert_eq!(parse_duration_ms(&json!("soon")), None);
        assert_eq!(parse_duration_ms(&json!("1 fortnight")), None);
        assert_eq!(parse_duration_ms(&json!(true)), None);
    }

    #[test]
    fn value_matcher() {
        let t = json!({"id": "a", "user_id": "u", "client": {"id": "c"}, "tags": [1, 2]});
        assert!(matches(&json!({"user_id": "u"}), &t));
        assert!(matches(&json!({"client": {"id": "c"}}), &t));
        assert!(!matches(&json!({"client": {"id": "d"}}), &t));
        assert!(matches(&json!({"id": {"__or": ["x", "a"]}}), &t));
        assert!(matches(&json!({"__not": {"id": "x"}}), &t));
        assert!(matches(
            &json!({"__and": [{"id": "a"}, {"user_id": "u"}]}),
            &t
        ));
        assert!(matches(&json!({"tags": [2]}), &t));
        assert!(!matches(&json!({"tags": [3]}), &t));
    }
}
