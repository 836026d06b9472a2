//! Choosing the backend at run time: [`DbOptions`] says which database,
//! [`AnyStore`] is the open store of any kind, implementing the ports by
//! delegation.

use std::fmt;

use async_trait::async_trait;
use im_core::model::{Account, NewMessage, ProfilePatch, StoredMessage, UserProfile};
use im_core::ports::{
    Appended, ConversationHead, HealthCheck, InboxEntry, MessageStore, StoreResult, UserStore,
};
use im_core::{StoreError, UserId};

use crate::mysql::{MysqlStore, run_mysql_migrations};
use crate::pg::{PgStore, run_postgres_migrations};
use crate::server::ServerDbOptions;
use crate::sqlite::{SqliteOptions, SqliteStore, run_sqlite_migrations};

/// A kind of database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl Backend {
    /// Every backend.
    pub const ALL: [Backend; 3] = [Backend::Sqlite, Backend::Postgres, Backend::Mysql];

    /// `sqlite`, `postgres` or `mysql`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
        }
    }

    /// The backend a URL names by its scheme: `postgres://` or
    /// `postgresql://`, `mysql://`; anything else (a path, or
    /// `sqlite://path`) is SQLite.
    pub fn of_url(url: &str) -> Self {
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("postgres" | "postgresql") => Self::Postgres,
            Some("mysql") => Self::Mysql,
            _ => Self::Sqlite,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which database to open, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbOptions {
    Sqlite(SqliteOptions),
    Postgres(ServerDbOptions),
    Mysql(ServerDbOptions),
}

impl DbOptions {
    /// The default options for `url` (see [`Backend::of_url`]); for SQLite
    /// `url` is the file path, optionally prefixed `sqlite://`.
    pub fn from_url(url: &str) -> Self {
        match Backend::of_url(url) {
            Backend::Postgres => Self::Postgres(ServerDbOptions::new(url)),
            Backend::Mysql => Self::Mysql(ServerDbOptions::new(url)),
            Backend::Sqlite => {
                let path = url.strip_prefix("sqlite://").unwrap_or(url);
                Self::Sqlite(SqliteOptions::at(path))
            }
        }
    }

    /// The kind of database.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
            Self::Mysql(_) => Backend::Mysql,
        }
    }

    /// Whether opening applies pending migrations.
    pub fn migrate(&self) -> bool {
        match self {
            Self::Sqlite(o) => o.migrate,
            Self::Postgres(o) | Self::Mysql(o) => o.migrate,
        }
    }

    /// Sets whether opening applies pending migrations.
    pub fn with_migrate(mut self, migrate: bool) -> Self {
        match &mut self {
            Self::Sqlite(o) => o.migrate = migrate,
            Self::Postgres(o) | Self::Mysql(o) => o.migrate = migrate,
        }
        self
    }

    /// Where the database is, for logs: the SQLite path or the URL without
    /// its password.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(o) => o.path.display().to_string(),
            Self::Postgres(o) | Self::Mysql(o) => o.redacted_url(),
        }
    }
}

/// Applies every pending migration of the database `opts` names (creating a
/// SQLite file if missing); returns the versions applied, oldest first.
/// Ignores `opts`' `migrate` flag: this is the explicit `im-server migrate`.
pub async fn run_migrations(opts: &DbOptions) -> Result<Vec<String>, StoreError> {
    match opts {
        DbOptions::Sqlite(o) => {
            let path = o.path.clone();
            tokio::task::spawn_blocking(move || run_sqlite_migrations(&path))
                .await
                .map_err(crate::error::map_join)?
        }
        DbOptions::Postgres(o) => run_postgres_migrations(o).await,
        DbOptions::Mysql(o) => run_mysql_migrations(o).await,
    }
}

/// An open store of any backend. Cheap to clone. The binary wraps it in an
/// `Arc` and hands it to the services as `Arc<dyn MessageStore>`,
/// `Arc<dyn UserStore>`, `Arc<dyn FriendStore>` and the other ports it
/// implements (`crate::groups`, `crate::social`).
#[derive(Debug, Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
    Mysql(MysqlStore),
}

impl AnyStore {
    /// Opens the database `opts` names (see each store's `open`).
    pub async fn open(opts: DbOptions) -> Result<Self, StoreError> {
        Ok(match opts {
            DbOptions::Sqlite(o) => Self::Sqlite(SqliteStore::open(o).await?),
            DbOptions::Postgres(o) => Self::Postgres(PgStore::open(o).await?),
            DbOptions::Mysql(o) => Self::Mysql(MysqlStore::open(o).await?),
        })
    }

    /// The kind of database.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
            Self::Mysql(_) => Backend::Mysql,
        }
    }
}

impl From<SqliteStore> for AnyStore {
    fn from(s: SqliteStore) -> Self {
        Self::Sqlite(s)
    }
}

impl From<PgStore> for AnyStore {
    fn from(s: PgStore) -> Self {
        Self::Postgres(s)
    }
}

impl From<MysqlStore> for AnyStore {
    fn from(s: MysqlStore) -> Self {
        Self::Mysql(s)
    }
}

/// `match self { each(s) => s.$call }`.
macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $call,
            AnyStore::Postgres($s) => $call,
            AnyStore::Mysql($s) => $call,
        }
    };
}

#[async_trait]
impl MessageStore for AnyStore {
    async fn append(&self, batch: &[NewMessage]) -> StoreResult<Vec<Appended>> {
        delegate!(self, s => s.append(batch).await)
    }

    async fn find_by_client_id(
        &self,
        sender: &UserId,
        client_msg_id: &str,
    ) -> StoreResult<Option<StoredMessage>> {
        delegate!(self, s => s.find_by_client_id(sender, client_msg_id).await)
    }

    async fn find_by_server_id(&self, server_msg_id: &str) -> StoreResult<Option<StoredMessage>> {
        delegate!(self, s => s.find_by_server_id(server_msg_id).await)
    }

    async fn conversation_range(
        &self,
        conversation_id: &str,
        after_seq: i64,
        up_to_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        delegate!(self, s => s.conversation_range(conversation_id, after_seq, up_to_seq, limit).await)
    }

    async fn user_conversations(&self, user: &UserId) -> StoreResult<Vec<ConversationHead>> {
        delegate!(self, s => s.user_conversations(user).await)
    }

    async fn inbox_head(&self, user: &UserId) -> StoreResult<i64> {
        delegate!(self, s => s.inbox_head(user).await)
    }

    async fn inbox_count_after(&self, user: &UserId, after: i64, cap: u32) -> StoreResult<u64> {
        delegate!(self, s => s.inbox_count_after(user, after, cap).await)
    }

    async fn inbox_after(
        &self,
        user: &UserId,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<InboxEntry>> {
        delegate!(self, s => s.inbox_after(user, after, limit).await)
    }

    async fn record_delivered(
        &self,
        user: &UserId,
        device: &str,
        conversation_id: &str,
        seq: i64,
    ) -> StoreResult<()> {
        delegate!(self, s => s.record_delivered(user, device, conversation_id, seq).await)
    }

    async fn delivered_seq(
        &self,
        user: &UserId,
        device: &str,
        conversation_id: &str,
    ) -> StoreResult<i64> {
        delegate!(self, s => s.delivered_seq(user, device, conversation_id).await)
    }

    async fn record_acked(
        &self,
        user: &UserId,
        device: &str,
        conversation_id: &str,
        seq: i64,
        now_ms: i64,
    ) -> StoreResult<()> {
        delegate!(self, s => s.record_acked(user, device, conversation_id, seq, now_ms).await)
    }

    async fn purge_acked(&self, before_ms: i64) -> StoreResult<u64> {
        delegate!(self, s => s.purge_acked(before_ms).await)
    }

    async fn conversation_unacked(
        &self,
        conversation_id: &str,
        after_seq: i64,
        up_to_seq: i64,
        user: &UserId,
        device: &str,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        delegate!(self, s => s.conversation_unacked(conversation_id, after_seq, up_to_seq, user, device, limit).await)
    }

    async fn forget_acked(
        &self,
        user: &UserId,
        device: &str,
        cursors: &[(String, i64)],
    ) -> StoreResult<u64> {
        delegate!(self, s => s.forget_acked(user, device, cursors).await)
    }
}

#[async_trait]
impl UserStore for AnyStore {
    async fn touch(&self, user: &UserId, now_ms: i64) -> StoreResult<()> {
        delegate!(self, s => s.touch(user, now_ms).await)
    }

    async fn exists(&self, user: &UserId) -> StoreResult<bool> {
        delegate!(self, s => s.exists(user).await)
    }

    async fn create_account(&self, profile: &UserProfile, account: &Account) -> StoreResult<()> {
        delegate!(self, s => s.create_account(profile, account).await)
    }

    async fn account(&self, user_id: &str) -> StoreResult<Option<Account>> {
        delegate!(self, s => s.account(user_id).await)
    }

    async fn profiles(&self, users: &[String]) -> StoreResult<Vec<UserProfile>> {
        delegate!(self, s => s.profiles(users).await)
    }

    async fn update_profile(
        &self,
        user: &str,
        patch: &ProfilePatch,
        now_ms: i64,
    ) -> StoreResult<UserProfile> {
        delegate!(self, s => s.update_profile(user, patch, now_ms).await)
    }

    async fn search_users(&self, keyword: &str, limit: u32) -> StoreResult<Vec<UserProfile>> {
        delegate!(self, s => s.search_users(keyword, limit).await)
    }
}

#[async_trait]
impl HealthCheck for AnyStore {
    async fn ping(&self) -> StoreResult<()> {
        delegate!(self, s => s.ping().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_backend() {
        assert_eq!(Backend::of_url("postgres://u@h/d"), Backend::Postgres);
        assert_eq!(Backend::of_url("postgresql://h/d"), Backend::Postgres);
        assert_eq!(Backend::of_url("MySQL://root@h/d"), Backend::Mysql);
        assert_eq!(Backend::of_url("./data/im.db"), Backend::Sqlite);
        match DbOptions::from_url("sqlite://./x/im.db") {
            DbOptions::Sqlite(o) => assert_eq!(o.path, std::path::PathBuf::from("./x/im.db")),
            other => panic!("{other:?}"),
        }
        let o = DbOptions::from_url("mysql://root:pw@h/d").with_migrate(false);
        assert_eq!(o.backend(), Backend::Mysql);
        assert!(!o.migrate());
        assert_eq!(o.describe(), "mysql://root:***@h/d");
    }
}
