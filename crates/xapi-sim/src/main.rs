//! `xapi-sim`: serve one or more simulated XCP-ng pools on loopback and print each master's URL.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use xapi_sim::{serve_pools, Sim};

#[derive(Debug, Parser)]
#[command(
    name = "xapi-sim",
    about = "Simulated XCP-ng pool(s) speaking XAPI on loopback"
)]
struct Args {
    /// Address of pool 0's master; pool i uses PORT+i; host j of a pool listens on IP+j with the same port.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Serve HTTPS with a self-signed certificate (default: plain HTTP).
    #[arg(long)]
    tls: bool,
    /// Number of pools.
    #[arg(long, default_value_t = 1)]
    pools: usize,
    /// Hosts per pool.
    #[arg(long, default_value_t = 1)]
    hosts: usize,
    /// Guest VMs per pool.
    #[arg(long, default_value_t = 10)]
    vms: usize,
    /// Accepted user name.
    #[arg(long, default_value = "root")]
    user: String,
    /// Accepted password.
    #[arg(long, default_value = "root")]
    password: String,
    /// Latency added to every RPC, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Delay before answering a failed login, in milliseconds (XAPI: ~5000).
    #[arg(long, default_value_t = 0)]
    auth_failure_delay_ms: u64,
    /// Pace disk exports (/export, /export_raw_vdi) to this many MiB/s, as a real host's storage or network
    /// (0: as fast as the simulator goes).
    #[arg(long, default_value_t = 0)]
    export_rate_mib: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let started = Instant::now();
    let mut sims = Vec::new();
    for i in 0..args.pools.max(1) {
        let sim = Sim::builder()
            .name(format!("pool-{i}"))
            .hosts(args.hosts)
            .vms(args.vms)
            .credentials(args.user.clone(), args.password.clone())
            .auth_failure_delay(Duration::from_millis(args.auth_failure_delay_ms))
            .export_rate(args.export_rate_mib << 20)
            .build()
            .with_context(|| format!("building pool {i}"))?;
        sim.state()
            .faults
            .set_latency(Duration::from_millis(args.latency_ms));
        sims.push(sim);
    }
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "pools built"
    );
    let pools = serve_pools(sims, args.listen, args.tls)
        .await
        .context("serving")?;
    for p in &pools {
        println!("{}", p.master_url());
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    for p in pools {
        p.shutdown().await;
    }
    Ok(())
}
