//! Adding storage: `sr.createNfs`, `sr.createIso` (NFS, SMB or local ISO library), `sr.createExt`,
//! `sr.createLvm` (`packages/xo-server/src/api/sr.mjs`): `SR.create` on the host with XO's device
//! configuration, or, given the `srUuid` of an existing NFS SR or ISO library, XO's `reattachSr` (introduced,
//! then a plugged PBD per host of the pool). Each answers the SR's uuid.

use serde_json::{json, Map, Value};

use super::opt_str;
use super::resolve::{r, resolve, schema, spec_of, Resolve, Xapi};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::Method;

const ON_HOST: &[Resolve] = &[r("host", "host", &["host"], "administrate")];

/// `resolve` entries of the methods of this file.
pub(super) static RESOLVES: &[(&str, &[Resolve])] = &[
    ("sr.createExt", ON_HOST),
    ("sr.createIso", ON_HOST),
    ("sr.createLvm", ON_HOST),
    ("sr.createNfs", ON_HOST),
];

/// What `SR.create` gets beyond the host and the names.
struct NewSr {
    device_config: Map<String, Value>,
    sr_type: &'static str,
    content_type: &'static str,
    shared: bool,
}

fn text(p: &Map<String, Value>, key: &str) -> String {
    opt_str(p, key).unwrap_or_default().to_owned()
}

/// Creates (or, with `srUuid`, reattaches) the SR of `method` on its host; its uuid.
async fn create(
    ctx: Ctx,
    p: Map<String, Value>,
    method: &str,
    new: NewSr,
) -> Result<Value, ApiError> {
    let res = resolve(&ctx, &p, spec_of(RESOLVES, method)).await?;
    let host = res.get("host")?;
    let x = Xapi::of(&res.pools, host)?;
    let (name, description) = (text(&p, "nameLabel"), text(&p, "nameDescription"));
    if let Some(uuid) = opt_str(&p, "srUuid") {
        return reattach(&x, uuid, &name, &description, &new).await;
    }
    let sr = x
        .call(
            "SR.create",
            vec![
                host.xapi_ref().into(),
                Value::Object(new.device_config),
                json!(0),
                name.into(),
                description.into(),
                new.sr_type.into(),
                new.content_type.into(),
                new.shared.into(),
                json!({}),
            ],
        )
        .await?;
    x.field("SR", sr.as_str().unwrap_or_default(), "uuid").await
}

/// XO's `reattachSr`: the SR `uuid` is introduced, then every host of the pool gets a PBD for it, plugged.
async fn reattach(
    x: &Xapi,
    uuid: &str,
    name: &str,
    description: &str,
    new: &NewSr,
) -> Result<Value, ApiError> {
    let sr = x
        .call(
            "SR.introduce",
            vec![
                uuid.into(),
                name.into(),
                description.into(),
                new.sr_type.into(),
                new.content_type.into(),
                new.shared.into(),
                json!({}),
            ],
        )
        .await?;
    let hosts = x.call("host.get_all", vec![]).await?;
    for host in hosts.as_array().into_iter().flatten() {
        let pbd = x
            .call(
                "PBD.create",
                vec![json!({
                    "host": host,
                    "SR": sr,
                    "device_config": new.device_config,
                    "other_config": {},
                })],
            )
            .await?;
        x.call_async("PBD.plug", vec![pbd]).await?;
    }
    Ok(json!(uuid))
}

/// The device configuration of a local SR on `device`, with the preferred image formats when given.
fn on_device(p: &Map<String, Value>) -> Map<String, Value> {
    let mut dc = Map::new();
    dc.insert("device".into(), text(p, "device").into());
    preferred_formats(p, &mut dc);
    dc
}

fn preferred_formats(p: &Map<String, Value>, dc: &mut Map<String, Value>) {
    if let Some(f) = opt_str(p, "preferredImageFormat") {
        dc.insert("preferred-image-formats".into(), f.into());
    }
}

async fn create_nfs(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let mut dc = Map::new();
    dc.insert("server".into(), text(&p, "server").into());
    dc.insert("serverpath".into(), text(&p, "serverPath").into());
    if let Some(v) = opt_str(&p, "nfsVersion").filter(|v| !v.is_empty()) {
        dc.insert("nfsversion".into(), v.into());
    }
    if let Some(o) = opt_str(&p, "nfsOptions").filter(|o| !o.is_empty()) {
        dc.insert("options".into(), o.into());
    }
    preferred_formats(&p, &mut dc);
    let new = NewSr {
        device_config: dc,
        sr_type: "nfs",
        content_type: "user",
        shared: true,
    };
    create(ctx, p, "sr.createNfs", new).await
}

/// An ISO library: `type` `nfs`, `smb` (CIFS share, its path with forward slashes) or `local` (a directory of
/// the host, not shared).
async fn create_iso(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    let kind = text(&p, "type");
    let mut path = text(&p, "path");
    let mut dc = Map::new();
    match kind.as_str() {
        "local" => {
            dc.insert("legacy_mode".into(), "true".into());
        }
        "smb" => {
            path = path.replace('\\', "/");
            dc.insert("type".into(), "cifs".into());
            if let Some(u) = opt_str(&p, "user") {
                dc.insert("username".into(), u.into());
            }
            if let Some(pw) = opt_str(&p, "password") {
                dc.insert("cifspassword".into(), pw.into());
            }
        }
        "nfs" => {
            if let Some(v) = opt_str(&p, "nfsVersion") {
                dc.insert("nfsversion".into(), v.into());
            }
            if let Some(o) = opt_str(&p, "nfsOptions") {
                dc.insert("options".into(), o.into());
            }
        }
        _ => {}
    }
    dc.insert("location".into(), path.into());
    let new = NewSr {
        device_config: dc,
        sr_type: "iso",
        content_type: "iso",
        shared: kind != "local",
    };
    create(ctx, p, "sr.createIso", new).await
}

/// A local SR of type `sr_type` on the host's `device`.
async fn on_local_device(
    ctx: Ctx,
    p: Map<String, Value>,
    method: &str,
    sr_type: &'static str,
) -> Result<Value, ApiError> {
    let new = NewSr {
        device_config: on_device(&p),
        sr_type,
        content_type: "user",
        shared: false,
    };
    create(ctx, p, method, new).await
}

async fn create_ext(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    on_local_device(ctx, p, "sr.createExt", "ext").await
}

async fn create_lvm(ctx: Ctx, p: Map<String, Value>) -> Result<Value, ApiError> {
    on_local_device(ctx, p, "sr.createLvm", "lvm").await
}

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("sr.createNfs", create_nfs)
            .params(schema(r#"{"host": {"type": "string"}, "nameLabel": {"type": "string"}, "nameDescription": {"type": "string", "minLength": 0}, "server": {"type": "string"}, "serverPath": {"type": "string"}, "nfsVersion": {"type": "string", "optional": true}, "nfsOptions": {"type": "string", "optional": true}, "srUuid": {"type": "string", "optional": true}, "preferredImageFormat": {"enum": ["vhd", "qcow2", "vhd, qcow2", "qcow2, vhd"], "optional": true}}"#)),
        Method::new("sr.createIso", create_iso)
            .params(schema(r#"{"host": {"type": "string"}, "nameLabel": {"type": "string"}, "nameDescription": {"type": "string", "minLength": 0}, "path": {"type": "string"}, "type": {"type": "string"}, "user": {"type": "string", "optional": true}, "password": {"type": "string", "optional": true}, "nfsVersion": {"type": "string", "optional": true}, "nfsOptions": {"type": "string", "optional": true}, "srUuid": {"type": "string", "optional": true}}"#)),
        Method::new("sr.createExt", create_ext)
            .params(schema(r#"{"host": {"type": "string"}, "nameLabel": {"type": "string"}, "nameDescription": {"type": "string", "minLength": 0}, "device": {"type": "string"}, "preferredImageFormat": {"enum": ["vhd", "qcow2", "vhd, qcow2", "qcow2, vhd"], "optional": true}}"#)),
        Method::new("sr.createLvm", create_lvm)
            .params(schema(r#"{"host": {"type": "string"}, "nameLabel": {"type": "string"}, "nameDescription": {"type": "string", "minLength": 0}, "device": {"type": "string"}, "preferredImageFormat": {"enum": ["vhd", "qcow2", "vhd, qcow2", "qcow2, vhd"], "optional": true}}"#)),
    ]
}
