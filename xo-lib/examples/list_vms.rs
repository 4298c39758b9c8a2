//! Lists the VMs of an xo-server.
//!
//! `cargo run -p xo-lib --example list_vms -- <url> [<email> <password>]`
//! (defaults: `http://127.0.0.1:8080`, `admin@admin.net` / `admin`; `XO_ALLOW_UNAUTHORIZED=1` accepts
//! self-signed certificates).

use xo_lib::{Credentials, Options, Xo};

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
            .credentials(Credentials::password(email, password)),
    )
    .await?;
    let vms = xo.list_vms().await?;
    println!("{} VM(s)", vms.len());
    for vm in vms {
        println!(
            "{:<36}  {:<8}  {}",
            vm["id"].as_str().unwrap_or("?"),
            vm["power_state"].as_str().unwrap_or("?"),
            vm["name_label"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
