//! Linux `splice(2)` between two plain TCP connections through a pipe: the body of a download moves to an upload
//! inside the kernel (page references, no copy through user space), driven by tokio's readiness.

use std::io;

use rustix::fd::OwnedFd;
use rustix::pipe::{
    fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags,
};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Capacity asked for the pipe (the kernel may grant less: the default is 64 KiB).
const PIPE_SIZE: usize = 1 << 20;

/// A non-blocking pipe and how many bytes it holds.
pub(super) struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    cap: usize,
}

impl std::fmt::Debug for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe").field("cap", &self.cap).finish()
    }
}

fn flags() -> SpliceFlags {
    SpliceFlags::NONBLOCK | SpliceFlags::MOVE
}

impl Pipe {
    pub(super) fn new() -> io::Result<Pipe> {
        let (r, w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let _ = fcntl_setpipe_size(&w, PIPE_SIZE);
        let cap = fcntl_getpipe_size(&w).unwrap_or(64 * 1024).max(4096);
        Ok(Pipe { r, w, cap })
    }

    /// Move up to `max` bytes from `src` into the (empty) pipe, then all of them on to `dst`. `Ok(0)`: `src` ended.
    pub(super) async fn relay(
        &self,
        src: &TcpStream,
        dst: &TcpStream,
        max: u64,
    ) -> Result<usize, RelayError> {
        let want = (max.min(self.cap as u64)) as usize;
        let n = loop {
            src.readable().await.map_err(RelayError::Source)?;
            match src.try_io(Interest::READABLE, || {
                splice(src, None, &self.w, None, want, flags()).map_err(io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(RelayError::Source(e)),
            }
        };
        let mut held = n;
        while held > 0 {
            dst.writable().await.map_err(RelayError::Sink)?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(&self.r, None, dst, None, held, flags()).map_err(io::Error::from)
            }) {
                Ok(0) => {
                    return Err(RelayError::Sink(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "upload connection refused more data",
                    )))
                }
                Ok(m) => held -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(RelayError::Sink(e)),
            }
        }
        Ok(n)
    }
}

/// Which side of a relay failed.
#[derive(Debug)]
pub(super) enum RelayError {
    /// Reading the download.
    Source(io::Error),
    /// Writing the upload.
    Sink(io::Error),
}

/// Write all of `b` to `dst` (for body bytes that were read before splicing began).
pub(super) async fn write_all(dst: &TcpStream, mut b: &[u8]) -> io::Result<()> {
    while !b.is_empty() {
        dst.writable().await?;
        match dst.try_write(b) {
            Ok(n) => b = &b[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
