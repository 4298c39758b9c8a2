//! The password prompt of `--register` on a pseudo-terminal (util-linux `script`): the password is read
//! without echo and never stored.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_asks_the_password_without_echo() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    }
    let s = crate::support::start().await;
    let password = "pty-S3cret-pw";
    s.add_user("pty@x.net", password, xo_store::Permission::None);
    let cmd = format!(
        "{} --register {} pty@x.net",
        shell_quote(crate::support::BIN),
        shell_quote(&s.url())
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env("HOME", s.home())
        .env_remove("XDG_CONFIG_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let output = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        // wait for the prompt (bounded), then give echo-off a moment to apply before typing
        while !String::from_utf8_lossy(&seen).contains("Password:") {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(chunk) => seen.extend(chunk),
                Err(_) => panic!("no prompt; got {:?}", String::from_utf8_lossy(&seen)),
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        stdin.write_all(format!("{password}\r").as_bytes()).unwrap();
        stdin.flush().unwrap();
        let status = child.wait().unwrap();
        drop(stdin);
        while let Ok(chunk) = rx.recv_timeout(Duration::from_secs(5)) {
            seen.extend(chunk);
        }
        (status, String::from_utf8_lossy(&seen).into_owned())
    })
    .await
    .unwrap();
    reader.join().unwrap();
    let (status, text) = output;
    assert!(status.success(), "{status:?}: {text}");
    assert!(
        text.contains("Successfully logged with pty@x.net"),
        "{text}"
    );
    assert!(!text.contains(password), "the password was echoed: {text}");
    let config = std::fs::read_to_string(s.config_path()).unwrap();
    assert!(!config.contains(password));
    let c = s.config();
    assert_eq!(c["server"], s.url());
    assert_eq!(c["token"].as_str().unwrap().len(), 43);
}
