//! A simulated XCP-ng pool (xapi-sim) served in-process on `127.0.0.1:0`.
//!
//! The pool runs on a tokio runtime of its own, on a dedicated thread, so it keeps serving while
//! a synchronous test blocks on a child process; dropping the [`SimPool`] stops it.

use std::sync::mpsc;
use std::thread;

use crate::error::HarnessError;

/// Shape of the simulated pool.
#[derive(Clone)]
pub struct SimOptions {
    /// Hosts in the pool (the first is the master; the others answer `HOST_IS_SLAVE`).
    pub hosts: usize,
    /// Guest VMs.
    pub vms: usize,
    /// Serve HTTPS with a self-signed certificate (what real hosts do) instead of plain HTTP.
    pub tls: bool,
    /// Login name the pool accepts.
    pub user: String,
    /// Password the pool accepts.
    pub password: String,
}

impl std::fmt::Debug for SimOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimOptions")
            .field("hosts", &self.hosts)
            .field("vms", &self.vms)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            hosts: 3,
            vms: 20,
            tls: true,
            user: "root".into(),
            password: "root".into(),
        }
    }
}

/// What the runtime thread reports once the pool accepts connections.
struct Started {
    state: std::sync::Arc<xapi_sim::PoolState>,
    host_refs: Vec<xapi_types::Ref>,
    master_url: String,
    slave_urls: Vec<String>,
    user: String,
    password: String,
}

/// A running simulated pool; stops when dropped.
pub struct SimPool {
    started: Started,
    registry: xapi_sim::Registry,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for SimPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPool")
            .field("master_url", &self.started.master_url)
            .field("slave_urls", &self.started.slave_urls)
            .field("user", &self.started.user)
            .finish_non_exhaustive()
    }
}

impl SimPool {
    /// Builds a pool as `options` says and serves it on `127.0.0.1:0` (slaves on
    /// `127.0.0.(1+j)` with the same port), returning once it accepts connections.
    pub fn start(options: SimOptions) -> Result<SimPool, HarnessError> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<Started, String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("xapi-sim".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("tokio runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match serve(&options).await {
                        Ok((started, running)) => {
                            let _ = ready_tx.send(Ok(started));
                            // Serve until the SimPool is dropped (or its sender vanishes).
                            let _ = stop_rx.await;
                            running.shutdown().await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|e| HarnessError::Sim(format!("spawning its thread: {e}")))?;
        let started = match ready_rx.recv() {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => return Err(HarnessError::Sim(e)),
            Err(_) => return Err(HarnessError::Sim("its thread died while starting".into())),
        };
        Ok(SimPool {
            started,
            registry: xapi_sim::Registry::standard(),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The master's URL, e.g. `https://127.0.0.1:40123`.
    pub fn master_url(&self) -> &str {
        &self.started.master_url
    }

    /// URLs of the pool members that are not the master.
    pub fn slave_urls(&self) -> &[String] {
        &self.started.slave_urls
    }

    /// Login name accepted by the pool.
    pub fn user(&self) -> &str {
        &self.started.user
    }

    /// Password accepted by the pool.
    pub fn password(&self) -> &str {
        &self.started.password
    }

    /// The pool's shared state: DB access for assertions, fault injection (`state().faults`),
    /// host restarts (`state().restart_host(&host_refs()[i])`).
    pub fn state(&self) -> &std::sync::Arc<xapi_sim::PoolState> {
        &self.started.state
    }

    /// Calls `method` in-process as the current master would answer it over the wire (the
    /// session, where the method takes one, is the first of `params`).
    pub fn call(
        &self,
        method: &str,
        params: Vec<xapi_types::Value>,
    ) -> Result<xapi_types::Value, xapi_types::XapiError> {
        let master = self.started.state.master();
        xapi_sim::rpc::dispatch(&self.started.state, &self.registry, &master, method, params).result
    }

    /// Logs in in-process with the pool's credentials and returns the session ref.
    pub fn login(&self) -> Result<String, xapi_types::XapiError> {
        let session = self.call(
            "session.login_with_password",
            vec![self.user().into(), self.password().into()],
        )?;
        session
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| xapi_types::XapiError::internal("login returned a non-string"))
    }

    /// Refs of every host, host 0 (the first master) first.
    pub fn host_refs(&self) -> &[xapi_types::Ref] {
        &self.started.host_refs
    }
}

impl Drop for SimPool {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The only place that knows xapi-sim's API: build, serve, report URLs.
async fn serve(options: &SimOptions) -> Result<(Started, xapi_sim::RunningPool), String> {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let running = xapi_sim::Sim::builder()
        .hosts(options.hosts)
        .vms(options.vms)
        .credentials(options.user.clone(), options.password.clone())
        .build()
        .map_err(|e| e.to_string())?
        .serve(addr, options.tls)
        .await
        .map_err(|e| e.to_string())?;
    let master_url = running.master_url();
    let slave_urls = running
        .host_urls()
        .into_iter()
        .filter(|url| *url != master_url)
        .collect();
    let started = Started {
        state: running.state().clone(),
        host_refs: running.host_refs(),
        master_url,
        slave_urls,
        user: options.user.clone(),
        password: options.password.clone(),
    };
    Ok((started, running))
}
