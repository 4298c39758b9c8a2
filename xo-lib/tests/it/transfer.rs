//! `$getFrom` / `$sendTo` transfers against a small local HTTP server.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use xo_lib::{Error, Options, Transfer, Xo};

/// Serves: GET /api/dl → `payload`; POST /api/up → stores the body, answers a JSON-RPC string;
/// anything else → 404. Returns (port, received bodies).
async fn http_server(payload: Vec<u8>) -> (u16, Arc<Mutex<Vec<(Option<u64>, Vec<u8>)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let rec = received.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let payload = payload.clone();
            let rec = rec.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(tcp);
                let mut line = String::new();
                r.read_line(&mut line).await.unwrap();
                let mut parts = line.split_whitespace();
                let (method, path) = (
                    parts.next().unwrap().to_owned(),
                    parts.next().unwrap().to_owned(),
                );
                let mut len = None;
                let mut chunked = false;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).await.unwrap();
                    if h == "\r\n" {
                        break;
                    }
                    let lower = h.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = Some(v.trim().parse::<u64>().unwrap());
                    }
                    if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                        chunked = true;
                    }
                }
                let resp = match (method.as_str(), path.as_str()) {
                    ("GET", "/api/dl") => {
                        let mut head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", payload.len()).into_bytes();
                        head.extend_from_slice(&payload);
                        head
                    }
                    ("POST", "/api/up") => {
                        let mut body = Vec::new();
                        if chunked {
                            loop {
                                let mut size = String::new();
                                r.read_line(&mut size).await.unwrap();
                                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                                let mut chunk = vec![0; n + 2];
                                r.read_exact(&mut chunk).await.unwrap();
                                if n == 0 {
                                    break;
                                }
                                body.extend_from_slice(&chunk[..n]);
                            }
                        } else {
                            body.resize(len.unwrap_or(0) as usize, 0);
                            r.read_exact(&mut body).await.unwrap();
                        }
                        rec.lock().await.push((len, body));
                        let text = r#"{"id":0,"jsonrpc":"2.0","result":"new-vm-uuid"}"#;
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}", text.len()).into_bytes()
                    }
                    _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found".to_vec(),
                };
                r.get_mut().write_all(&resp).await.unwrap();
                let _ = r.get_mut().shutdown().await;
            });
        }
    });
    (port, received)
}

/// An API endpoint that accepts the WebSocket and does nothing else (transfers only need the URL).
async fn idle_api() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                use futures::StreamExt;
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                while ws.next().await.is_some() {}
            });
        }
    });
    port
}

#[tokio::test]
async fn download_and_upload_stream_with_progress() {
    let payload: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let (port, received) = http_server(payload.clone()).await;
    let xo = Xo::connect(Options::new(format!(
        "http://127.0.0.1:{}",
        idle_api().await
    )))
    .await
    .unwrap();
    let url = format!("http://127.0.0.1:{port}/api/dl");
    assert_eq!(xo.transfer_url(&url).unwrap(), url);
    let t = Transfer::from_result(&serde_json::json!({ "$getFrom": url })).unwrap();
    let dl = xo.download(t.path()).await.unwrap();
    assert_eq!(dl.content_length(), Some(payload.len() as u64));
    let mut out = Vec::new();
    let mut last = 0;
    let n = dl.copy_to(&mut out, |p| last = p).await.unwrap();
    assert_eq!(n, payload.len() as u64);
    assert_eq!(last, n);
    assert_eq!(out, payload);

    // upload with a known length, then chunked (unknown length, like stdin)
    let up = format!("http://127.0.0.1:{port}/api/up");
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let s2 = sent.clone();
    let reply = xo
        .upload(
            &up,
            std::io::Cursor::new(payload.clone()),
            Some(payload.len() as u64),
            move |p| s2.store(p, std::sync::atomic::Ordering::Relaxed),
        )
        .await
        .unwrap();
    assert_eq!(reply, r#"{"id":0,"jsonrpc":"2.0","result":"new-vm-uuid"}"#);
    assert_eq!(
        sent.load(std::sync::atomic::Ordering::Relaxed),
        payload.len() as u64
    );
    xo.upload(&up, std::io::Cursor::new(b"small".to_vec()), None, |_| {})
        .await
        .unwrap();
    let rec = received.lock().await;
    assert_eq!(rec[0], (Some(payload.len() as u64), payload.clone()));
    assert_eq!(rec[1], (None, b"small".to_vec()));
}

#[tokio::test]
async fn transfer_errors() {
    let (port, _) = http_server(vec![]).await;
    let xo = Xo::connect(Options::new(format!(
        "http://127.0.0.1:{}",
        idle_api().await
    )))
    .await
    .unwrap();
    let e = xo
        .download(&format!("http://127.0.0.1:{port}/api/missing"))
        .await
        .unwrap_err();
    match e {
        Error::HttpStatus {
            status,
            ref reason,
            ref body,
        } => {
            assert_eq!(
                (status, reason.as_str(), body.as_str()),
                (404, "Not Found", "not found")
            );
            assert_eq!(e.to_string(), "404 Not Found");
        }
        other => panic!("{other}"),
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().port();
    drop(closed);
    let e = xo
        .download(&format!("http://127.0.0.1:{dead}/x"))
        .await
        .unwrap_err();
    assert!(e.is_connection(), "{e}");
}
