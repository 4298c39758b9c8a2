//! VM and host consoles (`/console`, spec §6.1): the HTTP `CONNECT` tunnel and the WebSocket form, each ending in
//! a real RFB server drawing a text console (VM name, boot log, typed text) per running VM.
//!
//! The text of each console lives in a [`Consoles`] registry held by the pool state, so what was typed persists
//! across reconnections while the VM runs; a VM that halted and started again gets a fresh console (its console
//! rows, hence their refs, are new).

pub mod encode;
pub mod font;
mod http;
mod lookup;
pub mod pixel;
pub mod rfb;
pub mod screen;
mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;
use xapi_types::Ref;

pub(crate) use http::{handle, intercept};
pub use lookup::screen_lines;
use screen::{ConsoleText, Grid};

/// How often a console session checks that its VM still runs here (and the pool is not shutting down).
pub const LIVENESS_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// The shared state of one console: its text and a change counter sessions watch.
#[derive(Debug)]
pub struct Screen {
    /// Desktop name sent in ServerInit (the VM's `name_label`).
    pub name: String,
    text: Mutex<ConsoleText>,
    changes: watch::Sender<u64>,
    /// Open connections (id, user name), for `pool.limit_console_sessions`.
    connections: Mutex<Vec<(u64, String)>>,
    next_connection: AtomicU64,
}

/// An open connection to a [`Screen`]; dropping it releases the slot.
#[derive(Debug)]
pub(crate) struct Connection {
    screen: Arc<Screen>,
    id: u64,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.screen
            .connections
            .lock()
            .retain(|(id, _)| *id != self.id);
    }
}

impl Screen {
    pub fn new(name: impl Into<String>, text: ConsoleText) -> Self {
        Screen {
            name: name.into(),
            text: Mutex::new(text),
            changes: watch::Sender::new(0),
            connections: Mutex::new(Vec::new()),
            next_connection: AtomicU64::new(0),
        }
    }

    /// Register a connection by `user`; with `exclusive` (XAPI's `limit_console_sessions`) only when nobody else
    /// is connected — otherwise `Err` with the connected users.
    pub(crate) fn enter(
        self: &Arc<Self>,
        user: &str,
        exclusive: bool,
    ) -> Result<Connection, Vec<String>> {
        let mut conns = self.connections.lock();
        if exclusive && !conns.is_empty() {
            return Err(conns.iter().map(|(_, u)| u.clone()).collect());
        }
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        conns.push((id, user.to_owned()));
        Ok(Connection {
            screen: self.clone(),
            id,
        })
    }

    /// Users of the open connections.
    pub fn connected_users(&self) -> Vec<String> {
        self.connections
            .lock()
            .iter()
            .map(|(_, u)| u.clone())
            .collect()
    }

    /// Apply a key event (X11 keysym); sessions waiting for changes are woken when the text changed.
    pub fn key(&self, down: bool, sym: u32) {
        let changed = self.text.lock().key(down, sym);
        if changed {
            self.changes.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// What is on screen now.
    pub fn grid(&self) -> Grid {
        self.text.lock().grid()
    }

    /// The visible rows as text (row 0 is the title bar).
    pub fn lines(&self) -> Vec<String> {
        self.grid().lines()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

#[derive(Debug)]
struct Entry {
    /// The VM's console refs when the screen was made: new refs mean the VM was restarted.
    identity: Vec<Ref>,
    screen: Arc<Screen>,
}

/// Registry of console screens keyed by VM ref, created lazily on first connection.
#[derive(Debug, Default)]
pub struct Consoles {
    map: Mutex<HashMap<Ref, Entry>>,
}

impl Consoles {
    /// The screen of `vm` for the console set `identity`; made by `make` when absent or when the VM got new
    /// consoles since (restart).
    pub fn get_or_create(
        &self,
        vm: &Ref,
        identity: Vec<Ref>,
        make: impl FnOnce() -> Screen,
    ) -> Arc<Screen> {
        let mut map = self.map.lock();
        if let Some(e) = map.get(vm) {
            if e.identity == identity {
                return e.screen.clone();
            }
        }
        let screen = Arc::new(make());
        map.insert(
            vm.clone(),
            Entry {
                identity,
                screen: screen.clone(),
            },
        );
        screen
    }

    /// Drop the screens whose console set no longer passes `keep` (VM halted or destroyed).
    pub fn retain(&self, mut keep: impl FnMut(&Ref, &[Ref]) -> bool) {
        self.map.lock().retain(|vm, e| keep(vm, &e.identity));
    }

    /// Number of live screens.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// True when no screen exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
