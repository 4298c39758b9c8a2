//! XenServer path: what each pool lacks, and installing updates pool-wide (download → unzip in memory → stream to
//! `PUT /update` → precheck on every host → `pool_apply` → `pool_clean`), requirements first.

use std::collections::HashSet;
use std::io::{Cursor, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use xapi_client::{Client, Ref};

use crate::catalogue::install_order;
use crate::{fetch_with_progress, missing_for, Catalogue, Error, Patch, PatcherConfig, Result};

/// What a host runs and has installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPatchState {
    pub host: Ref,
    pub uuid: String,
    pub name_label: String,
    /// `software_version.product_brand` (`XCP-ng`, `XenServer`…).
    pub product_brand: String,
    /// `software_version.product_version`.
    pub product_version: String,
    /// uuids of the pool_updates applied on the host (`host.updates`).
    pub installed: HashSet<String>,
}

/// One step of an installation, for progress reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Index of the patch being installed, and how many there are.
    pub index: usize,
    pub total: usize,
    /// uuid and name of the patch.
    pub uuid: String,
    pub name: String,
    /// `download`, `upload`, `precheck`, `apply`, `clean`, `done`.
    pub step: &'static str,
    /// While downloading or uploading: `(bytes so far, total if known)`; `None` when a step starts.
    pub bytes: Option<(u64, Option<u64>)>,
}

/// Every host of the pool with its product version and applied updates.
pub async fn host_state(client: &Client) -> Result<Vec<HostPatchState>> {
    let updates = client.get_all_records("pool_update").await?;
    let uuid_of = |r: &str| {
        updates
            .iter()
            .find(|(u, _)| u.0 == r)
            .and_then(|(_, rec)| rec.get("uuid")?.as_str().map(str::to_owned))
    };
    let mut out = Vec::new();
    for (r, h) in client.get_all_records("host").await? {
        let sv = |k: &str| {
            h.get("software_version")
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let installed = h
            .get("updates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| uuid_of(v.as_str()?))
            .collect();
        out.push(HostPatchState {
            uuid: h
                .get("uuid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            name_label: h
                .get("name_label")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            product_brand: sv("product_brand"),
            product_version: sv("product_version"),
            installed,
            host: r,
        });
    }
    Ok(out)
}

/// Patches missing on the host with uuid `host_uuid` (or on any host of the pool when `None`), sorted by date.
pub async fn list_missing(
    client: &Client,
    cat: &Catalogue,
    host_uuid: Option<&str>,
) -> Result<Vec<Patch>> {
    let hosts = host_state(client).await?;
    let mut out: Vec<Patch> = Vec::new();
    for h in hosts
        .iter()
        .filter(|h| host_uuid.is_none_or(|u| u == h.uuid))
    {
        for p in missing_for(cat, &h.product_version, &h.installed) {
            if !out.iter().any(|q| q.uuid == p.uuid) {
                out.push(p);
            }
        }
    }
    out.sort_by(|a, b| (&a.date, &a.name).cmp(&(&b.date, &b.name)));
    Ok(out)
}

/// Install `patches` (uuids; all missing ones when empty) and their requirements pool-wide, requirements first.
/// Returns the uuids installed, in order. Stops at the first failure (earlier patches stay applied).
pub async fn install(
    client: &Client,
    cat: &Catalogue,
    config: &PatcherConfig,
    patches: &[String],
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Vec<String>> {
    install_abortable(client, cat, config, patches, progress, &|| false).await
}

/// [`install`], checking `aborted()` before each patch: once it holds, stops with [`Error::Aborted`] (the patches
/// already installed stay).
pub async fn install_abortable(
    client: &Client,
    cat: &Catalogue,
    config: &PatcherConfig,
    patches: &[String],
    progress: &mut (dyn FnMut(Progress) + Send),
    aborted: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<String>> {
    let hosts = host_state(client).await?;
    // installed everywhere = nothing left to do for it
    let mut everywhere: Option<HashSet<String>> = None;
    for h in &hosts {
        everywhere = Some(match everywhere {
            None => h.installed.clone(),
            Some(s) => s.intersection(&h.installed).cloned().collect(),
        });
    }
    let everywhere = everywhere.unwrap_or_default();
    let wanted: Vec<String> = if patches.is_empty() {
        list_missing(client, cat, None)
            .await?
            .into_iter()
            .map(|p| p.uuid)
            .collect()
    } else {
        patches.to_vec()
    };
    let order = install_order(cat, &wanted, &everywhere)?;
    let total = order.len();
    let mut done = Vec::new();
    for (index, p) in order.iter().enumerate() {
        if aborted() {
            return Err(Error::Aborted);
        }
        let event = |step, bytes| Progress {
            index,
            total,
            uuid: p.uuid.clone(),
            name: p.name.clone(),
            step,
            bytes,
        };
        progress(event("download", None));
        let zip = fetch_with_progress(&p.url, config.max_download, &mut |done, length| {
            progress(event("download", Some((done, length))))
        })
        .await?;
        progress(event("upload", None));
        let update = upload(client, zip, &mut |done, length| {
            progress(event("upload", Some((done, Some(length)))))
        })
        .await?;
        let mut step = |step| progress(event(step, None));
        step("precheck");
        let outcome = apply(client, &update, &hosts, &mut step).await;
        step("clean");
        if let Err(e) = client
            .call("pool_update.pool_clean", vec![json!(update.0)])
            .await
        {
            tracing::debug!("pool_update.pool_clean: {e}");
        }
        if let Err(e) = outcome {
            // never applied anywhere: forget it so a later attempt can upload it again
            let _ = client
                .call("pool_update.destroy", vec![json!(update.0)])
                .await;
            return Err(e);
        }
        step("done");
        tracing::info!(patch = %p.name, "update installed");
        done.push(p.uuid.clone());
    }
    Ok(done)
}

async fn apply(
    client: &Client,
    update: &Ref,
    hosts: &[HostPatchState],
    step: &mut (dyn FnMut(&'static str) + Send),
) -> Result<()> {
    for h in hosts {
        match client
            .call(
                "pool_update.precheck",
                vec![json!(update.0), json!(h.host.0)],
            )
            .await
        {
            Ok(_) => {}
            Err(xapi_client::Error::Xapi(e)) if e.code == "UPDATE_ALREADY_APPLIED" => {}
            Err(e) => return Err(e.into()),
        }
    }
    step("apply");
    client
        .call_async("pool_update.pool_apply", vec![json!(update.0)])
        .await?;
    Ok(())
}

/// Find the update (`.iso`) in the zip and stream it to `PUT /update`; the new pool_update's ref. `progress(sent,
/// size)` is called while the body streams (every 100 ms) and once it is all sent.
async fn upload(
    client: &Client,
    zip: Bytes,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Ref> {
    let (name, size) = {
        let zip = zip.clone();
        tokio::task::spawn_blocking(move || -> Result<(String, u64)> {
            let mut a =
                zip::ZipArchive::new(Cursor::new(zip)).map_err(|e| Error::Zip(e.to_string()))?;
            for i in 0..a.len() {
                let f = a.by_index(i).map_err(|e| Error::Zip(e.to_string()))?;
                if f.is_file() && f.name().to_ascii_lowercase().ends_with(".iso") {
                    return Ok((f.name().to_owned(), f.size()));
                }
            }
            Err(Error::Zip("no update (.iso) in the archive".into()))
        })
        .await
        .map_err(|e| Error::Zip(e.to_string()))??
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::result::Result<Bytes, String>>(4);
    let reader = tokio::task::spawn_blocking(move || {
        let run = || -> std::result::Result<(), String> {
            let mut a = zip::ZipArchive::new(Cursor::new(zip)).map_err(|e| e.to_string())?;
            let mut f = a.by_name(&name).map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = f.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Ok(());
                }
                if tx
                    .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                    .is_err()
                {
                    return Err("upload stopped".into());
                }
            }
        };
        let out = run();
        if let Err(e) = &out {
            let _ = tx.blocking_send(Err(e.clone()));
        }
        out
    });
    let counter = Arc::new(AtomicU64::new(0));
    let count = counter.clone();
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
            .inspect(move |c| {
                if let Ok(b) = c {
                    count.fetch_add(b.len() as u64, Ordering::Relaxed);
                }
            });
    let task = client.create_task("Update upload", "xo-rs patcher").await?;
    let sent = {
        let put = crate::upload::put_update(client, &task, size, stream);
        tokio::pin!(put);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
        loop {
            tokio::select! {
                r = &mut put => break r,
                _ = tick.tick() => progress(counter.load(Ordering::Relaxed), size),
            }
        }
    };
    if sent.is_ok() {
        progress(counter.load(Ordering::Relaxed), size);
    }
    let read = reader.await.map_err(|e| Error::Zip(e.to_string()))?;
    let outcome = match (&sent, read) {
        (_, Err(e)) => Err(Error::Zip(e)),
        (Err(e), Ok(())) => Err(Error::Transport(e.to_string())),
        _ => client
            .wait_task(&task)
            .await
            .and_then(|rec| xapi_client::task_outcome(None, &rec))
            .map_err(Error::from)
            .and_then(|v| match v {
                Value::String(s) if s.starts_with("OpaqueRef:") => Ok(Ref(s)),
                other => Err(Error::Transport(format!(
                    "unexpected upload result {other}"
                ))),
            }),
    };
    let _ = client.call("task.destroy", vec![json!(task.0)]).await;
    outcome
}
