//! The `xapi-sim` binary's contract: one master URL per pool on stdout once it accepts connections, pool i on
//! PORT+i, each host of a pool on its own loopback address, HTTPS with a generated certificate.

use std::io::BufRead;

use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::sim::{assert_root_login, code, host_port, json_call};

/// Kills the child process it owns when dropped (also on test failure).
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_prints_one_url_per_pool() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xapi-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--pools",
            "2",
            "--hosts",
            "2",
            "--vms",
            "3",
            "--password",
            "pw",
        ])
        .args(["--latency-ms", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn xapi-sim");
    let stdout = child.stdout.take().unwrap();
    let _guard = ChildGuard(child);
    let urls = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .take(2)
            .map(|l| l.unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(urls.len(), 2);
    for url in &urls {
        assert!(
            url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
            "{url}"
        );
        let e = code(
            json_call(
                url,
                true,
                "session.login_with_password",
                &[json!("root"), json!("root")],
            )
            .await,
        );
        assert_eq!(e[0], "SESSION_AUTHENTICATION_FAILED");
        let s = json_call(
            url,
            true,
            "session.login_with_password",
            &[json!("root"), json!("pw")],
        )
        .await
        .unwrap();
        let hosts = json_call(url, true, "host.get_all", &[s]).await.unwrap();
        assert_eq!(hosts.as_array().unwrap().len(), 2);
    }
    assert_ne!(urls[0], urls[1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_with_tls_serves_https_with_a_generated_certificate() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xapi-sim"))
        .args(["--listen", "127.0.0.1:0", "--tls", "--vms", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn xapi-sim");
    let stdout = child.stdout.take().unwrap();
    let _guard = ChildGuard(child);
    let url = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .next()
            .expect("a URL line")
            .unwrap()
    })
    .await
    .unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    // Any certificate: the binary's self-signed one is not known to the test in advance.
    let cfg = xo_tls::client_config(true, &[]).unwrap();
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let tcp = TcpStream::connect(host_port(&url)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    // The generated certificate names 127.0.0.1 (its SAN holds the 4 address bytes).
    let (_, conn) = tls.get_ref();
    let cert = conn.peer_certificates().expect("a certificate")[0].to_vec();
    assert!(
        cert.windows(4).any(|w| w == [127, 0, 0, 1]),
        "no 127.0.0.1 SAN"
    );
    // Default credentials root/root over JSON-RPC.
    assert_root_login(tls, &url).await;
}

/// Starts the binary with `args` and reads `n` lines from its stdout; `None` when it exits before printing them
/// (e.g. a fixed port was taken).
async fn spawn_reading(args: Vec<String>, n: usize) -> Option<(ChildGuard, Vec<String>)> {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xapi-sim"))
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn xapi-sim");
    let stdout = child.stdout.take().unwrap();
    let guard = ChildGuard(child);
    let lines = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .take(n)
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    (lines.len() == n).then_some((guard, lines))
}

/// A port that was free a moment ago and leaves room for `count` consecutive ports.
fn probably_free_port(count: u16) -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port.checked_add(count).is_some() {
            return port;
        }
    }
}

async fn login_as(url: &str, password: &str) -> Result<Value, xapi_types::XapiError> {
    json_call(
        url,
        true,
        "session.login_with_password",
        &[json!("root"), json!(password)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_serves_pool_i_on_port_plus_i_and_slaves_on_their_own_address() {
    const POOLS: u16 = 3;
    let mut started = None;
    for _attempt in 0..5 {
        let port = probably_free_port(POOLS);
        let args = [
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--pools",
            &POOLS.to_string(),
            "--hosts",
            "2",
            "--vms",
            "1",
            "--password",
            "pw",
        ]
        .map(String::from)
        .to_vec();
        if let Some(running) = spawn_reading(args, POOLS.into()).await {
            started = Some((port, running));
            break;
        }
    }
    let (port, (_guard, urls)) = started.expect("no free run of ports after 5 attempts");
    for i in 0..POOLS {
        let url = format!("http://127.0.0.1:{}/", port + i);
        assert_eq!(urls[usize::from(i)], url, "pool {i} master URL");
        // It is pool i that answers there: the binary names its pools pool-0, pool-1, ...
        let s = login_as(&url, "pw").await.unwrap();
        let pools = json_call(&url, true, "pool.get_all", std::slice::from_ref(&s))
            .await
            .unwrap();
        let pool = pools[0].clone();
        let name = json_call(&url, true, "pool.get_name_label", &[s.clone(), pool])
            .await
            .unwrap();
        assert_eq!(name, json!(format!("pool-{i}")));
        // Its slave answers on the next loopback address, same port, with a real redirect to the master.
        let slave = format!("http://127.0.0.2:{}/", port + i);
        assert_eq!(
            code(login_as(&slave, "pw").await),
            vec!["HOST_IS_SLAVE", "127.0.0.1"]
        );
        // The slave belongs to this pool: the pool's host list names it at that address.
        let hosts = json_call(&url, true, "host.get_all", std::slice::from_ref(&s))
            .await
            .unwrap();
        let mut addresses = Vec::new();
        for h in hosts.as_array().unwrap() {
            let a = json_call(&url, true, "host.get_address", &[s.clone(), h.clone()])
                .await
                .unwrap();
            addresses.push(a.as_str().unwrap().to_owned());
        }
        addresses.sort();
        assert_eq!(addresses, vec!["127.0.0.1", "127.0.0.2"]);
    }
}
