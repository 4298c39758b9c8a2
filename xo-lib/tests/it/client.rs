//! xo-lib against an in-process xo-server: sign-in, call errors with codes, tokens, notifications,
//! reconnection, TLS, timeouts.

use std::time::Duration;

use serde_json::{json, Value};
use xo_lib::{codes, Backoff, Credentials, Error, Event, ObjectsChange, Options, TokenOptions, Xo};

const WAIT: Duration = Duration::from_secs(20);

async fn admin(url: &str) -> Xo {
    Xo::connect(Options::new(url).credentials(Credentials::password("admin@admin.net", "admin")))
        .await
        .expect("sign in as admin")
}

async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<Event>,
    mut f: impl FnMut(&Event) -> bool,
) -> Event {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = rx.recv().await.expect("event stream");
            if f(&e) {
                return e;
            }
        }
    })
    .await
    .expect("event in time")
}

#[tokio::test]
async fn sign_in_with_password_ok() {
    let s = crate::support::start().await;
    let xo = admin(&s.url()).await;
    let user = xo.user().expect("signed in");
    assert_eq!(user.email, "admin@admin.net");
    assert!(user.is_admin());
    assert_eq!(xo.refresh_user().await.unwrap().id, user.id);
    assert_eq!(xo.server_version().await.unwrap(), "5.207.2");
    assert!(xo
        .list_methods()
        .await
        .unwrap()
        .contains(&"system.getMethodsInfo".to_owned()));
    let users = xo.users().await.unwrap();
    let names: Vec<String> = xo.call_as("system.listMethods", Value::Null).await.unwrap();
    assert!(names.contains(&"user.getAll".to_owned()));
    let e = xo
        .call_as::<u32>("system.getVersion", Value::Null)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Decode(ref m) if m.starts_with("system.getVersion")),
        "{e}"
    );
    assert_eq!(users.len(), 1);
    // concurrent calls are matched by id
    let (a, b, c) = tokio::join!(
        xo.call("system.getVersion", Value::Null),
        xo.call("system.getServerVersion", json!({})),
        xo.call("system.listMethods", Value::Null)
    );
    assert_eq!(a.unwrap(), "0.1");
    assert_eq!(b.unwrap(), "5.207.2");
    assert!(c.unwrap().is_array());
    xo.sign_out().await.unwrap();
    assert!(xo.user().is_none());
    let e = xo.call("user.getAll", Value::Null).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::UNAUTHORIZED));
}

#[tokio::test]
async fn sign_in_bad_password_is_code_3() {
    let s = crate::support::start().await;
    let e = Xo::connect(
        Options::new(s.url()).credentials(Credentials::password("admin@admin.net", "nope")),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_CREDENTIALS));
    assert!(e.is_authentication());
    assert_eq!(e.api().unwrap().message, "invalid credentials");
    // explicit sign-in on an anonymous connection
    let xo = Xo::connect(Options::new(s.url())).await.unwrap();
    let e = xo
        .sign_in(Credentials::token("not-a-token"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(3));
    assert!(xo.user().is_none());
}

#[tokio::test]
async fn call_errors_carry_code_message_and_data() {
    let s = crate::support::start().await;
    let anon = Xo::connect(Options::new(s.url())).await.unwrap();
    let e = anon.call("no.suchMethod", Value::Null).await.unwrap_err();
    let api = e.api().unwrap();
    assert_eq!(api.code, codes::METHOD_NOT_FOUND);
    assert_eq!(api.message, "method not found: no.suchMethod");
    assert_eq!(api.data, Some(json!("no.suchMethod")));

    let e = anon.call("user.getAll", Value::Null).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::UNAUTHORIZED));
    assert_eq!(
        e.api().unwrap().data.as_ref().unwrap()["permission"],
        "admin"
    );

    let e = anon
        .call("system.methodSignature", json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_PARAMETERS));
    let errors = &e.api().unwrap().data.as_ref().unwrap()["errors"];
    assert_eq!(errors[0]["params"]["missingProperty"], "method");

    let e = anon.method_signature("no.such").await.unwrap_err();
    assert_eq!(e.code(), Some(codes::NO_SUCH_OBJECT));

    let e = anon.call("session.getUser", Value::Null).await.unwrap_err();
    assert!(
        matches!(e, Error::SessionMethod(ref m) if m == "session.getUser"),
        "{e}"
    );

    // a plain server error: masked for anonymous callers
    let e = anon.refresh_user().await.unwrap_err();
    assert_eq!(e.code(), Some(codes::SERVER_ERROR));
    assert_eq!(e.api().unwrap().message, "unknown error from the peer");

    // typed helper on an unexpected shape
    let xo = admin(&s.url()).await;
    let e = xo
        .create_token(&TokenOptions {
            expires_in: Some(json!("1s")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(codes::SERVER_ERROR), "{e}");
    assert_eq!(e.api().unwrap().message, "invalid expiresIn duration");
}

#[tokio::test]
async fn methods_info_is_typed() {
    let s = crate::support::start().await;
    let xo = Xo::connect(Options::new(s.url())).await.unwrap();
    let info = xo.methods_info().await.unwrap();
    let sig = &info["system.methodSignature"];
    assert_eq!(sig.permission, xo_lib::Permission::None);
    assert_eq!(
        sig.usage("system.methodSignature"),
        "system.methodSignature method=<string>"
    );
    assert_eq!(
        info["user.getAll"].permission,
        xo_lib::Permission::Level("admin".into())
    );
    assert_eq!(info["token.create"].permission, xo_lib::Permission::User);
    assert_eq!(
        xo.method_signature("user.create").await.unwrap(),
        info["user.create"]
    );
}

#[tokio::test]
async fn token_sign_in_and_url_token() {
    let s = crate::support::start().await;
    let xo = admin(&s.url()).await;
    let token = xo
        .create_token(&TokenOptions {
            description: Some("test".into()),
            client_id: Some("xo-lib-test".into()),
            expires_in: Some(json!("1h")),
        })
        .await
        .unwrap();
    let t = Xo::connect(Options::new(s.url()).credentials(Credentials::token(&token)))
        .await
        .unwrap();
    assert_eq!(t.user().unwrap().email, "admin@admin.net");
    let with_userinfo = s.url().replacen("http://", &format!("http://{token}@"), 1);
    let u = Xo::connect(Options::new(with_userinfo)).await.unwrap();
    assert!(u.user().is_some());
    xo.delete_own_tokens(std::slice::from_ref(&token))
        .await
        .unwrap();
    let e = Xo::connect(Options::new(s.url()).credentials(Credentials::token(&token)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(3));
}

#[tokio::test]
async fn expired_token_session_is_closed() {
    let s = crate::support::start().await;
    let xo = admin(&s.url()).await;
    let token = xo.create_token(&TokenOptions::default()).await.unwrap();
    let t = Xo::connect(Options::new(s.url()).credentials(Credentials::token(&token)))
        .await
        .unwrap();
    let store = s.server.app().store();
    let mut record = store.token_by_secret(&token).unwrap().unwrap();
    record.expiration = xo_server::now_ms() - 1000;
    store.update_token(&record).unwrap();
    // the connection's bound was set at sign-in: move it to the past too (as if time had passed)
    for c in s.server.app().connections() {
        if let (Some(user), Some(_)) = (c.user_id(), c.expiration()) {
            c.sign_in(user, Some(record.expiration));
        }
    }
    let mut events = t.events();
    let e = t.call("system.getVersion", Value::Null).await.unwrap_err();
    assert!(matches!(e, Error::ConnectionClosed), "{e}");
    assert!(e.is_connection());
    next_event(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
    let e = t.call("system.getVersion", Value::Null).await.unwrap_err();
    assert!(matches!(e, Error::NotConnected), "{e}");
    // the token no longer signs in
    let e = Xo::connect(Options::new(s.url()).credentials(Credentials::token(&token)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(3));
}

#[tokio::test]
async fn notifications_are_delivered_to_signed_in_clients() {
    let s = crate::support::start().await;
    let xo = admin(&s.url()).await;
    let anon = Xo::connect(Options::new(s.url())).await.unwrap();
    let mut events = xo.events();
    let mut anon_events = anon.events();
    s.enter(&[json!({"id": "vm1", "type": "VM", "power_state": "Halted"})]);
    s.exit(&["vm0"]);
    let Event::Notification(n) =
        next_event(&mut events, |e| matches!(e, Event::Notification(_))).await
    else {
        unreachable!()
    };
    assert_eq!(n.method, "all");
    match n.objects_change().unwrap() {
        ObjectsChange::Enter(items) => assert_eq!(items["vm1"]["power_state"], "Halted"),
        other => panic!("{other:?}"),
    }
    let Event::Notification(n) =
        next_event(&mut events, |e| matches!(e, Event::Notification(_))).await
    else {
        unreachable!()
    };
    assert_eq!(
        n.objects_change(),
        Some(ObjectsChange::Exit(vec!["vm0".into()]))
    );
    // the anonymous connection got nothing: a call round-trip proves the queue is drained
    anon.call("system.getVersion", Value::Null).await.unwrap();
    assert!(anon_events.try_recv().is_err());
}

#[tokio::test]
async fn reconnects_and_signs_in_again() {
    let s = crate::support::start().await;
    let xo = Xo::connect(
        Options::new(s.url())
            .credentials(Credentials::password("admin@admin.net", "admin"))
            .reconnect(Backoff::new(
                Duration::from_millis(20),
                Duration::from_millis(200),
            )),
    )
    .await
    .unwrap();
    let mut events = xo.events();
    s.drop_connections();
    next_event(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
    next_event(&mut events, |e| matches!(e, Event::Reconnected)).await;
    let Event::SignedIn(u) = next_event(&mut events, |e| matches!(e, Event::SignedIn(_))).await
    else {
        unreachable!()
    };
    assert_eq!(u.email, "admin@admin.net");
    assert!(xo.is_connected());
    assert_eq!(xo.users().await.unwrap().len(), 1);
    // close() stops for good
    xo.close();
    next_event(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
    assert!(matches!(
        xo.call("system.getVersion", Value::Null).await,
        Err(Error::NotConnected)
    ));
}

#[tokio::test]
async fn call_timeout() {
    let s = crate::support::start().await;
    s.server
        .app()
        .registry()
        .register(
            xo_server::registry::Method::new("test.hang", |_, _| async {
                std::future::pending::<()>().await;
                Ok(Value::Null)
            })
            .access(xo_server::Access::Anonymous),
        )
        .unwrap();
    let xo = Xo::connect(Options::new(s.url()).call_timeout(Duration::from_millis(100)))
        .await
        .unwrap();
    assert!(matches!(
        xo.call("test.hang", Value::Null).await,
        Err(Error::Timeout)
    ));
    assert_eq!(
        xo.call("system.getVersion", Value::Null).await.unwrap(),
        "0.1"
    );
}

#[tokio::test]
async fn wss_self_signed_needs_allow_unauthorized() {
    let s = crate::support::start_with(|c| c.https = true).await;
    assert!(s.url().starts_with("https://"));
    let e = Xo::connect(Options::new(s.url())).await.unwrap_err();
    assert!(
        matches!(e, Error::Connect { ref reason, .. } if reason.contains("TLS")),
        "{e}"
    );
    assert!(e.is_connection());
    let xo = Xo::connect(
        Options::new(s.url())
            .allow_unauthorized(true)
            .credentials(Credentials::password("admin@admin.net", "admin")),
    )
    .await
    .unwrap();
    assert_eq!(
        xo.endpoint().ws_url(),
        s.server
            .api_url()
            .replacen("ws", "wss", 1)
            .replacen("wsss", "wss", 1)
    );
    assert_eq!(xo.server_version().await.unwrap(), "5.207.2");
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let e = Xo::connect(Options::new(format!("http://127.0.0.1:{port}")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e}");
    let e = Xo::connect(Options::new("gopher://x")).await.unwrap_err();
    assert!(matches!(e, Error::InvalidUrl { .. }), "{e}");
}
