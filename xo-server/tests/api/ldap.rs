//! The `auth-ldap` plugin wired into xo-server, against a real slapd on 127.0.0.1 (the harness of
//! plugins/auth-ldap's tests): configured and loaded through `plugin.*`, LDAP sign-in creating linked XO
//! users, bad credentials, unreachable directory, `plugin.test`, group synchronisation, unload.

use serde_json::{json, Value};

use super::{config, start_with, Client};

#[allow(dead_code)]
#[path = "../../../plugins/auth-ldap/tests/support/slapd.rs"]
mod slapd;

use slapd::{closed_port, Slapd, SERVICE_DN, SERVICE_PW};

fn ldap_config(uri: &str) -> Value {
    json!({
        "uri": uri,
        "base": "ou=people,dc=example,dc=org",
        "bind": {"dn": SERVICE_DN, "password": SERVICE_PW},
        "filter": "(uid={{name}})",
        "userIdAttribute": "dn",
        "groups": {
            "base": "ou=groups,dc=example,dc=org",
            "filter": "(objectClass=posixGroup)",
            "idAttribute": "gidNumber",
            "displayNameAttribute": "cn",
            "membersMapping": {"groupAttribute": "memberUid", "userAttribute": "uid"}
        }
    })
}

async fn sign_in(server: &xo_server::RunningServer, user: &str, pw: &str) -> Value {
    let mut c = Client::connect(server).await;
    c.call("session.signIn", json!({"username": user, "password": pw}))
        .await
}

#[tokio::test]
async fn ldap_plugin_end_to_end() {
    // panics (never skips) when slapd is missing, pointing at scripts/setup-peers.sh
    let ldap = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // the same user name fails then succeeds below: no sign-in throttling
    cfg.sign_in_throttle_ms = 0;
    let server = start_with(cfg, |b| b).await;
    let mut admin = Client::admin(&server).await;

    let plugins = admin.ok("plugin.get", json!({})).await;
    let entry = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "auth-ldap")
        .expect("auth-ldap registered by default")
        .clone();
    assert_ne!(
        entry["loaded"], true,
        "not loaded before configuration: {entry}"
    );

    admin
        .ok(
            "plugin.configure",
            json!({"id": "auth-ldap", "configuration": ldap_config(&ldap.uri())}),
        )
        .await;
    admin.ok("plugin.load", json!({"id": "auth-ldap"})).await;

    // plugin.test with good and bad credentials
    admin
        .ok(
            "plugin.test",
            json!({"id": "auth-ldap", "data": {"username": "alice", "password": "alice-pw"}}),
        )
        .await;
    admin
        .err(
            "plugin.test",
            json!({"id": "auth-ldap", "data": {"username": "alice", "password": "nope"}}),
        )
        .await;

    // LDAP sign-in creates XO users linked to their DN
    for (user, pw) in [("alice", "alice-pw"), ("bob", "bob-pw")] {
        let r = sign_in(&server, user, pw).await;
        assert_eq!(r["result"]["email"], user, "{r}");
    }
    let users = admin.ok("user.getAll", json!({})).await;
    let alice = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "alice")
        .expect("alice created")
        .clone();
    assert_eq!(
        alice["authProviders"],
        json!({"ldap": {"id": "uid=alice,ou=people,dc=example,dc=org"}})
    );
    assert_eq!(alice["permission"], "none");
    let stored = server
        .app()
        .store()
        .user_by_email("alice")
        .unwrap()
        .unwrap();
    assert!(stored.pw_hash.is_none());

    // an existing local user with the LDAP name is linked and loses its local password (registerUser2)
    let carol_local = server
        .app()
        .store()
        .create_user("carol", Some("local-pw"), xo_store::Permission::Read)
        .unwrap();
    let r = sign_in(&server, "carol", "carol-pw").await;
    assert_eq!(r["result"]["id"], carol_local.id.as_str(), "{r}");
    let carol = server.app().store().user(&carol_local.id).unwrap().unwrap();
    assert!(carol.pw_hash.is_none());
    assert_eq!(carol.permission, xo_store::Permission::Read);
    let r = Client::connect(&server)
        .await
        .call(
            "session.signIn",
            json!({"email": "carol", "password": "local-pw"}),
        )
        .await;
    assert_eq!(r["error"]["code"], 3, "local password gone: {r}");

    // group sync: XO groups with the LDAP members
    admin.ok("ldap.synchronizeGroups", json!({})).await;
    let groups = admin.ok("group.getAll", json!({})).await;
    let members = |name: &str| {
        let g = groups
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .unwrap_or_else(|| panic!("group {name} in {groups}"))
            .clone();
        let mut ids: Vec<String> = g["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        (g, ids)
    };
    let bob_id = server
        .app()
        .store()
        .user_by_email("bob")
        .unwrap()
        .unwrap()
        .id;
    let (devs, devs_members) = members("devs");
    assert_eq!(devs["provider"], "ldap", "{devs}");
    assert_eq!(devs["providerGroupId"], "1001", "{devs}");
    let mut expected = vec![stored.id.clone(), bob_id];
    expected.sort();
    assert_eq!(devs_members, expected);
    assert_eq!(members("ops").1, vec![stored.id.clone()]);

    // wrong password, unknown user: invalid credentials
    let r = sign_in(&server, "bob", "wrong").await;
    assert_eq!(r["error"]["code"], 3, "{r}");
    let r = sign_in(&server, "nobody-here", "x").await;
    assert_eq!(r["error"]["code"], 3, "{r}");

    // directory unreachable: clean failure, local admin unaffected
    admin
        .ok(
            "plugin.configure",
            json!({"id": "auth-ldap",
                "configuration": ldap_config(&format!("ldap://127.0.0.1:{}", closed_port()))}),
        )
        .await;
    let r = sign_in(&server, "alice", "alice-pw").await;
    assert_eq!(r["error"]["code"], 3, "{r}");
    let mut admin2 = Client::admin(&server).await;
    assert_eq!(
        admin2.ok("session.getUser", json!({})).await["email"],
        "admin@admin.net"
    );

    // back to the good directory, then unload: the provider is gone
    admin
        .ok(
            "plugin.configure",
            json!({"id": "auth-ldap", "configuration": ldap_config(&ldap.uri())}),
        )
        .await;
    admin.ok("plugin.unload", json!({"id": "auth-ldap"})).await;
    let r = sign_in(&server, "alice", "alice-pw").await;
    assert_eq!(r["error"]["code"], 3, "{r}");
    assert_eq!(
        admin.err("ldap.synchronizeGroups", json!({})).await["code"],
        -32601
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ldap_group_sync_name_conflict() {
    let ldap = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), |b| b).await;
    let mut admin = Client::admin(&server).await;
    admin.ok("group.create", json!({"name": "ops"})).await;
    admin
        .ok(
            "plugin.configure",
            json!({"id": "auth-ldap", "configuration": ldap_config(&ldap.uri())}),
        )
        .await;
    admin.ok("plugin.load", json!({"id": "auth-ldap"})).await;
    // as in XO: the LDAP group is ignored (logged), the others are synchronised
    assert_eq!(
        admin.ok("ldap.synchronizeGroups", json!({})).await,
        json!(true)
    );
    // the local group is left alone
    let groups = admin.ok("group.getAll", json!({})).await;
    let ops: Vec<&Value> = groups
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["name"] == "ops")
        .collect();
    assert_eq!(ops.len(), 1, "{groups}");
    assert!(ops[0].get("provider").is_none(), "{groups}");
    assert!(
        groups
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "devs" && g["provider"] == "ldap"),
        "{groups}"
    );
    server.shutdown().await;
}
