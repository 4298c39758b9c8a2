//! Passwords and session ids never reach the logs: every log line of the process (all targets, TRACE) is captured
//! while the client logs in, calls, logs in again after `SESSION_INVALID`, follows `HOST_IS_SLAVE`, fails a login,
//! builds a transfer URL and logs out; none of the secrets may appear, nor in `Debug`/`Display` of what it returns.

use std::time::Duration;

use futures::StreamExt;
use xapi_client::{Client, ClientOptions};
use xapi_sim::{RunningPool, Sim};
use xapi_types::XapiError;

#[path = "log_capture.rs"]
mod log_capture;

const PASSWORD: &str = "s3cret-Pool-Passw0rd";
const WRONG_PASSWORD: &str = "wr0ng-Guess-Passw0rd";

async fn pool() -> RunningPool {
    Sim::builder()
        .hosts(2)
        .vms(2)
        .credentials("root", PASSWORD)
        .event_batching(Duration::from_millis(5))
        .build()
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap()
}

fn session_of(c: &Client) -> String {
    c.session_id().expect("logged in").expose().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_the_logs() {
    let logs = log_capture::captured_logs("trace");
    let p = pool().await;
    let mut sessions = Vec::new();
    let mut shown = Vec::new();

    // Login and a call.
    let opts = ClientOptions::new(p.master_url(), "root", PASSWORD);
    shown.push(format!("{opts:?}"));
    let c = Client::connect(opts).await.unwrap();
    sessions.push(session_of(&c));
    c.call("VM.get_all", vec![]).await.unwrap();

    // A forced SESSION_INVALID (naming the session, as XAPI does) makes the client log in again.
    p.faults().fail_next(
        "VM.get_all",
        XapiError::new("SESSION_INVALID", [sessions[0].clone()]),
    );
    c.call("VM.get_all", vec![]).await.unwrap();
    sessions.push(session_of(&c));
    // The pool's toolstack restarts: every session is lost for real.
    p.restart_host(0);
    c.call("host.get_all", vec![]).await.unwrap();
    sessions.push(session_of(&c));
    // A call failing with the session in its error params: the error the caller sees names no session.
    p.faults().fail_next(
        "pool.get_all",
        XapiError::new("INTERNAL_ERROR", [sessions[2].clone()]),
    );
    let e = c.call("pool.get_all", vec![]).await.unwrap_err();
    shown.push(format!("{e:?} {e}"));

    // Login through a slave: HOST_IS_SLAVE, then the master.
    let slave = p.host_urls()[1].clone();
    let via_slave = Client::connect(ClientOptions::new(slave, "root", PASSWORD))
        .await
        .unwrap();
    sessions.push(session_of(&via_slave));
    via_slave.call("VM.get_all", vec![]).await.unwrap();
    shown.push(format!("{via_slave:?}"));
    // The master moves: a call answered HOST_IS_SLAVE follows it.
    p.set_master(1).unwrap();
    via_slave.call("VM.get_all", vec![]).await.unwrap();
    sessions.push(session_of(&via_slave));

    // A wrong password.
    let e = Client::connect(ClientOptions::new(p.master_url(), "root", WRONG_PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(e.xapi_code(), Some("SESSION_AUTHENTICATION_FAILED"));
    shown.push(format!("{e:?} {e}"));

    // A transfer (the session goes in the URL's query), then one refused by the host.
    let d = c.get_resource("/host_rrd", &[]).await.unwrap();
    shown.push(format!("{d:?}"));
    let mut body = d.into_stream();
    while let Some(chunk) = body.next().await {
        chunk.unwrap();
    }
    let e = c
        .get_resource("/export", &[("ref", "OpaqueRef:NULL".to_owned())])
        .await
        .unwrap_err();
    shown.push(format!("{e:?} {e}"));

    // Logout (after a call that finds the new master: logout itself does not follow HOST_IS_SLAVE).
    c.call("VM.get_all", vec![]).await.unwrap();
    c.logout().await.unwrap();
    via_slave.logout().await.unwrap();
    assert!(!c.is_logged_in());
    shown.push(format!("{c:?}"));

    sessions.sort();
    sessions.dedup();
    assert!(sessions.len() >= 4, "distinct sessions: {}", sessions.len());
    assert!(sessions.iter().all(|s| s.starts_with("OpaqueRef:")));
    let logged = log_capture::text(&logs);
    assert!(
        logged.contains("session invalid, logging in again")
            && logged.contains("host is a pool member, going to the master")
            && logged.contains("pool master moved")
            && logged.contains("XAPI call"),
        "the capture missed the client's logs:\n{logged}"
    );
    let mut secrets = vec![PASSWORD.to_owned(), WRONG_PASSWORD.to_owned()];
    secrets.extend(sessions);
    for s in &secrets {
        assert!(!logged.contains(s.as_str()), "{s} in the logs:\n{logged}");
        for text in &shown {
            assert!(!text.contains(s.as_str()), "{s} shown in {text}");
        }
    }
}
