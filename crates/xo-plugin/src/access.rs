//! The access-control seam: per-object permission checks for method calls and per-user visibility of
//! objects (for `xo.getAllObjects` and `all` notifications).

use std::collections::HashSet;
use std::sync::Arc;

use crate::{PluginError, UserInfo};

/// Object permissions of non-admin users. Administrators never reach it (the server lets them through).
pub trait AccessControl: Send + Sync + 'static {
    /// The index of the first `(object id, permission)` pair the user lacks, `None` when all are granted.
    fn first_denied(&self, user: &UserInfo, pairs: &[(String, String)]) -> Option<usize>;

    /// Ids of the current objects the user may `view` (computed once and cached; the cache follows
    /// [`AccessControl::batch`] calls and ACL changes).
    fn visible_ids(&self, user: &UserInfo) -> Arc<HashSet<String>>;

    /// Called once for every batch of object changes, in order, after the objects changed and before the
    /// batch is sent: `enter` are added or updated ids, `exit` removed ids. The result says who sees what
    /// of this batch (a removed object is visible to whoever could see it before).
    fn batch(&self, enter: &[&str], exit: &[&str]) -> Box<dyn BatchVisibility>;

    /// XO's `addAcl(subject, object, action)` from the server (e.g. a non-admin creator gets `admin` on
    /// the VM it cloned or snapshotted). Default: not recorded.
    fn add_acl(&self, _subject: &str, _object: &str, _action: &str) -> Result<(), PluginError> {
        Ok(())
    }

    /// An object was destroyed: forget the entries about it. Default: nothing.
    fn object_deleted(&self, _object: &str) {}

    /// A user or group was deleted: forget its entries. Default: nothing.
    fn subject_deleted(&self, _subject: &str) {}

    /// Some batches were missed (the notification forwarder lagged): drop whatever was derived from them.
    fn resync(&self) {}
}

/// Visibility of one batch's ids per user.
pub trait BatchVisibility: Send {
    /// Whether `user` may see `id` in this batch.
    fn visible(&self, user: &UserInfo, id: &str) -> bool;
}
