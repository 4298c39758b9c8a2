//! xo-cli end to end: the built binary against an in-process xo-server with a temporary HOME.

use crate::support::{API, AUTH, CONNECTION, IO, USAGE};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_stores_only_a_token_in_xo_format() {
    let s = crate::support::start().await;
    let r = s
        .cli(&[
            "--register",
            "--expiresIn",
            "12h",
            &s.url(),
            "admin@admin.net",
            "admin",
        ])
        .await
        .ok();
    assert_eq!(r.stdout, "Successfully logged with admin@admin.net\n");
    let c = s.config();
    let obj = c.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["allowUnauthorized", "clientId", "server", "token"]);
    assert_eq!(c["server"], s.url());
    assert_eq!(c["allowUnauthorized"], false);
    assert!(!std::fs::read_to_string(s.config_path())
        .unwrap()
        .contains("\"admin\""));
    // the token is valid for 12 h and belongs to this client
    let store = s.server.app().store();
    let t = store
        .token_by_secret(c["token"].as_str().unwrap())
        .unwrap()
        .unwrap();
    let validity = t.expiration - t.created_at;
    assert_eq!(validity, 12 * 3600 * 1000);
    assert_eq!(t.client.as_ref().unwrap()["id"], c["clientId"]);
    assert!(t.description.as_deref().unwrap().starts_with("xo-cli@"));
    // calls use it
    let r = s.cli(&["system.getServerVersion"]).await.ok();
    assert_eq!(r.json(), json!("5.207.2"));
    let r = s.cli(&["user.getAll"]).await.ok();
    assert_eq!(r.json()[0]["email"], "admin@admin.net");
    // registering again replaces this client's token
    s.register_admin().await;
    let c2 = s.config();
    assert_eq!(c2["clientId"], c["clientId"]);
    assert_ne!(c2["token"], c["token"]);
    let user_id = t.user_id.clone();
    let mine: Vec<_> = store
        .tokens_of_user(&user_id)
        .unwrap()
        .into_iter()
        .filter(|t| {
            t.client
                .as_ref()
                .is_some_and(|cl| cl["id"] == c["clientId"])
        })
        .collect();
    assert_eq!(mine.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xdg_config_home_is_honoured_and_xo_files_are_read() {
    let s = crate::support::start().await;
    let xdg = tempfile::tempdir().unwrap();
    // create a token with create-token, then write the file as Xen Orchestra's xo-cli does
    let r = s
        .cli(&["--createToken", &s.url(), "admin@admin.net", "admin"])
        .await
        .ok();
    let token = r.stdout.trim().to_owned();
    assert_eq!(token.len(), 43, "{r:?}");
    assert!(!s.config_path().exists(), "create-token does not register");
    let dir = xdg.path().join("xo-cli");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        json!({"allowUnauthorized": false, "clientId": "k3j4h5", "server": s.url(), "token": token}).to_string(),
    )
    .unwrap();
    let mut c = crate::support::command(s.home(), &["system.getServerVersion"]);
    c.env("XDG_CONFIG_HOME", xdg.path());
    let r: crate::support::Run = tokio::task::spawn_blocking(move || c.output().unwrap().into())
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim(), "\"5.207.2\"");
    // --register --token signs in with a token and stores a new one of its own
    s.cli(&["--register", "--token", &token, &s.url()])
        .await
        .ok();
    let stored = s.config()["token"].as_str().unwrap().to_owned();
    assert_ne!(stored, token);
    s.cli(&["system.getVersion"]).await.ok();
    s.cli(&["--register", "--token", "bogus", &s.url()])
        .await
        .fails(AUTH);
    // --createToken refuses --token
    s.cli(&["--createToken", "--token", &token, &s.url()])
        .await
        .fails(USAGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregister_then_calls_need_registration() {
    let s = crate::support::start().await;
    s.register_admin().await;
    s.cli(&["--unregister"]).await.ok();
    let c = s.config();
    assert!(c.get("server").is_none() && c.get("token").is_none());
    assert!(c.get("clientId").is_some());
    let r = s.cli(&["user.getAll"]).await.fails(AUTH);
    assert!(r.stderr.contains("not registered"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_failures_have_distinct_exit_codes() {
    let s = crate::support::start().await;
    let r = s
        .cli(&["--register", &s.url(), "admin@admin.net", "wrong"])
        .await
        .fails(AUTH);
    assert!(r.stderr.contains("invalid credentials"), "{r:?}");
    assert!(!s.config_path().exists());
    s.cli(&[
        "--register",
        "--expiresIn",
        "soon",
        &s.url(),
        "admin@admin.net",
        "admin",
    ])
    .await
    .fails(USAGE);
    // the server rejects validities under a minute
    let r = s
        .cli(&[
            "--register",
            "--expiresIn",
            "30s",
            &s.url(),
            "admin@admin.net",
            "admin",
        ])
        .await
        .fails(API);
    assert!(r.stderr.contains("invalid expiresIn duration"), "{r:?}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    s.cli(&["--register", &dead, "admin@admin.net", "admin"])
        .await
        .fails(CONNECTION);
    s.cli(&["--register", "gopher://x", "admin@admin.net", "admin"])
        .await
        .fails(USAGE);
    s.cli(&["--register", &s.url()]).await.fails(USAGE);
    // no terminal to ask the password on
    let r = s
        .cli(&["--register", &s.url(), "admin@admin.net"])
        .await
        .fails(USAGE);
    assert!(r.stderr.contains("password"), "{r:?}");
    s.cli(&["--no-such-flag"]).await.fails(USAGE);
    s.cli(&[]).await.fails(USAGE);
    let r = s.cli(&["--help"]).await.ok();
    assert!(
        r.stdout.contains("--list-commands") && r.stdout.contains("Exit codes"),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_an_authentication_error() {
    let s = crate::support::start().await;
    s.register_admin().await;
    let store = s.server.app().store();
    let mut t = store
        .token_by_secret(s.config()["token"].as_str().unwrap())
        .unwrap()
        .unwrap();
    t.expiration = xo_server::now_ms() - 1;
    store.update_token(&t).unwrap();
    let r = s.cli(&["user.getAll"]).await.fails(AUTH);
    assert!(r.stderr.contains("register again"), "{r:?}");
    // a revoked token too
    s.register_admin().await;
    let token = s.config()["token"].as_str().unwrap().to_owned();
    s.cli(&["token.deleteOwn", &format!("tokens=json:[\"{token}\"]")])
        .await
        .ok();
    s.cli(&["system.getVersion"]).await.fails(AUTH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_exit_3() {
    let s = crate::support::start().await;
    s.register_admin().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let r = s
        .cli(&["--url", &dead, "system.getVersion"])
        .await
        .fails(CONNECTION);
    assert!(r.stderr.contains("cannot connect"), "{r:?}");
    // --url with the token as user-info
    let token = s.config()["token"].as_str().unwrap().to_owned();
    let url = s.url().replacen("http://", &format!("http://{token}@"), 1);
    let r = s.cli(&["--url", &url, "user.getAll"]).await.ok();
    assert!(r.json().is_array());
    // --url without a token: anonymous, so admin methods are refused by the server (API error)
    let r = s.cli(&["--url", &s.url(), "user.getAll"]).await.fails(API);
    assert!(r.stderr.contains("not enough permissions"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_tls_needs_allow_unauthorized() {
    let s = crate::support::start_with(|c| c.https = true).await;
    let r = s
        .cli(&["--register", &s.url(), "admin@admin.net", "admin"])
        .await
        .fails(CONNECTION);
    assert!(r.stderr.contains("TLS"), "{r:?}");
    s.cli(&[
        "--register",
        "--allowUnauthorized",
        &s.url(),
        "admin@admin.net",
        "admin",
    ])
    .await
    .ok();
    assert_eq!(s.config()["allowUnauthorized"], true);
    let r = s.cli(&["system.getServerVersion"]).await.ok();
    assert_eq!(r.json(), "5.207.2");
    s.cli(&["--au", "--list-commands", "system.getVersion"])
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_commands_with_patterns() {
    let s = crate::support::start().await;
    s.register_admin().await;
    let r = s.cli(&["--list-commands", "{user,group}.*"]).await.ok();
    let names: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert!(!names.is_empty());
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("user.") || n.starts_with("group.")),
        "{names:?}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let create = r
        .stdout
        .lines()
        .find(|l| l.starts_with("user.create "))
        .unwrap();
    for p in [
        "email=<string>",
        "password=<string>",
        "[permission=<string>]",
    ] {
        assert!(create.contains(p), "{create}");
    }
    assert!(r.stdout.contains("  permission: admin"));
    let r = s.cli(&["--list-commands", "system.getVersion"]).await.ok();
    assert_eq!(
        r.stdout,
        "system.getVersion\n  API version (unstable)\n  permission: none (no sign-in needed)\n"
    );
    let r = s.cli(&["--list-commands", "token.create"]).await.ok();
    assert!(
        r.stdout.contains("[expiresIn=<number|string>]") && r.stdout.contains("permission: user"),
        "{r:?}"
    );
    let r = s
        .cli(&["list-commands", "--json", "system.*", "!system.getVersion"])
        .await
        .ok();
    let m = r.json();
    let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
    assert!(keys.iter().all(|k| k.starts_with("system.")) && !keys.is_empty());
    assert!(m.get("system.getVersion").is_none());
    assert_eq!(m["system.listMethods"]["permission"], Value::Null);
    s.cli(&["--list-commands", "{user"]).await.fails(USAGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_help_prints_the_schema() {
    let s = crate::support::start().await;
    s.register_admin().await;
    let r = s.cli(&["user.create", "--help"]).await.ok();
    assert!(r.stdout.starts_with("user.create "), "{r:?}");
    assert!(
        r.stdout.contains("params schema:") && r.stdout.contains("\"optional\": true"),
        "{r:?}"
    );
    let r = s.cli(&["user.creat", "--help"]).await.fails(USAGE);
    assert!(
        r.stderr.contains("Did you mean") && r.stderr.contains("user.create"),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_params_and_error_classes() {
    let s = crate::support::start().await;
    s.register_admin().await;
    // strings by default, booleans, json:
    let r = s
        .cli(&[
            "user.create",
            "email=bob@x.net",
            "password=pw",
            "permission=none",
        ])
        .await
        .ok();
    let bob = r.json().as_str().unwrap().to_owned();
    let r = s
        .cli(&[
            "user.set",
            &format!("id={bob}"),
            "preferences=json:{\"lang\":\"fr\",\"n\":1}",
        ])
        .await
        .ok();
    assert_eq!(r.json(), true);
    let users = s.cli(&["user.getAll"]).await.ok().json();
    let b = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == bob.as_str())
        .unwrap();
    assert_eq!(b["preferences"], json!({"lang": "fr", "n": 1}));
    // table output on demand
    let r = s.cli(&["user.getAll", "--table"]).await.ok();
    assert!(r.stdout.lines().next().unwrap().starts_with("id"), "{r:?}");
    assert!(r.stdout.contains("bob@x.net"));
    let r = s.cli(&["--table", "system.getServerVersion"]).await.ok();
    assert_eq!(r.stdout, "5.207.2\n");
    // unknown command: suggestions, usage exit code
    let r = s.cli(&["user.getAl"]).await.fails(USAGE);
    assert!(
        r.stderr.contains("user.getAl is not a valid command"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("Did you mean") && r.stderr.contains("  user.getAll"),
        "{r:?}"
    );
    let r = s.cli(&["list-comands"]).await.fails(USAGE);
    assert!(r.stderr.contains("list-commands"), "{r:?}");
    // bad params: the schema is printed
    let r = s
        .cli(&["system.methodSignature", "foo=bar"])
        .await
        .fails(USAGE);
    assert!(r.stderr.contains("invalid parameters"), "{r:?}");
    assert!(
        r.stderr.contains("property @.") && r.stderr.contains("method=<string>"),
        "{r:?}"
    );
    s.cli(&["user.getAll", "garbage"]).await.fails(USAGE);
    s.cli(&["user.getAll", "x=json:{"]).await.fails(USAGE);
    s.cli(&["session.getUser"]).await.fails(USAGE);
    // API errors
    let r = s.cli(&["user.delete", "id=nope"]).await.fails(API);
    assert!(r.stderr.contains("(code 1)"), "{r:?}");
    // a non-admin user: permission errors are API errors
    s.add_user("carol@x.net", "pw", xo_store::Permission::None);
    let home = tempfile::tempdir().unwrap();
    crate::support::run_in(home.path(), &["--register", &s.url(), "carol@x.net", "pw"])
        .await
        .ok();
    let r = crate::support::run_in(home.path(), &["user.getAll"])
        .await
        .fails(API);
    assert!(
        r.stderr.contains("not enough permissions (code 2)"),
        "{r:?}"
    );
    // `@=` on a method without transfer: warned and ignored
    let r = s.cli(&["system.getVersion", "@=out"]).await.ok();
    assert!(r.stderr.contains("@= ignored"), "{r:?}");
    // a corrupt configuration is a local I/O error
    std::fs::write(s.config_path(), "nope").unwrap();
    s.cli(&["system.getVersion"]).await.fails(IO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_objects_with_filters_and_properties() {
    let s = crate::support::start().await;
    s.put_objects(&[
        json!({"id": "t1", "type": "VM-template", "name_label": "Debian 12", "$pool": "p"}),
        json!({"id": "t2", "type": "VM-template", "name_label": "Windows", "$pool": "p"}),
        json!({"id": "v1", "type": "VM", "name_label": "web-1", "power_state": "Running", "tags": ["prod"]}),
        json!({"id": "v2", "type": "VM", "name_label": "web-2", "power_state": "Halted", "tags": []}),
        json!({"id": "v3", "type": "VM", "name_label": "db", "power_state": "Running", "tags": ["prod"]}),
    ]);
    s.register_admin().await;
    let ids = |v: Value| -> Vec<String> {
        let mut ids: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let r = s.cli(&["--list-objects", "type=VM-template"]).await.ok();
    assert_eq!(ids(r.json()), ["t1", "t2"]);
    assert_eq!(r.json()[0]["$pool"], "p");
    let r = s
        .cli(&["--list-objects", "type=VM", "power_state=Running"])
        .await
        .ok();
    assert_eq!(ids(r.json()), ["v1", "v3"]);
    let r = s.cli(&["--list-objects", "name_label=web-*"]).await.ok();
    assert_eq!(ids(r.json()), ["v1", "v2"]);
    let r = s
        .cli(&["--list-objects", "tags=json:[\"prod\"]"])
        .await
        .ok();
    assert_eq!(ids(r.json()), ["v1", "v3"]);
    let r = s
        .cli(&[
            "--list-objects",
            "--id",
            "--name_label",
            "type=VM",
            "name_label=db",
        ])
        .await
        .ok();
    assert_eq!(r.json(), json!([{"id": "v3", "name_label": "db"}]));
    let r = s.cli(&["--listObjects"]).await.ok();
    assert_eq!(r.json().as_array().unwrap().len(), 5);
    let r = s
        .cli(&[
            "--list-objects",
            "--table",
            "--id",
            "--type",
            "type=VM-template",
        ])
        .await
        .ok();
    assert!(r.stdout.starts_with("id  type"), "{r:?}");
    s.cli(&["--list-objects", "oops"]).await.fails(USAGE);
    let r = s.cli(&["--list-objects", "type=nothing"]).await.ok();
    assert_eq!(r.json(), json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_completions() {
    let s = crate::support::start().await;
    for shell in ["bash", "zsh", "fish"] {
        let r = s.cli(&["--completions", shell]).await.ok();
        assert!(
            r.stdout.contains("xo-cli") && r.stdout.contains("list-commands"),
            "{shell}"
        );
    }
    s.cli(&["completions", "tcsh"]).await.fails(USAGE);
}

/// Power actions through the CLI, against test doubles of vm.start / vm.stop over fixture objects
/// (deterministic code-13 errors): `vm=<id>` is rewritten to `id` by the server, state errors are API errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_actions() {
    let s = crate::support::start().await;
    s.put_objects(&[
        json!({"id": "v1", "type": "VM", "name_label": "web", "power_state": "Halted"}),
    ]);
    s.register_admin().await;
    let r = s.cli(&["vm.start", "vm=v1"]).await.ok();
    assert_eq!(r.json(), true);
    let r = s
        .cli(&["--list-objects", "--power_state", "id=v1"])
        .await
        .ok();
    assert_eq!(r.json(), json!([{"power_state": "Running"}]));
    let r = s.cli(&["vm.start", "id=v1"]).await.fails(API);
    assert!(
        r.stderr
            .contains("VM state is Running but should be Halted (code 13)"),
        "{r:?}"
    );
    s.cli(&["vm.stop", "id=v1", "force=true"]).await.ok();
    let r = s.cli(&["vm.stop", "id=v1", "force=yes"]).await.fails(USAGE);
    assert!(
        r.stderr.contains("property @.force: must be boolean"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("vm.stop ") && r.stderr.contains("[force=<boolean>]"),
        "{r:?}"
    );
}

/// Against xo-server's real `xo.getAllObjects` over a simulated pool, and its one-shot NDJSON
/// `$getFrom` download (a path relative to the server URL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_objects_and_ndjson_download() {
    let s = crate::support::start_demo(3).await;
    let (_xo, cache) = s.register_and_watch().await;
    let mut expected: Vec<String> = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        cache.wait_until(|o| {
            let ids: Vec<String> = o
                .values()
                .filter(|v| v["type"] == "VM")
                .map(|v| v["id"].as_str().unwrap().to_owned())
                .collect();
            (ids.len() == 3).then_some(ids)
        }),
    )
    .await
    .unwrap();
    expected.sort();
    let r = crate::support::run_in(
        s.home.path(),
        &["--list-objects", "--id", "--power_state", "type=VM"],
    )
    .await
    .ok();
    let mut got: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            assert_eq!(o.as_object().unwrap().len(), 2, "{o}");
            o["id"].as_str().unwrap().to_owned()
        })
        .collect();
    got.sort();
    assert_eq!(got, expected);
    let r = crate::support::run_in(s.home.path(), &["--list-objects", "type=host"])
        .await
        .ok();
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    // NDJSON through the one-shot URL, to stdout and to a file
    let r = crate::support::run_in(
        s.home.path(),
        &[
            "xo.getAllObjects",
            "ndjson=true",
            "filter=json:{\"type\":\"VM\"}",
            "@=-",
        ],
    )
    .await
    .ok();
    let mut ids: Vec<String> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, expected);
    let out = s.home.path().join("objects.ndjson");
    crate::support::run_in(
        s.home.path(),
        &[
            "xo.getAllObjects",
            "ndjson=true",
            &format!("@={}", out.display()),
        ],
    )
    .await
    .ok();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.lines().count() >= 5, "{text}");
    crate::support::run_in(s.home.path(), &["xo.getAllObjects", "ndjson=true"])
        .await
        .fails(USAGE);
}

/// `vm.start vm=<id>` / `vm.stop` through the CLI against xo-server's real methods over a simulated pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_power_actions() {
    let s = crate::support::start_demo(2).await;
    let (_xo, cache) = s.register_and_watch().await;
    let wait = std::time::Duration::from_secs(30);
    let vm = tokio::time::timeout(
        wait,
        cache.wait_until(|o| {
            o.values()
                .find(|v| v["type"] == "VM")
                .map(|v| v["id"].as_str().unwrap().to_owned())
        }),
    )
    .await
    .unwrap();
    if cache.get(&vm).unwrap()["power_state"] != "Halted" {
        crate::support::run_in(
            s.home.path(),
            &["vm.stop", &format!("id={vm}"), "force=true"],
        )
        .await
        .ok();
        xo_lib::wait_for_power_state(&cache, &vm, "Halted", wait)
            .await
            .unwrap();
    }
    let r = crate::support::run_in(s.home.path(), &["vm.start", &format!("vm={vm}")])
        .await
        .ok();
    assert_eq!(r.json(), true);
    xo_lib::wait_for_power_state(&cache, &vm, "Running", wait)
        .await
        .unwrap();
    let r = crate::support::run_in(s.home.path(), &["vm.start", &format!("id={vm}")])
        .await
        .fails(API);
    assert!(r.stderr.contains("code"), "{r:?}");
    crate::support::run_in(
        s.home.path(),
        &["vm.stop", &format!("id={vm}"), "force=true"],
    )
    .await
    .ok();
    xo_lib::wait_for_power_state(&cache, &vm, "Halted", wait)
        .await
        .unwrap();
    let r = crate::support::run_in(
        s.home.path(),
        &["--list-objects", "--power_state", &format!("id={vm}")],
    )
    .await
    .ok();
    assert_eq!(r.json(), json!([{"power_state": "Halted"}]));
}
