//! Wire framing against a scripted WebSocket peer: xo-lib's ids, omitted params, out-of-order replies,
//! notifications, garbage frames.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use xo_lib::{Event, Options, Xo, FIRST_REQUEST_ID};

#[tokio::test]
async fn ids_params_and_out_of_order_replies() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut frames = Vec::new();
        for _ in 0..2 {
            let Some(Ok(Message::Text(t))) = ws.next().await else {
                panic!("expected text")
            };
            frames.push(serde_json::from_str::<Value>(t.as_str()).unwrap());
        }
        // garbage, a notification, then the replies in reverse order
        ws.send(Message::text("not json")).await.unwrap();
        ws.send(Message::text(r#"{"jsonrpc":"2.0","id":999,"result":1}"#))
            .await
            .unwrap();
        ws.send(Message::text(
            r#"{"jsonrpc":"2.0","method":"all","params":{"type":"exit","items":{"x":0}}}"#,
        ))
        .await
        .unwrap();
        for f in frames.iter().rev() {
            let reply = if f["method"] == "fail" {
                json!({"error": {"code": 10, "message": "invalid parameters", "data": {"errors": []}}, "id": f["id"], "jsonrpc": "2.0"})
            } else {
                json!({"id": f["id"], "jsonrpc": "2.0", "result": f["method"]})
            };
            ws.send(Message::text(reply.to_string())).await.unwrap();
        }
        let _ = ws.next().await; // wait for the client to go away
        frames
    });
    let xo = Xo::connect(Options::new(format!("http://{addr}")))
        .await
        .unwrap();
    let mut events = xo.events();
    let (a, b) = tokio::join!(
        xo.call("first", Value::Null),
        xo.call("fail", json!({"x": 1}))
    );
    assert_eq!(a.unwrap(), "first");
    let e = b.unwrap_err();
    assert_eq!(e.code(), Some(10));
    assert_eq!(e.api().unwrap().data, Some(json!({"errors": []})));
    let Ok(Event::Notification(n)) = events.recv().await else {
        panic!("notification")
    };
    assert_eq!(n.method, "all");
    drop(events);
    xo.close();
    drop(xo);
    let mut frames = peer.await.unwrap();
    frames.sort_by_key(|f| f["id"].as_i64());
    assert_eq!(frames[0]["id"], json!(FIRST_REQUEST_ID));
    assert_eq!(frames[1]["id"], json!(FIRST_REQUEST_ID + 1));
    assert_eq!(FIRST_REQUEST_ID, -9007199254740991);
    assert_eq!(frames[0]["jsonrpc"], "2.0");
    let first = frames.iter().find(|f| f["method"] == "first").unwrap();
    assert!(
        first.get("params").is_none(),
        "params omitted without arguments"
    );
    let fail = frames.iter().find(|f| f["method"] == "fail").unwrap();
    assert_eq!(fail["params"], json!({"x": 1}));
}

#[tokio::test]
async fn pending_calls_fail_when_the_server_goes_away() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let _ = ws.next().await; // read the request, then hang up without answering
        drop(ws);
    });
    let xo = Xo::connect(Options::new(format!("ws://{addr}/api/")))
        .await
        .unwrap();
    let e = xo.call("anything", Value::Null).await.unwrap_err();
    assert!(matches!(e, xo_lib::Error::ConnectionClosed), "{e}");
}
