//! XO's `complex-matcher` filter language (as used by `xo.getAllObjects({filter: "<string>"})`):
//! space-separated terms are ANDed, `|( a b )` is OR, `( a b )` groups, `!x` negates, `prop:term`
//! applies a term to a property, `prop?` tests truthiness, `<N`, `<=N`, `>N`, `>=N` compare numbers,
//! `/re/` and `/re/i` are regular expressions, `*` globs, `"quoted strings"` allow any character, and a
//! bare word matches (case-insensitively) any string anywhere in the value.

use regex::Regex;
use serde_json::Value;

use crate::jsval::str_to_number;

const MAX_DEPTH: usize = 100;

/// A parsed expression.
#[derive(Debug, Clone)]
pub enum Node {
    /// Empty expression: matches everything.
    Null,
    /// All children match.
    And(Vec<Node>),
    /// Some child matches.
    Or(Vec<Node>),
    /// The child does not match.
    Not(Box<Node>),
    /// A number compared with an operator (`<`, `<=`, `>`, `>=`).
    Comparison(String, f64),
    /// A word that is also a number: equal number, or case-insensitive substring.
    NumberOrString(String, f64),
    /// Case-insensitive substring.
    String(String),
    /// Glob with `*` (case-insensitive, unanchored).
    Glob(String, Regex),
    /// Regular expression.
    RegExp(String, Regex),
    /// `name:child`.
    Property(String, Box<Node>),
    /// `name?`.
    TruthyProperty(String),
}

/// The filter string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn is_raw_char(c: char) -> bool {
    c.is_ascii_digit()
        || matches!(c, '_' | '-' | '.' | '$')
        || !c.to_uppercase().eq(c.to_lowercase())
}

/// lodash `some` over an array's elements or an object's values.
fn some(v: &Value, f: impl Fn(&Value) -> bool) -> bool {
    match v {
        Value::Array(a) => a.iter().any(f),
        Value::Object(m) => m.values().any(f),
        _ => false,
    }
}

fn prop<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(name),
        Value::Array(a) => name.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    }
}

impl Node {
    /// Whether `value` matches.
    pub fn matches(&self, value: &Value) -> bool {
        self.matches_opt(Some(value))
    }

    /// Match where `None` is JS `undefined` (a missing property).
    pub fn matches_opt(&self, value: Option<&Value>) -> bool {
        match self {
            Node::Null => true,
            Node::And(c) => c.iter().all(|n| n.matches_opt(value)),
            Node::Or(c) => c.iter().any(|n| n.matches_opt(value)),
            Node::Not(c) => !c.matches_opt(value),
            Node::Comparison(op, n) => match value.and_then(Value::as_f64) {
                Some(v) => match op.as_str() {
                    "<" => v < *n,
                    "<=" => v <= *n,
                    ">" => v > *n,
                    ">=" => v >= *n,
                    _ => false,
                },
                None => false,
            },
            Node::NumberOrString(s, n) => {
                let lc = s.to_lowercase();
                fn rec(v: &Value, lc: &str, n: f64) -> bool {
                    match v {
                        Value::Number(x) => x.as_f64() == Some(n),
                        Value::String(x) => x.to_lowercase().contains(lc),
                        Value::Array(_) | Value::Object(_) => some(v, |c| rec(c, lc, n)),
                        _ => false,
                    }
                }
                value.is_some_and(|v| rec(v, &lc, *n))
            }
            Node::String(s) => {
                let lc = s.to_lowercase();
                fn rec(v: &Value, lc: &str) -> bool {
                    match v {
                        Value::String(x) => x.to_lowercase().contains(lc),
                        Value::Array(_) | Value::Object(_) => some(v, |c| rec(c, lc)),
                        _ => false,
                    }
                }
                value.is_some_and(|v| rec(v, &lc))
            }
            Node::Glob(_, re) | Node::RegExp(_, re) => {
                fn rec(v: &Value, re: &Regex) -> bool {
                    match v {
                        Value::String(x) => re.is_match(x),
                        Value::Array(_) | Value::Object(_) => some(v, |c| rec(c, re)),
                        _ => false,
                    }
                }
                value.is_some_and(|v| rec(v, re))
            }
            Node::Property(name, child) => match value {
                None | Some(Value::Null) => false,
                Some(v) => child.matches_opt(prop(v, name)),
            },
            Node::TruthyProperty(name) => match value {
                None | Some(Value::Null) => false,
                Some(v) => crate::jsval::truthy(prop(v, name)),
            },
        }
    }
}

fn and(mut children: Vec<Node>) -> Node {
    if children.len() == 1 {
        children.pop().unwrap_or(Node::Null)
    } else {
        Node::And(children)
    }
}

fn or(mut children: Vec<Node>) -> Node {
    if children.len() == 1 {
        children.pop().unwrap_or(Node::Null)
    } else {
        Node::Or(children)
    }
}

struct Parser {
    s: Vec<char>,
    /// Furthest failure, for the error message.
    fail_pos: usize,
    fail_expected: String,
    /// A hard error (JS throws): aborts the parse.
    hard: Option<ParseError>,
    depth: usize,
}

type R<T> = Option<(T, usize)>;

impl Parser {
    fn fail<T>(&mut self, pos: usize, expected: &str) -> R<T> {
        if pos >= self.fail_pos {
            self.fail_pos = pos;
            self.fail_expected = expected.to_owned();
        }
        None
    }

    fn ws(&self, mut pos: usize) -> usize {
        while pos < self.s.len() && self.s[pos].is_whitespace() {
            pos += 1;
        }
        pos
    }

    fn text(&mut self, pos: usize, c: char) -> R<()> {
        if self.s.get(pos) == Some(&c) {
            Some(((), pos + 1))
        } else {
            self.fail(pos, &format!("'{c}'"))
        }
    }

    fn raw_string(&mut self, mut pos: usize) -> R<String> {
        let start = pos;
        while pos < self.s.len() && is_raw_char(self.s[pos]) {
            pos += 1;
        }
        if pos == start {
            return self.fail(pos, "a raw string");
        }
        Some((self.s[start..pos].iter().collect(), pos))
    }

    fn glob_string(&mut self, mut pos: usize) -> R<String> {
        let start = pos;
        while pos < self.s.len() && (self.s[pos] == '*' || is_raw_char(self.s[pos])) {
            pos += 1;
        }
        if pos == start {
            return self.fail(pos, "a raw string");
        }
        Some((self.s[start..pos].iter().collect(), pos))
    }

    fn quoted(&mut self, mut pos: usize) -> R<String> {
        if self.s.get(pos) != Some(&'"') {
            return self.fail(pos, "\"");
        }
        pos += 1;
        let mut out = String::new();
        while pos < self.s.len() {
            let mut c = self.s[pos];
            pos += 1;
            if c == '"' {
                return Some((out, pos));
            }
            if c == '\\' {
                match self.s.get(pos) {
                    Some(&n) => {
                        c = n;
                        pos += 1;
                    }
                    None => break,
                }
            }
            out.push(c);
        }
        Some((out, pos))
    }

    fn regex(&mut self, mut pos: usize) -> R<Node> {
        if self.s.get(pos) != Some(&'/') {
            return self.fail(pos, "/");
        }
        pos += 1;
        let mut pattern = String::new();
        let mut escaped = false;
        let mut closed = false;
        while pos < self.s.len() {
            let c = self.s[pos];
            pos += 1;
            if c == '/' && !escaped {
                closed = true;
                break;
            }
            escaped = c == '\\';
            pattern.push(c);
        }
        if !closed {
            return self.fail(pos, "/");
        }
        let mut flags = "";
        if self.s.get(pos) == Some(&'i') {
            pos += 1;
            flags = "(?i)";
        }
        match Regex::new(&format!("{flags}{pattern}")) {
            Ok(re) => Some((
                Node::RegExp(
                    format!("/{pattern}/{}", if flags.is_empty() { "" } else { "i" }),
                    re,
                ),
                pos,
            )),
            Err(e) => {
                self.hard = Some(ParseError(format!(
                    "invalid regular expression /{pattern}/: {e}"
                )));
                None
            }
        }
    }

    fn value(&mut self, pos: usize) -> R<Node> {
        if let Some((s, p)) = self.quoted(pos) {
            return Some((Node::String(s), p));
        }
        if self.hard.is_some() {
            return None;
        }
        if let Some(r) = self.regex(pos) {
            return Some(r);
        }
        if self.hard.is_some() {
            return None;
        }
        let (s, p) = self.glob_string(pos)?;
        match str_to_number(&s) {
            Some(n) if !n.is_nan() => Some((Node::NumberOrString(s, n), p)),
            _ => {
                if s.contains('*') {
                    let pattern = s
                        .split('*')
                        .map(regex::escape)
                        .collect::<Vec<_>>()
                        .join(".*");
                    match Regex::new(&format!("(?i){pattern}")) {
                        Ok(re) => Some((Node::Glob(s, re), p)),
                        Err(e) => {
                            self.hard = Some(ParseError(format!("invalid glob {s}: {e}")));
                            None
                        }
                    }
                } else {
                    Some((Node::String(s), p))
                }
            }
        }
    }

    fn property(&mut self, pos: usize) -> R<String> {
        if let Some(r) = self.quoted(pos) {
            return Some(r);
        }
        self.raw_string(pos)
    }

    fn terms(&mut self, mut pos: usize, min: usize) -> R<Vec<Node>> {
        let mut out = Vec::new();
        while let Some((t, p)) = self.term(pos) {
            out.push(t);
            pos = p;
        }
        if self.hard.is_some() || out.len() < min {
            return None;
        }
        Some((out, pos))
    }

    fn term(&mut self, pos: usize) -> R<Node> {
        if self.hard.is_some() {
            return None;
        }
        if self.depth >= MAX_DEPTH {
            self.hard = Some(ParseError("filter nested too deeply".into()));
            return None;
        }
        self.depth += 1;
        let r = self.term_inner(pos).map(|(n, p)| (n, self.ws(p)));
        self.depth -= 1;
        r
    }

    fn term_inner(&mut self, pos: usize) -> R<Node> {
        // ( terms )
        if let Some(((), p)) = self.text(pos, '(') {
            let p = self.ws(p);
            if let Some((ts, p)) = self.terms(p, 1) {
                if let Some(((), p)) = self.text(p, ')') {
                    return Some((and(ts), p));
                }
            }
            if self.hard.is_some() {
                return None;
            }
        }
        // |( terms )
        if let Some(((), p)) = self.text(pos, '|') {
            let p = self.ws(p);
            if let Some(((), p)) = self.text(p, '(') {
                let p = self.ws(p);
                if let Some((ts, p)) = self.terms(p, 1) {
                    if let Some(((), p)) = self.text(p, ')') {
                        return Some((or(ts), p));
                    }
                }
            }
            if self.hard.is_some() {
                return None;
            }
        }
        // ! term
        if let Some(((), p)) = self.text(pos, '!') {
            let p = self.ws(p);
            if let Some((t, p)) = self.term(p) {
                return Some((Node::Not(Box::new(t)), p));
            }
            if self.hard.is_some() {
                return None;
            }
        }
        // [<>]=? raw
        if let Some(&c) = self.s.get(pos) {
            if c == '<' || c == '>' {
                let mut p = pos + 1;
                let mut op = c.to_string();
                if self.s.get(p) == Some(&'=') {
                    op.push('=');
                    p += 1;
                }
                if let Some((raw, p)) = self.raw_string(p) {
                    return match str_to_number(&raw) {
                        Some(n) if !n.is_nan() => Some((Node::Comparison(op, n), p)),
                        _ => {
                            self.hard = Some(ParseError("value must be a number".into()));
                            None
                        }
                    };
                }
            }
        }
        // property ws : ws term
        if let Some((name, p)) = self.property(pos) {
            let p1 = self.ws(p);
            if let Some(((), p2)) = self.text(p1, ':') {
                let p2 = self.ws(p2);
                if let Some((t, p3)) = self.term(p2) {
                    return Some((Node::Property(name, Box::new(t)), p3));
                }
                if self.hard.is_some() {
                    return None;
                }
            }
            // property ?
            if let Some(((), p2)) = self.text(p, '?') {
                return Some((Node::TruthyProperty(name), p2));
            }
        }
        self.value(pos)
    }
}

/// Parse a filter string.
pub fn parse(input: &str) -> Result<Node, ParseError> {
    let mut p = Parser {
        s: input.chars().collect(),
        fail_pos: 0,
        fail_expected: String::new(),
        hard: None,
        depth: 0,
    };
    let start = p.ws(0);
    let terms = p.terms(start, 0);
    if let Some(e) = p.hard.take() {
        return Err(e);
    }
    let (terms, pos) = terms.unwrap_or((Vec::new(), start));
    if pos < p.s.len() {
        let (at, expected) = if p.fail_pos >= pos {
            (p.fail_pos, p.fail_expected.clone())
        } else {
            (pos, "end of input".to_owned())
        };
        let expected = if expected.is_empty() {
            "end of input".to_owned()
        } else {
            expected
        };
        return Err(ParseError(format!(
            "parse error: expected {expected} at position {at}"
        )));
    }
    Ok(if terms.is_empty() {
        Node::Null
    } else {
        and(terms)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(filter: &str, v: &Value) -> bool {
        parse(filter)
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
            .matches(v)
    }

    #[test]
    fn matches_xo_semantics() {
        let vm = json!({
            "type": "VM", "name_label": "Debian Web 01", "power_state": "Running",
            "CPUs": {"max": 4, "number": 2}, "tags": ["prod", "web"], "memory": {"size": 2147483648_i64},
            "auto_poweron": false, "other": {"xo:notes": "hello"}
        });
        assert!(m("", &vm));
        assert!(m("type:VM", &vm));
        assert!(m("type:vm", &vm), "case-insensitive substring");
        assert!(!m("type:host", &vm));
        assert!(m("type:VM power_state:running", &vm));
        assert!(!m("type:VM power_state:halted", &vm));
        assert!(m("!power_state:halted", &vm));
        assert!(m("|(power_state:halted type:VM)", &vm));
        assert!(!m("|(power_state:halted type:host)", &vm));
        assert!(m("name_label:\"Debian Web\"", &vm));
        assert!(m("debian", &vm), "bare word searches every string");
        assert!(m("hello", &vm), "nested strings too");
        assert!(m("CPUs:max:>=4", &vm));
        assert!(!m("CPUs:max:>4", &vm));
        assert!(m("CPUs:number:<3", &vm));
        assert!(m("CPUs:max:4", &vm), "numbers exact");
        assert!(m("tags:prod", &vm));
        assert!(m("name_label:/^debian/i", &vm));
        assert!(!m("name_label:/^debian/", &vm));
        assert!(m("name_label:deb*01", &vm));
        assert!(m("CPUs?", &vm));
        assert!(!m("auto_poweron?", &vm));
        assert!(m("(type:VM tags:web)", &vm));
        assert!(m("! ( type:host )", &vm));
        assert!(!m("missing:x", &vm));
        assert!(m("!missing:x", &vm));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse("type:(").is_err());
        assert!(parse("CPUs:>abc").is_err());
        assert!(parse("name_label:/(/").is_err());
        assert!(parse(")").is_err());
        assert!(parse(&"(".repeat(500)).is_err());
    }
}
