//! The `/api/` WebSocket endpoint: one reader loop per socket (requests processed concurrently, bounded
//! per connection), one writer task draining the bounded outgoing queue, clean close on errors.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, Semaphore};

use crate::app::{now_ms, App};
use crate::connection::Connection;
use crate::rpc::{self, Frame};

/// `GET /api/` handler: upgrades to WebSocket (anything else gets the extractor's rejection).
pub async fn api_upgrade(
    State(app): State<App>,
    ConnectInfo(crate::http::PeerAddr(peer)): ConnectInfo<crate::http::PeerAddr>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let limit = app.config().max_message_bytes;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| serve_socket(app, socket, peer))
}

async fn serve_socket(app: App, socket: WebSocket, peer: SocketAddr) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(app.config().send_queue.max(1));
    let conn = app.add_connection(peer.ip().to_string(), tx);
    tracing::debug!(connection = conn.id(), %peer, "API connection opened");

    let writer_conn = conn.clone();
    let writer = tokio::spawn(async move {
        let reason = loop {
            tokio::select! {
                biased;
                reason = writer_conn.closed() => break Some(reason),
                frame = rx.recv() => match frame {
                    Some(f) => if sink.send(Message::Text(f)).await.is_err() { break None },
                    None => break None,
                },
            }
        };
        if let Some(r) = reason {
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code: r.code,
                    reason: Utf8Bytes::from(r.reason),
                })))
                .await;
        }
        let _ = sink.close().await;
    });

    let in_flight = Arc::new(Semaphore::new(app.config().max_in_flight.max(1)));
    loop {
        let msg = tokio::select! {
            _ = conn.closed() => break,
            msg = stream.next() => msg,
        };
        let text = match msg {
            None | Some(Ok(Message::Close(_))) => break,
            Some(Err(e)) => {
                let text = e.to_string();
                let too_big = text.contains("too long")
                    || text.contains("too big")
                    || text.contains("Space limit");
                tracing::info!(connection = conn.id(), error = %text, "closing API connection after a read error");
                if too_big {
                    conn.close(1009, "message too big");
                } else {
                    conn.close(1002, "protocol error");
                }
                break;
            }
            Some(Ok(Message::Text(t))) => t.to_string(),
            Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
            Some(Ok(_)) => continue, // ping/pong
        };
        // a token-bound session ends at its expiry: close on the next frame, without a reply
        if conn.expiration().is_some_and(|e| e < now_ms()) {
            tracing::debug!(connection = conn.id(), "session token expired, closing");
            conn.close(1000, "session expired");
            break;
        }
        match rpc::parse_frame(&text) {
            Frame::Ignore => {}
            Frame::Reply(r) => {
                conn.send(Utf8Bytes::from(r)).await;
            }
            Frame::Request { id, method, params } => {
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break;
                };
                let (app, conn) = (app.clone(), conn.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let (result, admin) = rpc::call(&app, &conn, &method, params).await;
                    let text = match result {
                        Ok(v) => rpc::response_reply(&id, &v),
                        Err(e) => rpc::response_err(&id, &e.to_json(admin)),
                    };
                    conn.send(Utf8Bytes::from(text)).await;
                });
            }
        }
    }
    conn.close(1000, "");
    app.remove_connection(conn.id());
    let _ = writer.await;
    tracing::debug!(connection = conn.id(), "API connection closed");
    drop::<Arc<Connection>>(conn);
}
