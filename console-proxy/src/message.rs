//! The WebSocket message abstraction the proxy pumps: any message type that can tell binary payloads and closes
//! apart and build them (tungstenite's, and axum's with the `axum` feature).

use bytes::Bytes;

/// What the proxy needs to know about an incoming message.
#[derive(Debug)]
pub enum Incoming {
    /// Console bytes.
    Binary(Bytes),
    /// The peer closes.
    Close,
    /// Anything else (text, ping, pong): ignored, though it counts as activity.
    Other,
}

/// A WebSocket message type the proxy can pump.
pub trait WsMessage: Sized {
    /// Classify a received message.
    fn classify(self) -> Incoming;
    /// A binary message carrying `data`.
    fn binary(data: Bytes) -> Self;
    /// A close message with a status code and reason.
    fn close(code: u16, reason: &'static str) -> Self;
}

impl WsMessage for tokio_tungstenite::tungstenite::Message {
    fn classify(self) -> Incoming {
        use tokio_tungstenite::tungstenite::Message;
        match self {
            Message::Binary(b) => Incoming::Binary(b),
            Message::Close(_) => Incoming::Close,
            _ => Incoming::Other,
        }
    }

    fn binary(data: Bytes) -> Self {
        Self::Binary(data)
    }

    fn close(code: u16, reason: &'static str) -> Self {
        use tokio_tungstenite::tungstenite::protocol::frame::{coding::CloseCode, CloseFrame};
        Self::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }))
    }
}

#[cfg(feature = "axum")]
impl WsMessage for axum::extract::ws::Message {
    fn classify(self) -> Incoming {
        use axum::extract::ws::Message;
        match self {
            Message::Binary(b) => Incoming::Binary(b),
            Message::Close(_) => Incoming::Close,
            _ => Incoming::Other,
        }
    }

    fn binary(data: Bytes) -> Self {
        Self::Binary(data)
    }

    fn close(code: u16, reason: &'static str) -> Self {
        Self::Close(Some(axum::extract::ws::CloseFrame {
            code,
            reason: reason.into(),
        }))
    }
}
