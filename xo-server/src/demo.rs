//! Demo mode (`xo-server --demo`): simulated XCP-ng pools (xapi-sim) served in-process on loopback HTTPS
//! (self-signed, free ports), registered as XAPI servers so that a newcomer signs in
//! (`admin@admin.net` / `admin`) and sees live objects at once.

use std::net::SocketAddr;
use std::sync::Arc;

use xapi_sim::{RunningPool, Sim};
use xo_store::NewServer;

use crate::app::{App, AppBuilder};

/// Label prefix of the servers demo mode registers (previous ones are replaced at each start).
pub const LABEL_PREFIX: &str = "Demo pool ";

/// Sizes of the simulated pools.
#[derive(Clone, Copy, Debug)]
pub struct DemoOptions {
    /// Number of pools.
    pub pools: usize,
    /// Hosts per pool.
    pub hosts: usize,
    /// Guest VMs per pool.
    pub vms: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            pools: 2,
            hosts: 3,
            vms: 50,
        }
    }
}

/// The running simulated pools (an [`App`] extension: they live as long as the app).
#[derive(Debug)]
pub struct DemoPools {
    pools: Vec<RunningPool>,
}

impl DemoPools {
    /// The simulated pools, in registration order.
    pub fn pools(&self) -> &[RunningPool] {
        &self.pools
    }
}

/// Errors while starting the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The simulator could not be built or served.
    #[error("simulated pool: {0}")]
    Sim(#[from] xapi_sim::SimError),
    /// The servers could not be registered.
    #[error("store: {0}")]
    Store(#[from] xo_store::StoreError),
}

/// Starts the simulated pools and registers them as enabled servers (replacing the servers registered by
/// a previous demo run). The app connects them like any other server.
pub async fn start(app: &App, opts: DemoOptions) -> Result<Arc<DemoPools>, DemoError> {
    let store = app.store();
    for s in store.servers()? {
        if s.label
            .as_deref()
            .is_some_and(|l| l.starts_with(LABEL_PREFIX))
        {
            store.remove_server(&s.id)?;
        }
    }
    let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut pools = Vec::with_capacity(opts.pools);
    for i in 1..=opts.pools {
        let name = format!("{LABEL_PREFIX}{i}");
        let sim = Sim::builder()
            .name(name.clone())
            .hosts(opts.hosts)
            .vms(opts.vms)
            .build()?;
        let pool = sim.serve(listen, true).await?;
        store.add_server(NewServer {
            host: pool.master_url().trim_end_matches('/').to_owned(),
            username: "root".into(),
            password: "root".into(),
            label: Some(name),
            allow_unauthorized: true,
            enabled: true,
            http_proxy: None,
        })?;
        tracing::info!(url = %pool.master_url(), "demo pool {i} listening");
        pools.push(pool);
    }
    let demo = Arc::new(DemoPools { pools });
    app.set_extension(demo.clone());
    Ok(demo)
}

/// Adds a start hook running [`start`] (before the enabled servers are connected).
pub fn install(builder: AppBuilder, opts: DemoOptions) -> AppBuilder {
    builder.on_start(move |app| {
        Box::pin(async move { start(&app, opts).await.map(drop).map_err(|e| e.to_string()) })
    })
}
