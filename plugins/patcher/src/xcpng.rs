//! XCP-ng path: the host-side `updater.py` plugin (`check_update` lists pending packages, `update` installs them).

use serde_json::{json, Value};
use xapi_client::{Client, Ref};

use crate::{Error, Result};

/// Call `updater.py` `func`, retrying while the plugin reports it is busy (as XO does).
async fn call(client: &Client, host: &Ref, func: &str) -> Result<Value> {
    let mut tries = 0;
    loop {
        let r = client
            .call(
                "host.call_plugin",
                vec![json!(host.0), json!("updater.py"), json!(func), json!({})],
            )
            .await;
        match r {
            Err(xapi_client::Error::Xapi(e))
                if tries < 10 && e.params.iter().any(|p| p.contains("is busy")) =>
            {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Pending packages on `host`: `[{name, version, release, description, changelog, url, size, license}]`, as the
/// plugin returns them; an `{error}` payload becomes [`Error::Updater`].
pub async fn check_update(client: &Client, host: &Ref) -> Result<Vec<Value>> {
    let v = call(client, host, "check_update").await?;
    let text = v.as_str().unwrap_or_default();
    let parsed: Value = serde_json::from_str(text)
        .map_err(|e| Error::Updater(format!("bad check_update answer: {e}")))?;
    match parsed {
        Value::Array(a) => Ok(a),
        Value::Object(o) if o.contains_key("error") => Err(Error::Updater(o["error"].to_string())),
        other => Err(Error::Updater(format!(
            "unexpected check_update answer {other}"
        ))),
    }
}

/// Install every pending package on `host` (`updater.py update`); a JSON `{exit, stderr}` answer with a non-zero
/// exit becomes [`Error::Updater`] with the stderr.
pub async fn update(client: &Client, host: &Ref) -> Result<()> {
    let v = call(client, host, "update").await?;
    if let Some(Value::Object(o)) = v.as_str().and_then(|t| serde_json::from_str(t).ok()) {
        if o.get("exit")
            .and_then(Value::as_i64)
            .is_some_and(|c| c != 0)
        {
            let err = o
                .get("stderr")
                .and_then(Value::as_str)
                .unwrap_or("update failed");
            return Err(Error::Updater(err.to_owned()));
        }
    }
    Ok(())
}
