//! A process-wide log capture for the secrets tests (xo-server's includes this file by path): every event of
//! every thread, formatted by `tracing-subscriber`, into one buffer.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Installs (once per test binary) a global subscriber writing every event that `filter` lets through into a shared
/// buffer, and returns that buffer. The first caller's filter wins.
pub fn captured_logs(filter: &str) -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .try_init()
            .expect("no other global subscriber in this test binary");
        buf
    })
    .clone()
}

/// The captured text so far.
pub fn text(logs: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&logs.lock().unwrap()).into_owned()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
