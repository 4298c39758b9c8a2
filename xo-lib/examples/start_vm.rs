//! Starts a VM and waits until the object cache sees it running.
//!
//! `cargo run -p xo-lib --example start_vm -- <url> <vm id> [<email> <password>]`

use std::time::Duration;

use xo_lib::{wait_for_power_state, Credentials, ObjectCache, Options, Xo};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(vm)) = (args.next(), args.next()) else {
        eprintln!("usage: start_vm <url> <vm id> [<email> <password>]");
        std::process::exit(2);
    };
    let email = args.next().unwrap_or_else(|| "admin@admin.net".into());
    let password = args.next().unwrap_or_else(|| "admin".into());
    let xo = Xo::connect(
        Options::new(url)
            .allow_unauthorized(std::env::var_os("XO_ALLOW_UNAUTHORIZED").is_some())
            .credentials(Credentials::password(email, password)),
    )
    .await?;
    // start the cache first so that no notification is missed
    let cache = ObjectCache::start(&xo).await?;
    match cache.get(&vm) {
        None => return Err(format!("no such VM {vm}").into()),
        Some(o) => println!("{vm} is {}", o["power_state"].as_str().unwrap_or("?")),
    }
    xo.start_vm(&vm).await?;
    let o = wait_for_power_state(&cache, &vm, "Running", Duration::from_secs(300)).await?;
    println!("{} is running", o["name_label"].as_str().unwrap_or(&vm));
    Ok(())
}
