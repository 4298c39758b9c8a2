//! zstd for XVA transfers (`use_compression=zstd` on export, auto-detected on import), pure Rust (`ruzstd`):
//! the writer emits one independent frame per 4 MiB of input (a valid multi-frame zstd stream, bounded memory),
//! the reader decodes any sequence of frames.

use std::io::{self, BufRead, Read, Write};

use ruzstd::decoding::{FrameDecoder, StreamingDecoder};
use ruzstd::encoding::{compress_to_vec, CompressionLevel};

/// Input gathered per frame.
const FRAME_INPUT: usize = 4 << 20;

/// A `Write` compressing into consecutive zstd frames.
pub(crate) struct FramesWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> FramesWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        FramesWriter {
            inner,
            buf: Vec::with_capacity(FRAME_INPUT),
        }
    }

    fn frame(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let out = compress_to_vec(self.buf.as_slice(), CompressionLevel::Fastest);
        self.buf.clear();
        self.inner.write_all(&out)
    }

    /// Compress what is left and give the inner writer back.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.frame()?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for FramesWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(FRAME_INPUT - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= FRAME_INPUT {
            self.frame()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A `Read` decoding a sequence of zstd frames until the input ends.
pub(crate) struct FramesReader<R: BufRead> {
    state: Option<State<R>>,
}

enum State<R: BufRead> {
    Between(R),
    In(Box<StreamingDecoder<R, FrameDecoder>>),
}

impl<R: BufRead> FramesReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        FramesReader {
            state: Some(State::Between(inner)),
        }
    }
}

impl<R: BufRead> Read for FramesReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state.take() {
                None => return Ok(0),
                Some(State::Between(mut r)) => {
                    if r.fill_buf()?.is_empty() {
                        return Ok(0);
                    }
                    let d = StreamingDecoder::new(r)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                    self.state = Some(State::In(Box::new(d)));
                }
                Some(State::In(mut d)) => {
                    let n = d.read(out)?;
                    if n > 0 {
                        self.state = Some(State::In(d));
                        return Ok(n);
                    }
                    self.state = Some(State::Between(d.into_inner()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_frame_round_trip() {
        let data: Vec<u8> = (0..(9 << 20))
            .map(|i: u32| (i / 1000 % 251) as u8)
            .collect();
        let mut w = FramesWriter::new(Vec::new());
        w.write_all(&data).unwrap();
        let z = w.finish().unwrap();
        assert!(z.len() < data.len() / 4);
        let mut back = Vec::new();
        FramesReader::new(io::BufReader::new(z.as_slice()))
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data);
        assert!(FramesReader::new(&b"\x28\xb5\x2f\xfdgarbage"[..])
            .read_to_end(&mut Vec::new())
            .is_err());
    }
}
