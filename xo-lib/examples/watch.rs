//! Prints every notification and connection event (reconnecting when the connection drops).
//!
//! `cargo run -p xo-lib --example watch -- <url> [<email> <password>]`

use std::time::Duration;

use xo_lib::{Backoff, Credentials, Event, ObjectsChange, Options, Xo};

#[tokio::main]
async fn main() -> Result<(), xo_lib::Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let email = args.next().unwrap_or_else(|| "admin@admin.net".into());
    let password = args.next().unwrap_or_else(|| "admin".into());
    let xo = Xo::connect(
        Options::new(url)
            .allow_unauthorized(std::env::var_os("XO_ALLOW_UNAUTHORIZED").is_some())
            .credentials(Credentials::password(email, password))
            .reconnect(Backoff::new(
                Duration::from_secs(1),
                Duration::from_secs(30),
            )),
    )
    .await?;
    let mut events = xo.events();
    println!("watching (Ctrl-C to stop)");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            ev = events.recv() => match ev {
                Ok(Event::Notification(n)) => match n.objects_change() {
                    Some(ObjectsChange::Enter(items)) => {
                        for (id, o) in items {
                            println!("enter {id} {} {}", o["type"].as_str().unwrap_or("?"), o["name_label"].as_str().unwrap_or(""));
                        }
                    }
                    Some(ObjectsChange::Exit(ids)) => {
                        for id in ids {
                            println!("exit  {id}");
                        }
                    }
                    None => println!("{} {}", n.method, n.params),
                },
                Ok(Event::Disconnected { reason }) => println!("-- disconnected: {reason}"),
                Ok(Event::Reconnected) => println!("-- reconnected"),
                Ok(Event::SignedIn(u)) => println!("-- signed in as {}", u.email),
                Ok(Event::SignInFailed(e)) => println!("-- sign-in failed: {e}"),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => println!("-- missed {n} events"),
                Err(_) => break,
            }
        }
    }
    xo.close();
    Ok(())
}
