//! `xo-server [--config FILE] [--listen ADDR] [--data-dir DIR] [--demo]`: loads the configuration
//! (defaults < TOML file < `XO_*` environment < flags), starts the server and prints its URL.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use xo_server::{AppBuilder, Config};

#[derive(Parser, Debug)]
#[command(
    name = "xo-server",
    version,
    about = "Xen Orchestra server (JSON-RPC over WebSocket at /api/)"
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (e.g. 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory of the database.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Start simulated pools in-process.
    #[arg(long)]
    demo: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // tungstenite dumps every WebSocket frame at TRACE (sign-in passwords and tokens included): never below DEBUG.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info".into())
        .add_directive("tungstenite=debug".parse()?)
        .add_directive("tokio_tungstenite=debug".parse()?);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut config = match &cli.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    config.apply_env(std::env::vars())?;
    if let Some(l) = cli.listen {
        config.listen = l;
    }
    if let Some(d) = cli.data_dir {
        config.data_dir = d;
    }
    config.demo |= cli.demo;
    let demo = config.demo;
    let mut builder = AppBuilder::new(config);
    if demo {
        builder = xo_server::demo::install(builder, xo_server::demo::DemoOptions::default());
    }
    let app = builder.build().context("cannot start")?;
    let server = xo_server::serve(app).await.context("cannot start")?;
    println!("xo-server listening on {}", server.url());
    if demo {
        let opts = xo_server::demo::DemoOptions::default();
        println!(
            "demo: {} simulated pools ({} hosts, {} VMs each) registered as servers",
            opts.pools, opts.hosts, opts.vms
        );
        println!(
            "demo: sign in at {} as admin@admin.net / admin",
            server.api_url()
        );
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}
