//! Rust client library for xo-server (JSON-RPC 2.0 over WebSocket).
