//! The request body of a `$sendTo` upload, shared between the upload that streams it to XAPI and the handler,
//! which reads and drops whatever the upload left before answering (as node's http server does for XO): a client
//! still sending when XAPI refused the data early would otherwise meet a closed connection and lose the answer
//! that says why.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{BodyDataStream, Bytes};
use axum::extract::Request;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;

/// A client that sends nothing for this long while its body is drained is left alone (the answer is sent anyway).
const DRAIN_IDLE: Duration = Duration::from_secs(10);

/// The body as the upload reads it; flags `failed` when the client breaks it.
pub(super) struct UploadBody {
    shared: Arc<Mutex<BodyDataStream>>,
    failed: Arc<AtomicBool>,
}

impl Stream for UploadBody {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.shared.lock().poll_next_unpin(cx);
        if let Poll::Ready(Some(Err(_))) = &next {
            self.failed.store(true, Ordering::SeqCst);
        }
        next
    }
}

/// What the upload did not read, to drain before answering.
pub(super) struct Leftover(Arc<Mutex<BodyDataStream>>);

impl Leftover {
    /// Reads and drops the rest of the body, up to its end (or an error, or [`DRAIN_IDLE`] without data); the
    /// number of bytes dropped.
    pub(super) async fn drain(self) -> u64 {
        let mut dropped = 0u64;
        loop {
            let next = futures::future::poll_fn(|cx| self.0.lock().poll_next_unpin(cx));
            match tokio::time::timeout(DRAIN_IDLE, next).await {
                Ok(Some(Ok(b))) => dropped += b.len() as u64,
                _ => break,
            }
        }
        if dropped > 0 {
            tracing::debug!(bytes = dropped, "upload body left unread, dropped");
        }
        dropped
    }
}

/// The body of `req` for the upload, and the handle that drains what it leaves.
pub(super) fn upload_stream(req: Request, failed: Arc<AtomicBool>) -> (UploadBody, Leftover) {
    let shared = Arc::new(Mutex::new(req.into_body().into_data_stream()));
    (
        UploadBody {
            shared: shared.clone(),
            failed,
        },
        Leftover(shared),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(chunks: Vec<Result<&'static [u8], std::io::Error>>) -> Request {
        let s = futures::stream::iter(chunks.into_iter().map(|c| c.map(Bytes::from_static)));
        Request::new(axum::body::Body::from_stream(s))
    }

    #[tokio::test]
    async fn what_the_upload_leaves_is_drained() {
        let failed = Arc::new(AtomicBool::new(false));
        let (mut body, rest) = upload_stream(
            request(vec![Ok(b"head"), Ok(b"0123456789"), Ok(b"tail")]),
            failed.clone(),
        );
        assert_eq!(body.next().await.unwrap().unwrap(), "head");
        drop(body);
        assert_eq!(rest.drain().await, 14);
        assert!(!failed.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_broken_body_is_flagged_and_ends_the_drain() {
        let broken = || {
            request(vec![
                Ok(b"head"),
                Err(std::io::Error::other("client went away")),
                Ok(b"never"),
            ])
        };
        // the upload meets the break: flagged
        let failed = Arc::new(AtomicBool::new(false));
        let (mut body, _) = upload_stream(broken(), failed.clone());
        assert!(body.next().await.unwrap().is_ok());
        assert!(body.next().await.unwrap().is_err());
        assert!(failed.load(Ordering::SeqCst));
        // the drain meets it: it stops there
        let (mut body, rest) = upload_stream(broken(), Arc::new(AtomicBool::new(false)));
        assert!(body.next().await.unwrap().is_ok());
        drop(body);
        assert_eq!(rest.drain().await, 0);
    }
}
