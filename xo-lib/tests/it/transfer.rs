//! `$getFrom` / `$sendTo` transfers against a small local HTTP server.

use std::sync::Arc;

use tokio::net::TcpListener;
use xo_lib::{Error, Options, Transfer, Xo};

use crate::support::http_server;

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
    let rec = received.lock().unwrap();
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
