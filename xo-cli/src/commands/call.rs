//! `<command> [<name>=<value>]...`: calls a method and prints the result; `--help` prints its schema;
//! unknown commands get suggestions, bad params get the schema; `$getFrom`/`$sendTo` results are
//! followed with `@=file`.

use serde_json::Value;
use xo_lib::{codes, Transfer};

use crate::commands::{introspect, Global};
use crate::failure::Failure;
use crate::output::{print, render};
use crate::params::parse_call_args;

/// Runs the command (`args[0]` is the method).
pub async fn call(g: &Global, args: &[String]) -> Result<(), Failure> {
    let Some((method, rest)) = args.split_first() else {
        return Err(Failure::Usage("missing command".into()));
    };
    introspect::check_builtin_typo(method)?;
    let parsed = parse_call_args(rest).map_err(Failure::Usage)?;
    let xo = super::connect(g).await?;
    if parsed.help {
        return match introspect::schema_text(&xo, method).await? {
            Some(text) => {
                print(&text);
                Ok(())
            }
            None => Err(introspect::unknown_command(&xo, method).await),
        };
    }
    let result = xo.call(method, Value::Object(parsed.params)).await;
    let value = match result {
        Ok(v) => v,
        Err(e) if e.code() == Some(codes::METHOD_NOT_FOUND) => {
            return Err(introspect::unknown_command(&xo, method).await)
        }
        Err(e) if e.code() == Some(codes::INVALID_PARAMETERS) => {
            let mut msg = format!("{e}\n");
            msg.push_str(&introspect::invalid_params_lines(
                e.api().and_then(|a| a.data.as_ref()),
            ));
            if let Ok(Some(schema)) = introspect::schema_text(&xo, method).await {
                msg.push('\n');
                msg.push_str(&schema);
            }
            return Err(Failure::Usage(msg.trim_end().to_owned()));
        }
        Err(e) => return Err(e.into()),
    };
    match Transfer::from_result(&value) {
        Some(t) => {
            if let Some(text) = super::transfer::run(&xo, &t, parsed.file.as_deref()).await? {
                print(&text);
                if !text.ends_with('\n') {
                    print("\n");
                }
            }
        }
        None => {
            if parsed.file.is_some() {
                eprintln!("warning: @= ignored: {method} did not return a transfer");
            }
            print(&render(&value, g.format(parsed.json, parsed.table)));
        }
    }
    xo.close();
    Ok(())
}
