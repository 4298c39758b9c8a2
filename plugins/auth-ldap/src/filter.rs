//! User filters: `{{name}}` placeholders replaced by RFC 4515-escaped values.

use crate::error::LdapAuthError;

/// Replaces every `{{var}}` of `filter` by the escaped value `vars` gives for it (an unknown variable is
/// an error, as in XO).
pub fn eval_filter(filter: &str, vars: &[(&str, &str)]) -> Result<String, LdapAuthError> {
    let mut out = String::with_capacity(filter.len());
    let mut rest = filter;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        // `{{` followed by a non-empty name without `}` and then `}}`.
        let end = after.find('}');
        match end {
            Some(end) if end > 0 && after[end..].starts_with("}}") => {
                let name = &after[..end];
                let value = vars
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| *v)
                    .ok_or_else(|| LdapAuthError::FilterVariable(name.to_owned()))?;
                out.push_str(&rest[..start]);
                out.push_str(&escape(value));
                rest = &after[end + 2..];
            }
            _ => {
                out.push_str(&rest[..start + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// RFC 4515 escaping of an assertion value (`*`, `(`, `)`, `\`, NUL and non-ASCII bytes as `\XX`).
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if matches!(b, b'*' | b'(' | b')' | b'\\' | 0) || !b.is_ascii() {
            out.push_str(&format!("\\{b:02x}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_and_escaping() {
        assert_eq!(
            eval_filter("(uid={{name}})", &[("name", "a*)(uid=b")]).unwrap(),
            "(uid=a\\2a\\29\\28uid=b)"
        );
        assert_eq!(
            eval_filter("(&(cn={{name}})(sn={{name}}))", &[("name", "é")]).unwrap(),
            "(&(cn=\\c3\\a9)(sn=\\c3\\a9))"
        );
        assert_eq!(eval_filter("(uid={{x)", &[]).unwrap(), "(uid={{x)");
        assert_eq!(
            eval_filter("(uid={{other}})", &[("name", "a")]),
            Err(LdapAuthError::FilterVariable("other".into()))
        );
    }
}
