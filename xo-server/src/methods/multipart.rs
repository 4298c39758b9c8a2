//! A streaming `multipart/form-data` reader for uploads (XO's `disk.import` form with a `file` part): the part's
//! bytes are forwarded as they arrive, never buffered whole (only part headers and skipped small fields are).

use axum::body::Bytes;
use futures::{Stream, StreamExt};

use crate::error::ApiError;

/// Largest part-header block or skipped field accepted.
const MAX_HEAD: usize = 64 * 1024;

/// The `boundary` of a `multipart/form-data` content type.
pub(super) fn boundary(content_type: &str) -> Option<String> {
    let mut it = content_type.split(';');
    if !it
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return None;
    }
    it.find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
    .filter(|b| !b.is_empty())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn bad(msg: &str) -> ApiError {
    ApiError::invalid_parameters_message(format!("invalid multipart body: {msg}"))
}

struct Reader<S> {
    body: S,
    buf: Vec<u8>,
    consumed: u64,
}

impl<S> Reader<S>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Send + Unpin,
{
    /// Reads one more chunk; false at the end of the body.
    async fn fill(&mut self) -> Result<bool, ApiError> {
        match self.body.next().await {
            Some(Ok(b)) => {
                self.buf.extend_from_slice(&b);
                Ok(true)
            }
            Some(Err(e)) => Err(ApiError::internal(format!("upload interrupted: {e}"))),
            None => Ok(false),
        }
    }

    /// Index of `needle` in the buffer, reading more as needed (`limit` bytes of buffer at most).
    async fn seek(&mut self, needle: &[u8], limit: usize) -> Result<usize, ApiError> {
        let mut from = 0;
        loop {
            if let Some(i) = find(&self.buf[from..], needle) {
                return Ok(from + i);
            }
            // only the new bytes (and a possible partial match before them) are searched next time
            from = self.buf.len().saturating_sub(needle.len() - 1);
            if self.buf.len() > limit {
                return Err(bad("part too large"));
            }
            if !self.fill().await? {
                return Err(bad("truncated"));
            }
        }
    }

    fn drop_front(&mut self, n: usize) {
        self.buf.drain(..n);
        self.consumed += n as u64;
    }
}

/// The `file` part of a multipart body: its length as announced by `total` (XO's estimate: the body length minus
/// what precedes the part and the closing `\r\n--boundary--\r\n`) and its bytes as a stream (an error item when the
/// body ends before the closing boundary).
pub(super) async fn file_part<S>(
    body: S,
    boundary: &str,
    total: Option<u64>,
) -> Result<
    (
        Option<u64>,
        impl Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin,
    ),
    ApiError,
>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Send + Unpin,
{
    let delim = format!("\r\n--{boundary}").into_bytes();
    // a leading CRLF lets the first boundary match like the others
    let mut r = Reader {
        body,
        buf: b"\r\n".to_vec(),
        consumed: 0,
    };
    loop {
        let i = r.seek(&delim, MAX_HEAD).await?;
        r.drop_front(i + delim.len());
        while r.buf.len() < 2 {
            if !r.fill().await? {
                return Err(bad("truncated"));
            }
        }
        if r.buf.starts_with(b"--") {
            return Err(bad("no file part"));
        }
        let end = r.seek(b"\r\n\r\n", MAX_HEAD).await?;
        let head = String::from_utf8_lossy(&r.buf[..end]).to_ascii_lowercase();
        r.drop_front(end + 4);
        let is_file = head.lines().any(|l| {
            l.trim_start().starts_with("content-disposition:") && l.contains("name=\"file\"")
        });
        if is_file {
            break;
        }
    }
    // `consumed` counted the leading CRLF we added
    let before = r.consumed.saturating_sub(2);
    let trailer = (delim.len() + 4) as u64;
    let len = total.and_then(|t| t.checked_sub(before + trailer));
    let stream = futures::stream::unfold(Some(r), move |state| {
        let delim = delim.clone();
        async move {
            let mut r = state?;
            loop {
                if let Some(i) = find(&r.buf, &delim) {
                    let out = Bytes::from(r.buf[..i].to_vec());
                    return Some((Ok(out), None));
                }
                let keep = delim.len() - 1;
                if r.buf.len() > keep {
                    let n = r.buf.len() - keep;
                    let out = Bytes::from(r.buf.drain(..n).collect::<Vec<u8>>());
                    return Some((Ok(out), Some(r)));
                }
                match r.fill().await {
                    Ok(true) => {}
                    Ok(false) => {
                        let e = std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "multipart body ended before its closing boundary",
                        );
                        return Some((Err(e), None));
                    }
                    Err(e) => return Some((Err(std::io::Error::other(e.to_string())), None)),
                }
            }
        }
    });
    Ok((len, Box::pin(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        data: &[u8],
        size: usize,
    ) -> impl Stream<Item = Result<Bytes, axum::Error>> + Send + Unpin {
        let v: Vec<_> = data
            .chunks(size)
            .map(|c| Ok(Bytes::from(c.to_vec())))
            .collect();
        futures::stream::iter(v)
    }

    fn form(file: &[u8]) -> Vec<u8> {
        let mut b = b"--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nvalue\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.raw\"\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
        b.extend_from_slice(file);
        b.extend_from_slice(b"\r\n--XyZ--\r\n");
        b
    }

    #[tokio::test]
    async fn the_file_part_is_extracted_whatever_the_chunking() {
        let file: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let body = form(&file);
        for size in [1, 7, 4096, 1 << 20] {
            let (len, s) = file_part(chunks(&body, size), "XyZ", Some(body.len() as u64))
                .await
                .unwrap();
            assert_eq!(len, Some(file.len() as u64));
            let got: Vec<u8> = s.map(|c| c.unwrap().to_vec()).concat().await;
            assert_eq!(got, file, "chunks of {size}");
        }
    }

    #[tokio::test]
    async fn truncated_or_fileless_bodies_are_errors() {
        let body = form(b"0123456789");
        let (_, s) = file_part(chunks(&body[..body.len() - 14], 3), "XyZ", None)
            .await
            .unwrap();
        let items: Vec<_> = s.collect().await;
        assert!(items.last().unwrap().is_err());
        let none = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--XyZ--\r\n";
        assert!(file_part(chunks(none, 5), "XyZ", None).await.is_err());
        assert!(file_part(chunks(b"--XyZ\r\nContent-Disp", 5), "XyZ", None)
            .await
            .is_err());
        assert_eq!(
            boundary("multipart/form-data; boundary=\"a b\""),
            Some("a b".to_owned())
        );
        assert_eq!(boundary("application/octet-stream"), None);
    }
}
