//! The store: opens the database, runs migrations and offers typed, flushed operations on every collection.

use std::path::Path;

use serde_json::{Map, Value};
use sled::transaction::ConflictableTransactionError as TxError;
use sled::Transactional;

use crate::collection::Collection;
use crate::{
    layout, migrate, password, token, Group, HashParams, NewServer, Permission, Result, Server,
    StoreError,
};
use crate::{Token, User};

/// Options for [`Store::open_with`].
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    /// Argon2 cost for new password hashes.
    pub hash_params: HashParams,
}

/// Handle on the database; cheap to clone (sled handles are reference-counted).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    users: Collection<User>,
    users_by_email: sled::Tree,
    groups: Collection<Group>,
    servers: Collection<Server>,
    tokens: Collection<Token>,
    settings: sled::Tree,
    plugins: sled::Tree,
    hash: HashParams,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn same_name(a: &Group, b: &Group) -> bool {
    a.name == b.name
}

fn same_host(a: &Server, b: &Server) -> bool {
    a.host == b.host
}

fn abort<T>(e: StoreError) -> std::result::Result<T, TxError<StoreError>> {
    Err(TxError::Abort(e))
}

impl Store {
    /// Opens (creating if needed) the database in directory `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens the database and migrates it to [`crate::SCHEMA_VERSION`].
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        // No background flusher: every write is flushed explicitly, and without that thread the file lock
        // is released as soon as the last handle is dropped (so a restart in the same process works).
        let db = sled::Config::new()
            .path(path.as_ref())
            .flush_every_ms(None)
            .open()?;
        migrate::migrate(&db)?;
        Ok(Self {
            users: Collection::open(&db)?,
            users_by_email: db.open_tree(layout::USERS_BY_EMAIL)?,
            groups: Collection::open(&db)?,
            servers: Collection::open(&db)?,
            tokens: Collection::open(&db)?,
            settings: db.open_tree(layout::SETTINGS)?,
            plugins: db.open_tree(layout::PLUGINS)?,
            hash: options.hash_params,
            db,
        })
    }

    /// Schema version on disk.
    pub fn schema_version(&self) -> Result<u32> {
        Ok(migrate::read_version(&self.db)?.unwrap_or(crate::SCHEMA_VERSION))
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Flushes, then hands back `value` (what a write returns once it is on disk).
    fn flushed<R>(&self, value: R) -> Result<R> {
        self.flush()?;
        Ok(value)
    }

    // ---------------------------------------------------------------- users

    /// All users.
    pub fn users(&self) -> Result<Vec<User>> {
        self.users.all()
    }

    /// Number of users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// A user by id.
    pub fn user(&self, id: &str) -> Result<Option<User>> {
        self.users.get(id)
    }

    /// A user by email (exact match).
    pub fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        match self.users_by_email.get(email.as_bytes())? {
            Some(id) => self.users.get(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Creates a user; `password: None` makes an account that cannot sign in with a password.
    pub fn create_user(
        &self,
        email: &str,
        password: Option<&str>,
        permission: Permission,
    ) -> Result<User> {
        let pw_hash = password.map(|p| self.hash.hash(p)).transpose()?;
        let user = User {
            id: new_id(),
            email: email.to_owned(),
            pw_hash,
            permission,
            groups: vec![],
            preferences: Map::new(),
            auth_providers: None,
        };
        self.write_user(None, &user)?;
        Ok(user)
    }

    /// Replaces a user record (email changes keep the index consistent and unique).
    pub fn update_user(&self, user: &User) -> Result<()> {
        let old = self.users.require(&user.id)?;
        self.write_user(Some(&old.email), user)
    }

    fn write_user(&self, old_email: Option<&str>, user: &User) -> Result<()> {
        if user.email.is_empty() {
            return Err(StoreError::Invalid("empty email".into()));
        }
        let bytes = Collection::<User>::encode(user)?;
        (self.users.tree(), &self.users_by_email).transaction(|(users, index)| {
            if let Some(owner) = index.get(user.email.as_bytes())? {
                if owner.as_ref() != user.id.as_bytes() {
                    return abort(StoreError::DuplicateEmail(user.email.clone()));
                }
            }
            if let Some(old) = old_email {
                if old != user.email {
                    index.remove(old.as_bytes())?;
                }
            }
            index.insert(user.email.as_bytes(), user.id.as_bytes())?;
            users.insert(user.id.as_bytes(), bytes.clone())?;
            Ok(())
        })?;
        self.flush()
    }

    /// Sets a new password (hashed with the store's parameters).
    pub fn set_password(&self, id: &str, password: &str) -> Result<User> {
        let mut user = self.users.require(id)?;
        user.pw_hash = Some(self.hash.hash(password)?);
        self.update_user(&user)?;
        Ok(user)
    }

    /// Whether `password` matches the user's hash (false when the user has none).
    pub fn verify_password(&self, user: &User, password: &str) -> bool {
        user.pw_hash
            .as_deref()
            .is_some_and(|h| password::verify(h, password))
    }

    /// Deletes a user, its tokens and its group memberships; `false` if there was no such user.
    pub fn delete_user(&self, id: &str) -> Result<bool> {
        let Some(user) = self.users.get(id)? else {
            return Ok(false);
        };
        (self.users.tree(), &self.users_by_email).transaction(|(users, index)| {
            users.remove(id.as_bytes())?;
            if index.get(user.email.as_bytes())?.as_deref() == Some(id.as_bytes()) {
                index.remove(user.email.as_bytes())?;
            }
            Ok::<_, TxError<StoreError>>(())
        })?;
        self.tokens.remove_where(|t| t.user_id == id)?;
        for mut g in self.groups.all()? {
            if g.users.iter().any(|u| u == id) {
                g.users.retain(|u| u != id);
                self.groups.put(&g)?;
            }
        }
        self.flush()?;
        Ok(true)
    }

    // --------------------------------------------------------------- groups

    /// All groups.
    pub fn groups(&self) -> Result<Vec<Group>> {
        self.groups.all()
    }

    /// A group by id.
    pub fn group(&self, id: &str) -> Result<Option<Group>> {
        self.groups.get(id)
    }

    /// Creates a group with a unique name.
    pub fn create_group(&self, name: &str) -> Result<Group> {
        let g = Group {
            id: new_id(),
            name: name.to_owned(),
            users: vec![],
            provider: None,
            provider_group_id: None,
        };
        self.groups.check_unique(&g, same_name, || {
            StoreError::DuplicateGroupName(name.to_owned())
        })?;
        self.groups.put(&g)?;
        self.flush()?;
        Ok(g)
    }

    /// Replaces a group record (name must stay unique).
    pub fn update_group(&self, group: &Group) -> Result<()> {
        self.groups.replace_unique(group, same_name, || {
            StoreError::DuplicateGroupName(group.name.clone())
        })?;
        self.flush()
    }

    /// Sets the members of a group, updating each user's `groups` on both sides.
    pub fn set_group_users(&self, group_id: &str, user_ids: &[String]) -> Result<()> {
        let mut group = self.groups.require(group_id)?;
        for uid in user_ids {
            self.users.require(uid)?;
        }
        for mut u in self.users.all()? {
            let member = user_ids.contains(&u.id);
            let listed = u.groups.iter().any(|g| g == group_id);
            if member != listed {
                if member {
                    u.groups.push(group_id.to_owned());
                } else {
                    u.groups.retain(|g| g != group_id);
                }
                self.users.put(&u)?;
            }
        }
        let mut ids = user_ids.to_vec();
        ids.dedup();
        group.users = ids;
        self.groups.put(&group)?;
        self.flush()
    }

    /// Adds one user to a group.
    pub fn add_user_to_group(&self, group_id: &str, user_id: &str) -> Result<()> {
        let g = self.groups.require(group_id)?;
        let mut ids = g.users.clone();
        if !ids.iter().any(|u| u == user_id) {
            ids.push(user_id.to_owned());
        }
        self.set_group_users(group_id, &ids)
    }

    /// Removes one user from a group.
    pub fn remove_user_from_group(&self, group_id: &str, user_id: &str) -> Result<()> {
        let g = self.groups.require(group_id)?;
        let ids: Vec<String> = g.users.iter().filter(|u| *u != user_id).cloned().collect();
        self.set_group_users(group_id, &ids)
    }

    /// Deletes a group and removes it from its members; `false` if there was none.
    pub fn delete_group(&self, id: &str) -> Result<bool> {
        if self.groups.get(id)?.is_none() {
            return Ok(false);
        }
        self.set_group_users(id, &[])?;
        self.groups.remove(id)?;
        self.flush()?;
        Ok(true)
    }

    // -------------------------------------------------------------- servers

    /// All XAPI servers.
    pub fn servers(&self) -> Result<Vec<Server>> {
        self.servers.all()
    }

    /// A server by id.
    pub fn server(&self, id: &str) -> Result<Option<Server>> {
        self.servers.get(id)
    }

    /// Registers a server; hosts are unique.
    pub fn add_server(&self, new: NewServer) -> Result<Server> {
        let s = Server {
            id: new_id(),
            host: new.host,
            username: new.username,
            password: new.password,
            allow_unauthorized: new.allow_unauthorized,
            enabled: new.enabled,
            label: new.label,
            read_only: false,
            http_proxy: new.http_proxy,
            error: None,
        };
        self.servers
            .check_unique(&s, same_host, || StoreError::DuplicateHost(s.host.clone()))?;
        self.servers.put(&s)?;
        self.flush()?;
        Ok(s)
    }

    /// Replaces a server record (host must stay unique).
    pub fn update_server(&self, server: &Server) -> Result<()> {
        self.servers.replace_unique(server, same_host, || {
            StoreError::DuplicateHost(server.host.clone())
        })?;
        self.flush()
    }

    /// Removes a server; `false` if there was none.
    pub fn remove_server(&self, id: &str) -> Result<bool> {
        let existed = self.servers.remove(id)?;
        self.flushed(existed)
    }

    // --------------------------------------------------------------- tokens

    /// Creates a token for `user_id` expiring at `expiration` (ms epoch). Returns the secret to hand to the
    /// client (never stored) and the stored record.
    pub fn create_token(
        &self,
        user_id: &str,
        created_at: i64,
        expiration: i64,
        description: Option<String>,
        client: Option<Value>,
    ) -> Result<(String, Token)> {
        let secret = token::new_token_secret();
        let t = Token {
            id: token::hash_token_secret(&secret),
            user_id: user_id.to_owned(),
            created_at,
            expiration,
            description,
            client,
            last_uses: Map::new(),
        };
        self.tokens.put(&t)?;
        self.flush()?;
        Ok((secret, t))
    }

    /// The token whose secret is `secret` (expired or not: the caller checks `expiration`).
    pub fn token_by_secret(&self, secret: &str) -> Result<Option<Token>> {
        self.tokens.get(&token::hash_token_secret(secret))
    }

    /// A token by stored id (the hash).
    pub fn token(&self, id: &str) -> Result<Option<Token>> {
        self.tokens.get(id)
    }

    /// All tokens.
    pub fn tokens(&self) -> Result<Vec<Token>> {
        self.tokens.all()
    }

    /// Tokens of one user.
    pub fn tokens_of_user(&self, user_id: &str) -> Result<Vec<Token>> {
        Ok(self
            .tokens
            .all()?
            .into_iter()
            .filter(|t| t.user_id == user_id)
            .collect())
    }

    /// Replaces a token record.
    pub fn update_token(&self, t: &Token) -> Result<()> {
        self.tokens.require(&t.id)?;
        self.tokens.put(t)?;
        self.flush()
    }

    /// Deletes a token by stored id; `false` if there was none.
    pub fn delete_token(&self, id: &str) -> Result<bool> {
        let existed = self.tokens.remove(id)?;
        self.flushed(existed)
    }

    /// Deletes the tokens expired at `now` (ms epoch); returns how many.
    pub fn purge_expired_tokens(&self, now: i64) -> Result<usize> {
        let n = self.tokens.remove_where(|t| t.expiration < now)?;
        self.flushed(n)
    }

    // ------------------------------------------------------ settings, plugins

    fn kv_get(tree: &sled::Tree, collection: &'static str, key: &str) -> Result<Option<Value>> {
        match tree.get(key.as_bytes())? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    collection,
                    id: key.to_owned(),
                    reason: e.to_string(),
                }),
            None => Ok(None),
        }
    }

    fn kv_set(&self, tree: &sled::Tree, key: &str, value: &Value) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Encode(e.to_string()))?;
        tree.insert(key.as_bytes(), bytes)?;
        self.flush()
    }

    fn kv_remove(&self, tree: &sled::Tree, key: &str) -> Result<bool> {
        let existed = tree.remove(key.as_bytes())?.is_some();
        self.flushed(existed)
    }

    /// A setting.
    pub fn setting(&self, key: &str) -> Result<Option<Value>> {
        Self::kv_get(&self.settings, layout::SETTINGS, key)
    }

    /// Sets a setting.
    pub fn set_setting(&self, key: &str, value: &Value) -> Result<()> {
        self.kv_set(&self.settings, key, value)
    }

    /// Removes a setting.
    pub fn remove_setting(&self, key: &str) -> Result<bool> {
        self.kv_remove(&self.settings, key)
    }

    /// A plugin's persisted state (configuration, autoload flag, …).
    pub fn plugin_state(&self, plugin: &str) -> Result<Option<Value>> {
        Self::kv_get(&self.plugins, layout::PLUGINS, plugin)
    }

    /// Persists a plugin's state.
    pub fn set_plugin_state(&self, plugin: &str, value: &Value) -> Result<()> {
        self.kv_set(&self.plugins, plugin, value)
    }

    /// Forgets a plugin's state.
    pub fn remove_plugin_state(&self, plugin: &str) -> Result<bool> {
        self.kv_remove(&self.plugins, plugin)
    }
}
