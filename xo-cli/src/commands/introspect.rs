//! `list-commands`, `<command> --help`, and the hints printed for unknown commands and bad params.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use xo_lib::{MethodInfo, Xo};

use crate::commands::Global;
use crate::failure::Failure;
use crate::glob::GlobSet;
use crate::output::print;

/// Built-in commands (suggested too).
pub const BUILTINS: &[&str] = &[
    "register",
    "create-token",
    "unregister",
    "list-commands",
    "list-objects",
    "watch",
    "completions",
];

/// A command without a namespace cannot be a method (they are all `namespace.name`): a typo of a
/// built-in command, reported without connecting.
pub fn check_builtin_typo(name: &str) -> Result<(), Failure> {
    if name.contains('.') {
        return Ok(());
    }
    let near = crate::suggest::nearest(name, BUILTINS.iter().copied(), 3);
    let mut msg = format!("{name} is not a valid command");
    if !near.is_empty() {
        msg.push_str(&format!("\n\nDid you mean:\n  {}", near.join("\n  ")));
    }
    msg.push_str(
        "\n(xo-cli --help lists the built-in commands, xo-cli --list-commands the methods)",
    );
    Err(Failure::Usage(msg))
}

async fn methods_info(xo: &Xo) -> Result<Map<String, Value>, Failure> {
    match xo.call("system.getMethodsInfo", Value::Null).await? {
        Value::Object(m) => Ok(m),
        _ => Err(Failure::Api(
            "system.getMethodsInfo: unexpected answer".into(),
        )),
    }
}

/// The text block of one method: usage line, indented description and permission.
pub fn describe(name: &str, info: &MethodInfo) -> String {
    let mut s = info.usage(name);
    s.push('\n');
    if let Some(d) = &info.description {
        s.push_str(&format!("  {d}\n"));
    }
    s.push_str(&format!("  permission: {}\n", info.permission));
    s
}

/// `list-commands [--json] [<pattern>]...`.
pub async fn list_commands(g: &Global, json: bool, patterns: &[String]) -> Result<(), Failure> {
    let set = GlobSet::new(patterns).map_err(Failure::Usage)?;
    let xo = super::connect(g).await?;
    let methods: BTreeMap<String, Value> = methods_info(&xo)
        .await?
        .into_iter()
        .filter(|(name, _)| set.is_match(name))
        .collect();
    if json || g.json {
        let v = Value::Object(methods.into_iter().collect());
        print(&crate::output::render(&v, crate::output::Format::Json));
    } else {
        let mut out = String::new();
        for (name, info) in &methods {
            out.push_str(&describe(name, &MethodInfo::from_json(info)));
        }
        print(&out);
    }
    xo.close();
    Ok(())
}

/// Nearest method (and built-in command) names.
pub async fn suggestions(xo: &Xo, name: &str) -> Vec<String> {
    let mut names: Vec<String> = match methods_info(xo).await {
        Ok(m) => m.keys().cloned().collect(),
        Err(_) => Vec::new(),
    };
    names.extend(BUILTINS.iter().map(|s| s.to_string()));
    crate::suggest::nearest(name, names.iter().map(String::as_str), 5)
}

/// The failure for an unknown command, with suggestions.
pub async fn unknown_command(xo: &Xo, name: &str) -> Failure {
    let near = suggestions(xo, name).await;
    let mut msg = format!("{name} is not a valid command");
    if !near.is_empty() {
        msg.push_str("\n\nDid you mean:\n");
        for n in near {
            msg.push_str(&format!("  {n}\n"));
        }
        msg.pop();
    }
    msg.push_str("\n(xo-cli --list-commands lists them all)");
    Failure::Usage(msg)
}

/// The schema of a method: its description block then its params as JSON. `None` if unknown.
pub async fn schema_text(xo: &Xo, name: &str) -> Result<Option<String>, Failure> {
    let methods = methods_info(xo).await?;
    let Some(raw) = methods.get(name) else {
        return Ok(None);
    };
    let info = MethodInfo::from_json(raw);
    let mut s = describe(name, &info);
    if !info.params.is_empty() {
        s.push_str("\nparams schema:\n");
        s.push_str(&serde_json::to_string_pretty(&Value::Object(info.params)).unwrap_or_default());
        s.push('\n');
    }
    Ok(Some(s))
}

/// `property @.<instancePath>: <message>` lines of a code-10 error, like xo-cli.
pub fn invalid_params_lines(data: Option<&Value>) -> String {
    let mut out = String::new();
    if let Some(Value::Array(errors)) = data.and_then(|d| d.get("errors")) {
        for e in errors {
            let path = e.get("instancePath").and_then(Value::as_str).unwrap_or("");
            let path = path.trim_start_matches('/').replace('/', ".");
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("invalid");
            let extra = match e.get("params") {
                Some(p) if p.get("additionalProperty").is_some() => {
                    format!(" ({})", p["additionalProperty"].as_str().unwrap_or(""))
                }
                _ => String::new(),
            };
            out.push_str(&format!("  property @.{path}: {message}{extra}\n"));
        }
    }
    out
}
