//! Per-user object visibility: `all` notifications and `xo.getAllObjects` carry only what the user may
//! view (administrators see everything; without an access control, non-admins see nothing). The access
//! control keeps per-user visible sets, updated once per batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use xo_cache::store::{enter_notifications_for, exit_notification_for, MAX_FRAME_BYTES};
use xo_cache::{Batch, XoObject};
use xo_plugin::UserInfo;
use xo_store::Permission;

use super::{user_info, Plugins};
use crate::app::{App, PublishStats};
use crate::connection::{Connection, TrySend};

/// What a user may see: `None` everything (admins), otherwise the set of visible ids.
pub fn visible_filter(app: &App, user: &xo_store::User) -> Option<Arc<HashSet<String>>> {
    if user.permission == Permission::Admin {
        return None;
    }
    Some(
        app.extension::<Plugins>()
            .and_then(|p| p.access())
            .map(|a| a.visible_ids(&user_info(user)))
            .unwrap_or_default(),
    )
}

/// `xo.getAllObjects`' selection for `user`: objects matching `pred` that the user may view, at most
/// `limit` (the limit counts visible objects only).
pub fn select_visible(
    app: &App,
    user: Option<&xo_store::User>,
    cache: &xo_cache::Store,
    pred: impl Fn(&XoObject) -> bool,
    limit: Option<usize>,
) -> Vec<Arc<XoObject>> {
    match user.map(|u| visible_filter(app, u)) {
        Some(None) => cache.find(pred, limit),
        Some(Some(set)) if set.is_empty() => Vec::new(),
        Some(Some(set)) => cache.find(|o| set.contains(o.id()) && pred(o), limit),
        None => Vec::new(),
    }
}

fn deliver(c: &Connection, frames: &[Utf8Bytes], stats: &mut PublishStats) {
    for f in frames {
        match c.try_send(f.clone()) {
            TrySend::Queued => {}
            TrySend::CutOff => {
                stats.cut_off += 1;
                return;
            }
            TrySend::Closed => return,
        }
    }
    stats.delivered += 1;
}

/// Tells the access control that batches were missed (its per-user sets are rebuilt from the objects).
pub fn resync(app: &App) {
    if let Some(a) = app.extension::<Plugins>().and_then(|p| p.access()) {
        a.resync();
    }
}

/// Sends one xo-cache batch as `all` notifications: admins share the batch's frames (serialised once);
/// every other signed-in user gets the visible part, serialised once per user (users seeing all of it
/// share the batch's frames too). The access control sees every batch, even with nobody connected, to
/// keep its per-user sets current.
pub fn publish_batch(app: &App, batch: &Batch) -> PublishStats {
    let access = app.extension::<Plugins>().and_then(|p| p.access());
    let view = access.as_ref().map(|a| {
        let enter: Vec<&str> = batch.enter.iter().map(|o| o.id()).collect();
        let exit: Vec<&str> = batch.exit.iter().map(|i| &**i).collect();
        a.batch(&enter, &exit)
    });
    let mut stats = PublishStats::default();
    let mut shared: Option<Vec<Utf8Bytes>> = None;
    let mut shared_frames = |stats: &mut PublishStats| -> Vec<Utf8Bytes> {
        shared
            .get_or_insert_with(|| {
                let f: Vec<Utf8Bytes> = batch
                    .enter_frames()
                    .into_iter()
                    .map(Utf8Bytes::from)
                    .chain(batch.exit_notification().map(|t| Utf8Bytes::from(&*t)))
                    .collect();
                stats.frames += f.len();
                f
            })
            .clone()
    };
    let mut per_user: HashMap<String, Vec<Utf8Bytes>> = HashMap::new();
    for c in app.connections() {
        let Some(uid) = c.user_id() else { continue };
        if !per_user.contains_key(&uid) {
            let user = match app.store().user(&uid) {
                Ok(Some(u)) => u,
                _ => continue,
            };
            let frames = if user.permission == Permission::Admin {
                shared_frames(&mut stats)
            } else {
                let info: UserInfo = user_info(&user);
                let seen = |id: &str| view.as_ref().is_some_and(|v| v.visible(&info, id));
                let enter: Vec<&XoObject> = batch
                    .enter
                    .iter()
                    .filter(|o| seen(o.id()))
                    .map(|o| &**o)
                    .collect();
                let exit: Vec<&str> = batch
                    .exit
                    .iter()
                    .map(|i| &**i)
                    .filter(|id| seen(id))
                    .collect();
                if enter.len() == batch.enter.len() && exit.len() == batch.exit.len() {
                    shared_frames(&mut stats)
                } else {
                    let mut f = Vec::new();
                    for frame in enter_notifications_for(enter, MAX_FRAME_BYTES) {
                        f.push(Utf8Bytes::from(frame));
                    }
                    if !exit.is_empty() {
                        f.push(Utf8Bytes::from(exit_notification_for(exit)));
                    }
                    stats.frames += f.len();
                    f
                }
            };
            per_user.insert(uid.clone(), frames);
        }
        if let Some(frames) = per_user.get(&uid) {
            if !frames.is_empty() {
                deliver(&c, frames, &mut stats);
            }
        }
    }
    stats
}

/// The object methods' permission seam ([`crate::methods::resolve::Permissions`]) answered by whatever
/// access control is installed at the time of the call (none: everything denied).
struct Checker(crate::app::WeakApp);

impl Checker {
    fn access(&self) -> Option<Arc<dyn xo_plugin::AccessControl>> {
        self.0
            .upgrade()
            .and_then(|app| app.extension::<Plugins>())
            .and_then(|p| p.access())
    }
}

impl crate::methods::resolve::PermissionChecker for Checker {
    fn add_acl(&self, subject: &str, object: &str, action: &str) {
        if let Some(a) = self.access() {
            if let Err(e) = a.add_acl(subject, object, action) {
                tracing::warn!(object, error = %e, "cannot record the ACL of a new object");
            }
        }
    }

    fn object_deleted(&self, object: &str) {
        if let Some(a) = self.access() {
            a.object_deleted(object);
        }
    }

    fn first_denied(&self, user: &xo_store::User, pairs: &[(String, String)]) -> Option<usize> {
        match self.access() {
            Some(a) => a.first_denied(&user_info(user), pairs),
            None => (!pairs.is_empty()).then_some(0),
        }
    }
}

/// Wires the installed access control into the object methods' resolve step.
pub(crate) fn install_permission_checker(app: &App) {
    app.set_extension(Arc::new(crate::methods::resolve::Permissions(Arc::new(
        Checker(app.downgrade()),
    ))));
}
