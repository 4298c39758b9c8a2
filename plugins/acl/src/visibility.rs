//! The plugin's state: entries (persisted through the host), permission checks, and the per-user visible
//! sets. One shared index of the objects' rules ([`Node`]) is kept up to date batch by batch; each user's
//! visible set is computed once (one pass over the index), then updated per batch by re-evaluating only
//! the batch's objects — unless one of them changed visibility and may pass it down, or the ACLs or the
//! user's groups changed, which trigger a full recomputation.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use xo_plugin::{AccessControl, BatchVisibility, PluginError, PluginHost, UserInfo};

use crate::entries::{self, permissions_of, Acl};
use crate::rules::{granted, Node, Parent};

/// Direct grants of one user: object id → permissions.
pub type Grants = HashMap<String, HashSet<String>>;

struct UserEntry {
    groups: Vec<String>,
    generation: u64,
    visible: Arc<HashSet<String>>,
}

#[derive(Default)]
struct Cache {
    index: Option<HashMap<String, Node>>,
    /// Reverse edges of `index` (object → objects it passes permissions to), rebuilt lazily after a
    /// structural change (a node added, removed or with other parents).
    children: Option<HashMap<String, Vec<String>>>,
    users: HashMap<String, UserEntry>,
    full_computations: u64,
}

#[derive(Default)]
struct Inner {
    host: RwLock<Option<Arc<dyn PluginHost>>>,
    acls: RwLock<Vec<Acl>>,
    generation: AtomicU64,
    cache: Mutex<Cache>,
}

/// Entries, checks and caches (cheap to clone).
#[derive(Clone, Default)]
pub struct AclState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AclState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclState")
            .field("acls", &self.inner.acls.read().len())
            .finish_non_exhaustive()
    }
}

impl AclState {
    /// Binds the state to a host with the stored entries.
    pub fn attach(&self, host: Arc<dyn PluginHost>, acls: Vec<Acl>) {
        *self.inner.host.write() = Some(host);
        *self.inner.acls.write() = acls;
        self.invalidate();
        *self.inner.cache.lock() = Cache::default();
    }

    /// Forgets the host and the caches.
    pub fn detach(&self) {
        *self.inner.host.write() = None;
        *self.inner.cache.lock() = Cache::default();
    }

    fn host(&self) -> Result<Arc<dyn PluginHost>, PluginError> {
        self.inner
            .host
            .read()
            .clone()
            .ok_or_else(|| PluginError::failed("ACL plugin not loaded"))
    }

    fn invalidate(&self) {
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Every entry.
    pub fn acls(&self) -> Vec<Acl> {
        self.inner.acls.read().clone()
    }

    fn persist(&self, acls: &[Acl]) -> Result<(), PluginError> {
        self.host()?
            .data_set(entries::STORAGE_KEY, &entries::encode(acls))
    }

    /// Adds an entry (no-op when it exists).
    pub fn add(&self, subject: &str, object: &str, action: &str) -> Result<(), PluginError> {
        let acl = Acl::new(subject, object, action);
        let mut acls = self.inner.acls.write();
        if acls.iter().any(|a| a.id == acl.id) {
            return Ok(());
        }
        let mut next = acls.clone();
        next.push(acl);
        self.persist(&next)?;
        *acls = next;
        self.invalidate();
        Ok(())
    }

    /// Removes an entry (no-op when absent).
    pub fn remove(&self, subject: &str, object: &str, action: &str) -> Result<(), PluginError> {
        let id = entries::acl_id(subject, object, action);
        let mut acls = self.inner.acls.write();
        if !acls.iter().any(|a| a.id == id) {
            return Ok(());
        }
        let next: Vec<Acl> = acls.iter().filter(|a| a.id != id).cloned().collect();
        self.persist(&next)?;
        *acls = next;
        self.invalidate();
        Ok(())
    }

    /// Removes every entry about `object` (after it was destroyed).
    pub fn remove_object(&self, object: &str) -> Result<(), PluginError> {
        self.remove_where(|a| a.object == object)
    }

    /// Removes every entry of `subject` (after the user or group was deleted).
    pub fn remove_subject(&self, subject: &str) -> Result<(), PluginError> {
        self.remove_where(|a| a.subject == subject)
    }

    fn remove_where(&self, pred: impl Fn(&Acl) -> bool) -> Result<(), PluginError> {
        let mut acls = self.inner.acls.write();
        if !acls.iter().any(&pred) {
            return Ok(());
        }
        let next: Vec<Acl> = acls.iter().filter(|a| !pred(a)).cloned().collect();
        self.persist(&next)?;
        *acls = next;
        self.invalidate();
        Ok(())
    }

    /// The user's direct grants: own entries and its groups', roles expanded.
    pub fn grants(&self, user: &UserInfo) -> Grants {
        let mut g = Grants::new();
        for a in self.inner.acls.read().iter() {
            if a.subject == user.id || user.groups.contains(&a.subject) {
                let set = g.entry(a.object.clone()).or_default();
                set.extend(permissions_of(&a.action).into_iter().map(str::to_owned));
            }
        }
        g
    }

    /// Whether `user` holds `permission` on object `id` (fresh object lookups).
    pub fn has_permission(&self, user: &UserInfo, id: &str, permission: &str) -> bool {
        self.first_denied(user, &[(id.to_owned(), permission.to_owned())])
            .is_none()
    }

    /// How many full visible-set computations ran (for tests and benchmarks).
    pub fn full_computations(&self) -> u64 {
        self.inner.cache.lock().full_computations
    }

    fn build_index(host: &dyn PluginHost) -> HashMap<String, Node> {
        let mut index = HashMap::new();
        host.for_each_object(&mut |v| {
            if let Some(id) = v.get("id").and_then(|i| i.as_str()) {
                index.insert(id.to_owned(), Node::of(v));
            }
        });
        index
    }

    fn build_children(index: &HashMap<String, Node>) -> HashMap<String, Vec<String>> {
        let mut children: HashMap<String, Vec<String>> = HashMap::new();
        for (id, n) in index {
            for p in &n.parents {
                let pid = match p {
                    Parent::Object(o) => Some(o.as_str()),
                    Parent::VmOfVbd(vbd) => index.get(vbd).and_then(|v| v.vm.as_deref()),
                };
                if let Some(pid) = pid.filter(|p| *p != id) {
                    children.entry(pid.to_owned()).or_default().push(id.clone());
                }
            }
        }
        children
    }

    /// The user's visible set, top-down: objects granted `view` directly (when their rule counts
    /// themselves), then everything they pass it to, transitively — O(visible objects).
    fn compute(&self, cache: &mut Cache, user: &UserInfo) -> Arc<HashSet<String>> {
        let Some(index) = &cache.index else {
            return Arc::default();
        };
        let grants = self.grants(user);
        let mut visible: HashSet<String> = HashSet::new();
        if !grants.is_empty() {
            let children = cache
                .children
                .get_or_insert_with(|| Self::build_children(index));
            let mut queue: Vec<&str> = Vec::new();
            for (id, perms) in &grants {
                if perms.contains("view")
                    && index.get(id).is_some_and(|n| n.self_ok)
                    && visible.insert(id.clone())
                {
                    queue.push(id);
                }
            }
            while let Some(id) = queue.pop() {
                for c in children.get(id).into_iter().flatten() {
                    if visible.insert(c.clone()) {
                        queue.push(c);
                    }
                }
            }
        }
        cache.full_computations += 1;
        Arc::new(visible)
    }

    fn entry_is_fresh(e: &UserEntry, user: &UserInfo, generation: u64) -> bool {
        e.generation == generation && e.groups == user.groups
    }
}

/// Visibility of `id` with memoisation; `known(id)` answers for objects outside the re-evaluated set.
fn eval<'a>(
    id: &'a str,
    index: &'a HashMap<String, Node>,
    direct: &dyn Fn(&str) -> bool,
    memo: &mut HashMap<&'a str, bool>,
    known: &dyn Fn(&str) -> Option<bool>,
) -> bool {
    if let Some(v) = memo.get(id) {
        return *v;
    }
    if let Some(v) = known(id) {
        return v;
    }
    memo.insert(id, false); // cycle guard
    let Some(n) = index.get(id) else { return false };
    let mut r = n.self_ok && direct(id);
    if !r {
        for p in &n.parents {
            let pid = match p {
                Parent::Object(o) => Some(o.as_str()),
                Parent::VmOfVbd(vbd) => index.get(vbd).and_then(|v| v.vm.as_deref()),
            };
            if let Some(pid) = pid {
                if pid != id && eval(pid, index, direct, memo, known) {
                    r = true;
                    break;
                }
            }
        }
    }
    memo.insert(id, r);
    r
}

/// Whether an object of this rule can pass visibility down (has dependants under the rules).
fn is_parent_kind(v: &serde_json::Value) -> bool {
    matches!(
        v.get("type").and_then(|t| t.as_str()),
        Some(
            "pool"
                | "host"
                | "network"
                | "SR"
                | "VM"
                | "VM-template"
                | "VM-snapshot"
                | "VM-controller"
                | "VDI"
                | "VDI-snapshot"
                | "VDI-unmanaged"
                | "VBD"
        )
    )
}

impl AccessControl for AclState {
    fn first_denied(&self, user: &UserInfo, pairs: &[(String, String)]) -> Option<usize> {
        let Ok(host) = self.host() else {
            return (!pairs.is_empty()).then_some(0);
        };
        let grants = self.grants(user);
        let mut node = |id: &str| {
            let mut n = None;
            host.with_object(id, &mut |v| n = Some(Node::of(v)));
            n
        };
        pairs.iter().position(|(id, perm)| {
            let direct = |o: &str| grants.get(o).is_some_and(|s| s.contains(perm));
            !granted(id, &mut node, &direct, 0)
        })
    }

    fn visible_ids(&self, user: &UserInfo) -> Arc<HashSet<String>> {
        let Ok(host) = self.host() else {
            return Arc::default();
        };
        let generation = self.inner.generation.load(Ordering::SeqCst);
        let mut cache = self.inner.cache.lock();
        if cache.index.is_none() {
            cache.index = Some(Self::build_index(&*host));
        }
        if let Some(e) = cache.users.get(&user.id) {
            if Self::entry_is_fresh(e, user, generation) {
                return e.visible.clone();
            }
        }
        let visible = self.compute(&mut cache, user);
        cache.users.insert(
            user.id.clone(),
            UserEntry {
                groups: user.groups.clone(),
                generation,
                visible: visible.clone(),
            },
        );
        visible
    }

    fn add_acl(&self, subject: &str, object: &str, action: &str) -> Result<(), PluginError> {
        self.add(subject, object, action)
    }

    fn object_deleted(&self, object: &str) {
        if let Err(e) = self.remove_object(object) {
            tracing::warn!(object, error = %e, "cannot remove the ACLs of a deleted object");
        }
    }

    fn subject_deleted(&self, subject: &str) {
        if let Err(e) = self.remove_subject(subject) {
            tracing::warn!(subject, error = %e, "cannot remove the ACLs of a deleted subject");
        }
    }

    fn resync(&self) {
        *self.inner.cache.lock() = Cache::default();
    }

    fn batch(&self, enter: &[&str], exit: &[&str]) -> Box<dyn BatchVisibility> {
        let mut exit_visible: HashMap<String, HashSet<String>> = HashMap::new();
        if let Ok(host) = self.host() {
            let generation = self.inner.generation.load(Ordering::SeqCst);
            let mut cache = self.inner.cache.lock();
            let cache = &mut *cache;
            if let Some(index) = &mut cache.index {
                // the shared index first
                let mut parent_kinds: HashSet<&str> = HashSet::new();
                let mut structural = false;
                for id in exit {
                    structural |= index.remove(*id).is_some();
                }
                for id in enter {
                    let mut node = None;
                    let mut parent = false;
                    host.with_object(id, &mut |v| {
                        node = Some(Node::of(v));
                        parent = is_parent_kind(v);
                    });
                    match node {
                        Some(n) => {
                            let old = index.insert((*id).to_owned(), n);
                            structural |= old.as_ref() != index.get(*id);
                            if parent {
                                parent_kinds.insert(id);
                            }
                        }
                        None => {
                            structural |= index.remove(*id).is_some();
                        }
                    }
                }
                if structural {
                    cache.children = None;
                }
                let in_batch: HashSet<&str> = enter.iter().copied().collect();
                let mut stale = Vec::new();
                for (uid, e) in cache.users.iter_mut() {
                    let seen: HashSet<String> = exit
                        .iter()
                        .filter(|id| e.visible.contains(**id))
                        .map(|id| (*id).to_owned())
                        .collect();
                    if !seen.is_empty() {
                        exit_visible.insert(uid.clone(), seen);
                    }
                    if e.generation != generation {
                        stale.push(uid.clone());
                        continue;
                    }
                    let user = UserInfo {
                        id: uid.clone(),
                        email: String::new(),
                        permission: String::new(),
                        groups: e.groups.clone(),
                    };
                    let grants = self.grants(&user);
                    let direct = |id: &str| grants.get(id).is_some_and(|s| s.contains("view"));
                    let old = e.visible.clone();
                    let known = |id: &str| (!in_batch.contains(id)).then(|| old.contains(id));
                    let mut memo = HashMap::new();
                    let mut next: Option<HashSet<String>> = None;
                    let mut flipped_parent = false;
                    for id in exit {
                        if old.contains(*id) {
                            next.get_or_insert_with(|| (*old).clone()).remove(*id);
                        }
                    }
                    for id in enter {
                        let now = !grants.is_empty() && eval(id, index, &direct, &mut memo, &known);
                        if now != old.contains(*id) {
                            if parent_kinds.contains(id) {
                                flipped_parent = true;
                                break;
                            }
                            let set = next.get_or_insert_with(|| (*old).clone());
                            if now {
                                set.insert((*id).to_owned());
                            } else {
                                set.remove(*id);
                            }
                        }
                    }
                    if flipped_parent {
                        stale.push(uid.clone());
                    } else if let Some(n) = next {
                        e.visible = Arc::new(n);
                    }
                }
                for uid in stale {
                    cache.users.remove(&uid);
                }
            }
        }
        Box::new(Batch {
            state: self.clone(),
            exits: exit.iter().map(|s| (*s).to_owned()).collect(),
            exit_visible,
            sets: Mutex::new(HashMap::new()),
        })
    }
}

struct Batch {
    state: AclState,
    exits: HashSet<String>,
    exit_visible: HashMap<String, HashSet<String>>,
    sets: Mutex<HashMap<String, Arc<HashSet<String>>>>,
}

impl BatchVisibility for Batch {
    fn visible(&self, user: &UserInfo, id: &str) -> bool {
        if self.exits.contains(id) {
            return self
                .exit_visible
                .get(&user.id)
                .is_some_and(|s| s.contains(id));
        }
        let set = self
            .sets
            .lock()
            .entry(user.id.clone())
            .or_insert_with(|| self.state.visible_ids(user))
            .clone();
        set.contains(id)
    }
}
