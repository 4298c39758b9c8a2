//! `pool.listMissingPatches` / `pool.installPatches` through xo-server with in-process pools: a XenServer-branded
//! pool patched from a catalogue served on 127.0.0.1 (the `patcher` plugin's `catalogUrl`), and an XCP-ng pool
//! patched through `updater.py`; both installations show up as XO tasks with sub-tasks in `/rest/v0/tasks`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use xapi_sim::ops::pool_update::{encode_update, set_pending_packages};
use xapi_sim::{RunningPool, Sim};

use super::pools::add_params;
use super::{config, start_with, Client, TIMEOUT};

const A: &str = "aaaaaaaa-1111-4000-8000-000000000001";
const B: &str = "bbbbbbbb-1111-4000-8000-000000000002";
/// In the catalogue for another product version only, and its zip is missing (404).
const C: &str = "cccccccc-1111-4000-8000-000000000003";

async fn sim(brand: &str, hosts: usize) -> RunningPool {
    let sim = Sim::builder()
        .hosts(hosts)
        .vms(0)
        .event_batching(Duration::from_millis(5))
        .build()
        .unwrap();
    sim.state().write(|db| {
        for h in db.refs("host") {
            let mut sv = db.field("host", &h, "software_version").unwrap().clone();
            sv["product_brand"] = json!(brand);
            sv["product_version"] = json!("8.2.1");
            db.set_field("host", &h, "software_version", sv).unwrap();
        }
    });
    sim.serve("127.0.0.1:0".parse().unwrap(), true)
        .await
        .unwrap()
}

fn update_zip(uuid: &str, name: &str, extra: Value) -> Vec<u8> {
    let mut meta =
        json!({"uuid": uuid, "name_label": name, "after_apply_guidance": ["restartHost"]});
    meta.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default();
    w.start_file(format!("{name}.iso"), o).unwrap();
    w.write_all(&encode_update(&meta, &[1u8; 50_000])).unwrap();
    w.finish().unwrap().into_inner()
}

/// The catalogue (A; B requiring A; C whose zip is missing) and the zips on 127.0.0.1; the base URL.
async fn catalogue() -> String {
    catalogue_gated(None).await
}

/// A gate on the download of `a.zip`: `started` is notified when it is requested, which then waits for
/// `release`.
#[derive(Clone)]
struct Gate {
    started: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

async fn catalogue_gated(gate: Option<Gate>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let xml = format!(
        r#"<patchdata><patches>
<patch uuid="{A}" name-label="XS82E101" name-description="one" after-apply-guidance="restartHost" url="" patch-url="{base}/a.zip" timestamp="2024-01-01T00:00:00Z"><conflictingpatches/><requiredpatches/></patch>
<patch uuid="{B}" name-label="XS82E102" name-description="two" after-apply-guidance="" url="" patch-url="{base}/b.zip" timestamp="2024-02-01T00:00:00Z"><conflictingpatches/><requiredpatches><requiredpatch uuid="{A}"/></requiredpatches></patch>
<patch uuid="{C}" name-label="XS99E001" name-description="three" after-apply-guidance="" url="" patch-url="{base}/missing.zip" timestamp="2024-03-01T00:00:00Z"><conflictingpatches/><requiredpatches/></patch>
</patches><serverversions><version value="8.2.1"><patch uuid="{A}"/><patch uuid="{B}"/></version><version value="9.9.9"><patch uuid="{C}"/></version></serverversions></patchdata>"#
    );
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    files.insert("/updates.xml".into(), xml.into_bytes());
    files.insert("/a.zip".into(), update_zip(A, "XS82E101", json!({})));
    files.insert(
        "/b.zip".into(),
        update_zip(B, "XS82E102", json!({"requires": [A]})),
    );
    let files = Arc::new(files);
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let files = files.clone();
        let gate = gate.clone();
        async move {
            if let (Some(g), "/a.zip") = (&gate, uri.path()) {
                g.started.notify_one();
                g.release.notified().await;
            }
            match files.get(uri.path()) {
                Some(b) => (axum::http::StatusCode::OK, b.clone()),
                None => (axum::http::StatusCode::NOT_FOUND, b"not found".to_vec()),
            }
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    base
}

/// Polls `xo.getAllObjects` until a host of the pool shows up; its id.
async fn host_id(c: &mut Client) -> String {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let all = c
            .ok("xo.getAllObjects", json!({"filter": {"type": "host"}}))
            .await;
        if let Some((id, _)) = all.as_object().and_then(|m| m.iter().next()) {
            return id.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no host object");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The uuid of the sim's first object of `class`.
fn first_uuid(p: &RunningPool, class: &str) -> String {
    p.state().read(|db| {
        let r = db.refs(class)[0].clone();
        db.field(class, &r, "uuid")
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    })
}

fn pool_id(p: &RunningPool) -> String {
    first_uuid(p, "pool")
}

/// An XO server keeping its state in `dir`, the patcher plugin configured with the catalogue at `catalogue`
/// (a base URL) when there is one, then `pool` added: the server, an administrator's client and the id of a
/// host of the pool once it shows up.
async fn xo_with(
    dir: &std::path::Path,
    pool: &RunningPool,
    catalogue: Option<&str>,
) -> (xo_server::RunningServer, Client, String) {
    let server = start_with(config(dir), |b| b).await;
    let mut c = Client::admin(&server).await;
    if let Some(base) = catalogue {
        // the catalogue URL is the patcher plugin's configuration
        c.ok(
            "plugin.configure",
            json!({"id": "patcher", "configuration": {"catalogUrl": format!("{base}/updates.xml")}}),
        )
        .await;
    }
    c.ok("server.add", add_params(pool)).await;
    let host = host_id(&mut c).await;
    (server, c, host)
}

#[tokio::test]
async fn xenserver_pool_list_and_install_patches() {
    let base = catalogue().await;
    let dir = tempfile::tempdir().unwrap();
    let pool = sim("XenServer", 2).await;
    let (server, mut c, host) = xo_with(dir.path(), &pool, Some(&base)).await;
    let missing = c.ok("pool.listMissingPatches", json!({"host": host})).await;
    let names: Vec<&str> = missing
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["XS82E101", "XS82E102"]);
    assert_eq!(missing[1]["requirements"], json!([A]));
    assert_eq!(missing[0]["id"], json!(A));
    // bad params / unknown pool
    assert_eq!(c.err("pool.installPatches", json!({})).await["code"], 10);
    assert_eq!(
        c.err("pool.installPatches", json!({"pool": "nope"})).await["code"],
        1
    );
    // refused while HA is enabled (incorrect state)
    let set_ha = |on: bool| {
        pool.state().write(|db| {
            let r = db.refs("pool")[0].clone();
            db.set_field("pool", &r, "ha_enabled", json!(on)).unwrap();
        })
    };
    set_ha(true);
    let e = c
        .err("pool.installPatches", json!({"pool": pool_id(&pool)}))
        .await;
    assert_eq!(e["code"], 25, "{e}");
    assert_eq!(e["data"]["property"], "ha_enabled");
    set_ha(false);
    // B pulls A in first
    assert_eq!(
        c.ok(
            "pool.installPatches",
            json!({"pool": pool_id(&pool), "patches": [B]})
        )
        .await,
        json!(true)
    );
    let applied = pool.state().read(|db| {
        db.refs("host")
            .iter()
            .map(|h| {
                db.field("host", h, "updates")
                    .unwrap()
                    .as_array()
                    .unwrap()
                    .len()
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(applied, [2, 2]);
    assert_eq!(
        c.ok("pool.listMissingPatches", json!({"host": host})).await,
        json!([])
    );
    // the installation ran as an XO task that stays in the log: one sub-task per patch, progress up to 100
    let task = install_task(&server, &pool_id(&pool)).await;
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(task["properties"]["progress"], 100);
    assert!(task["end"].as_i64().unwrap() >= task["start"].as_i64().unwrap());
    assert_eq!(task["result"], json!([A, B]));
    let subs = task["tasks"].as_array().unwrap();
    let names: Vec<&str> = subs
        .iter()
        .map(|t| t["properties"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Installing patch XS82E101", "Installing patch XS82E102"]
    );
    for (t, id) in subs.iter().zip([A, B]) {
        assert_eq!(t["status"], "success");
        assert_eq!(t["properties"]["progress"], 100);
        assert_eq!(t["properties"]["patchId"], id);
        let steps: Vec<&str> = t["infos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["message"].as_str().unwrap())
            .collect();
        assert_eq!(
            steps,
            ["download", "upload", "precheck", "apply", "clean", "done"]
        );
    }
    // a failing installation: the task and the patch's sub-task end in failure, with the error
    let e = c
        .err(
            "pool.installPatches",
            json!({"pool": pool_id(&pool), "patches": [C]}),
        )
        .await;
    assert!(e["message"].as_str().unwrap().contains("404"), "{e}");
    let tasks = install_tasks(&server, &pool_id(&pool)).await;
    assert_eq!(tasks.len(), 2);
    let failed = &tasks[1];
    assert_eq!(failed["status"], "failure", "{failed}");
    assert_eq!(failed["result"]["message"], e["message"]);
    assert_eq!(
        failed["tasks"][0]["properties"]["name"],
        "Installing patch XS99E001"
    );
    assert_eq!(failed["tasks"][0]["status"], "failure");
    assert_eq!(failed["tasks"][0]["result"]["message"], e["message"]);
    // an unknown patch fails before any sub-task
    c.err(
        "pool.installPatches",
        json!({"pool": pool_id(&pool), "patches": ["nope"]}),
    )
    .await;
    let tasks = install_tasks(&server, &pool_id(&pool)).await;
    assert_eq!(tasks[2]["status"], "failure");
    assert!(tasks[2].get("tasks").is_none());
    server.shutdown().await;
}

/// The only `Install patches` task of a pool, through the REST API.
async fn install_task(server: &xo_server::RunningServer, pool: &str) -> Value {
    let tasks = install_tasks(server, pool).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    tasks[0].clone()
}

/// The `Install patches` tasks of a pool, oldest first, through the REST API.
async fn install_tasks(server: &xo_server::RunningServer, pool: &str) -> Vec<Value> {
    let r = super::tasks::rest(
        server,
        "GET",
        &format!("/rest/v0/tasks?fields=*&filter=properties:(objectId:{pool})"),
        &[(
            "authorization",
            &super::tasks::basic("admin@admin.net", "admin"),
        )],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let all: Value = serde_json::from_str(&r.body).unwrap();
    let found: Vec<&Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["properties"]["name"] == "Install patches")
        .collect();
    for t in &found {
        assert!(t["href"]
            .as_str()
            .unwrap()
            .ends_with(t["id"].as_str().unwrap()));
    }
    found.into_iter().cloned().collect()
}

#[tokio::test]
async fn patcher_configuration_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), |b| b).await;
    let mut c = Client::admin(&server).await;
    let plugins = c.ok("plugin.get", json!({})).await;
    let patcher = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "patcher")
        .unwrap()
        .clone();
    assert_eq!(
        patcher["configurationSchema"]["properties"]["catalogUrl"]["default"],
        xo_plugin_patcher::DEFAULT_CATALOGUE_URL
    );
    for bad in [
        json!({"catalogUrl": 42}),
        json!({"catalogUrl": "ftp://example.org/updates.xml"}),
        json!({"maxDownload": 0}),
        json!({"unknown": true}),
    ] {
        let e = c
            .err(
                "plugin.configure",
                json!({"id": "patcher", "configuration": bad}),
            )
            .await;
        assert_eq!(e["code"], 10, "{bad}: {e}");
        assert_eq!(e["message"], "invalid parameters", "{bad}: {e}");
        assert!(!e["data"]["errors"].as_array().unwrap().is_empty());
    }
    c.ok(
        "plugin.configure",
        json!({"id": "patcher", "configuration": {"catalogUrl": "http://127.0.0.1:9/u.xml"}}),
    )
    .await;
    let plugin = server
        .app()
        .extension::<xo_plugin_patcher::PatcherPlugin>()
        .unwrap();
    assert_eq!(plugin.config().catalogue_url, "http://127.0.0.1:9/u.xml");
    assert_eq!(
        plugin.config().max_download,
        xo_plugin_patcher::DEFAULT_MAX_DOWNLOAD
    );
    server.shutdown().await;
}

#[tokio::test]
async fn xcpng_pool_list_and_install_patches() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sim("XCP-ng", 1).await;
    let host_uuid = first_uuid(&pool, "host");
    let pkg = json!({"name": "xen-hypervisor", "version": "4.17.5", "release": "2.xcpng8.3", "description": "Xen",
        "changelog": null, "url": null, "size": 4242, "license": "GPLv2"});
    set_pending_packages(&host_uuid, vec![pkg.clone()]);
    let (server, mut c, host) = xo_with(dir.path(), &pool, None).await;
    assert_eq!(host, host_uuid);
    assert_eq!(
        c.ok("pool.listMissingPatches", json!({"host": host})).await,
        json!([pkg])
    );
    assert_eq!(
        c.ok("pool.installPatches", json!({"hosts": [host]})).await,
        json!(true)
    );
    assert_eq!(
        c.ok("pool.listMissingPatches", json!({"host": host})).await,
        json!([])
    );
    // one sub-task per host
    let task = install_task(&server, &pool_id(&pool)).await;
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(task["properties"]["progress"], 100);
    assert_eq!(task["tasks"].as_array().unwrap().len(), 1);
    let sub = &task["tasks"][0];
    assert_eq!(sub["status"], "success");
    assert_eq!(sub["properties"]["objectId"], json!(host_uuid));
    assert_eq!(sub["properties"]["progress"], 100);
    assert!(sub["properties"]["name"]
        .as_str()
        .unwrap()
        .starts_with("Updating host "));
    let stamped = pool.state().read(|db| {
        let h = db.refs("host")[0].clone();
        db.field("host", &h, "other_config")
            .unwrap()
            .get("rpm_patch_installation_time")
            .is_some()
    });
    assert!(stamped);
    // a non-host id
    assert_eq!(
        c.err("pool.listMissingPatches", json!({"host": pool_id(&pool)}))
            .await["code"],
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn xenserver_install_is_aborted_between_patches() {
    let gate = Gate {
        started: Arc::new(tokio::sync::Notify::new()),
        release: Arc::new(tokio::sync::Notify::new()),
    };
    let base = catalogue_gated(Some(gate.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let pool = sim("XenServer", 1).await;
    let (server, mut c, _) = xo_with(dir.path(), &pool, Some(&base)).await;
    // B pulls A in: abort while A downloads, A still completes, B never starts
    let pool_uuid = pool_id(&pool);
    let params = json!({"pool": pool_uuid, "patches": [B]});
    let call = tokio::spawn(async move { c.call("pool.installPatches", params).await });
    gate.started.notified().await;
    let task = install_task(&server, &pool_id(&pool)).await;
    assert_eq!(task["status"], "pending");
    let id = task["id"].as_str().unwrap();
    let auth = super::tasks::basic("admin@admin.net", "admin");
    let r = super::tasks::rest(
        &server,
        "POST",
        &format!("/rest/v0/tasks/{id}/actions/abort"),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(r.status, 202);
    gate.release.notify_one();
    let answer = call.await.unwrap();
    assert_eq!(answer["error"]["message"], "aborted", "{answer}");
    let task = install_task(&server, &pool_id(&pool)).await;
    assert_eq!(task["status"], "aborted", "{task}");
    let subs = task["tasks"].as_array().unwrap();
    assert_eq!(subs.len(), 1, "B never started");
    assert_eq!(subs[0]["properties"]["patchId"], A);
    assert_eq!(
        subs[0]["status"], "aborted",
        "A finished after the abort request"
    );
    let applied = pool.state().read(|db| {
        let h = db.refs("host")[0].clone();
        db.field("host", &h, "updates")
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    });
    assert_eq!(applied, 1);
    server.shutdown().await;
}
