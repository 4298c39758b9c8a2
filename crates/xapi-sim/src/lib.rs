//! A simulated XCP-ng pool speaking XAPI (XML-RPC and JSON-RPC over HTTP/HTTPS on loopback), for tests and demos.
//!
//! ```no_run
//! # async fn demo() -> Result<(), xapi_sim::SimError> {
//! let sim = xapi_sim::Sim::builder().hosts(3).vms(200).build()?;
//! let pool = sim.serve("127.0.0.1:0".parse().unwrap(), true).await?;
//! println!("{}", pool.master_url()); // https://127.0.0.1:PORT/
//! pool.faults().fail_next("VM.start", xapi_types::XapiError::code("VM_BAD_POWER_STATE"));
//! pool.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Host j of a pool listens on `127.0.0.(1+j)` (the listen IP + j) with the same port, and `host.address` is
//! that IP, so `HOST_IS_SLAVE <master address>` redirects are real.

pub mod console;
pub mod db;
pub mod events;
pub mod faults;
pub mod generic;
pub mod ops;
pub mod rpc;
mod rrd;
pub mod seed;
mod server;
mod session;
pub mod state;
mod tasks;
mod transfer;
pub mod vdi_data;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use xapi_types::{Ref, Value, XapiError};

pub use db::{Db, Record};
pub use faults::Faults;
pub use rpc::{Ctx, Handler, Registry};
pub use state::{PoolState, SimConfig};

/// Errors of building or serving a pool.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("building the pool: {0}")]
    Build(XapiError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Builder of a [`Sim`]. Defaults: 1 host, 0 VMs, credentials root/root, no auth-failure delay, 50 ms event
/// batching.
#[derive(Debug, Clone)]
pub struct SimBuilder {
    seed: seed::SeedSpec,
    config: SimConfig,
    tombstone_limit: usize,
    content_cap: u64,
    handlers: Vec<(String, Handler)>,
}

impl SimBuilder {
    /// Number of hosts (≥ 1); host 0 is the master.
    pub fn hosts(mut self, n: usize) -> Self {
        self.seed.hosts = n.max(1);
        self
    }

    /// Number of guest VMs (besides dom0s, templates and snapshots).
    pub fn vms(mut self, n: usize) -> Self {
        self.seed.vms = n;
        self
    }

    /// Pool name label.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.seed.name = name.into();
        self
    }

    /// Accepted credentials (default root/root).
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.config.user = user.into();
        self.config.password = password.into();
        self
    }

    /// Delay before `SESSION_AUTHENTICATION_FAILED` (XAPI waits ~5 s; default 0).
    pub fn auth_failure_delay(mut self, d: Duration) -> Self {
        self.config.auth_failure_delay = d;
        self
    }

    /// `event.from` batching delay (default 50 ms; 0 disables).
    pub fn event_batching(mut self, d: Duration) -> Self {
        self.config.event_batching = d;
        self
    }

    /// How many deletions are remembered for `del` events before older tokens get `EVENTS_LOST`.
    pub fn tombstone_limit(mut self, n: usize) -> Self {
        self.tombstone_limit = n;
        self
    }

    /// Pace disk streams (`/export`, `/export_raw_vdi`) to `bytes_per_sec`, as a host whose storage or network
    /// bounds them (default: as fast as the simulator goes; 0 also means that).
    pub fn export_rate(mut self, bytes_per_sec: u64) -> Self {
        self.config.export_rate = (bytes_per_sec > 0).then_some(bytes_per_sec);
        self
    }

    /// Bound of a legacy `event.next` queue before `EVENTS_LOST`.
    pub fn legacy_queue_limit(mut self, n: usize) -> Self {
        self.config.legacy_queue_limit = n;
        self
    }

    /// Cap on the disk content kept in memory for all VDIs (default 1 GiB); writes beyond it fail with
    /// `SR_BACKEND_FAILURE_44`.
    pub fn vdi_content_cap(mut self, bytes: u64) -> Self {
        self.content_cap = bytes;
        self
    }

    /// Add or replace the handler of `Class.message` (after the built-ins and ops), e.g. to script a behaviour
    /// in a test.
    pub fn handler(mut self, method: impl Into<String>, handler: Handler) -> Self {
        self.handlers.push((method.into(), handler));
        self
    }

    /// Populate the pool.
    pub fn build(self) -> Result<Sim, SimError> {
        let mut db = Db::new();
        db.set_tombstone_limit(self.tombstone_limit);
        db.vdi_data.set_cap(self.content_cap);
        seed::seed(&mut db, &self.seed).map_err(SimError::Build)?;
        let mut registry = Registry::standard();
        for (m, h) in self.handlers {
            registry.register(&m, h);
        }
        Ok(Sim {
            state: Arc::new(PoolState::new(db, self.config)),
            registry: Arc::new(registry),
        })
    }
}

/// A built (not yet served) pool.
#[derive(Debug)]
pub struct Sim {
    state: Arc<PoolState>,
    registry: Arc<Registry>,
}

impl Sim {
    pub fn builder() -> SimBuilder {
        SimBuilder {
            seed: seed::SeedSpec::default(),
            config: SimConfig::default(),
            tombstone_limit: db::DEFAULT_TOMBSTONE_LIMIT,
            content_cap: vdi_data::DEFAULT_CAP,
            handlers: Vec::new(),
        }
    }

    /// The pool state (DB, faults, config).
    pub fn state(&self) -> &Arc<PoolState> {
        &self.state
    }

    /// In-process call as if received by the current master (no HTTP); `Async.*` works too.
    pub fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, XapiError> {
        let master = self.state.master();
        rpc::dispatch(&self.state, &self.registry, &master, method, params).into_result(&self.state)
    }

    /// Serve every host of the pool: host j on `listen.ip() + j`, same port (port 0 picks one). TLS uses a
    /// self-signed certificate generated now (see [`RunningPool::certificate_pem`]).
    pub async fn serve(self, listen: SocketAddr, tls: bool) -> Result<RunningPool, SimError> {
        let IpAddr::V4(first) = listen.ip() else {
            return Err(SimError::Config(
                "only IPv4 loopback addresses are supported".into(),
            ));
        };
        let hosts = self.state.hosts();
        let ips: Vec<Ipv4Addr> = (0..hosts.len())
            .map(|j| seed::host_address(first, j))
            .collect();
        // Make host.address (and what derives from it) match where we listen.
        self.state.write(|db| relocate(db, &hosts, &ips));
        let addrs: Vec<IpAddr> = ips.iter().map(|ip| IpAddr::V4(*ip)).collect();
        let listeners = server::bind_all(&addrs, listen.port()).await?;
        let port = listeners[0].local_addr()?.port();
        let (acceptor, cert_pem, cert_der) = if tls {
            let mut names = vec!["localhost".to_owned()];
            names.extend(ips.iter().map(|ip| ip.to_string()));
            let (a, p, d) = server::tls_acceptor(names).map_err(SimError::Tls)?;
            (Some(a), Some(p), Some(d))
        } else {
            (None, None, None)
        };
        let (tx, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for (listener, host) in listeners.into_iter().zip(&hosts) {
            let hc = Arc::new(server::HostCtx {
                pool: self.state.clone(),
                registry: self.registry.clone(),
                host: host.clone(),
            });
            tasks.push(tokio::spawn(server::serve_host(
                listener,
                acceptor.clone(),
                hc,
                rx.clone(),
            )));
        }
        tracing::info!(port, hosts = hosts.len(), tls, "simulated pool listening");
        Ok(RunningPool {
            state: self.state,
            registry: self.registry,
            hosts: hosts.into_iter().zip(ips).collect(),
            port,
            tls,
            shutdown: tx,
            tasks,
            cert_pem,
            cert_der,
        })
    }
}

fn relocate(db: &mut Db, hosts: &[Ref], ips: &[Ipv4Addr]) {
    for (h, ip) in hosts.iter().zip(ips) {
        let ip = ip.to_string();
        let old = state::str_field(db, "host", h, "address");
        if old == ip {
            continue;
        }
        let _ = db.set_field("host", h, "address", json!(ip));
        for pif in db.find("PIF", |p| {
            p.get("host").and_then(Value::as_str) == Some(h.as_str())
        }) {
            let _ = db.update("PIF", &pif, |p| {
                if p.get("IP").and_then(Value::as_str) == Some(old.as_str()) {
                    p.insert("IP".into(), json!(ip));
                }
            });
        }
        let needle = format!("https://{old}/");
        for c in db.find("console", |c| {
            c.get("location")
                .and_then(Value::as_str)
                .is_some_and(|l| l.starts_with(&needle))
        }) {
            let _ = db.update("console", &c, |r| {
                if let Some(l) = r.get("location").and_then(Value::as_str) {
                    let l = l.replacen(&needle, &format!("https://{ip}/"), 1);
                    r.insert("location".into(), json!(l));
                }
            });
        }
    }
}

/// Serve several pools: pool i on `listen.port() + i` (or each on its own free port when the port is 0).
pub async fn serve_pools(
    sims: Vec<Sim>,
    listen: SocketAddr,
    tls: bool,
) -> Result<Vec<RunningPool>, SimError> {
    let mut out = Vec::new();
    for (i, sim) in sims.into_iter().enumerate() {
        let port = if listen.port() == 0 {
            0
        } else {
            listen.port() + i as u16
        };
        out.push(sim.serve(SocketAddr::new(listen.ip(), port), tls).await?);
    }
    Ok(out)
}

/// A pool being served. Dropping it stops the listeners (like [`RunningPool::shutdown`], without waiting).
#[derive(Debug)]
pub struct RunningPool {
    state: Arc<PoolState>,
    registry: Arc<Registry>,
    hosts: Vec<(Ref, Ipv4Addr)>,
    port: u16,
    tls: bool,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    cert_pem: Option<String>,
    cert_der: Option<Vec<u8>>,
}

impl RunningPool {
    fn url(&self, ip: &Ipv4Addr) -> String {
        format!(
            "{}://{ip}:{}/",
            if self.tls { "https" } else { "http" },
            self.port
        )
    }

    /// URL of the current master (`https://127.0.0.1:PORT/`).
    pub fn master_url(&self) -> String {
        let master = self.state.master();
        let ip = self
            .hosts
            .iter()
            .find(|(h, _)| *h == master)
            .map_or(self.hosts[0].1, |(_, ip)| *ip);
        self.url(&ip)
    }

    /// URLs of every host, host 0 first.
    pub fn host_urls(&self) -> Vec<String> {
        self.hosts.iter().map(|(_, ip)| self.url(ip)).collect()
    }

    /// Refs of every host, host 0 first (same order as [`RunningPool::host_urls`]).
    pub fn host_refs(&self) -> Vec<Ref> {
        self.hosts.iter().map(|(h, _)| h.clone()).collect()
    }

    /// The shared port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Fault injection (fail next call, latency, dropped connections).
    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }

    /// The pool state (DB access for assertions or direct changes).
    pub fn state(&self) -> &Arc<PoolState> {
        &self.state
    }

    /// In-process call as the current master would answer it.
    pub fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, XapiError> {
        let master = self.state.master();
        rpc::dispatch(&self.state, &self.registry, &master, method, params).into_result(&self.state)
    }

    /// Simulate a toolstack restart of host `index`: all its sessions are lost.
    pub fn restart_host(&self, index: usize) {
        if let Some((h, _)) = self.hosts.get(index) {
            self.state.restart_host(h);
        }
    }

    /// Make host `index` the master (the old one then answers `HOST_IS_SLAVE`).
    pub fn set_master(&self, index: usize) -> Result<(), SimError> {
        let (h, _) = self
            .hosts
            .get(index)
            .ok_or_else(|| SimError::Config(format!("no host {index}")))?;
        self.state.designate_master(h).map_err(SimError::Build)
    }

    /// The self-signed certificate (PEM) when serving TLS.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.cert_pem.as_deref()
    }

    /// The self-signed certificate (DER) when serving TLS.
    pub fn certificate_der(&self) -> Option<&[u8]> {
        self.cert_der.as_deref()
    }

    /// Stop listening, close connections and wake blocked calls.
    pub async fn shutdown(mut self) {
        self.stop();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }

    fn stop(&self) {
        let _ = self.shutdown.send(true);
        self.state.set_shutdown();
    }
}

impl Drop for RunningPool {
    fn drop(&mut self) {
        self.stop();
    }
}
