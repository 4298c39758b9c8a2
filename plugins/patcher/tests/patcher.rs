//! Patcher against an in-process xapi-sim and a catalogue server on 127.0.0.1 (XenServer path), and the XCP-ng
//! updater plugin.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use xapi_client::{Client, ClientOptions, Ref};
use xapi_sim::ops::pool_update::{encode_update, set_pending_packages};
use xapi_sim::{RunningPool, Sim};
use xo_plugin_patcher::{
    fetch_catalogue, install, list_missing, xcpng, Catalogue, Error, PatcherConfig, Progress,
};

/// Serve `files` (path → body) on 127.0.0.1; 404 otherwise. Returns the base URL.
async fn catalogue_server(files: HashMap<String, Bytes>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let files = Arc::new(files);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let files = files.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let files = files.clone();
                    async move {
                        let r = match files.get(req.uri().path()) {
                            Some(b) => hyper::Response::new(Full::new(b.clone())),
                            None => {
                                let mut r =
                                    hyper::Response::new(Full::new(Bytes::from_static(b"nope")));
                                *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                                r
                            }
                        };
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    base
}

/// A zip holding `name` (deflated) with a sim update ISO inside.
fn update_zip(name: &str, meta: Value) -> Bytes {
    let iso = encode_update(&meta, &vec![7u8; 300_000]);
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file(name, o).unwrap();
    w.write_all(&iso).unwrap();
    w.start_file("README.txt", o).unwrap();
    w.write_all(b"read me").unwrap();
    Bytes::from(w.finish().unwrap().into_inner())
}

fn catalogue_xml(base: &str, version: &str, patches: &[(&str, &str, &str, &[&str])]) -> String {
    let mut x = String::from("<?xml version=\"1.0\"?>\n<patchdata><patches>");
    for (uuid, name, guidance, reqs) in patches {
        x += &format!(
            r#"<patch uuid="{uuid}" name-label="{name}" name-description="{name} fixes" after-apply-guidance="{guidance}" url="{base}/doc/{name}" patch-url="{base}/{name}.zip" version="1.0" timestamp="2024-01-0{n}T00:00:00Z"><conflictingpatches/><requiredpatches>"#,
            n = name.len() % 9 + 1
        );
        for r in *reqs {
            x += &format!(r#"<requiredpatch uuid="{r}"/>"#);
        }
        x += "</requiredpatches></patch>";
    }
    x += &format!(r#"</patches><serverversions><version value="{version}">"#);
    for (uuid, ..) in patches {
        x += &format!(r#"<patch uuid="{uuid}"/>"#);
    }
    x + "</version></serverversions></patchdata>"
}

const A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const B: &str = "bbbbbbbb-0000-4000-8000-000000000002";
const C: &str = "cccccccc-0000-4000-8000-000000000003";

/// A XenServer 8.2.1 pool of `hosts` hosts and a client on it.
async fn xenserver_pool(hosts: usize) -> (RunningPool, Client) {
    let sim = Sim::builder().hosts(hosts).vms(0).build().unwrap();
    sim.state().write(|db| {
        for h in db.refs("host") {
            let mut sv = db.field("host", &h, "software_version").unwrap().clone();
            sv["product_brand"] = json!("XenServer");
            sv["product_version"] = json!("8.2.1");
            db.set_field("host", &h, "software_version", sv).unwrap();
        }
    });
    let pool = sim
        .serve("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let c = Client::connect(ClientOptions::new(pool.master_url(), "root", "root"))
        .await
        .unwrap();
    (pool, c)
}

fn meta(uuid: &str, name: &str, extra: Value) -> Value {
    let mut m = json!({"uuid": uuid, "name_label": name, "version": "1.0", "after_apply_guidance": ["restartHost"]});
    m.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    m
}

/// Catalogue with A, B (requires A) for 8.2.1 and matching zips; `tweak` may replace zips.
async fn setup(
    tweak: impl FnOnce(&mut HashMap<String, Bytes>),
) -> (String, PatcherConfig, Catalogue) {
    // the catalogue names the server's URL: serve first, fill the catalogue in afterwards
    let mut files = HashMap::new();
    files.insert(
        "/XS82E001.zip".to_owned(),
        update_zip("XS82E001.iso", meta(A, "XS82E001", json!({}))),
    );
    files.insert(
        "/XS82E002.zip".to_owned(),
        update_zip(
            "XS82E002.iso",
            meta(
                B,
                "XS82E002",
                json!({"requires": [A], "after_apply_guidance": []}),
            ),
        ),
    );
    tweak(&mut files);
    let shared = Arc::new(parking_lot_free::Cell::default());
    let base = catalogue_server_lazy(files, shared.clone()).await;
    let xml = catalogue_xml(
        &base,
        "8.2.1",
        &[
            (A, "XS82E001", "restartHost", &[]),
            (B, "XS82E002", "", &[A]),
        ],
    );
    shared.set(Bytes::from(xml));
    let config = PatcherConfig {
        catalogue_url: format!("{base}/updates.xml"),
        ..PatcherConfig::default()
    };
    let cat = fetch_catalogue(&config.catalogue_url, config.max_download)
        .await
        .unwrap();
    (base, config, cat)
}

mod parking_lot_free {
    //! A set-once cell for the catalogue body.
    use bytes::Bytes;
    use std::sync::Mutex;
    #[derive(Default, Debug)]
    pub struct Cell(Mutex<Bytes>);
    impl Cell {
        pub fn set(&self, b: Bytes) {
            *self.0.lock().unwrap() = b;
        }
        pub fn get(&self) -> Bytes {
            self.0.lock().unwrap().clone()
        }
    }
}

/// Like [`catalogue_server`], `/updates.xml` being read from `xml` at request time.
async fn catalogue_server_lazy(
    files: HashMap<String, Bytes>,
    xml: Arc<parking_lot_free::Cell>,
) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let files = Arc::new(files);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (files, xml) = (files.clone(), xml.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (files, xml) = (files.clone(), xml.clone());
                    async move {
                        let path = req.uri().path();
                        let body = if path == "/updates.xml" {
                            Some(xml.get())
                        } else {
                            files.get(path).cloned()
                        };
                        let r = match body {
                            Some(b) => hyper::Response::new(Full::new(b)),
                            None => {
                                let mut r =
                                    hyper::Response::new(Full::new(Bytes::from_static(b"nope")));
                                *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                                r
                            }
                        };
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    base
}

fn uuids(v: &[xo_plugin_patcher::Patch]) -> Vec<&str> {
    v.iter().map(|p| p.uuid.as_str()).collect()
}

async fn xapi_code(r: xo_plugin_patcher::Result<Vec<String>>) -> (String, Vec<String>) {
    match r {
        Err(Error::Xapi(xapi_client::Error::Xapi(e))) => (e.code, e.params),
        other => panic!("expected an XAPI error, got {other:?}"),
    }
}

async fn pool_updates(c: &Client) -> Vec<(Ref, serde_json::Map<String, Value>)> {
    c.get_all_records("pool_update").await.unwrap()
}

#[tokio::test]
async fn xenserver_list_and_install_requirements_first() {
    let (_base, config, cat) = setup(|_| {}).await;
    let (pool, c) = xenserver_pool(2).await;
    assert_eq!(uuids(&list_missing(&c, &cat, None).await.unwrap()), [A, B]);
    let mut steps: Vec<Progress> = Vec::new();
    let done = install(&c, &cat, &config, &[B.to_owned()], &mut |p| steps.push(p))
        .await
        .unwrap();
    assert_eq!(done, [A, B]);
    // byte counts while downloading and uploading, ending with the whole archive / update
    for step in ["download", "upload"] {
        let last = steps
            .iter()
            .rfind(|p| p.index == 0 && p.step == step && p.bytes.is_some())
            .unwrap_or_else(|| panic!("no {step} progress"));
        let (done, total) = last.bytes.unwrap();
        assert_eq!(Some(done), total, "{step}");
    }
    let seq: Vec<(usize, &str)> = steps
        .iter()
        .filter(|p| p.bytes.is_none())
        .map(|p| (p.index, p.step))
        .collect();
    assert_eq!(
        &seq[..7],
        [
            (0, "download"),
            (0, "upload"),
            (0, "precheck"),
            (0, "apply"),
            (0, "clean"),
            (0, "done"),
            (1, "download")
        ]
    );
    assert!(steps.iter().all(|p| p.total == 2));
    // every host has both, A requires a reboot, the upload VDIs are gone
    for (_, h) in c.get_all_records("host").await.unwrap() {
        assert_eq!(h["updates"].as_array().unwrap().len(), 2);
        assert_eq!(h["updates_requiring_reboot"].as_array().unwrap().len(), 1);
    }
    let ups = pool_updates(&c).await;
    assert_eq!(ups.len(), 2);
    for (_, u) in &ups {
        assert_eq!(u["hosts"].as_array().unwrap().len(), 2);
        assert_eq!(u["vdi"], json!("OpaqueRef:NULL"));
    }
    let vdis = c.get_all_records("VDI").await.unwrap();
    assert!(!vdis
        .iter()
        .any(|(_, v)| v["name_label"] == json!("Update upload")));
    assert!(list_missing(&c, &cat, None).await.unwrap().is_empty());
    let host_uuid = c.get_all_records("host").await.unwrap()[0].1["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(list_missing(&c, &cat, Some(&host_uuid))
        .await
        .unwrap()
        .is_empty());
    // installing again is a no-op (already installed everywhere)
    assert!(install(&c, &cat, &config, &[A.to_owned()], &mut |_| {})
        .await
        .unwrap()
        .is_empty());
    drop(pool);
}

#[tokio::test]
async fn xenserver_install_all_missing_when_none_given() {
    let (_base, config, cat) = setup(|_| {}).await;
    let (_pool, c) = xenserver_pool(1).await;
    assert_eq!(
        install(&c, &cat, &config, &[], &mut |_| {}).await.unwrap(),
        [A, B]
    );
    assert!(list_missing(&c, &cat, None).await.unwrap().is_empty());
}

#[tokio::test]
async fn download_404_fails_before_touching_the_pool() {
    let (_base, config, cat) = setup(|f| {
        f.remove("/XS82E001.zip");
    })
    .await;
    let (_pool, c) = xenserver_pool(1).await;
    let r = install(&c, &cat, &config, &[A.to_owned()], &mut |_| {}).await;
    assert!(
        matches!(r, Err(Error::Download { status: 404, .. })),
        "{r:?}"
    );
    assert!(pool_updates(&c).await.is_empty());
    // catalogue 404 too
    let r = fetch_catalogue(&format!("{}/missing.xml", _base), 1 << 20).await;
    assert!(
        matches!(r, Err(Error::Download { status: 404, .. })),
        "{r:?}"
    );
}

#[tokio::test]
async fn corrupt_zip_and_zip_without_update_are_refused() {
    let (_base, config, cat) = setup(|f| {
        let mut z = f["/XS82E001.zip"].to_vec();
        let n = z.len();
        z.truncate(n / 2);
        f.insert("/XS82E001.zip".into(), Bytes::from(z));
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.start_file("notes.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(b"no iso here").unwrap();
        f.insert(
            "/XS82E002.zip".into(),
            Bytes::from(w.finish().unwrap().into_inner()),
        );
    })
    .await;
    let (_pool, c) = xenserver_pool(1).await;
    let r = install(&c, &cat, &config, &[A.to_owned()], &mut |_| {}).await;
    assert!(matches!(r, Err(Error::Zip(_))), "{r:?}");
    let r = install(&c, &cat, &config, &[B.to_owned()], &mut |_| {}).await;
    assert!(matches!(r, Err(Error::Zip(_))), "{r:?}");
    assert!(pool_updates(&c).await.is_empty());
    let vdis = c.get_all_records("VDI").await.unwrap();
    assert!(!vdis
        .iter()
        .any(|(_, v)| v["name_label"] == json!("Update upload")));
}

#[tokio::test]
async fn precheck_failure_leaves_nothing_behind() {
    let (_base, config, cat) = setup(|f| {
        f.insert(
            "/XS82E001.zip".into(),
            update_zip(
                "XS82E001.iso",
                meta(A, "XS82E001", json!({"product_version": "7.1.2"})),
            ),
        );
    })
    .await;
    let (_pool, c) = xenserver_pool(2).await;
    let (code, params) =
        xapi_code(install(&c, &cat, &config, &[A.to_owned()], &mut |_| {}).await).await;
    assert_eq!(code, "UPDATE_PRECHECK_FAILED_WRONG_SERVER_VERSION");
    assert_eq!(params[1..], ["8.2.1".to_owned(), "7.1.2".to_owned()]);
    assert!(pool_updates(&c).await.is_empty());
    let vdis = c.get_all_records("VDI").await.unwrap();
    assert!(!vdis
        .iter()
        .any(|(_, v)| v["name_label"] == json!("Update upload")));
}

#[tokio::test]
async fn apply_failure_is_reported() {
    let (_base, config, cat) = setup(|f| {
        f.insert(
            "/XS82E001.zip".into(),
            update_zip(
                "XS82E001.iso",
                meta(A, "XS82E001", json!({"apply_fails": true})),
            ),
        );
    })
    .await;
    let (_pool, c) = xenserver_pool(2).await;
    let (code, params) =
        xapi_code(install(&c, &cat, &config, &[A.to_owned()], &mut |_| {}).await).await;
    assert_eq!(code, "UPDATE_POOL_APPLY_FAILED");
    assert_eq!(params.len(), 2);
}

/// Upload one sim update ISO to `/update` directly; the task outcome.
async fn upload(c: &Client, iso: Vec<u8>) -> xapi_client::Result<Value> {
    let task = c.create_task("t", "").await?;
    let len = iso.len() as u64;
    let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(iso))]);
    let _ = c
        .put_resource("/update", &[("task_id", task.0.clone())], Some(len), body)
        .await;
    let rec = c.wait_task(&task).await?;
    xapi_client::task_outcome(None, &rec)
}

#[tokio::test]
async fn sim_pool_update_errors() {
    let (_pool, c) = xenserver_pool(2).await;
    let code = |r: xapi_client::Result<Value>| match r {
        Err(xapi_client::Error::Xapi(e)) => e.code,
        other => panic!("expected an XAPI error, got {other:?}"),
    };
    // not an update ISO
    assert_eq!(
        code(upload(&c, b"PK garbage".to_vec()).await),
        "INVALID_UPDATE"
    );
    assert_eq!(
        code(upload(&c, encode_update(&json!({"uuid": C}), b"")).await),
        "INVALID_UPDATE"
    );
    assert!(pool_updates(&c).await.is_empty());
    let iso = encode_update(&meta(C, "XS82E003", json!({"requires": [A]})), b"payload");
    let u = upload(&c, iso.clone()).await.unwrap();
    let u = u.as_str().unwrap().to_owned();
    assert_eq!(code(upload(&c, iso).await), "UPDATE_ALREADY_EXISTS");
    let host = c.get_all_records("host").await.unwrap()[0].0.clone();
    let e = c
        .call("pool_update.precheck", vec![json!(u), json!(host.0)])
        .await;
    assert_eq!(code(e), "UPDATE_PRECHECK_FAILED_PREREQUISITE_MISSING");
    // without requirements
    let iso = encode_update(
        &meta(
            B,
            "XS82E002",
            json!({"after_apply_guidance": ["restartXAPI"]}),
        ),
        b"x",
    );
    let u = upload(&c, iso).await.unwrap().as_str().unwrap().to_owned();
    assert_eq!(
        c.call("pool_update.precheck", vec![json!(u), json!(host.0)])
            .await
            .unwrap(),
        json!("ok")
    );
    c.call("pool_update.apply", vec![json!(u), json!(host.0)])
        .await
        .unwrap();
    assert_eq!(
        code(
            c.call("pool_update.precheck", vec![json!(u), json!(host.0)])
                .await
        ),
        "UPDATE_ALREADY_APPLIED"
    );
    assert_eq!(
        code(
            c.call("pool_update.apply", vec![json!(u), json!(host.0)])
                .await
        ),
        "UPDATE_ALREADY_APPLIED"
    );
    assert_eq!(
        code(c.call("pool_update.destroy", vec![json!(u)]).await),
        "UPDATE_IS_APPLIED"
    );
    c.call("pool_update.pool_apply", vec![json!(u)])
        .await
        .unwrap();
    assert_eq!(
        code(c.call("pool_update.pool_apply", vec![json!(u)]).await),
        "UPDATE_ALREADY_APPLIED_IN_POOL"
    );
    let h = c.get_record("host", &host).await.unwrap();
    assert!(h["updates_requiring_reboot"].as_array().unwrap().is_empty());
    c.call("pool_update.pool_clean", vec![json!(u)])
        .await
        .unwrap();
    // an unapplied update can be destroyed (with its VDI)
    let d = encode_update(
        &meta(
            "dddddddd-0000-4000-8000-000000000004",
            "XS82E004",
            json!({}),
        ),
        b"x",
    );
    let d = upload(&c, d).await.unwrap().as_str().unwrap().to_owned();
    let vdi = c.call("pool_update.get_vdi", vec![json!(d)]).await.unwrap();
    c.call("pool_update.destroy", vec![json!(d)]).await.unwrap();
    assert_eq!(
        code(c.call("VDI.get_uuid", vec![vdi]).await),
        "HANDLE_INVALID"
    );
    // an empty body
    let r = c
        .put_resource(
            "/update",
            &[],
            Some(0),
            futures::stream::empty::<Result<Bytes, std::io::Error>>(),
        )
        .await;
    assert!(
        matches!(r, Err(xapi_client::Error::Http { status: 400, .. })),
        "{r:?}"
    );
}

#[tokio::test]
async fn xcpng_check_update_install_then_empty() {
    let sim = Sim::builder().hosts(2).vms(0).build().unwrap();
    let pool = sim
        .serve("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let c = Client::connect(ClientOptions::new(pool.master_url(), "root", "root"))
        .await
        .unwrap();
    let hosts = c.get_all_records("host").await.unwrap();
    let pkg = json!({"name": "xapi-core", "version": "24.19.2", "release": "1.9.xcpng8.3", "description": "xapi",
        "changelog": {"date": 1718000000, "description": "fixes", "author": "Vates"}, "url": null, "size": 1234, "license": "LGPL"});
    set_pending_packages(hosts[0].1["uuid"].as_str().unwrap(), vec![pkg.clone()]);
    assert_eq!(xcpng::check_update(&c, &hosts[0].0).await.unwrap(), [pkg]);
    assert!(xcpng::check_update(&c, &hosts[1].0)
        .await
        .unwrap()
        .is_empty());
    xcpng::update(&c, &hosts[0].0).await.unwrap();
    assert!(xcpng::check_update(&c, &hosts[0].0)
        .await
        .unwrap()
        .is_empty());
    // unknown plugin function
    let e = c
        .call(
            "host.call_plugin",
            vec![
                json!(hosts[0].0 .0),
                json!("updater.py"),
                json!("nope"),
                json!({}),
            ],
        )
        .await;
    assert!(matches!(e, Err(xapi_client::Error::Xapi(x)) if x.code == "XENAPI_PLUGIN_FAILURE"));
}

#[tokio::test]
async fn catalogue_server_helper_serves_files() {
    let mut f = HashMap::new();
    f.insert("/x".to_owned(), Bytes::from_static(b"hello"));
    let base = catalogue_server(f).await;
    assert_eq!(
        &xo_plugin_patcher::fetch(&format!("{base}/x"), 10)
            .await
            .unwrap()[..],
        b"hello"
    );
    let r = xo_plugin_patcher::fetch(&format!("{base}/x"), 3).await;
    assert!(matches!(r, Err(Error::TooLarge { .. })), "{r:?}");
    let r = fetch_catalogue(&format!("{base}/x"), 10).await;
    assert!(matches!(r, Err(Error::Catalogue(_))), "{r:?}");
}

#[tokio::test]
async fn xenserver_install_stops_when_aborted() {
    let (_base, config, cat) = setup(|_| {}).await;
    let (_pool, c) = xenserver_pool(1).await;
    let mut steps = 0;
    let r = xo_plugin_patcher::install_abortable(
        &c,
        &cat,
        &config,
        &[B.to_owned()],
        &mut |_| steps += 1,
        &|| true,
    )
    .await;
    assert!(matches!(r, Err(Error::Aborted)), "{r:?}");
    assert_eq!(steps, 0);
    assert_eq!(uuids(&list_missing(&c, &cat, None).await.unwrap()), [A, B]);
}
