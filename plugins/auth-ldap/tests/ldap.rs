//! The LDAP plugin against a real OpenLDAP server (slapd started per test on 127.0.0.1): sign-in, user
//! linking, unreachable servers, failover, group sync, ldaps and StartTLS with certificate checks, and the
//! plugin life cycle through a recording host.

mod support;

use std::sync::Arc;

use serde_json::{json, Map, Value};
use xo_plugin::{CallContext, Plugin, PluginHost};
use xo_plugin_auth_ldap::{
    AuthLdapPlugin, Authenticator, LdapAuthError, LdapConfig, MemoryDirectory, UserDirectory,
    GROUP_PROVIDER,
};

use support::slapd::{closed_port, make_certificates, Slapd, SERVICE_DN, SERVICE_PW};
use support::{admin_change, Change, FakeHost};

const PEOPLE: &str = "ou=people,dc=example,dc=org";
const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";

fn config(uri: &str) -> Value {
    json!({
        "uri": uri,
        "base": PEOPLE,
        "bind": {"dn": SERVICE_DN, "password": SERVICE_PW},
        "userIdAttribute": "dn"
    })
}

fn posix_groups() -> Value {
    json!({
        "base": "ou=groups,dc=example,dc=org",
        "filter": "(objectClass=posixGroup)",
        "idAttribute": "gidNumber",
        "displayNameAttribute": "cn",
        "membersMapping": {"groupAttribute": "memberUid", "userAttribute": "uid"}
    })
}

fn authenticator(config: &Value, dir: &Arc<MemoryDirectory>) -> Authenticator {
    Authenticator::new(
        &LdapConfig::from_value(config).expect("valid config"),
        dir.clone(),
    )
    .expect("authenticator")
}

async fn sign_in(auth: &Authenticator, user: &str, pw: &str) -> Option<String> {
    auth.authenticate(user, pw)
        .await
        .expect("no LDAP error")
        .map(|o| o.user_id)
}

fn group_members(dir: &MemoryDirectory, name: &str) -> Vec<String> {
    let mut users = dir.group_by_name(name).expect(name).users;
    users.sort();
    users
}

#[tokio::test]
async fn good_password_creates_then_reuses_linked_user() {
    let slapd = Slapd::start();
    let dir = Arc::new(MemoryDirectory::new());
    let auth = authenticator(&config(&slapd.uri()), &dir);

    let id = sign_in(&auth, "alice", "alice-pw").await.expect("alice");
    let user = dir.user_by_name("alice").expect("created");
    assert_eq!(user.id, id);
    assert_eq!(
        user.auth_providers,
        json!({"ldap": {"id": ALICE_DN}})
            .as_object()
            .cloned()
            .unwrap()
    );
    let outcome = auth
        .authenticate("alice", "alice-pw")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.user_id, id, "same XO user on the next sign-in");
    assert!(!outcome.bypass_otp);
    assert_eq!(outcome.expiration, None);
    assert_eq!(dir.users().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_password_unknown_user_and_empty_password_do_not_match() {
    let slapd = Slapd::start();
    let dir = Arc::new(MemoryDirectory::new());
    let auth = authenticator(&config(&slapd.uri()), &dir);

    assert_eq!(sign_in(&auth, "alice", "wrong").await, None);
    assert_eq!(sign_in(&auth, "alice", "bob-pw").await, None);
    assert_eq!(sign_in(&auth, "nobody", "alice-pw").await, None);
    // An empty password would be an unauthenticated (successful) bind in LDAP.
    assert_eq!(sign_in(&auth, "alice", "").await, None);
    assert_eq!(sign_in(&auth, "", "alice-pw").await, None);
    // Filter injection: `*` must not match alice.
    assert_eq!(sign_in(&auth, "*", "alice-pw").await, None);
    assert_eq!(sign_in(&auth, "alice)(uid=*", "alice-pw").await, None);
    // dave is outside the base.
    assert_eq!(sign_in(&auth, "dave", "dave-pw").await, None);
    assert!(
        dir.users().unwrap().is_empty(),
        "no user created on failures"
    );
}

#[tokio::test]
async fn existing_local_user_is_linked_and_uid_attribute_used() {
    let slapd = Slapd::start();
    let dir = Arc::new(MemoryDirectory::new());
    let local = dir.add_local_user("bob");
    let mut cfg = config(&slapd.uri());
    cfg["userIdAttribute"] = "uidNumber".into();
    cfg["filter"] = "(&(objectClass=posixAccount)(uid={{name}}))".into();
    let auth = authenticator(&cfg, &dir);

    assert_eq!(sign_in(&auth, "bob", "bob-pw").await, Some(local.clone()));
    let bob = dir.user_by_name("bob").unwrap();
    assert_eq!(bob.provider_id("ldap"), Some("2002"));
    // carol is no posixAccount: the filter excludes her.
    assert_eq!(sign_in(&auth, "carol", "carol-pw").await, None);
}

#[tokio::test]
async fn missing_user_id_attribute_is_an_error() {
    let slapd = Slapd::start();
    let dir = Arc::new(MemoryDirectory::new());
    let mut cfg = config(&slapd.uri());
    cfg["userIdAttribute"] = "uidNumber".into();
    let auth = authenticator(&cfg, &dir);
    // carol has no uidNumber.
    let err = auth.authenticate("carol", "carol-pw").await.unwrap_err();
    assert_eq!(
        err,
        LdapAuthError::MissingAttribute {
            attribute: "uidNumber".into(),
            username: "carol".into()
        }
    );
}

#[tokio::test]
async fn ldap_down_is_an_error_not_a_match() {
    let dir = Arc::new(MemoryDirectory::new());
    let uri = format!("ldap://127.0.0.1:{}", closed_port());
    let auth = authenticator(&config(&uri), &dir);
    let err = auth.authenticate("alice", "alice-pw").await.unwrap_err();
    assert!(
        matches!(&err, LdapAuthError::Connect { uri: u, .. } if *u == uri),
        "{err:?}"
    );
    assert!(!err.to_string().contains(SERVICE_PW));
    assert!(dir.users().unwrap().is_empty());
}

#[tokio::test]
async fn failover_uri_is_tried_when_primary_is_down() {
    let slapd = Slapd::start();
    let dir = Arc::new(MemoryDirectory::new());
    let mut cfg = config(&format!("ldap://127.0.0.1:{}", closed_port()));
    cfg["failoverUris"] = json!([slapd.uri()]);
    let auth = authenticator(&cfg, &dir);
    assert!(sign_in(&auth, "alice", "alice-pw").await.is_some());
    // The link does not depend on which URI answered.
    assert_eq!(
        dir.user_by_name("alice").unwrap().provider_id("ldap"),
        Some(ALICE_DN)
    );
}

#[tokio::test]
async fn wrong_service_password_fails_cleanly() {
    let slapd = Slapd::start();
    let dir = Arc::new(MemoryDirectory::new());
    let mut cfg = config(&slapd.uri());
    cfg["bind"]["password"] = "not-the-service-pw".into();
    let auth = authenticator(&cfg, &dir);
    let err = auth.authenticate("alice", "alice-pw").await.unwrap_err();
    assert!(
        matches!(&err, LdapAuthError::ServiceBind { dn, .. } if dn == SERVICE_DN),
        "{err:?}"
    );
    assert!(!err.to_string().contains("not-the-service-pw"));
    assert!(!format!("{auth:?}").contains("not-the-service-pw"));
    // Without a service account the ACLs hide every entry: anonymous search finds no one.
    cfg.as_object_mut().unwrap().remove("bind");
    let anonymous = authenticator(&cfg, &dir);
    assert_eq!(sign_in(&anonymous, "alice", "alice-pw").await, None);
}

#[tokio::test]
async fn additional_domain_uses_its_uri_as_provider() {
    let slapd = Slapd::start();
    let dir = Arc::new(MemoryDirectory::new());
    let second_uri = format!("ldap://localhost:{}", slapd.port);
    let mut cfg = config(&slapd.uri());
    let mut second = config(&second_uri);
    second["base"] = "ou=partners,dc=example,dc=org".into();
    cfg["additionalDomains"] = json!([second]);
    let auth = authenticator(&cfg, &dir);

    assert!(sign_in(&auth, "dave", "dave-pw").await.is_some());
    let dave = dir.user_by_name("dave").unwrap();
    assert_eq!(
        dave.provider_id(&second_uri),
        Some(format!("{second_uri}:uid=dave,ou=partners,dc=example,dc=org").as_str())
    );
    assert!(sign_in(&auth, "alice", "alice-pw").await.is_some());
    assert_eq!(
        dir.user_by_name("alice").unwrap().provider_id("ldap"),
        Some(ALICE_DN)
    );

    // Duplicate URIs are refused.
    let mut dup = config(&slapd.uri());
    dup["additionalDomains"] = json!([config(&slapd.uri())]);
    assert!(matches!(
        LdapConfig::from_value(&dup),
        Err(LdapAuthError::Config(_))
    ));
}

#[tokio::test]
async fn group_sync_at_sign_in_and_full_sync() {
    let slapd = Slapd::start();
    let dir = Arc::new(MemoryDirectory::new());
    let mut cfg = config(&slapd.uri());
    cfg["groups"] = posix_groups();
    let auth = authenticator(&cfg, &dir);

    let alice = sign_in(&auth, "alice", "alice-pw").await.unwrap();
    let devs = dir.group_by_name("devs").expect("devs created");
    assert_eq!(devs.provider.as_deref(), Some(GROUP_PROVIDER));
    assert_eq!(devs.provider_group_id.as_deref(), Some("1001"));
    assert_eq!(group_members(&dir, "devs"), vec![alice.clone()]);
    assert_eq!(group_members(&dir, "ops"), vec![alice.clone()]);

    let bob = sign_in(&auth, "bob", "bob-pw").await.unwrap();
    let mut both = vec![alice.clone(), bob.clone()];
    both.sort();
    assert_eq!(group_members(&dir, "devs"), both);
    assert_eq!(group_members(&dir, "ops"), vec![alice.clone()]);

    // The directory changes: bob leaves devs, devs is renamed, ops disappears, qa appears.
    admin_change(
        &slapd.uri(),
        &[
            Change::RemoveValue("cn=devs,ou=groups,dc=example,dc=org", "memberUid", "bob"),
            Change::Rename("cn=devs,ou=groups,dc=example,dc=org", "cn=developers"),
            Change::Delete("cn=ops,ou=groups,dc=example,dc=org"),
        ],
    )
    .await;
    auth.synchronize_groups(None).await.expect("full sync");
    assert!(dir.group_by_name("devs").is_none());
    let developers = dir.group_by_name("developers").expect("renamed");
    assert_eq!(developers.id, devs.id, "same XO group, renamed");
    assert_eq!(developers.users, vec![alice.clone()]);
    assert!(
        dir.group_by_name("ops").is_none(),
        "deleted with its LDAP group"
    );

    // bob back in developers: a full sync adds him (he already has an XO user).
    admin_change(
        &slapd.uri(),
        &[Change::AddValue(
            "cn=developers,ou=groups,dc=example,dc=org",
            "memberUid",
            "bob",
        )],
    )
    .await;
    auth.synchronize_groups(Some(0))
        .await
        .expect("sync domain 0");
    assert_eq!(group_members(&dir, "developers"), both);
    assert!(matches!(
        auth.synchronize_groups(Some(3)).await,
        Err(LdapAuthError::Config(_))
    ));

    // At sign-in, memberships are updated for the signing-in user only.
    admin_change(
        &slapd.uri(),
        &[Change::RemoveValue(
            "cn=developers,ou=groups,dc=example,dc=org",
            "memberUid",
            "alice",
        )],
    )
    .await;
    sign_in(&auth, "alice", "alice-pw").await.unwrap();
    assert_eq!(group_members(&dir, "developers"), vec![bob.clone()]);
}

#[tokio::test]
async fn group_sync_keeps_local_groups_and_skips_name_conflicts() {
    let slapd = Slapd::start();
    let dir = Arc::new(MemoryDirectory::new());
    let local_ops = dir.add_local_group("ops");
    let local_other = dir.add_local_group("other");
    let mut cfg = config(&slapd.uri());
    cfg["groups"] = posix_groups();
    let auth = authenticator(&cfg, &dir);

    sign_in(&auth, "alice", "alice-pw").await.unwrap();
    auth.synchronize_groups(None).await.unwrap();
    let ops = dir.group_by_name("ops").unwrap();
    assert_eq!(ops.id, local_ops, "the local group is left alone");
    assert!(ops.users.is_empty());
    assert!(ops.provider.is_none());
    assert!(dir.group(&local_other).unwrap().is_some());
    assert!(dir.group_by_name("devs").is_some());
}

#[tokio::test]
async fn group_sync_with_dn_members() {
    let slapd = Slapd::start();
    let dir = Arc::new(MemoryDirectory::new());
    let mut cfg = config(&slapd.uri());
    cfg["groups"] = json!({
        "base": "ou=roles,dc=example,dc=org",
        "filter": "(objectClass=groupOfNames)",
        "idAttribute": "dn",
        "displayNameAttribute": "cn",
        "membersMapping": {"groupAttribute": "member", "userAttribute": "dn"}
    });
    let auth = authenticator(&cfg, &dir);
    let alice = sign_in(&auth, "alice", "alice-pw").await.unwrap();
    assert!(dir.group_by_name("admins").is_none(), "alice is no admin");
    let carol = sign_in(&auth, "carol", "carol-pw").await.unwrap();
    let admins = dir.group_by_name("admins").unwrap();
    assert_eq!(
        admins.provider_group_id.as_deref(),
        Some("cn=admins,ou=roles,dc=example,dc=org")
    );
    assert_eq!(admins.users, vec![carol.clone()]);

    admin_change(
        &slapd.uri(),
        &[Change::AddValue(
            "cn=admins,ou=roles,dc=example,dc=org",
            "member",
            ALICE_DN,
        )],
    )
    .await;
    auth.synchronize_groups(None).await.unwrap();
    let mut expected = vec![alice, carol];
    expected.sort();
    assert_eq!(group_members(&dir, "admins"), expected);
}

#[tokio::test]
async fn ldaps_certificate_checks() {
    let slapd = Slapd::start();
    let dir = Arc::new(MemoryDirectory::new());
    let uri = slapd.ldaps_uri();

    // Trusted CA: works.
    let mut cfg = config(&uri);
    cfg["certificateAuthorities"] = json!([slapd.ca_path()]);
    assert!(sign_in(&authenticator(&cfg, &dir), "alice", "alice-pw")
        .await
        .is_some());

    // Default roots: the self-signed CA is not trusted.
    let cfg = config(&uri);
    let err = authenticator(&cfg, &dir)
        .authenticate("alice", "alice-pw")
        .await
        .unwrap_err();
    assert!(matches!(err, LdapAuthError::Connect { .. }), "{err:?}");

    // Another CA: refused.
    let other = slapd.dir().join("other-ca.pem");
    std::fs::write(&other, make_certificates("another CA").0).unwrap();
    let mut cfg = config(&uri);
    cfg["certificateAuthorities"] = json!([other.to_string_lossy()]);
    let err = authenticator(&cfg, &dir)
        .authenticate("alice", "alice-pw")
        .await
        .unwrap_err();
    assert!(matches!(err, LdapAuthError::Connect { .. }), "{err:?}");

    // checkCertificate false: accepted whatever the CA.
    cfg["checkCertificate"] = false.into();
    assert!(sign_in(&authenticator(&cfg, &dir), "alice", "alice-pw")
        .await
        .is_some());
    let mut cfg = config(&uri);
    cfg["checkCertificate"] = false.into();
    assert!(sign_in(&authenticator(&cfg, &dir), "alice", "alice-pw")
        .await
        .is_some());
}

#[tokio::test]
async fn starttls_certificate_checks() {
    let slapd = Slapd::start();
    let dir = Arc::new(MemoryDirectory::new());
    let mut cfg = config(&slapd.uri());
    cfg["startTls"] = true.into();
    cfg["certificateAuthorities"] = json!([slapd.ca_path()]);
    assert!(sign_in(&authenticator(&cfg, &dir), "bob", "bob-pw")
        .await
        .is_some());
    assert_eq!(
        sign_in(&authenticator(&cfg, &dir), "bob", "alice-pw").await,
        None
    );

    cfg.as_object_mut()
        .unwrap()
        .remove("certificateAuthorities");
    let err = authenticator(&cfg, &dir)
        .authenticate("bob", "bob-pw")
        .await
        .unwrap_err();
    assert!(matches!(err, LdapAuthError::Connect { .. }), "{err:?}");

    cfg["checkCertificate"] = false.into();
    assert!(sign_in(&authenticator(&cfg, &dir), "bob", "bob-pw")
        .await
        .is_some());

    // A server without StartTLS on that port: ldaps port spoken to as plain LDAP fails.
    let mut cfg = config(&format!("ldap://127.0.0.1:{}", slapd.tls_port));
    cfg["startTls"] = true.into();
    cfg["checkCertificate"] = false.into();
    assert!(authenticator(&cfg, &dir)
        .authenticate("bob", "bob-pw")
        .await
        .is_err());
}

#[tokio::test]
async fn unreadable_ca_file_is_a_configuration_error() {
    let dir = Arc::new(MemoryDirectory::new());
    let plugin = AuthLdapPlugin::new(dir);
    let host: Arc<dyn PluginHost> = Arc::new(FakeHost::default());
    let mut cfg = config("ldaps://127.0.0.1:1");
    cfg["certificateAuthorities"] = json!(["/nonexistent/ca.pem"]);
    let err = plugin.configure(host, cfg, false).await.unwrap_err();
    assert_eq!(err.code(), 10);
    assert!(plugin.authenticator().is_none());
}

async fn call(
    host: &Arc<FakeHost>,
    name: &str,
    params: Value,
) -> Result<Value, xo_plugin::PluginError> {
    let method = host.method(name).expect("method registered");
    let ctx = CallContext {
        user: None,
        host: host.clone() as Arc<dyn PluginHost>,
    };
    let params: Map<String, Value> = params.as_object().cloned().unwrap_or_default();
    (method.handler)(ctx, params).await
}

#[tokio::test]
async fn plugin_life_cycle_provider_methods_and_test() {
    let slapd = Slapd::start();
    let dir = Arc::new(MemoryDirectory::new());
    let plugin = AuthLdapPlugin::new(dir.clone());
    let fake = Arc::new(FakeHost::default());
    let host: Arc<dyn PluginHost> = fake.clone();

    let manifest = plugin.manifest();
    assert_eq!(manifest.name, "auth-ldap");
    assert!(plugin.testable());
    assert_eq!(
        plugin.test_schema().unwrap()["required"],
        json!(["username", "password"])
    );
    assert!(plugin.configuration_schema().is_some());

    // Not configured yet.
    let err = plugin
        .test(
            host.clone(),
            json!({"username": "alice", "password": "alice-pw"}),
        )
        .await;
    assert_eq!(err.unwrap_err().code(), 10);
    // Invalid configuration.
    let err = plugin
        .configure(host.clone(), json!({"uri": "ldap://x"}), false)
        .await;
    assert_eq!(err.unwrap_err().code(), 10);

    let mut cfg = config(&slapd.uri());
    cfg["groups"] = posix_groups();
    plugin.configure(host.clone(), cfg, false).await.unwrap();
    plugin.load(host.clone()).await.unwrap();

    // plugin.test
    plugin
        .test(
            host.clone(),
            json!({"username": "alice", "password": "alice-pw"}),
        )
        .await
        .expect("test ok");
    let err = plugin
        .test(
            host.clone(),
            json!({"username": "alice", "password": "nope"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "could not authenticate user");
    assert_eq!(
        plugin
            .test(host.clone(), json!({}))
            .await
            .unwrap_err()
            .code(),
        10
    );

    // The provider, with `email` as XO's alias of `username`.
    let provider = fake.provider().expect("provider registered");
    assert_eq!(provider.name(), "ldap");
    let creds = |v: Value| v.as_object().cloned().unwrap();
    let outcome = provider
        .authenticate(creds(json!({"email": "bob", "password": "bob-pw"})))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Some(outcome.user_id), dir.user_by_name("bob").map(|u| u.id));
    assert_eq!(
        provider
            .authenticate(creds(json!({"username": "bob", "password": "x"})))
            .await,
        Ok(None)
    );
    assert_eq!(
        provider.authenticate(creds(json!({"token": "abc"}))).await,
        Ok(None)
    );

    // Methods.
    let reports = call(&fake, "ldap.testConnections", json!({}))
        .await
        .unwrap();
    assert_eq!(
        reports,
        json!([{"uri": slapd.uri(), "domain": "ldap", "ok": true}])
    );
    assert_eq!(
        call(&fake, "ldap.synchronizeGroups", json!({}))
            .await
            .unwrap(),
        json!(true)
    );
    assert!(dir.group_by_name("devs").is_some());
    let err = call(&fake, "ldap.synchronizeGroups", json!({"domainIndex": 1}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), 10);
    let err = call(&fake, "ldap.synchronizeGroups", json!({"domainIndex": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), 10);

    // Reconfigured while loaded to a dead server: the provider reports an error (sign-in falls through).
    let dead = format!("ldap://127.0.0.1:{}", closed_port());
    plugin
        .configure(host.clone(), config(&dead), true)
        .await
        .unwrap();
    let err = provider
        .authenticate(creds(json!({"username": "alice", "password": "alice-pw"})))
        .await
        .unwrap_err();
    assert!(err.contains("unreachable"), "{err}");
    assert!(!err.contains(SERVICE_PW));
    let reports = call(&fake, "ldap.testConnections", json!({}))
        .await
        .unwrap();
    assert_eq!(reports[0]["ok"], json!(false));
    assert!(reports[0]["error"]
        .as_str()
        .unwrap()
        .contains("unreachable"));
    let err = plugin
        .test(
            host.clone(),
            json!({"username": "alice", "password": "alice-pw"}),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unreachable"));

    plugin.unload(host.clone()).await.unwrap();
    assert!(fake.provider().is_none());
    assert!(fake.methods.lock().unwrap().is_empty());
}

#[tokio::test]
async fn test_connections_reports_groups_base_and_failover_uris() {
    let slapd = Slapd::start();
    let dir = Arc::new(MemoryDirectory::new());
    let dead = format!("ldap://127.0.0.1:{}", closed_port());
    let mut cfg = config(&slapd.uri());
    cfg["failoverUris"] = json!([dead]);
    let mut groups = posix_groups();
    groups["base"] = "ou=nowhere,dc=example,dc=org".into();
    cfg["groups"] = groups;
    let reports = authenticator(&cfg, &dir).test_connections().await;
    assert_eq!(reports.len(), 2);
    assert!(!reports[0].ok);
    assert!(reports[0].error.as_deref().unwrap().contains("groups base"));
    assert_eq!(reports[1].uri, dead);
    assert!(!reports[1].ok);
}

#[tokio::test]
async fn from_host_uses_the_host_directory() {
    let slapd = Slapd::start();
    let plugin = AuthLdapPlugin::from_host();
    let fake = Arc::new(FakeHost::default());
    let host: Arc<dyn PluginHost> = fake.clone();
    let mut cfg = config(&slapd.uri());
    cfg["groups"] = posix_groups();
    plugin.configure(host.clone(), cfg, false).await.unwrap();
    plugin.load(host.clone()).await.unwrap();
    let outcome = fake
        .provider()
        .expect("ldap provider")
        .authenticate(
            json!({"username": "alice", "password": "alice-pw"})
                .as_object()
                .unwrap()
                .clone(),
        )
        .await
        .unwrap()
        .expect("signed in");
    let alice = fake
        .directory
        .user_by_name("alice")
        .expect("alice in the host directory");
    assert_eq!(alice.id, outcome.user_id);
    assert_eq!(alice.provider_id("ldap"), Some(ALICE_DN));
    plugin
        .authenticator()
        .unwrap()
        .synchronize_groups(None)
        .await
        .unwrap();
    let devs = fake
        .directory
        .group_by_name("devs")
        .expect("devs synchronised");
    assert_eq!(devs.provider.as_deref(), Some(GROUP_PROVIDER));
    assert!(devs.users.contains(&alice.id));
}
