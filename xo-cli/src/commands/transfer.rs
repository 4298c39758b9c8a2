//! `@=file` transfers: download a `$getFrom` URL to a file (or stdout with `@=-`), upload a file (or
//! stdin) to a `$sendTo` URL, with a progress bar (bytes, rate, ETA) on stderr.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use xo_lib::{Transfer, Xo};

use crate::failure::Failure;

fn bar(total: Option<u64>, what: &str) -> ProgressBar {
    let pb = match total {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    pb.set_message(what.to_owned());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Runs a transfer; `file` is the `@=` value. Returns the text to print (the upload's answer).
pub async fn run(
    xo: &Xo,
    transfer: &Transfer,
    file: Option<&str>,
) -> Result<Option<String>, Failure> {
    match transfer {
        Transfer::GetFrom(path) => {
            let Some(file) = file else {
                return Err(Failure::Usage(
                    "this command returns a download: add @=<file> (or @=- for stdout)".into(),
                ));
            };
            let dl = xo.download(path).await?;
            let pb = bar(dl.content_length(), "download");
            let progress = |n| pb.set_position(n);
            let n = if file == "-" {
                let mut out = tokio::io::stdout();
                dl.copy_to(&mut out, progress).await?
            } else {
                let mut out = tokio::fs::File::create(file)
                    .await
                    .map_err(|e| Failure::Io(format!("{file}: {e}")))?;
                dl.copy_to(&mut out, progress).await?
            };
            pb.finish_and_clear();
            tracing::info!(bytes = n, "downloaded");
            Ok(None)
        }
        Transfer::SendTo(path) => {
            let Some(file) = file else {
                return Err(Failure::Usage(
                    "this command expects an upload: add @=<file> (or @=- for stdin)".into(),
                ));
            };
            let (reader, len): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, Option<u64>) =
                if file == "-" {
                    (Box::new(tokio::io::stdin()), None)
                } else {
                    let f = tokio::fs::File::open(file)
                        .await
                        .map_err(|e| Failure::Io(format!("{file}: {e}")))?;
                    let len = f
                        .metadata()
                        .await
                        .map_err(|e| Failure::Io(format!("{file}: {e}")))?
                        .len();
                    (Box::new(f), Some(len))
                };
            let pb = bar(len, "upload");
            let pb2 = pb.clone();
            let text = xo
                .upload(path, reader, len, move |n| pb2.set_position(n))
                .await;
            pb.finish_and_clear();
            Ok(Some(text?))
        }
    }
}
