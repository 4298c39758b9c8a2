//! The small local HTTP server the xo-lib and xo-cli transfer tests point `$getFrom` / `$sendTo` at (xo-cli
//! includes this file by path).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Upload bodies received, with their announced `Content-Length`.
pub type Received = Arc<Mutex<Vec<(Option<u64>, Vec<u8>)>>>;

/// GET /api/dl → payload; POST /api/up → stored, answers a JSON-RPC response string; else 404.
pub async fn http_server(payload: Vec<u8>) -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::new(Mutex::new(Vec::new()));
    let rec = received.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (payload, rec) = (payload.clone(), rec.clone());
            tokio::spawn(async move {
                let mut r = BufReader::new(tcp);
                let mut line = String::new();
                r.read_line(&mut line).await.unwrap();
                let mut parts = line.split_whitespace();
                let (method, path) = (
                    parts.next().unwrap().to_owned(),
                    parts.next().unwrap().to_owned(),
                );
                let (mut len, mut chunked) = (None, false);
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
                    chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
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
                        rec.lock().unwrap().push((len, body));
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
