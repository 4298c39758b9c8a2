//! Parameter parsing like xo-cli: `name=value` (strings by default, `true`/`false` booleans, `json:`
//! prefix for JSON values, last duplicate wins), `@=file` for transfers, and the `--json`, `--table`,
//! `--help` flags.

use serde_json::{Map, Value};

/// The arguments of a method call.
#[derive(Debug, Default, PartialEq)]
pub struct CallArgs {
    /// Params sent to the method.
    pub params: Map<String, Value>,
    /// `@=<path>` (`-` = stdin/stdout).
    pub file: Option<String>,
    /// `--json`.
    pub json: bool,
    /// `--table`.
    pub table: bool,
    /// `--help` / `-h`.
    pub help: bool,
}

/// Parses one value: `json:<JSON>`, `true`, `false`, or a string.
pub fn parse_value(name: &str, raw: &str) -> Result<Value, String> {
    if let Some(j) = raw.strip_prefix("json:") {
        return serde_json::from_str(j).map_err(|e| format!("invalid JSON for {name}: {e}"));
    }
    Ok(match raw {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        s => Value::String(s.to_owned()),
    })
}

/// Parses the arguments after the method name.
pub fn parse_call_args(args: &[String]) -> Result<CallArgs, String> {
    let mut out = CallArgs::default();
    for arg in args {
        match arg.as_str() {
            "--json" => out.json = true,
            "--table" => out.table = true,
            "--help" | "-h" => out.help = true,
            _ => {
                let Some((name, raw)) = arg.split_once('=') else {
                    return Err(format!("invalid arg: {arg} (expected <name>=<value>)"));
                };
                if name.is_empty() {
                    return Err(format!("invalid arg: {arg} (empty name)"));
                }
                if name == "@" {
                    if raw.is_empty() {
                        return Err(
                            "invalid arg: @= needs a file name (or - for stdin/stdout)".into()
                        );
                    }
                    out.file = Some(raw.to_owned());
                } else {
                    out.params.insert(name.to_owned(), parse_value(name, raw)?);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn values() {
        let c = parse_call_args(&args(&[
            "id=abc",
            "force=true",
            "off=false",
            "n=42",
            "j=json:42",
            "o=json:{\"a\":[1]}",
            "s=json:\"true\"",
            "eq=a=b",
            "id=last",
            "@=vm.xva",
            "--json",
        ]))
        .unwrap();
        assert_eq!(
            Value::Object(c.params),
            json!({"id": "last", "force": true, "off": false, "n": "42", "j": 42, "o": {"a": [1]}, "s": "true", "eq": "a=b"})
        );
        assert_eq!(c.file.as_deref(), Some("vm.xva"));
        assert!(c.json && !c.table && !c.help);
    }

    #[test]
    fn errors() {
        assert!(parse_call_args(&args(&["nope"]))
            .unwrap_err()
            .contains("invalid arg"));
        assert!(parse_call_args(&args(&["=x"])).is_err());
        assert!(parse_call_args(&args(&["@="])).is_err());
        assert!(parse_call_args(&args(&["x=json:{"]))
            .unwrap_err()
            .contains("invalid JSON for x"));
        assert!(parse_call_args(&args(&["-h"])).unwrap().help);
    }
}
