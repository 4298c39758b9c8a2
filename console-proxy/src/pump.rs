//! Pumping bytes between a WebSocket and an open console tunnel: binary frames ↔ raw bytes without re-encoding,
//! each write awaited (backpressure), reads bounded by `Limits::chunk`, idle and overall limits, clean close on
//! either side (WebSocket Close ↔ TCP/TLS shutdown).

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::connect::Tunnel;
use crate::message::{Incoming, WsMessage};
use crate::{Limits, ProxyError};

/// Bound on the closing steps (sending a Close frame, TLS close_notify) so a stuck peer cannot hold the task.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// WebSocket close codes used.
const NORMAL: u16 = 1000;
const GOING_AWAY: u16 = 1001;
const INTERNAL: u16 = 1011;

/// How a proxied session ended (when it ended without error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The WebSocket client sent Close or went away.
    ClientClosed,
    /// The console closed its stream (VM halted, console server ended the session).
    ConsoleClosed,
    /// No message in either direction for `Limits::idle`.
    Idle,
    /// `Limits::total` elapsed.
    Total,
}

/// Figures of a finished session.
#[derive(Debug, Clone)]
pub struct ProxyStats {
    /// Bytes written to the console.
    pub bytes_to_console: u64,
    /// Bytes sent to the client (binary frame payloads).
    pub bytes_to_client: u64,
    /// Binary frames received from the client.
    pub frames_from_client: u64,
    /// Binary frames sent to the client.
    pub frames_to_client: u64,
    /// From the start of [`pump`] (or [`crate::proxy`]) to the end.
    pub duration: Duration,
    pub end: EndReason,
}

#[derive(Default)]
struct Counters {
    to_console: AtomicU64,
    to_client: AtomicU64,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    /// Milliseconds since start at the last message in either direction.
    last: AtomicU64,
}

/// Pump between `ws` and an open `tunnel` until either side closes, a limit is hit or an error occurs.
pub async fn pump<S, M, E>(ws: S, tunnel: Tunnel, limits: &Limits) -> Result<ProxyStats, ProxyError>
where
    S: Stream<Item = Result<M, E>> + Sink<M> + Unpin,
    <S as Sink<M>>::Error: Display,
    M: WsMessage,
    E: Display,
{
    pump_from(ws, tunnel, limits, Instant::now()).await
}

pub(crate) async fn pump_from<S, M, E>(
    ws: S,
    tunnel: Tunnel,
    limits: &Limits,
    start: Instant,
) -> Result<ProxyStats, ProxyError>
where
    S: Stream<Item = Result<M, E>> + Sink<M> + Unpin,
    <S as Sink<M>>::Error: Display,
    M: WsMessage,
    E: Display,
{
    let (mut sink, mut stream) = ws.split();
    let (mut rd, mut wr) = tokio::io::split(tunnel.io);
    let c = Counters::default();
    let now_ms = || start.elapsed().as_millis() as u64;
    let ws_err = |e: &dyn Display| ProxyError::WebSocket(e.to_string());

    let outcome: Result<EndReason, ProxyError> = async {
        if !tunnel.early.is_empty() {
            let n = tunnel.early.len() as u64;
            sink.send(M::binary(Bytes::from(tunnel.early)))
                .await
                .map_err(|e| ws_err(&e))?;
            c.to_client.fetch_add(n, Ordering::Relaxed);
            c.frames_out.fetch_add(1, Ordering::Relaxed);
        }
        let up = async {
            loop {
                match stream.next().await {
                    Some(Ok(m)) => {
                        c.last.store(now_ms(), Ordering::Relaxed);
                        match m.classify() {
                            Incoming::Binary(b) => {
                                wr.write_all(&b).await?;
                                c.to_console.fetch_add(b.len() as u64, Ordering::Relaxed);
                                c.frames_in.fetch_add(1, Ordering::Relaxed);
                            }
                            Incoming::Close => return Ok(EndReason::ClientClosed),
                            Incoming::Other => {}
                        }
                    }
                    Some(Err(e)) => return Err(ws_err(&e)),
                    None => return Ok(EndReason::ClientClosed),
                }
            }
        };
        let down = async {
            let mut buf = vec![0u8; limits.chunk.max(1)];
            loop {
                let n = rd.read(&mut buf).await?;
                if n == 0 {
                    return Ok(EndReason::ConsoleClosed);
                }
                c.last.store(now_ms(), Ordering::Relaxed);
                sink.send(M::binary(Bytes::copy_from_slice(&buf[..n])))
                    .await
                    .map_err(|e| ws_err(&e))?;
                c.to_client.fetch_add(n as u64, Ordering::Relaxed);
                c.frames_out.fetch_add(1, Ordering::Relaxed);
            }
        };
        let watchdog = async {
            loop {
                let now = start.elapsed();
                let idle_at = limits
                    .idle
                    .map(|d| Duration::from_millis(c.last.load(Ordering::Relaxed)) + d);
                if limits.total.is_some_and(|t| now >= t) {
                    return Ok(EndReason::Total);
                }
                if idle_at.is_some_and(|t| now >= t) {
                    return Ok(EndReason::Idle);
                }
                let next = [idle_at, limits.total].into_iter().flatten().min();
                match next {
                    Some(t) => tokio::time::sleep_until((start + t).into()).await,
                    None => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            r = up => r,
            r = down => r,
            r = watchdog => r,
        }
    }
    .await;

    // Close both sides, bounded in time.
    let (code, reason) = match &outcome {
        Ok(EndReason::ClientClosed) => (NORMAL, ""),
        Ok(EndReason::ConsoleClosed) => (NORMAL, "console closed"),
        Ok(EndReason::Idle) => (GOING_AWAY, "idle timeout"),
        Ok(EndReason::Total) => (GOING_AWAY, "session time limit"),
        Err(ProxyError::WebSocket(_)) => (INTERNAL, ""),
        Err(_) => (INTERNAL, "console error"),
    };
    let client_gone = matches!(
        outcome,
        Ok(EndReason::ClientClosed) | Err(ProxyError::WebSocket(_))
    );
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if !client_gone {
            let _ = sink.send(M::close(code, reason)).await;
        }
        let _ = sink.close().await;
    })
    .await;
    let _ = tokio::time::timeout(CLOSE_GRACE, wr.shutdown()).await;

    let end = outcome?;
    let stats = ProxyStats {
        bytes_to_console: c.to_console.load(Ordering::Relaxed),
        bytes_to_client: c.to_client.load(Ordering::Relaxed),
        frames_from_client: c.frames_in.load(Ordering::Relaxed),
        frames_to_client: c.frames_out.load(Ordering::Relaxed),
        duration: start.elapsed(),
        end,
    };
    tracing::debug!(?stats, "console proxy ended");
    Ok(stats)
}
