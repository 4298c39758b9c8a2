//! REST authentication (XO `rest-api.mjs`): cookie `authenticationToken=<token>` (xo-cli) or `token=<token>` (web
//! sign-in), or HTTP Basic `email:password` (with `?otp=`); both a cookie and Basic ⇒ 400, none ⇒ 401, bad
//! credentials ⇒ 401. Without ACL v2, only administrators may use the collections (others ⇒ 403).

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use serde_json::{Map, Value};
use xo_store::{Permission, User};

use super::RestError;
use crate::app::App;

/// The authenticated administrator of a REST request.
#[derive(Debug, Clone)]
pub struct Admin(pub User);

/// The value of cookie `name` in the `Cookie` headers.
fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

/// Standard base64 (padding optional), `None` on bad input.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// `(user, password)` of a `Basic` authorization header.
fn basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let text = String::from_utf8(base64_decode(rest)?).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn query_param(parts: &Parts, name: &str) -> Option<String> {
    parts.uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| v.to_owned())
    })
}

impl FromRequestParts<App> for Admin {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let token = cookie(parts, "authenticationToken").or_else(|| cookie(parts, "token"));
        let authorization = parts
            .headers
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let mut credentials = Map::new();
        match (token, authorization) {
            (Some(_), Some(_)) => {
                return Err(RestError::BadRequest(
                    "cannot use both a token cookie and the Authorization header".into(),
                ))
            }
            (None, None) => return Err(RestError::Unauthorized),
            (Some(t), None) => {
                credentials.insert("token".into(), Value::String(t));
            }
            (None, Some(a)) => {
                let (user, password) = basic(&a).ok_or(RestError::Unauthorized)?;
                credentials.insert("username".into(), Value::String(user));
                credentials.insert("password".into(), Value::String(password));
                if let Some(otp) = query_param(parts, "otp") {
                    credentials.insert("otp".into(), Value::String(otp));
                }
            }
        }
        let ip = parts
            .extensions
            .get::<ConnectInfo<crate::http::PeerAddr>>()
            .map(|c| c.0 .0.ip().to_string())
            .unwrap_or_default();
        let (user, _) = crate::auth::authenticate(app, credentials, &ip)
            .await
            .map_err(|_| RestError::Unauthorized)?;
        if user.permission != Permission::Admin {
            return Err(RestError::Forbidden);
        }
        Ok(Admin(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_decoded() {
        assert_eq!(
            basic("Basic YWRtaW5AYWRtaW4ubmV0OmFkbWlu"),
            Some(("admin@admin.net".into(), "admin".into()))
        );
        assert_eq!(basic("Basic dTpwOnE="), Some(("u".into(), "p:q".into())));
        assert_eq!(basic("Bearer xyz"), None);
        assert_eq!(basic("Basic !!!"), None);
        assert_eq!(base64_decode("YQ"), Some(b"a".to_vec()));
    }
}
