//! keyward-store-postgres: the PostgreSQL backend of [`keyward_store::Store`], for keyward nodes sharing a database.
//! It is not a general database wrapper: every query is one of the trait's methods, and it decides no policy.
//! Start at [`PostgresStore::connect`]; the schema, and why the change feed is ordered by commit, is in `migrations/`.
#![forbid(unsafe_code)]

// Why tokio-postgres + deadpool-postgres (and not sqlx or diesel):
// - the change feed's wake-ups need a dedicated `LISTEN` connection, outside any pool, whose raw
//   notifications we read ourselves (`Connection::poll_message`); tokio-postgres hands us exactly that;
// - deadpool-postgres keeps a prepared-statement cache per pooled connection (`prepare_cached`), so
//   each of the store's fixed statements is parsed once per connection, and gives the pool wait and
//   connect timeouts that make a down database answer `Unavailable` quickly;
// - no database is needed at compile time (no `query!` macros, no `.sqlx/` to keep in sync): the
//   statements are checked by the conformance story, as the sqlite backend's are.

mod error;
mod keyring;
mod org;
mod rows;

use std::collections::BTreeMap;
use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use keyward_core::ids::{KeyId, OrgId};
use keyward_core::key::KeyHash;
use keyward_core::record::KeyRecord;
use keyward_store::{
    Change, ChangeSignals, MemberRecord, NewAuditEvent, OrgRecord, OrgStore, SessionRecord, Store, StoreError,
    StoreResult,
};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_postgres::config::SslMode;
use tokio_postgres::{AsyncMessage, IsolationLevel, NoTls};

use crate::error::{bad_row, DbResult, Fail};
use crate::rows::{
    append_event, change_from_row, get, key_columns, key_from_row, member_columns, member_from_row, org_from_row,
    session_from_row, session_join, Conn,
};

/// One embedded migration: `migrations/<version>_<name>.sql`.
struct Migration {
    version: i64,
    sql: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// `application_name` of the pooled connections, as `pg_stat_activity` shows them.
pub const APPLICATION_NAME: &str = "keyward";

/// `application_name` of the connection [`Store::listen_changes`] opens: find its backend in
/// `pg_stat_activity` by this name.
pub const LISTENER_APPLICATION_NAME: &str = "keyward-listener";

/// The channel the `change_log` trigger notifies (see the migration).
const CHANGE_CHANNEL: &str = "keyward_changes";

/// Connections a store keeps at most. Each node has its own pool.
const POOL_SIZE: usize = 16;

/// How long a query waits for a free pooled connection before the store answers `Unavailable`.
const POOL_WAIT: Duration = Duration::from_secs(2);

/// How long opening a connection may take (TCP, startup, authentication) before `Unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long opening the listener may take, `LISTEN` included.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle time before the listener's connection is probed.
const LISTENER_KEEPALIVE: Duration = Duration::from_secs(10);

/// Rows returned by one `changes_since` call; the caller asks again from the returned sequence.
const MAX_CHANGES: i64 = 1000;

/// The advisory lock (`"kwmigrat"` as a big-endian integer) that makes migrations of several
/// nodes starting together run one after another. Advisory locks are per database.
const MIGRATION_LOCK: i64 = 0x6b77_6d69_6772_6174;

/// The PostgreSQL store: a pool of connections, each with its prepared-statement cache. Every
/// change is one transaction at READ COMMITTED, made safe against other nodes by row locks (the
/// key being changed, the org's audit head) and the feed's advisory lock. Cloning is cheap and
/// shares the pool; a second `connect` on the same database is another node.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Also what the listener connects with.
    config: tokio_postgres::Config,
}

impl PostgresStore {
    /// A store on `postgres://user[:password]@host[:port]/database[?options]` (or `postgresql://`).
    /// Connects lazily: a database that is momentarily down does not fail this, only the queries
    /// (with `Unavailable`). A malformed URL is `Other`. Does not migrate: call [`Store::migrate`].
    pub fn connect(url: &str) -> StoreResult<Self> {
        let config = parse_url(url)?;
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|error| StoreError::Other(format!("cannot set up the connection pool: {error}").into()))?;
        Ok(Self { inner: Arc::new(Inner { pool, config }) })
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> DbResult<deadpool_postgres::Client> {
        Ok(self.inner.pool.get().await?)
    }
}

/// Starts a READ COMMITTED transaction; dropping it without [`commit`] rolls it back.
pub(crate) async fn begin(client: &mut deadpool_postgres::Client) -> DbResult<deadpool_postgres::Transaction<'_>> {
    Ok(client.transaction().await?)
}

pub(crate) async fn commit(tx: deadpool_postgres::Transaction<'_>) -> DbResult<()> {
    Ok(tx.commit().await?)
}

/// Parses and checks the URL, and adds the store's own settings (unless the URL sets them).
fn parse_url(url: &str) -> StoreResult<tokio_postgres::Config> {
    let shown = redact(url);
    let refuse = |why: String| StoreError::Other(format!("{shown:?} is not a PostgreSQL URL: {why}").into());
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(refuse("expected postgres://user@host:port/database".to_owned()));
    }
    let mut config: tokio_postgres::Config = url.parse().map_err(|error: tokio_postgres::Error| {
        // The cause names the option or position at fault; a few quote one character of the
        // text, which may belong to the password, so that part is left out.
        let cause = std::error::Error::source(&error).map_or_else(|| error.to_string(), ToString::to_string);
        refuse(cause.split(" but got").next().unwrap_or_default().to_owned())
    })?;
    if config.get_hosts().is_empty() {
        return Err(refuse("it names no host".to_owned()));
    }
    if config.get_ssl_mode() == SslMode::Require {
        return Err(refuse("sslmode=require: this build connects without TLS".to_owned()));
    }
    if config.get_application_name().is_none() {
        config.application_name(APPLICATION_NAME);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// The URL with its password, if any, replaced by `***`, for messages. The user info ends at the
/// last `@` before the query, so a password with an unescaped `/` or `@` is hidden too.
/// A `password=` option in the query is hidden the same way.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return "<not a URL>".to_owned() };
    let (main, query) = rest.split_at(rest.find('?').unwrap_or(rest.len()));
    let main = match main.rfind('@').map(|at| main.split_at(at)) {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***{host}"),
            None => main.to_owned(),
        },
        None => main.to_owned(),
    };
    let query = query
        .split('&')
        .map(|option| match option.split_once('=') {
            Some((name, _)) if name.trim_start_matches('?') == "password" => format!("{name}=***"),
            _ => option.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{scheme}://{main}{query}")
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.inner.config;
        f.debug_struct("PostgresStore")
            .field("hosts", &config.get_hosts())
            .field("ports", &config.get_ports())
            .field("database", &config.get_dbname())
            .field("user", &config.get_user())
            .finish_non_exhaustive()
    }
}

/// Drives the listener connection: forwards each notification as a wake-up, and ends (dropping
/// the sender, which closes the channel) when the connection ends or fails, or when nobody
/// listens any more.
async fn forward_notifications<S, T>(
    client: tokio_postgres::Client,
    mut connection: tokio_postgres::Connection<S, T>,
    signals: mpsc::Sender<()>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            () = signals.closed() => break,
            message = poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    // A full channel already holds a wake-up: the follower will read the feed.
                    if let Err(mpsc::error::TrySendError::Closed(())) = signals.try_send(()) {
                        break;
                    }
                }
                Some(Ok(_)) => {} // a notice
                Some(Err(_)) | None => break,
            },
        }
    }
    // The client lives as long as the connection is driven: dropping it would end the connection.
    drop(client);
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> StoreResult<()> {
        let mut client = self.client().await?;
        // Under the lock: two nodes creating the table at once could otherwise collide.
        let tx = begin(&mut client).await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations \
             (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(Fail::from)?;
        commit(tx).await?;
        for migration in MIGRATIONS {
            // One transaction per migration, with the applied check inside it and under the lock,
            // so nodes starting together apply each migration once.
            let tx = begin(&mut client).await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
            let row = tx
                .opt(
                    "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1) AS applied",
                    &[&migration.version],
                )
                .await?
                .ok_or_else(|| bad_row("schema_migrations"))?;
            if !get::<bool>(&row, "schema_migrations", "applied")? {
                tx.batch_execute(migration.sql).await.map_err(Fail::from)?;
                tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&migration.version]).await?;
            }
            commit(tx).await?;
        }
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        self.client().await?.rows("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        let client = self.client().await?;
        let row = client.opt("SELECT value FROM settings WHERE name = $1", &[&name]).await?;
        Ok(row.map(|row| get(&row, "settings", "value")).transpose()?)
    }

    async fn put_setting_if_absent(&self, name: &str, value: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        let inserted = client
            .execute(
                "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &value],
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn insert_org(&self, org: &OrgRecord) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)",
                &[&org.id.as_str(), &org.name, &org.created_at],
            )
            .await?;
        Ok(())
    }

    async fn find_org(&self, id: &OrgId) -> StoreResult<Option<OrgRecord>> {
        let client = self.client().await?;
        let row = client.opt("SELECT id, name, created_at FROM orgs WHERE id = $1", &[&id.as_str()]).await?;
        Ok(row.as_ref().map(org_from_row).transpose()?)
    }

    async fn list_orgs(&self) -> StoreResult<Vec<OrgRecord>> {
        let client = self.client().await?;
        let rows = client.rows("SELECT id, name, created_at FROM orgs ORDER BY created_at, id", &[]).await?;
        Ok(rows.iter().map(org_from_row).collect::<DbResult<_>>()?)
    }

    fn org<'s>(&'s self, id: &OrgId) -> Box<dyn OrgStore + 's> {
        Box::new(org::PostgresOrgStore::new(self, id.clone()))
    }

    async fn find_key_by_hash(&self, hash: &KeyHash) -> StoreResult<Option<KeyRecord>> {
        let client = self.client().await?;
        let row =
            client.opt(concat!("SELECT ", key_columns!(), " FROM api_keys WHERE hash = $1"), &[&&hash.0[..]]).await?;
        Ok(row.as_ref().map(key_from_row).transpose()?)
    }

    async fn record_last_used(&self, uses: &[(KeyId, OffsetDateTime)]) -> StoreResult<()> {
        // One update per key, with its latest time, in id order: two nodes flushing overlapping
        // batches lock the rows in the same order and so cannot deadlock.
        let mut latest: BTreeMap<&str, OffsetDateTime> = BTreeMap::new();
        for (id, at) in uses {
            latest.entry(id.as_str()).and_modify(|seen| *seen = (*seen).max(*at)).or_insert(*at);
        }
        if latest.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        for (id, at) in &latest {
            // Batches from several nodes may arrive out of order: a time only ever moves forward.
            tx.execute(
                "UPDATE api_keys SET last_used_at = greatest(coalesce(last_used_at, $2), $2) WHERE id = $1",
                &[id, at],
            )
            .await?;
        }
        Ok(commit(tx).await?)
    }

    async fn find_member_by_email(&self, email: &str) -> StoreResult<Option<MemberRecord>> {
        let client = self.client().await?;
        let row =
            client.opt(concat!("SELECT ", member_columns!(), " FROM members WHERE email = $1"), &[&email]).await?;
        Ok(row.as_ref().map(member_from_row).transpose()?)
    }

    async fn insert_session(&self, session: &SessionRecord, event: &NewAuditEvent) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        // Through the member's row, so a session can only name a member of its own org.
        let inserted = tx
            .execute(
                "INSERT INTO sessions (token_hash, csrf_hash, member_id, org_id, created_at, expires_at) \
                 SELECT $1::bytea, $2::bytea, id, org_id, $5::timestamptz, $6::timestamptz \
                 FROM members WHERE id = $3 AND org_id = $4",
                &[
                    &&session.token_hash.0[..],
                    &&session.csrf_hash.0[..],
                    &session.member_id.as_str(),
                    &session.org_id.as_str(),
                    &session.created_at,
                    &session.expires_at,
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::NotFound);
        }
        append_event(&tx, &session.org_id, event).await?;
        Ok(commit(tx).await?)
    }

    async fn find_session(&self, token_hash: &KeyHash) -> StoreResult<Option<(SessionRecord, MemberRecord)>> {
        let client = self.client().await?;
        let row = client.opt(concat!(session_join!(), " WHERE s.token_hash = $1"), &[&&token_hash.0[..]]).await?;
        Ok(row.as_ref().map(session_from_row).transpose()?)
    }

    async fn delete_session(&self, token_hash: &KeyHash) -> StoreResult<()> {
        let client = self.client().await?;
        client.execute("DELETE FROM sessions WHERE token_hash = $1", &[&&token_hash.0[..]]).await?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let client = self.client().await?;
        // Expired means `expires_at <= now`, as for keys; the index on expires_at finds them.
        Ok(client.execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now]).await?)
    }

    async fn latest_change(&self) -> StoreResult<i64> {
        let client = self.client().await?;
        let row = client
            .opt("SELECT coalesce(max(seq), 0) AS latest FROM change_log", &[])
            .await?
            .ok_or_else(|| bad_row("change_log"))?;
        Ok(get(&row, "change_log", "latest")?)
    }

    async fn changes_since(&self, seq: i64) -> StoreResult<(Vec<Change>, i64)> {
        let mut client = self.client().await?;
        // One snapshot, so a prune between the two queries cannot hide a gap.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(Fail::from)?;
        let mut changes = Vec::new();
        let row =
            tx.opt("SELECT min(seq) AS oldest FROM change_log", &[]).await?.ok_or_else(|| bad_row("change_log"))?;
        let oldest: Option<i64> = get(&row, "change_log", "oldest")?;
        if oldest.is_some_and(|oldest| oldest > seq.saturating_add(1)) {
            // The caller fell behind the pruned history: it cannot know which keys changed, so it
            // must forget every org's.
            for row in tx.rows("SELECT id FROM orgs ORDER BY id", &[]).await? {
                let id: &str = get(&row, "orgs", "id")?;
                changes.push(Change::Org(OrgId::parse(id).map_err(|_| bad_row("orgs.id"))?));
            }
        }
        let mut next = seq;
        let rows = tx
            .rows(
                "SELECT seq, org_id, key_hash FROM change_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&seq, &MAX_CHANGES],
            )
            .await?;
        for row in &rows {
            next = get(row, "change_log", "seq")?;
            changes.push(change_from_row(row)?);
        }
        commit(tx).await?;
        Ok((changes, next))
    }

    async fn listen_changes(&self) -> StoreResult<Option<ChangeSignals>> {
        let mut config = self.inner.config.clone();
        config.application_name(LISTENER_APPLICATION_NAME);
        // The listener only receives: without probes, a vanished server or network would leave it
        // waiting forever instead of closing the channel. These notice a dead peer in about 25 s.
        config.keepalives(true).keepalives_idle(LISTENER_KEEPALIVE).keepalives_interval(Duration::from_secs(5));
        config.keepalives_retries(3);
        let opened = tokio::time::timeout(LISTEN_TIMEOUT, async move {
            let (client, mut connection) = config.connect(NoTls).await?;
            // The connection must be driven for LISTEN to be answered; nothing is forwarded yet.
            {
                let statement = format!("LISTEN {CHANGE_CHANNEL}");
                let listen = client.batch_execute(&statement);
                tokio::pin!(listen);
                loop {
                    tokio::select! {
                        done = &mut listen => break done?,
                        message = poll_fn(|cx| connection.poll_message(cx)) => match message {
                            Some(Ok(_)) => {}
                            Some(Err(error)) => return Err(Fail::from(error)),
                            None => return Err(Fail(StoreError::Unavailable("the listener connection closed".into()))),
                        },
                    }
                }
            }
            Ok::<_, Fail>((client, connection))
        })
        .await;
        let (client, connection) = match opened {
            Ok(opened) => opened?,
            Err(_) => return Err(StoreError::Unavailable("opening the change listener timed out".into())),
        };
        let (sender, receiver) = mpsc::channel(1);
        tokio::spawn(forward_notifications(client, connection, sender));
        Ok(Some(receiver))
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_the_password_and_only_it() {
        let cases = [
            (
                "postgres://kw:s3cret@db:5432/keyward?sslmode=disable",
                "postgres://kw:***@db:5432/keyward?sslmode=disable",
            ),
            ("postgres://kw:se/cr@et@db/keyward", "postgres://kw:***@db/keyward"),
            ("postgres://kw@db/keyward", "postgres://kw@db/keyward"),
            ("postgres://db/keyward?user=kw", "postgres://db/keyward?user=kw"),
            ("postgres://db/keyward?password=s3cret&user=kw", "postgres://db/keyward?password=***&user=kw"),
            ("postgres://db/keyward?user=kw&password=s3cret", "postgres://db/keyward?user=kw&password=***"),
            ("not a url", "<not a URL>"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown);
        }
    }
}
