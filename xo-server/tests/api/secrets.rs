//! Secrets never reach the logs: every log line of the process (all targets, TRACE) is captured while a user signs
//! in with a password, creates an authentication token and signs in with it, and an XAPI server is added with its
//! password (so xo-server logs into the pool and holds XAPI sessions); none of these secrets may appear.

use std::time::Duration;

use serde_json::json;
use xapi_sim::Sim;

use super::{start, Client};

#[path = "../../../xapi-client/tests/it/log_capture.rs"]
mod log_capture;

/// tungstenite's TRACE dumps every WebSocket frame, the test client's (which carry the secrets it sends) as well as
/// the server's: it is kept at DEBUG, everything else at TRACE.
const FILTER: &str = "trace,tungstenite=debug,tokio_tungstenite=debug";

const USER_PASSWORD: &str = "Us3r-Secret-Passphrase";
const WRONG_PASSWORD: &str = "Wr0ng-Secret-Guess";
const XAPI_PASSWORD: &str = "P00l-Secret-Passw0rd";

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_the_logs() {
    let logs = log_capture::captured_logs(FILTER);
    let pool = Sim::builder()
        .hosts(2)
        .vms(2)
        .credentials("root", XAPI_PASSWORD)
        .event_batching(Duration::from_millis(5))
        .build()
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap(), true)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    server
        .app()
        .store()
        .create_user("secret@x", Some(USER_PASSWORD), xo_store::Permission::Admin)
        .unwrap();
    let mut answers = Vec::new();

    // Sign in with a wrong password, then the right one.
    let mut c = Client::connect(&server).await;
    let e = c
        .err(
            "session.signIn",
            json!({"email": "nobody@x", "password": WRONG_PASSWORD}),
        )
        .await;
    answers.push(e);
    c.ok(
        "session.signIn",
        json!({"email": "secret@x", "password": USER_PASSWORD}),
    )
    .await;

    // A token: created, used to sign in, listed.
    let token = c
        .ok("token.create", json!({"expiresIn": "1 hour"}))
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let mut t = Client::connect(&server).await;
    t.ok("session.signIn", json!({"token": token})).await;
    answers.push(t.ok("session.getUser", json!({})).await);
    answers.push(t.ok("user.getAuthenticationTokens", json!({})).await);

    // An XAPI server added with its password, connected (xo-server holds XAPI sessions), listed.
    let id = t
        .ok(
            "server.add",
            json!({
                "host": pool.master_url().trim_end_matches('/'),
                "username": "root",
                "password": XAPI_PASSWORD,
                "allowUnauthorized": true,
            }),
        )
        .await;
    let id = id.as_str().unwrap();
    answers.push(t.wait_server(id, |s| s["status"] == "connected").await);
    let vms = t.vms().await;
    assert!(!vms.is_empty());
    // A wrong XAPI password: the connection fails, and says so without the password.
    let bad = t
        .ok(
            "server.add",
            json!({
                "host": pool.host_urls()[1].trim_end_matches('/'),
                "username": "root",
                "password": WRONG_PASSWORD,
                "allowUnauthorized": true,
            }),
        )
        .await;
    answers.push(
        t.wait_server(bad.as_str().unwrap(), |s| s.get("error").is_some())
            .await,
    );
    answers.push(t.ok("server.getAll", json!({})).await);

    // The XAPI sessions xo-server holds on the pool.
    let sessions: Vec<String> = pool
        .state()
        .read(|db| db.find("session", |_| true))
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert!(!sessions.is_empty(), "xo-server holds no XAPI session");
    t.ok("server.remove", json!({"id": id})).await;
    t.ok("session.signOut", json!({})).await;
    server.shutdown().await;

    let logged = log_capture::text(&logs);
    assert!(
        logged.contains("signed in user=secret@x") && logged.contains("XAPI server connected"),
        "the capture missed xo-server's logs:\n{logged}"
    );
    let mut secrets = vec![
        USER_PASSWORD.to_owned(),
        WRONG_PASSWORD.to_owned(),
        XAPI_PASSWORD.to_owned(),
        token,
    ];
    secrets.extend(sessions);
    for s in &secrets {
        assert!(!logged.contains(s.as_str()), "{s} in the logs:\n{logged}");
        for a in &answers {
            assert!(!a.to_string().contains(s.as_str()), "{s} answered in {a}");
        }
    }
}
