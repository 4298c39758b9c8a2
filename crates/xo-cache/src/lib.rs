//! xo-cache: Xen Orchestra's cache & event engine.
//!
//! - [`transform`]: pure XAPI record → XO object transforms (snapshot-tested);
//! - [`Store`]: XO objects of many pools, per-pool status, incremental re-derivation, one-shot batches
//!   fanned out to subscribers (slow ones are cut off);
//! - [`filter`]: `xo.getAllObjects` filters (lodash `_.matches` objects and complex-matcher strings);
//! - [`sync`]: the per-pool driver consuming a stream of [`SyncInput`].

pub mod filter;
pub mod jsval;
pub mod lookup;
pub mod object;
mod pool_state;
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
pub use sync::{spawn_pool_sync, ChangeOp, ObjectChange, PoolSyncHandle, SyncInput};
