//! `xo.*`: `xo.getAllObjects` over the XAPI object cache (filter object or complex-matcher string, limit,
//! NDJSON download through a one-shot `$getFrom` URL).

use serde_json::{json, Map, Value};
use xo_cache::Filter;

use crate::context::Ctx;
use crate::error::ApiError;
use crate::registry::{Method, Reply};
use crate::transfer::{chunked_body, Transfers};
use crate::xapi::Pools;

/// NDJSON chunk size (bytes) of the `$getFrom` stream.
const CHUNK: usize = 64 * 1024;

async fn get_all_objects(ctx: Ctx, p: Map<String, Value>) -> Result<Reply, ApiError> {
    let filter = Filter::from_param(p.get("filter"))
        .map_err(|e| ApiError::invalid_parameters_message(format!("invalid filter: {e}")))?;
    let limit = match p.get("limit") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            // a fractional limit behaves as its floor, a negative one as 0 (lodash `take`)
            Some(n) if n.is_finite() => Some(n.max(0.0).floor() as usize),
            Some(n) if n > 0.0 => None,
            _ => Some(0),
        },
    };
    let pools = Pools::of(&ctx.app)?;
    pools.wait_connecting().await;
    let objects = crate::plugins::visibility::select_visible(
        &ctx.app,
        ctx.user.as_ref(),
        pools.cache(),
        |o| o.matches(&filter),
        limit,
    );
    if p.get("ndjson").and_then(Value::as_bool) == Some(true) {
        let transfers = Transfers::of(&ctx.app);
        return Ok(Reply::Value(transfers.get_from(
            None,
            "application/json",
            move || {
                let mut it = objects.into_iter().peekable();
                chunked_body(std::iter::from_fn(move || {
                    it.peek()?;
                    let mut chunk = String::with_capacity(CHUNK + 4096);
                    while chunk.len() < CHUNK {
                        let Some(o) = it.next() else { break };
                        o.write_json(&mut chunk);
                        chunk.push('\n');
                    }
                    Some(chunk)
                }))
            },
        )));
    }
    // `{"<id>":<object>,…}` written from the objects' own texts, not parsed and serialised again.
    Ok(Reply::Json(xo_cache::object::items_json(
        objects.iter().map(|o| &**o),
    )))
}

pub(super) fn methods() -> Vec<Method> {
    vec![Method::new_reply("xo.getAllObjects", get_all_objects)
        .description("Returns all XO objects")
        .params(json!({
            "filter": {"type": ["object", "string"], "optional": true},
            "limit": {"type": "number", "optional": true},
            "ndjson": {"type": "boolean", "optional": true},
        }))]
}
