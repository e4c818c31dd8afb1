//! keyward-store-sqlite: the embedded backend of [`keyward_store::Store`], one sqlite file in
//! WAL mode. It is not a general database wrapper: every query is one of the trait's methods.
//! Start at [`SqliteStore::open`]; the schema is in `migrations/`. [`SqliteStore::open_read_only`]
//! opens a database another process (the keyward server) owns, and never writes to it. [`SqliteStore::open_read_only`]
//! opens a database another process (the keyward server) owns, and never writes to it.
#![forbid(unsafe_code)]

mod error;
mod inline;
mod keyring;
mod org;
mod rows;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keyward_core::ids::{KeyId, OrgId};
use keyward_core::key::KeyHash;
use keyward_core::record::KeyRecord;
use keyward_store::{
    Change, MemberRecord, NewAuditEvent, OrgRecord, OrgStore, SessionRecord, Store, StoreError, StoreResult,
};
use parking_lot::Mutex;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use time::OffsetDateTime;

use crate::error::{conflict_as, DbResult, Fail};
use crate::rows::{
    append_event, change_from_row, key_columns, key_from_row, member_columns, member_from_row, nanos, org_from_row,
    session_from_row, session_join,
};

/// One embedded migration: `migrations/<version>_<name>.sql`.
struct Migration {
    version: i64,
    sql: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// How long a connection waits for another writer (another process on the same file) before
/// the store answers `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Reader connections kept open between queries; more are opened on demand under load. Opening
/// one costs a schema parse (about half a millisecond), so there are enough for the async workers'
/// inline reads beside several blocking ones: with fewer, eight reads at once kept opening and
/// closing connections, which was most of their p99.
const MAX_IDLE_READERS: usize = 8;

/// Rows returned by one `changes_since` call; the caller asks again from the returned sequence.
const MAX_CHANGES: i64 = 1000;

/// The sqlite store: one writer connection behind a mutex (sqlite has one writer at a time anyway)
/// and a few reader connections, which WAL lets run beside the writer. Every query runs on
/// tokio's blocking pool, but the verification look-up, which runs where it is called (see
/// `inline.rs`). Cloning is cheap and shares the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// `None`: opened read-only, and every write is refused before it reaches sqlite.
    writer: Option<Mutex<Connection>>,
    idle_readers: Mutex<Vec<Connection>>,
    inline: inline::InlineGate,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `sqlite://path`, `sqlite:path` or a plain
    /// path. Does not migrate: call [`Store::migrate`].
    pub fn open(url: &str) -> StoreResult<Self> {
        let path = database_path(url)?;
        let writer = connect(&path)?;
        // WAL is a property of the file: set it once, from the writer, and check it took (it
        // cannot on some network file systems).
        let mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(Fail::from)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Other(format!("{} cannot use WAL mode (got {mode})", path.display()).into()));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Some(Mutex::new(writer)),
                idle_readers: Mutex::new(Vec::new()),
                inline: inline::InlineGate::default(),
            }),
        })
    }

    /// Opens an existing, migrated database for reading only: it is not created, not migrated,
    /// and no write reaches it (writes answer an error; connections are opened read-only and
    /// `query_only`). For a verifier embedded in another process beside the keyward server.
    pub fn open_read_only(url: &str) -> StoreResult<Self> {
        let path = database_path(url)?;
        if !path.is_file() {
            return Err(StoreError::Other(
                format!("{} does not exist: start keyward on it first (it creates and migrates it)", path.display())
                    .into(),
            ));
        }
        let reader = connect_read_only(&path)?;
        check_read_only(&reader, &path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: None,
                idle_readers: Mutex::new(vec![reader]),
                inline: inline::InlineGate::default(),
            }),
        })
    }

    /// Whether this store was opened with [`SqliteStore::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.writer.is_none()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `query` on a reader connection, on the blocking pool.
    pub(crate) async fn read<T, F>(&self, query: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.read(query)).await
    }

    /// Runs `change` in one `BEGIN IMMEDIATE` transaction on the writer, on the blocking pool.
    /// An error rolls the whole transaction back.
    pub(crate) async fn write<T, F>(&self, change: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.write(change)).await
    }
}

impl Inner {
    fn read<T>(&self, query: impl FnOnce(&Connection) -> DbResult<T>) -> StoreResult<T> {
        let idle = self.idle_readers.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None if self.writer.is_none() => connect_read_only(&self.path)?,
            None => connect_reader(&self.path)?,
        };
        let result = query(&conn);
        let mut idle = self.idle_readers.lock();
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        Ok(result?)
    }

    fn writer(&self) -> StoreResult<&Mutex<Connection>> {
        self.writer.as_ref().ok_or_else(|| StoreError::Other("the SQLite store is open read-only".into()))
    }

    fn write<T>(&self, change: impl FnOnce(&Connection) -> DbResult<T>) -> StoreResult<T> {
        let mut conn = self.writer()?.lock();
        // A failed rollback (only on I/O errors) would leave the shared writer inside a transaction,
        // and every later BEGIN would fail: finish it first.
        if !conn.is_autocommit() {
            conn.execute_batch("ROLLBACK").map_err(Fail::from)?;
        }
        // IMMEDIATE takes the write lock up front, so a read-then-write (the audit chain's
        // prev_hash, a key's revoked state) cannot be overtaken by another process.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(Fail::from)?;
        let value = change(&tx)?;
        tx.commit().map_err(Fail::from)?;
        Ok(value)
    }

    fn migrate(&self) -> DbResult<()> {
        let mut conn = self.writer()?.lock();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY NOT NULL) STRICT",
        )?;
        for migration in MIGRATIONS {
            // One transaction per migration, and the applied check inside it, so two processes
            // starting together apply each migration once.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let applied: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
                [migration.version],
                |row| row.get(0),
            )?;
            if !applied {
                tx.execute_batch(migration.sql)?;
                tx.execute("INSERT INTO schema_migrations (version) VALUES (?1)", [migration.version])?;
            }
            tx.commit()?;
        }
        Ok(())
    }
}

/// rusqlite blocks, so every query leaves the async workers. A panic in the query becomes an error.
async fn blocking<T: Send + 'static>(job: impl FnOnce() -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|error| StoreError::Other(format!("database task failed: {error}").into()))?
}

fn database_path(url: &str) -> StoreResult<PathBuf> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    // In-memory databases cannot be shared by several connections nor use WAL, and URL options
    // would silently end up in the file name.
    if path.is_empty() || path.starts_with(":memory:") || path.contains('?') {
        return Err(StoreError::Other(
            format!("{url:?} is not a SQLite database file: use sqlite://path/to/keyward.db").into(),
        ));
    }
    Ok(PathBuf::from(path))
}

/// Settings of every connection. `synchronous=FULL` makes a commit wait for the WAL to reach the
/// disk, so an acknowledged write survives a power loss, not only a crash.
fn connect(path: &Path) -> DbResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Room for every statement of the store, so none is parsed twice.
    conn.set_prepared_statement_cache_capacity(64);
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// A reader cannot write even by mistake: writes must go through the writer's transaction.
fn connect_reader(path: &Path) -> DbResult<Connection> {
    let conn = connect(path)?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

/// A connection that cannot write: opened read-only (the file must exist) and `query_only`.
fn connect_read_only(path: &Path) -> DbResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

/// A read-only store reads a database the server made: in WAL mode (readers beside its writer)
/// and with every migration this build knows applied.
fn check_read_only(conn: &Connection, path: &Path) -> StoreResult<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).map_err(Fail::from)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Other(
            format!("{} is not in WAL mode (got {mode}): start keyward on it first", path.display()).into(),
        ));
    }
    let applied: Vec<i64> = conn
        .prepare("SELECT version FROM schema_migrations")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
        .map_err(|_| StoreError::Other(format!("{} is not a migrated keyward database", path.display()).into()))?;
    if let Some(missing) = MIGRATIONS.iter().find(|m| !applied.contains(&m.version)) {
        return Err(StoreError::Other(
            format!("{} lacks migration {}: run `keyward migrate` on it first", path.display(), missing.version).into(),
        ));
    }
    Ok(())
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("read_only", &self.is_read_only())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        let inner = Arc::clone(&self.inner);
        blocking(move || Ok(inner.migrate()?)).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }

    async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        let name = name.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM settings WHERE name = ?1")?
                .query_row([name], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    async fn put_setting_if_absent(&self, name: &str, value: &str) -> StoreResult<bool> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |conn| {
            let inserted = conn
                .prepare_cached("INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING")?
                .execute([name, value])?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn insert_org(&self, org: &OrgRecord) -> StoreResult<()> {
        let org = org.clone();
        self.write(move |conn| {
            conn.prepare_cached("INSERT INTO orgs (id, name, created_at) VALUES (?1, ?2, ?3)")?
                .execute(params![org.id.as_str(), org.name, nanos(org.created_at)?])
                .map_err(|error| conflict_as(error.into(), "org_id"))?;
            Ok(())
        })
        .await
    }

    async fn find_org(&self, id: &OrgId) -> StoreResult<Option<OrgRecord>> {
        let id = id.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT id, name, created_at FROM orgs WHERE id = ?1")?;
            let mut rows = stmt.query([id.as_str()])?;
            rows.next()?.map(org_from_row).transpose()
        })
        .await
    }

    async fn list_orgs(&self) -> StoreResult<Vec<OrgRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT id, name, created_at FROM orgs ORDER BY created_at, id")?;
            let orgs = rows::collect(stmt.query([])?, org_from_row)?;
            Ok(orgs)
        })
        .await
    }

    fn org<'s>(&'s self, id: &OrgId) -> Box<dyn OrgStore + 's> {
        Box::new(org::SqliteOrgStore::new(self, id.clone()))
    }

    async fn find_key_by_hash(&self, hash: &KeyHash) -> StoreResult<Option<KeyRecord>> {
        let hash = hash.0;
        self.read_inline(move |conn| {
            let mut stmt = conn.prepare_cached(concat!("SELECT ", key_columns!(), " FROM api_keys WHERE hash = ?1"))?;
            let mut rows = stmt.query([&hash[..]])?;
            rows.next()?.map(key_from_row).transpose()
        })
        .await
    }

    async fn record_last_used(&self, uses: &[(KeyId, OffsetDateTime)]) -> StoreResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let uses = uses.to_vec();
        self.write(move |conn| {
            // Batches from several nodes may arrive out of order: a time only ever moves forward.
            let mut stmt = conn.prepare_cached(
                "UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, ?2), ?2) WHERE id = ?1",
            )?;
            for (id, at) in &uses {
                stmt.execute(params![id.as_str(), nanos(*at)?])?;
            }
            Ok(())
        })
        .await
    }

    async fn find_member_by_email(&self, email: &str) -> StoreResult<Option<MemberRecord>> {
        let email = email.to_owned();
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached(concat!("SELECT ", member_columns!(), " FROM members WHERE email = ?1"))?;
            let mut rows = stmt.query([email])?;
            rows.next()?.map(member_from_row).transpose()
        })
        .await
    }

    async fn insert_session(&self, session: &SessionRecord, event: &NewAuditEvent) -> StoreResult<()> {
        let (session, event) = (session.clone(), event.clone());
        self.write(move |conn| {
            // Through the member's row, so a session can only name a member of its own org.
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO sessions (token_hash, csrf_hash, member_id, org_id, created_at, expires_at) \
                     SELECT ?1, ?2, id, org_id, ?5, ?6 FROM members WHERE id = ?3 AND org_id = ?4",
                )?
                .execute(params![
                    &session.token_hash.0[..],
                    &session.csrf_hash.0[..],
                    session.member_id.as_str(),
                    session.org_id.as_str(),
                    nanos(session.created_at)?,
                    nanos(session.expires_at)?,
                ])
                .map_err(|error| conflict_as(error.into(), "session_token"))?;
            if inserted == 0 {
                return Err(StoreError::NotFound.into());
            }
            append_event(conn, &session.org_id, &event)
        })
        .await
    }

    async fn find_session(&self, token_hash: &KeyHash) -> StoreResult<Option<(SessionRecord, MemberRecord)>> {
        let hash = token_hash.0;
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(concat!(session_join!(), " WHERE s.token_hash = ?1"))?;
            let mut rows = stmt.query([&hash[..]])?;
            rows.next()?.map(session_from_row).transpose()
        })
        .await
    }

    async fn delete_session(&self, token_hash: &KeyHash) -> StoreResult<()> {
        let hash = token_hash.0;
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?.execute([&hash[..]])?;
            Ok(())
        })
        .await
    }

    async fn delete_expired_sessions(&self, now: OffsetDateTime) -> StoreResult<u64> {
        self.write(move |conn| {
            // Expired means `expires_at <= now`, as for keys; the index on expires_at finds them.
            let deleted = conn.prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")?.execute([nanos(now)?])?;
            Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
        })
        .await
    }

    async fn latest_change(&self) -> StoreResult<i64> {
        self.read(|conn| Ok(conn.query_row("SELECT coalesce(max(seq), 0) FROM change_log", [], |row| row.get(0))?))
            .await
    }

    async fn changes_since(&self, seq: i64) -> StoreResult<(Vec<Change>, i64)> {
        self.read(move |conn| {
            // One snapshot, so a prune between the two queries cannot hide a gap.
            let tx = conn.unchecked_transaction()?;
            let mut changes = Vec::new();
            let oldest: Option<i64> = tx.query_row("SELECT min(seq) FROM change_log", [], |row| row.get(0))?;
            if oldest.is_some_and(|oldest| oldest > seq.saturating_add(1)) {
                // The caller fell behind the pruned history: it cannot know which keys changed,
                // so it must forget every org's.
                let mut stmt = tx.prepare_cached("SELECT id FROM orgs")?;
                let mut rows = stmt.query([])?;
                while let Some(row) = rows.next()? {
                    let id: String = row.get(0)?;
                    changes.push(Change::Org(OrgId::parse(&id).map_err(|_| error::bad_row("orgs.id"))?));
                }
            }
            let mut next = seq;
            let mut stmt =
                tx.prepare_cached("SELECT seq, org_id, key_hash FROM change_log WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
            let mut rows = stmt.query([seq, MAX_CHANGES])?;
            while let Some(row) = rows.next()? {
                next = row.get("seq")?;
                changes.push(change_from_row(row)?);
            }
            Ok((changes, next))
        })
        .await
    }
}
