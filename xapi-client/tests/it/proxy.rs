//! XAPI through an HTTP proxy (`ClientOptions::http_proxy`): a tiny `CONNECT` proxy on 127.0.0.1 counts
//! tunnels, records their targets and checks `Proxy-Authorization`; RPCs, `HOST_IS_SLAVE` redirects and
//! HTTP transfers all go through it. An unreachable proxy and a proxy answering 407 give clear errors
//! that never show the proxy password.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use xapi_client::{Client, ClientOptions, Error};
use xapi_sim::{RunningPool, Sim};

const PASSWORD: &str = "pr0xy p@ss";
/// `Basic base64("user:pr0xy p@ss")`.
const EXPECTED_AUTH: &str = "Basic dXNlcjpwcjB4eSBwQHNz";

#[derive(Default)]
struct Seen {
    /// `CONNECT` targets of the tunnels opened.
    tunnels: Vec<String>,
    /// `Proxy-Authorization` of every request (`None`: absent).
    auth: Vec<Option<String>>,
}

struct TestProxy {
    url_host: String,
    seen: Arc<Mutex<Seen>>,
}

impl TestProxy {
    /// A proxy that tunnels to loopback targets; with `required`, only requests carrying that
    /// `Proxy-Authorization` (others get 407).
    async fn start(required: Option<&'static str>) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url_host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((c, _)) = listener.accept().await {
                tokio::spawn(serve(c, required, s.clone()));
            }
        });
        TestProxy { url_host, seen }
    }

    fn tunnels(&self) -> Vec<String> {
        self.seen.lock().unwrap().tunnels.clone()
    }
}

async fn serve(mut c: TcpStream, required: Option<&'static str>, seen: Arc<Mutex<Seen>>) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match c.read(&mut b).await {
            Ok(1) => head.push(b[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let request = lines.next().unwrap_or_default().to_owned();
    let auth = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("proxy-authorization")
            .then(|| v.trim().to_owned())
    });
    seen.lock().unwrap().auth.push(auth.clone());
    let parts: Vec<&str> = request.split(' ').collect();
    if parts.len() != 3 || parts[0] != "CONNECT" {
        let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        return;
    }
    if required.is_some() && auth.as_deref() != required {
        let _ = c
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    }
    let target = parts[1].to_owned();
    assert!(target.starts_with("127."), "tunnel to {target}");
    let Ok(mut upstream) = TcpStream::connect(&target).await else {
        let _ = c.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    seen.lock().unwrap().tunnels.push(target);
    if c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut c, &mut upstream).await;
}

async fn pool(hosts: usize) -> RunningPool {
    Sim::builder()
        .hosts(hosts)
        .vms(2)
        .event_batching(Duration::from_millis(5))
        .build()
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap(), true)
        .await
        .unwrap()
}

fn opts(url: String, proxy: String) -> ClientOptions {
    ClientOptions::new(url, "root", "root")
        .allow_unauthorized(true)
        .http_proxy(proxy)
}

#[tokio::test]
async fn proxy_tunnels_rpcs_redirects_and_transfers() {
    let p = pool(2).await;
    let proxy = TestProxy::start(Some(EXPECTED_AUTH)).await;
    let url = format!("http://user:pr0xy%20p%40ss@{}", proxy.url_host);
    // through the slave: HOST_IS_SLAVE sends the client to the master, still through the proxy
    let slave = p.host_urls()[1].clone();
    let c = Client::connect(opts(slave, url)).await.unwrap();
    assert_eq!(
        c.url().trim_end_matches('/'),
        p.master_url().trim_end_matches('/')
    );
    let vms = c.get_all_records("VM").await.unwrap();
    assert!(!vms.is_empty());
    let rpc_tunnels = proxy.tunnels();
    let port = p.port();
    assert!(
        rpc_tunnels.contains(&format!("127.0.0.2:{port}")),
        "{rpc_tunnels:?}"
    );
    assert!(
        rpc_tunnels.contains(&format!("127.0.0.1:{port}")),
        "{rpc_tunnels:?}"
    );
    // an HTTP transfer opens its own tunnel
    let d = c.get_resource("/host_rrd", &[]).await.unwrap();
    let mut body = d.into_stream();
    let mut n = 0;
    while let Some(chunk) = body.next().await {
        n += chunk.unwrap().len();
    }
    assert!(n > 0);
    assert!(proxy.tunnels().len() > rpc_tunnels.len());
    // every request carried the credentials; Debug output never shows them
    let seen = proxy.seen.lock().unwrap();
    assert!(seen
        .auth
        .iter()
        .all(|a| a.as_deref() == Some(EXPECTED_AUTH)));
    let dbg = format!("{:?} {:?}", c, c.options());
    assert!(!dbg.contains("p%40ss") && !dbg.contains(PASSWORD), "{dbg}");
}

#[tokio::test]
async fn proxy_unreachable_is_a_clear_connection_error() {
    let p = pool(1).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://user:pr0xy%20p%40ss@127.0.0.1:{port}");
    let e = Client::connect(opts(p.master_url(), url))
        .await
        .unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(matches!(e, Error::Transport(_)), "{text}");
    assert!(e.is_connection_error());
    assert!(
        text.contains(&format!("connect to proxy 127.0.0.1:{port}")),
        "{text}"
    );
    assert!(text.contains("refused"), "{text}");
    assert!(
        !text.contains("p%40ss") && !text.contains(PASSWORD),
        "{text}"
    );
}

#[tokio::test]
async fn proxy_refusing_the_tunnel_is_a_clear_error() {
    let p = pool(1).await;
    let proxy = TestProxy::start(Some(EXPECTED_AUTH)).await;
    // wrong credentials, then none
    for url in [
        format!("http://user:wrong%20one@{}", proxy.url_host),
        format!("http://{}", proxy.url_host),
    ] {
        let e = Client::connect(opts(p.master_url(), url))
            .await
            .unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(matches!(e, Error::Transport(_)), "{text}");
        assert!(text.contains("407 Proxy Authentication Required"), "{text}");
        assert!(text.contains(&proxy.url_host), "{text}");
        assert!(!text.contains("wrong"), "{text}");
    }
    assert!(proxy.tunnels().is_empty());
    let seen = proxy.seen.lock().unwrap();
    assert_eq!(seen.auth.len(), 2);
    assert!(seen.auth[0]
        .as_deref()
        .is_some_and(|a| a.starts_with("Basic ")));
    assert_eq!(seen.auth[1], None);
}

#[tokio::test]
async fn proxy_urls_are_validated() {
    for bad in [
        "https://127.0.0.1:3128",
        "socks5://127.0.0.1:1080",
        "http://:3128",
        "http://host:notaport",
    ] {
        let e = Client::new(opts("https://127.0.0.1".into(), bad.into())).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{bad}: {e}");
    }
    // no scheme and no port: http, port 80
    assert!(Client::new(opts("https://127.0.0.1".into(), "u:p@proxy.example".into())).is_ok());
}

/// A "proxy" that reads the request head and answers `reply` (or closes when `None`).
async fn scripted_proxy(reply: Option<&'static [u8]>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match c.read(&mut b).await {
                        Ok(1) => head.push(b[0]),
                        _ => return,
                    }
                }
                if let Some(r) = reply {
                    let _ = c.write_all(r).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn proxy_broken_answers_are_clear_errors() {
    let huge: &'static [u8] = Box::leak(
        [b"HTTP/1.1 200 OK\r\n".to_vec(), vec![b'x'; 20_000]]
            .concat()
            .into_boxed_slice(),
    );
    for (reply, wanted) in [
        (None, "closed before answering"),
        (Some(&b"SSH-2.0-OpenSSH\r\n\r\n"[..]), "malformed answer"),
        (
            Some(&b"HTTP/1.1 502 Bad Gateway\r\n\r\n"[..]),
            "answered 502 Bad Gateway",
        ),
        (Some(huge), "answer head too large"),
    ] {
        let addr = scripted_proxy(reply).await;
        let url = format!("http://user:{}@{addr}", "pr0xy%20p%40ss");
        let e = Client::connect(opts("https://127.0.0.1:1".into(), url))
            .await
            .unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(matches!(e, Error::Transport(_)), "{text}");
        assert!(text.contains(wanted), "{wanted}: {text}");
        assert!(
            text.contains(&format!("proxy {addr} tunnel to 127.0.0.1:1")),
            "{text}"
        );
        assert!(
            !text.contains("p%40ss") && !text.contains(PASSWORD),
            "{text}"
        );
    }
}
