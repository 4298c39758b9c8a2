//! xo-cli: the introspecting command-line client of xo-server (see `docs/cli.md`).

mod cli;
mod commands;
mod config;
mod duration;
mod failure;
mod glob;
mod output;
mod params;
mod suggest;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::commands::Global;
use crate::failure::Failure;

async fn run(cli: Cli) -> Result<(), Failure> {
    let g = Global {
        url: cli.url,
        allow_unauthorized: cli.allow_unauthorized,
        json: cli.json,
        table: cli.table,
    };
    match cli.command {
        Command::Register(a) => commands::register::register(a, g.allow_unauthorized).await,
        Command::CreateToken(a) => commands::register::create_token(a, g.allow_unauthorized).await,
        Command::Unregister => commands::register::unregister(),
        Command::ListCommands { json, patterns } => {
            commands::introspect::list_commands(&g, json, &patterns).await
        }
        Command::ListObjects { args } => commands::objects::list_objects(&g, &args).await,
        Command::Watch { ndjson } => commands::watch::watch(&g, ndjson).await,
        Command::Completions { shell } => {
            let mut out = std::io::stdout();
            clap_complete::generate(shell, &mut Cli::command(), "xo-cli", &mut out);
            Ok(())
        }
        Command::Call(args) => commands::call::call(&g, &args).await,
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XO_CLI_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse_from(cli::normalize(std::env::args())) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                failure::EXIT_USAGE
            } else {
                0
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xo-cli: cannot start: {e}");
            return ExitCode::from(failure::EXIT_IO);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("xo-cli: {f}");
            ExitCode::from(f.exit_code())
        }
    }
}
