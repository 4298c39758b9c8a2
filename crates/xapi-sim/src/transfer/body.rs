//! Response bodies: buffered ([`full`]) or fed from a channel by a producer thread ([`channel`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use tokio::sync::mpsc;

/// The body type of every HTTP answer of the sim.
pub(crate) type Body = BoxBody<Bytes, io::Error>;

/// A buffered body.
pub(crate) fn full(b: Full<Bytes>) -> Body {
    b.map_err(|never| match never {}).boxed()
}

/// A body that yields what is sent on the returned sender, ending when every sender is dropped (an `Err` item
/// aborts the connection, so the client sees a truncated transfer).
pub(crate) fn channel(depth: usize) -> (mpsc::Sender<io::Result<Bytes>>, Body) {
    let (tx, rx) = mpsc::channel(depth);
    (tx, ChanBody { rx }.boxed())
}

struct ChanBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
}

impl hyper::body::Body for ChanBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.get_mut()
            .rx
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// Holds a blocking producer to a byte rate ([`crate::state::SimConfig::export_rate`]).
#[derive(Debug)]
pub(crate) struct Pace {
    rate: Option<u64>,
    start: Instant,
    sent: u64,
}

impl Pace {
    pub(crate) fn new(rate: Option<u64>) -> Self {
        Pace {
            rate,
            start: Instant::now(),
            sent: 0,
        }
    }

    /// Account for `n` bytes handed out, sleeping (on this blocking thread) until the rate allows them.
    pub(crate) fn after(&mut self, n: usize) {
        let Some(rate) = self.rate else { return };
        self.sent += n as u64;
        let due = Duration::from_secs_f64(self.sent as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// A blocking `Write` sending ~256 KiB pieces into a body channel (from a `spawn_blocking` thread), paced.
pub(crate) struct ChanWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    pace: Pace,
}

const PIECE: usize = 256 * 1024;

impl ChanWriter {
    pub(crate) fn new(tx: mpsc::Sender<io::Result<Bytes>>, pace: Pace) -> Self {
        ChanWriter {
            tx,
            buf: Vec::with_capacity(PIECE),
            pace,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE)));
        let n = piece.len();
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))?;
        self.pace.after(n);
        Ok(())
    }
}

impl io::Write for ChanWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A blocking `Read` over a request body pumped into a channel by an async task.
pub(crate) struct ChanReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
    /// Bytes handed out so far.
    pub(crate) consumed: u64,
}

impl ChanReader {
    /// Start pumping `body` (at most `limit` bytes are read, the announced Content-Length).
    pub(crate) fn spawn(mut body: hyper::body::Incoming) -> Self {
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
        tokio::spawn(async move {
            loop {
                match body.frame().await {
                    None => break,
                    Some(Ok(f)) => {
                        if let Ok(d) = f.into_data() {
                            if tx.send(Ok(d)).await.is_err() {
                                break;
                            }
                        }
                    }
                    Some(Err(e)) => {
                        let _ = tx
                            .send(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                e.to_string(),
                            )))
                            .await;
                        break;
                    }
                }
            }
        });
        ChanReader {
            rx,
            cur: Bytes::new(),
            consumed: 0,
        }
    }
}

impl io::Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur.split_to(n));
        self.consumed += n as u64;
        Ok(n)
    }
}
