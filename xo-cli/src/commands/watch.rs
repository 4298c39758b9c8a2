//! `watch [--ndjson]`: prints every notification (`<method> <params>` or one JSON object per line),
//! reconnecting when the connection drops; on Ctrl-C prints how many of each method were seen.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use xo_lib::{Backoff, Event};

use crate::commands::Global;
use crate::failure::Failure;
use crate::output::print;

/// Runs until interrupted.
pub async fn watch(g: &Global, ndjson: bool) -> Result<(), Failure> {
    let xo = super::connect_with(g, |o| {
        o.reconnect(Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(30),
        ))
    })
    .await?;
    let mut events = xo.events();
    match xo.user() {
        Some(u) => eprintln!("watching as {} (Ctrl-C to stop)", u.email),
        None => eprintln!("watching anonymously: the server only notifies signed-in clients"),
    }
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            ev = events.recv() => match ev {
                Ok(Event::Notification(n)) => {
                    *counts.entry(n.method.clone()).or_default() += 1;
                    if ndjson {
                        print(&format!("{}\n", json!({"method": n.method, "params": n.params})));
                    } else {
                        print(&format!("{} {}\n", n.method, n.params));
                    }
                }
                Ok(Event::Disconnected { reason }) => eprintln!("disconnected ({reason}), reconnecting…"),
                Ok(Event::SignedIn(u)) => eprintln!("signed in again as {}", u.email),
                Ok(Event::SignInFailed(e)) => {
                    xo.close();
                    return Err(Failure::Auth(format!("{e}: run xo-cli --register again")));
                }
                Ok(Event::Reconnected) => {}
                Err(RecvError::Lagged(n)) => eprintln!("warning: {n} notifications were dropped"),
                Err(RecvError::Closed) => break,
            }
        }
    }
    for (method, n) in counts {
        eprintln!("{method}: {n}");
    }
    xo.close();
    Ok(())
}
