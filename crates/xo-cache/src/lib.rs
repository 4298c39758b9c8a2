//! xo-cache: Xen Orchestra's cache & event engine.
//!
//! - [`transform`]: pure XAPI record → XO object transforms mirroring xo-server's `xapi-object-to-xo.mjs`
//!   (snapshot-tested). Cross-object data (metrics, guest metrics, VBD→VDI→SR→PBD chains, …) is read
//!   through a [`Lookup`]; the [`Ctx`] wrapper records what was read so the store can re-derive exactly the
//!   objects affected by a change.
//! - [`Store`]: XO objects of many pools by id (`Arc<XoObject>`, JSON text serialised once and packed),
//!   per-pool [`PoolStatus`] and [`Store::wait_ready`], atomic [`Store::apply_reset`], incremental
//!   [`Store::apply_changes`], one [`Batch`] per change set broadcast to every [`Subscription`] (a
//!   subscriber that falls behind gets [`SubscriptionError::Lagged`] and is closed, never skipped).
//! - [`filter`]: `xo.getAllObjects` filters: lodash `_.matches` objects and complex-matcher strings.
//! - [`sync`]: the per-pool driver consuming any `Stream<Item = SyncInput>`.
//!
//! Memory & speed with large pools (10,000 VMs ≈ 77,000 records, 54,000 objects; measured end to end by
//! xo-server's `examples/bench_server.rs`):
//! - Raw records keep only the top-level fields some transform reads ([`fields`]: the identifier-like
//!   string literals of the transform sources; `tests/trimmed_records.rs` proves full and trimmed records
//!   give the same objects). Saves ≈ 30 % of the bytes.
//! - Records and objects are kept as JSON text, zstd-packed against a dictionary learnt per XAPI class / XO
//!   type from its first texts ([`packed`]): ≈ 4× smaller than the text. A record is decoded (unpacked and
//!   parsed) only while objects that read it are derived; an [`XoObject`]'s tree is parsed on demand
//!   ([`XoObject::value`] caches it in that object, [`XoObject::matches`] / [`XoObject::to_value`] /
//!   [`XoObject::with_value`] don't) and its text unpacked when written ([`XoObject::write_json`]).
//! - A full load keeps its records and objects plain while it is derived (transform and serialise on 2 threads,
//!   in chunks, each VM next to the records that hang off it; SRs, networks and hosts last, taking the ids of the
//!   thousands of VDIs, VIFs and VMs they list from the uuids noted as earlier chunks were forgotten), and packs
//!   them on 2 threads once the objects are published. The sync driver runs large resets on a blocking thread,
//!   never on an async worker. Internal tables hash with ahash; record texts are decoded with maps bulk-built
//!   (`xapi_types::tree`), not inserted key by key.
//! - xo-server uses jemalloc: with glibc's malloc the resident size after a 10k-VM sync was ~2× the live heap.
//!
//! Wire-shape notes (faithful to xo-server, which serialises with `JSON.stringify`): a single link to a
//! NULL/unknown ref is *absent* (JS `undefined`), a link inside an array is `null`; NaN numbers are `null`;
//! integral numbers are integers. Default templates have id `<pool uuid>-<template uuid>`, `pool_patch`
//! objects use their ref as id; everything else uses the uuid.
//!
//! Adapting `xapi_client::Watch` (a `Stream<Item = WatchEvent>`):
//!
//! ```ignore
//! let input = watch.map(|ev| match ev {
//!     WatchEvent::Reset { records } => SyncInput::Reset {
//!         records: records.into_iter()
//!             .map(|(class, recs)| (class, recs.into_iter().map(|(r, rec)| (r.0, rec)).collect()))
//!             .collect(),
//!     },
//!     WatchEvent::Changes(changes) => SyncInput::Changes(changes.into_iter().map(|c| ObjectChange {
//!         class: c.class,
//!         r#ref: c.obj_ref.0,
//!         op: match c.op { Op::Add => ChangeOp::Add, Op::Mod => ChangeOp::Mod, Op::Del => ChangeOp::Del },
//!         snapshot: c.snapshot,
//!     }).collect()),
//!     WatchEvent::Disconnected { error, retry_in } => SyncInput::Disconnected { error, retry_in: Some(retry_in) },
//! });
//! let handle = xo_cache::spawn_pool_sync(store.clone(), server_id, input);
//! ```

pub mod fields;
pub mod filter;
mod hash;
pub mod jsval;
pub mod lookup;
pub mod object;
pub mod packed;
mod pool_state;
mod ref_set;
pub mod store;
pub mod sync;
pub mod transform;
mod xml;

pub use filter::{Filter, FilterError};
pub use jsval::Record;
pub use lookup::{Ctx, Deps, Lookup, MapLookup};
pub use object::XoObject;
pub use store::{
    Batch, PoolStatus, Store, StoreConfig, Subscription, SubscriptionError, WaitError,
};
pub use sync::{
    spawn_pool_sync, spawn_pool_sync_with, ChangeOp, ObjectChange, PoolSyncHandle, SyncConfig,
    SyncInput,
};
pub use xapi_types::RawRecord;
