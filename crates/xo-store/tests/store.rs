//! Integration tests of the store: durability across reopen, uniqueness, migrations, bad data.

use serde_json::json;
use xo_store::{
    hash_token_secret, layout, HashParams, NewServer, Permission, Store, StoreError, StoreOptions,
    SCHEMA_VERSION,
};

/// A raw sled handle on the store's database, once any handle just dropped in this process has let go of its file
/// lock (see [`after_lock_release`]).
fn raw(dir: &std::path::Path) -> sled::Db {
    after_lock_release(
        || sled::Config::new().path(dir).flush_every_ms(None).open(),
        is_lock_error,
    )
    .unwrap()
}

/// `Store::open` once a handle just dropped in this process has let go of the database's file lock.
fn open_after_release(dir: &std::path::Path) -> Result<Store, StoreError> {
    after_lock_release(|| Store::open(dir), is_store_lock_error)
}

/// Runs `open` until it stops failing on the database's file lock (sled's I/O threads may hold it a moment after
/// the handle is dropped): only lock failures are retried, for up to 5 s.
fn after_lock_release<T, E>(
    open: impl Fn() -> Result<T, E>,
    is_lock: impl Fn(&E) -> bool,
) -> Result<T, E> {
    for _ in 0..100 {
        match open() {
            Err(e) if is_lock(&e) => std::thread::sleep(std::time::Duration::from_millis(50)),
            other => return other,
        }
    }
    open()
}

/// sled reports a held lock as an `Other` I/O error whose message names it (the `WouldBlock` is only in the text).
fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(e)
        if e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock"))
}

fn is_store_lock_error(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(e) if is_lock_error(e))
}

/// The store with light hashing, once any handle just dropped has let go of the file lock.
fn open(dir: &std::path::Path) -> Store {
    let options = || StoreOptions {
        hash_params: HashParams::light(),
    };
    after_lock_release(|| Store::open_with(dir, options()), is_store_lock_error).unwrap()
}

#[test]
fn writes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (uid, sid, secret) = {
        let s = open(dir.path());
        let u = s
            .create_user("a@b.c", Some("pw"), Permission::Write)
            .unwrap();
        let srv = s
            .add_server(NewServer {
                host: "10.0.0.1".into(),
                username: "root".into(),
                password: "secret".into(),
                enabled: true,
                ..Default::default()
            })
            .unwrap();
        let (secret, _) = s
            .create_token(&u.id, 1, i64::MAX, Some("cli".into()), None)
            .unwrap();
        s.set_setting("k", &json!({"x": 1})).unwrap();
        s.set_plugin_state("ldap", &json!({"autoload": true}))
            .unwrap();
        (u.id, srv.id, secret)
    };
    let s = open(dir.path());
    let u = s.user(&uid).unwrap().unwrap();
    assert_eq!(u.email, "a@b.c");
    assert_eq!(u.permission, Permission::Write);
    assert!(s.verify_password(&u, "pw"));
    assert!(!s.verify_password(&u, "nope"));
    assert_eq!(s.user_by_email("a@b.c").unwrap().unwrap().id, uid);
    let srv = s.server(&sid).unwrap().unwrap();
    assert_eq!(srv.password, "secret");
    assert!(srv.enabled);
    let t = s.token_by_secret(&secret).unwrap().unwrap();
    assert_eq!(t.user_id, uid);
    assert_eq!(t.description.as_deref(), Some("cli"));
    assert_eq!(s.setting("k").unwrap(), Some(json!({"x": 1})));
    assert_eq!(
        s.plugin_state("ldap").unwrap(),
        Some(json!({"autoload": true}))
    );
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn tokens_are_stored_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let u = s.create_user("t@t", None, Permission::None).unwrap();
    let (secret, t) = s.create_token(&u.id, 0, 10, None, None).unwrap();
    assert_eq!(secret.len(), 43);
    assert_eq!(t.id, hash_token_secret(&secret));
    drop(s);
    let db = raw(dir.path());
    let tree = db.open_tree(layout::TOKENS).unwrap();
    for item in tree.iter() {
        let (k, v) = item.unwrap();
        assert!(!String::from_utf8_lossy(&k).contains(&secret));
        assert!(!String::from_utf8_lossy(&v).contains(&secret));
    }
    drop((tree, db));
    let s = open(dir.path());
    assert_eq!(s.purge_expired_tokens(11).unwrap(), 1);
    assert!(s.token_by_secret(&secret).unwrap().is_none());
}

#[test]
fn duplicate_email_is_rejected_on_create_and_update() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create_user("x@x", Some("1"), Permission::None).unwrap();
    let err = s
        .create_user("x@x", Some("2"), Permission::Admin)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateEmail(ref e) if e == "x@x"),
        "{err}"
    );
    let mut y = s.create_user("y@y", None, Permission::None).unwrap();
    y.email = "x@x".into();
    assert!(matches!(
        s.update_user(&y),
        Err(StoreError::DuplicateEmail(_))
    ));
    // renaming frees the old email
    y.email = "z@z".into();
    s.update_user(&y).unwrap();
    assert!(s.user_by_email("y@y").unwrap().is_none());
    s.create_user("y@y", None, Permission::None).unwrap();
    assert_eq!(s.user_count(), 3);
    assert!(matches!(
        s.create_user("", None, Permission::None),
        Err(StoreError::Invalid(_))
    ));
}

#[test]
fn deleting_a_user_cascades_to_tokens_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let u = s.create_user("u@u", None, Permission::None).unwrap();
    let g = s.create_group("ops").unwrap();
    assert!(matches!(
        s.create_group("ops"),
        Err(StoreError::DuplicateGroupName(_))
    ));
    s.add_user_to_group(&g.id, &u.id).unwrap();
    assert_eq!(s.user(&u.id).unwrap().unwrap().groups, vec![g.id.clone()]);
    s.create_token(&u.id, 0, i64::MAX, None, None).unwrap();
    assert!(s.delete_user(&u.id).unwrap());
    assert!(!s.delete_user(&u.id).unwrap());
    assert!(s.tokens().unwrap().is_empty());
    assert!(s.group(&g.id).unwrap().unwrap().users.is_empty());
    assert!(s.user_by_email("u@u").unwrap().is_none());
    assert!(matches!(
        s.add_user_to_group(&g.id, "nobody"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(s.delete_group(&g.id).unwrap());
    assert!(!s.delete_group(&g.id).unwrap());
}

#[test]
fn duplicate_server_host_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let new = || NewServer {
        host: "h".into(),
        username: "u".into(),
        password: "p".into(),
        ..Default::default()
    };
    let a = s.add_server(new()).unwrap();
    assert!(matches!(
        s.add_server(new()),
        Err(StoreError::DuplicateHost(_))
    ));
    assert!(!format!("{a:?}").contains("\"p\""));
    assert!(s.remove_server(&a.id).unwrap());
    assert!(s.servers().unwrap().is_empty());
    assert!(matches!(
        s.update_server(&a),
        Err(StoreError::NotFound { .. })
    ));
}

fn write_v1_db(dir: &std::path::Path, users: &[(&str, serde_json::Value)]) {
    let db = raw(dir);
    db.open_tree(layout::META)
        .unwrap()
        .insert(layout::SCHEMA_VERSION_KEY, "1")
        .unwrap();
    let t = db.open_tree(layout::USERS).unwrap();
    for (id, v) in users {
        t.insert(id.as_bytes(), serde_json::to_vec(v).unwrap())
            .unwrap();
    }
    db.flush().unwrap();
}

#[test]
fn version_1_database_is_migrated() {
    assert!(xo_store::migrations().any(|(from, _)| from == 1));
    let dir = tempfile::tempdir().unwrap();
    write_v1_db(dir.path(), &[("u1", json!({"id": "u1", "email": "old@x"}))]);
    let s = open(dir.path());
    assert_eq!(s.schema_version().unwrap(), 2);
    let u = s.user_by_email("old@x").unwrap().unwrap();
    assert_eq!(u.id, "u1");
    assert_eq!(u.permission, Permission::None);
    assert!(matches!(
        s.create_user("old@x", None, Permission::None),
        Err(StoreError::DuplicateEmail(_))
    ));
}

#[test]
fn unversioned_database_with_data_counts_as_version_1() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = raw(dir.path());
        let t = db.open_tree(layout::USERS).unwrap();
        t.insert(
            "u",
            serde_json::to_vec(&json!({"email": "e@e", "groups": "bad"})).unwrap(),
        )
        .unwrap();
        db.flush().unwrap();
    }
    let s = open(dir.path());
    assert_eq!(s.schema_version().unwrap(), 2);
    let u = s.user_by_email("e@e").unwrap().unwrap();
    assert_eq!(u.id, "u");
    assert!(u.groups.is_empty());
}

#[test]
fn failed_migration_leaves_version_untouched() {
    let dir = tempfile::tempdir().unwrap();
    write_v1_db(
        dir.path(),
        &[
            ("a", json!({"email": "same"})),
            ("b", json!({"email": "same"})),
        ],
    );
    let err = open_after_release(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::Migration { from: 1, .. }),
        "{err}"
    );
    let db = raw(dir.path());
    let v = db
        .open_tree(layout::META)
        .unwrap()
        .get(layout::SCHEMA_VERSION_KEY)
        .unwrap()
        .unwrap();
    assert_eq!(&*v, b"1");
}

#[test]
fn newer_or_garbage_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = raw(dir.path());
        db.open_tree(layout::META)
            .unwrap()
            .insert(layout::SCHEMA_VERSION_KEY, "99")
            .unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(
        open_after_release(dir.path()),
        Err(StoreError::TooNew { found: 99, .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    {
        let db = raw(dir.path());
        db.open_tree(layout::META)
            .unwrap()
            .insert(layout::SCHEMA_VERSION_KEY, "x")
            .unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(
        open_after_release(dir.path()),
        Err(StoreError::BadVersion(_))
    ));
}

#[test]
fn corrupt_records_are_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let good = {
        let s = open(dir.path());
        s.create_user("good@x", None, Permission::None).unwrap().id
    };
    {
        let db = raw(dir.path());
        db.open_tree(layout::USERS)
            .unwrap()
            .insert("bad", &b"{not json"[..])
            .unwrap();
        db.open_tree(layout::SETTINGS)
            .unwrap()
            .insert("s", &b"\xff"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let s = open(dir.path());
    assert!(matches!(s.user("bad"), Err(StoreError::Corrupt { .. })));
    let all = s.users().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, good);
    assert!(matches!(s.setting("s"), Err(StoreError::Corrupt { .. })));
    assert!(s.remove_setting("s").unwrap());
}

#[test]
fn debug_output_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let u = s
        .create_user("d@d", Some("hunter2"), Permission::None)
        .unwrap();
    let dbg = format!("{u:?}");
    assert!(!dbg.contains(u.pw_hash.as_deref().unwrap()));
    assert!(u.public().get("pw_hash").is_none());
}

#[test]
fn updates_keep_keys_unique_and_require_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    // groups: renaming onto another group's name is refused, keeping one's own name is not
    let ops = s.create_group("ops").unwrap();
    let mut dev = s.create_group("dev").unwrap();
    s.update_group(&ops).unwrap();
    dev.name = "ops".into();
    assert!(matches!(
        s.update_group(&dev),
        Err(StoreError::DuplicateGroupName(ref n)) if n == "ops"
    ));
    assert_eq!(s.group(&dev.id).unwrap().unwrap().name, "dev");
    // servers: the same for hosts
    let new = |host: &str| NewServer {
        host: host.into(),
        username: "u".into(),
        password: "p".into(),
        ..Default::default()
    };
    let a = s.add_server(new("a")).unwrap();
    let mut b = s.add_server(new("b")).unwrap();
    s.update_server(&a).unwrap();
    b.host = "a".into();
    assert!(matches!(
        s.update_server(&b),
        Err(StoreError::DuplicateHost(ref h)) if h == "a"
    ));
    assert_eq!(s.server(&b.id).unwrap().unwrap().host, "b");
    // missing records name their collection
    let missing = |e: StoreError| match e {
        StoreError::NotFound { collection, id } => (collection, id),
        other => panic!("expected NotFound, got {other:?}"),
    };
    assert!(s.delete_group(&dev.id).unwrap());
    assert_eq!(
        missing(s.update_group(&dev).unwrap_err()),
        (layout::GROUPS, dev.id.clone())
    );
    assert_eq!(
        missing(s.set_password("nobody", "pw").unwrap_err()),
        (layout::USERS, "nobody".to_owned())
    );
    assert_eq!(
        missing(
            s.set_group_users(&ops.id, &["nobody".to_owned()])
                .unwrap_err()
        ),
        (layout::USERS, "nobody".to_owned())
    );
    let (_, mut t) = s.create_token("u", 0, 10, None, None).unwrap();
    assert!(s.delete_token(&t.id).unwrap());
    assert!(!s.delete_token(&t.id).unwrap());
    t.description = Some("gone".into());
    assert_eq!(
        missing(s.update_token(&t).unwrap_err()),
        (layout::TOKENS, t.id.clone())
    );
}
