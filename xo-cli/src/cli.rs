//! Command-line grammar (clap derive) and the mapping of xo-cli's legacy flag forms (`--register`,
//! `--list-commands`, `--listObjects`, …) to subcommands.

use clap::{Args, Parser, Subcommand};

/// The examples block of `--help`.
const AFTER_HELP: &str = "\
Usage forms:
  xo-cli --register [--allowUnauthorized] [--expiresIn duration] <XO-Server URL> <username> [<password>]
  xo-cli --createToken <same params as --register>
  xo-cli --unregister
  xo-cli --list-commands [--json] [<pattern>]...
  xo-cli --list-objects [--<property>]... [<property>=<value>]...
  xo-cli <command> [--json|--table|--help] [<name>=<value>]... [@=<file>|@=-]
  xo-cli --watch [--ndjson]

Values are strings; true/false are booleans; json:<JSON> passes any JSON value (json:42).
@=<file> downloads ($getFrom) or uploads ($sendTo) the method's transfer; @=- uses stdout/stdin.
Patterns are globs: 'user.*', '{user,group}.*', '!system.*'. Filters accept globs too: name_label='web-*'.

Exit codes: 0 ok, 1 API error, 2 usage, 3 connection, 4 authentication, 5 local I/O (see docs/cli.md).";

/// xo-cli: the introspecting command-line client of xo-server.
#[derive(Parser, Debug)]
#[command(name = "xo-cli", version, after_help = AFTER_HELP, disable_help_subcommand = true)]
pub struct Cli {
    /// Server URL, overriding the registered one; a token may be given as user-info
    /// (https://<token>@host/).
    #[arg(long, short = 'u', value_name = "URL")]
    pub url: Option<String>,
    /// Accept self-signed TLS certificates.
    #[arg(long = "allowUnauthorized", visible_alias = "au")]
    pub allow_unauthorized: bool,
    /// Print results as JSON (the default when stdout is not a terminal).
    #[arg(long)]
    pub json: bool,
    /// Print results as tables (the default on a terminal).
    #[arg(long, conflicts_with = "json")]
    pub table: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Sign in, create a token and store it (never the password) in the configuration file.
    Register(RegisterArgs),
    /// Sign in and print a new token (the configuration is not changed).
    #[command(name = "create-token")]
    CreateToken(RegisterArgs),
    /// Forget the registered server and token.
    Unregister,
    /// List the server's methods with their params and permission.
    #[command(name = "list-commands")]
    ListCommands {
        /// Print the raw `system.getMethodsInfo` entries as JSON.
        #[arg(long)]
        json: bool,
        /// Glob patterns on method names ('user.*', '{user,group}.*', '!system.*').
        patterns: Vec<String>,
    },
    /// List objects from `xo.getAllObjects`: `--<property>` keeps only these properties,
    /// `<property>=<value>` filters (globs allowed in values).
    #[command(name = "list-objects")]
    ListObjects {
        /// `--<property>`… then `<property>=<value>`….
        #[arg(allow_hyphen_values = true, trailing_var_arg = true, num_args = 0.., value_name = "ARG")]
        args: Vec<String>,
    },
    /// Print every notification until interrupted (Ctrl-C prints counts per method).
    Watch {
        /// One JSON object `{method, params}` per line.
        #[arg(long)]
        ndjson: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
    /// `<command> [<name>=<value>]...`: call a method.
    #[command(external_subcommand)]
    Call(Vec<String>),
}

/// Arguments of `register` and `create-token`.
#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// Accept self-signed TLS certificates (remembered in the configuration).
    #[arg(long = "allowUnauthorized", visible_alias = "au")]
    pub allow_unauthorized: bool,
    /// Token validity: 30d, 12h, 1 hour… (server default: 30 days).
    #[arg(long = "expiresIn", value_name = "DURATION")]
    pub expires_in: Option<String>,
    /// One-time password (accounts with TOTP).
    #[arg(long)]
    pub otp: Option<String>,
    /// Sign in with an existing token instead of a user name and password.
    #[arg(long, short = 't')]
    pub token: Option<String>,
    /// XO-Server URL (http://…, https://…, or a bare host for https).
    #[arg(value_name = "XO-Server URL")]
    pub url: String,
    /// User name (e-mail).
    pub username: Option<String>,
    /// Password (asked without echo when omitted).
    pub password: Option<String>,
}

/// Maps legacy/camelCase command flags to subcommand names; other arguments are kept.
pub fn normalize(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut command_seen = false;
    let mut it = args.into_iter();
    if let Some(bin) = it.next() {
        out.push(bin);
    }
    let mut expect_value = false;
    for a in it {
        if command_seen || expect_value {
            expect_value = false;
            out.push(a);
            continue;
        }
        let mapped = match a.as_str() {
            "--register" => Some("register"),
            "--createToken" | "--create-token" | "createToken" => Some("create-token"),
            "--unregister" => Some("unregister"),
            "--list-commands" | "--listCommands" | "listCommands" => Some("list-commands"),
            "--list-objects" | "--listObjects" | "listObjects" => Some("list-objects"),
            "--completions" => Some("completions"),
            "--watch" => Some("watch"),
            _ => None,
        };
        match mapped {
            Some(m) => {
                out.push(m.to_owned());
                command_seen = true;
            }
            None => {
                if a == "--url" || a == "-u" {
                    expect_value = true;
                } else if !a.starts_with('-') {
                    command_seen = true;
                }
                out.push(a);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(a: &[&str]) -> Cli {
        Cli::try_parse_from(normalize(a.iter().map(|s| s.to_string()))).unwrap()
    }

    #[test]
    fn legacy_forms() {
        let c = parse(&[
            "xo-cli",
            "--register",
            "--allowUnauthorized",
            "--expiresIn",
            "30d",
            "http://h",
            "u",
            "p",
        ]);
        match c.command {
            Command::Register(r) => {
                assert!(r.allow_unauthorized);
                assert_eq!(r.expires_in.as_deref(), Some("30d"));
                assert_eq!(
                    (r.url.as_str(), r.username.as_deref(), r.password.as_deref()),
                    ("http://h", Some("u"), Some("p"))
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["xo-cli", "--unregister"]).command,
            Command::Unregister
        ));
        assert!(matches!(
            parse(&["xo-cli", "--createToken", "http://h", "u"]).command,
            Command::CreateToken(_)
        ));
        match parse(&["xo-cli", "--list-commands", "--json", "{user,group}.*"]).command {
            Command::ListCommands { json, patterns } => {
                assert!(json && patterns == ["{user,group}.*"])
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "xo-cli",
            "--list-objects",
            "--name_label",
            "--id",
            "type=VM",
        ])
        .command
        {
            Command::ListObjects { args } => assert_eq!(args, ["--name_label", "--id", "type=VM"]),
            other => panic!("{other:?}"),
        }
        match parse(&["xo-cli", "--url", "http://h", "vm.start", "id=x", "--json"]).command {
            Command::Call(a) => assert_eq!(a, ["vm.start", "id=x", "--json"]),
            other => panic!("{other:?}"),
        }
        // a method argument that looks like a legacy flag is not rewritten
        match parse(&["xo-cli", "x.y", "--register"]).command {
            Command::Call(a) => assert_eq!(a, ["x.y", "--register"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["xo-cli", "--completions", "bash"]).command,
            Command::Completions { .. }
        ));
        Cli::command().debug_assert();
    }
}
