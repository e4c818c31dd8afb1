//! Rows to records and back: times as `timestamptz`, hashes as `bytea`, lists and objects as JSON
//! text encoded as the sqlite backend encodes them. A row that does not decode is an error
//! (`StoreError::Other`), never a panic. Also the statements every change shares: inserting and
//! updating a key, appending to an org's audit chain, and logging a change for other nodes.

use async_trait::async_trait;
use keyward_core::audit::GENESIS;
use keyward_core::ids::{EventId, KeyId, MemberId, OrgId};
use keyward_core::key::{Environment, KeyHash};
use keyward_core::record::{self, Actor, ActorKind, Channels, KeyRecord, KeySettings, Role};
use keyward_core::validate::parse_ip_entry;
use keyward_store::{AuditRecord, Change, MemberRecord, NewAuditEvent, OrgRecord, SessionRecord};
use serde_json::Value;
use time::OffsetDateTime;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::Row;

use crate::error::{bad_row, DbResult};

/// Query parameters, as tokio-postgres takes them.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// What queries run on: a pooled connection or a transaction on one. Every statement goes
/// through the connection's prepared-statement cache, so each is parsed once per connection.
#[async_trait]
pub(crate) trait Conn: Send + Sync {
    async fn rows(&self, sql: &str, params: Params<'_>) -> DbResult<Vec<Row>>;
    async fn execute(&self, sql: &str, params: Params<'_>) -> DbResult<u64>;

    /// The first row, if any.
    async fn opt(&self, sql: &str, params: Params<'_>) -> DbResult<Option<Row>> {
        Ok(self.rows(sql, params).await?.into_iter().next())
    }
}

#[async_trait]
impl Conn for deadpool_postgres::Client {
    async fn rows(&self, sql: &str, params: Params<'_>) -> DbResult<Vec<Row>> {
        let statement = self.prepare_cached(sql).await?;
        Ok(self.query(&statement, params).await?)
    }

    async fn execute(&self, sql: &str, params: Params<'_>) -> DbResult<u64> {
        let statement = self.prepare_cached(sql).await?;
        Ok(tokio_postgres::Client::execute(self, &statement, params).await?)
    }
}

#[async_trait]
impl Conn for deadpool_postgres::Transaction<'_> {
    async fn rows(&self, sql: &str, params: Params<'_>) -> DbResult<Vec<Row>> {
        let statement = self.prepare_cached(sql).await?;
        Ok(self.query(&statement, params).await?)
    }

    async fn execute(&self, sql: &str, params: Params<'_>) -> DbResult<u64> {
        let statement = self.prepare_cached(sql).await?;
        Ok(tokio_postgres::Transaction::execute(self, &statement, params).await?)
    }
}

/// The `api_keys` columns [`key_from_row`] reads, in SQL.
macro_rules! key_columns {
    () => {
        "seq, id, org_id, prefix, hash, sealed_signing_secret, name, scopes, hmac_required, rate_limit, \
         expires_at, ip_allowlist, phone_allowlist, channels, environment, external_id, meta, created_at, \
         created_by, revoked_at, revoked_by, last_used_at, hash_version, seal_version"
    };
}
pub(crate) use key_columns;

/// The `audit_events` columns [`event_from_row`] reads, in SQL.
macro_rules! event_columns {
    () => {
        "seq, id, org_id, at, actor_type, actor_id, actor_name, actor_ip, user_agent, action, target_type, \
         target_id, target_name, changes, trace_id, prev_hash, hash"
    };
}
pub(crate) use event_columns;

/// The `members` columns [`member_from_row`] reads, in SQL.
macro_rules! member_columns {
    () => {
        "id, org_id, email, password_hash, role, created_at"
    };
}
pub(crate) use member_columns;

/// A session joined with its member, as [`session_from_row`] reads it: the session's own columns
/// are aliased so they cannot be confused with the member's.
macro_rules! session_join {
    () => {
        "SELECT s.token_hash AS token_hash, s.csrf_hash AS csrf_hash, s.member_id AS session_member_id, \
         s.org_id AS session_org_id, s.created_at AS session_created_at, s.expires_at AS expires_at, \
         m.id AS id, m.org_id AS org_id, m.email AS email, m.password_hash AS password_hash, m.role AS role, \
         m.created_at AS created_at \
         FROM sessions s JOIN members m ON m.id = s.member_id"
    };
}
pub(crate) use session_join;

/// Column `column` of `row` (of `table`, for the error): a missing column, a NULL where none is
/// allowed or a value of another type is an unreadable row.
pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a Row, table: &str, column: &str) -> DbResult<T> {
    row.try_get(column).map_err(|_| bad_row(&format!("{table}.{column}")))
}

pub(crate) fn id<T>(row: &Row, table: &str, column: &str, parse: impl FnOnce(&str) -> Option<T>) -> DbResult<T> {
    parse(&get::<String>(row, table, column)?).ok_or_else(|| bad_row(&format!("{table}.{column}")))
}

fn hash(row: &Row, table: &str, column: &str) -> DbResult<KeyHash> {
    KeyHash::from_slice(get::<&[u8]>(row, table, column)?).ok_or_else(|| bad_row(&format!("{table}.{column}")))
}

/// A master key version column: a positive integer.
pub(crate) fn version(row: &Row, table: &str, column: &str) -> DbResult<u32> {
    u32::try_from(get::<i64>(row, table, column)?)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| bad_row(&format!("{table}.{column}")))
}

fn string_list(row: &Row, column: &str) -> DbResult<Vec<String>> {
    serde_json::from_str(get::<&str>(row, "api_keys", column)?).map_err(|_| bad_row(&format!("api_keys.{column}")))
}

/// The settings columns of `api_keys`, encoded.
pub(crate) struct SettingsColumns<'a> {
    pub(crate) name: &'a str,
    pub(crate) scopes: String,
    pub(crate) hmac_required: bool,
    pub(crate) rate_limit: Option<i64>,
    pub(crate) expires_at: Option<OffsetDateTime>,
    pub(crate) ip_allowlist: String,
    pub(crate) phone_allowlist: String,
    pub(crate) channels: String,
    pub(crate) environment: &'static str,
    pub(crate) external_id: Option<&'a str>,
    pub(crate) meta: Option<String>,
}

impl<'a> SettingsColumns<'a> {
    pub(crate) fn encode(settings: &'a KeySettings) -> Self {
        Self {
            name: &settings.name,
            scopes: Value::from(settings.scopes.clone()).to_string(),
            hmac_required: settings.hmac_required,
            rate_limit: settings.rate_limit.map(i64::from),
            expires_at: settings.expires_at,
            ip_allowlist: record::ip_json(&settings.ip_allowlist).to_string(),
            phone_allowlist: Value::from(settings.phone_allowlist.clone()).to_string(),
            channels: record::channels_json(&settings.channels).to_string(),
            environment: settings.environment.as_str(),
            external_id: settings.external_id.as_deref(),
            meta: settings.meta.clone().map(|meta| Value::Object(meta).to_string()),
        }
    }
}

pub(crate) async fn insert_key(conn: &impl Conn, key: &KeyRecord) -> DbResult<()> {
    let s = SettingsColumns::encode(&key.settings);
    conn.execute(
        "INSERT INTO api_keys (id, org_id, prefix, hash, sealed_signing_secret, name, scopes, hmac_required, \
         rate_limit, expires_at, ip_allowlist, phone_allowlist, channels, environment, external_id, meta, \
         created_at, created_by, revoked_at, revoked_by, last_used_at, hash_version, seal_version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
         $22, $23)",
        &[
            &key.id.as_str(),
            &key.org_id.as_str(),
            &key.prefix,
            &&key.hash.0[..],
            &key.sealed_signing_secret,
            &s.name,
            &s.scopes,
            &s.hmac_required,
            &s.rate_limit,
            &s.expires_at,
            &s.ip_allowlist,
            &s.phone_allowlist,
            &s.channels,
            &s.environment,
            &s.external_id,
            &s.meta,
            &key.created_at,
            &key.created_by,
            &key.revoked_at,
            &key.revoked_by,
            &key.last_used_at,
            &i64::from(key.hash_version),
            &i64::from(key.seal_version),
        ],
    )
    .await?;
    Ok(())
}

/// Writes every column of a stored key that a change may move: its signing secret, settings and
/// revocation. Not `last_used_at`, which only the last-used batches move.
pub(crate) async fn update_key(conn: &impl Conn, key: &KeyRecord) -> DbResult<()> {
    let s = SettingsColumns::encode(&key.settings);
    conn.execute(
        "UPDATE api_keys SET sealed_signing_secret = $3, name = $4, scopes = $5, hmac_required = $6, \
         rate_limit = $7, expires_at = $8, ip_allowlist = $9, phone_allowlist = $10, channels = $11, \
         environment = $12, external_id = $13, meta = $14, revoked_at = $15, revoked_by = $16, seal_version = $17 \
         WHERE id = $1 AND org_id = $2",
        &[
            &key.id.as_str(),
            &key.org_id.as_str(),
            &key.sealed_signing_secret,
            &s.name,
            &s.scopes,
            &s.hmac_required,
            &s.rate_limit,
            &s.expires_at,
            &s.ip_allowlist,
            &s.phone_allowlist,
            &s.channels,
            &s.environment,
            &s.external_id,
            &s.meta,
            &key.revoked_at,
            &key.revoked_by,
            &i64::from(key.seal_version),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) fn key_from_row(row: &Row) -> DbResult<KeyRecord> {
    const T: &str = "api_keys";
    let ip_allowlist = string_list(row, "ip_allowlist")?
        .iter()
        .map(|entry| parse_ip_entry(entry).ok_or_else(|| bad_row("api_keys.ip_allowlist")))
        .collect::<DbResult<Vec<_>>>()?;
    let channels = match serde_json::from_str(get::<&str>(row, T, "channels")?) {
        Ok(Value::String(all)) if all == "all" => Channels::All,
        Ok(Value::Array(slugs)) => Channels::Only(
            slugs
                .into_iter()
                .map(|slug| match slug {
                    Value::String(slug) => Ok(slug),
                    _ => Err(bad_row("api_keys.channels")),
                })
                .collect::<DbResult<_>>()?,
        ),
        _ => return Err(bad_row("api_keys.channels")),
    };
    let meta = get::<Option<&str>>(row, T, "meta")?
        .map(|text| serde_json::from_str(text).map_err(|_| bad_row("api_keys.meta")))
        .transpose()?;
    let rate_limit = get::<Option<i64>>(row, T, "rate_limit")?
        .map(|limit| u32::try_from(limit).map_err(|_| bad_row("api_keys.rate_limit")))
        .transpose()?;
    let settings = KeySettings {
        name: get(row, T, "name")?,
        scopes: string_list(row, "scopes")?,
        hmac_required: get(row, T, "hmac_required")?,
        rate_limit,
        expires_at: get(row, T, "expires_at")?,
        ip_allowlist,
        phone_allowlist: string_list(row, "phone_allowlist")?,
        channels,
        environment: id(row, T, "environment", Environment::parse)?,
        external_id: get(row, T, "external_id")?,
        meta,
    };
    Ok(KeyRecord {
        id: id(row, T, "id", |text| KeyId::parse(text).ok())?,
        org_id: id(row, T, "org_id", |text| OrgId::parse(text).ok())?,
        prefix: get(row, T, "prefix")?,
        hash: hash(row, T, "hash")?,
        hash_version: version(row, T, "hash_version")?,
        sealed_signing_secret: get(row, T, "sealed_signing_secret")?,
        seal_version: version(row, T, "seal_version")?,
        settings,
        created_at: get(row, T, "created_at")?,
        created_by: get(row, T, "created_by")?,
        revoked_at: get(row, T, "revoked_at")?,
        revoked_by: get(row, T, "revoked_by")?,
        last_used_at: get(row, T, "last_used_at")?,
    })
}

pub(crate) fn org_from_row(row: &Row) -> DbResult<OrgRecord> {
    Ok(OrgRecord {
        id: id(row, "orgs", "id", |text| OrgId::parse(text).ok())?,
        name: get(row, "orgs", "name")?,
        created_at: get(row, "orgs", "created_at")?,
    })
}

pub(crate) fn event_from_row(row: &Row) -> DbResult<AuditRecord> {
    const T: &str = "audit_events";
    let actor = Actor {
        kind: id(row, T, "actor_type", ActorKind::parse)?,
        id: get(row, T, "actor_id")?,
        name: get(row, T, "actor_name")?,
    };
    let event = NewAuditEvent {
        id: id(row, T, "id", |text| EventId::parse(text).ok())?,
        at: get(row, T, "at")?,
        actor,
        actor_ip: get(row, T, "actor_ip")?,
        user_agent: get(row, T, "user_agent")?,
        action: get(row, T, "action")?,
        target_type: get(row, T, "target_type")?,
        target_id: get(row, T, "target_id")?,
        target_name: get(row, T, "target_name")?,
        changes: serde_json::from_str(get::<&str>(row, T, "changes")?).map_err(|_| bad_row("audit_events.changes"))?,
        trace_id: get(row, T, "trace_id")?,
    };
    Ok(AuditRecord {
        event,
        org_id: id(row, T, "org_id", |text| OrgId::parse(text).ok())?,
        prev_hash: get(row, T, "prev_hash")?,
        hash: get(row, T, "hash")?,
    })
}

pub(crate) fn member_from_row(row: &Row) -> DbResult<MemberRecord> {
    const T: &str = "members";
    Ok(MemberRecord {
        id: id(row, T, "id", |text| MemberId::parse(text).ok())?,
        org_id: id(row, T, "org_id", |text| OrgId::parse(text).ok())?,
        email: get(row, T, "email")?,
        password_hash: get(row, T, "password_hash")?,
        role: id(row, T, "role", Role::parse)?,
        created_at: get(row, T, "created_at")?,
    })
}

/// A row of [`session_join`]: the session and its member.
pub(crate) fn session_from_row(row: &Row) -> DbResult<(SessionRecord, MemberRecord)> {
    const T: &str = "sessions";
    let session = SessionRecord {
        token_hash: hash(row, T, "token_hash")?,
        csrf_hash: hash(row, T, "csrf_hash")?,
        member_id: id(row, T, "session_member_id", |text| MemberId::parse(text).ok())?,
        org_id: id(row, T, "session_org_id", |text| OrgId::parse(text).ok())?,
        created_at: get(row, T, "session_created_at")?,
        expires_at: get(row, T, "expires_at")?,
    };
    Ok((session, member_from_row(row)?))
}

pub(crate) fn change_from_row(row: &Row) -> DbResult<Change> {
    let org_id = id(row, "change_log", "org_id", |text| OrgId::parse(text).ok())?;
    Ok(match get::<Option<&[u8]>>(row, "change_log", "key_hash")? {
        Some(hash) => Change::Key(KeyHash::from_slice(hash).ok_or_else(|| bad_row("change_log.key_hash"))?),
        None => Change::Org(org_id),
    })
}

/// Appends `event` to the org's hash chain, inside the caller's transaction. The org's head row
/// is created if missing (a missing org fails its foreign key: `NotFound`) and then locked, so a
/// concurrent writer on any node waits here until this transaction ends and then links to this
/// event: the chain cannot fork.
pub(crate) async fn append_event(conn: &impl Conn, org_id: &OrgId, event: &NewAuditEvent) -> DbResult<()> {
    conn.execute(
        "INSERT INTO audit_heads (org_id, hash) VALUES ($1, $2) ON CONFLICT (org_id) DO NOTHING",
        &[&org_id.as_str(), &GENESIS],
    )
    .await?;
    let head = conn
        .opt("SELECT hash FROM audit_heads WHERE org_id = $1 FOR UPDATE", &[&org_id.as_str()])
        .await?
        .ok_or_else(|| bad_row("audit_heads (the org's head vanished)"))?;
    let prev_hash: String = get(&head, "audit_heads", "hash")?;
    let hash = event.chain_hash(org_id, &prev_hash);
    conn.execute(
        "INSERT INTO audit_events (id, org_id, at, actor_type, actor_id, actor_name, actor_ip, action, target_type, \
         target_id, target_name, changes, trace_id, prev_hash, hash, user_agent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        &[
            &event.id.as_str(),
            &org_id.as_str(),
            &event.at,
            &event.actor.kind.as_str(),
            &event.actor.id,
            &event.actor.name,
            &event.actor_ip,
            &event.action,
            &event.target_type,
            &event.target_id,
            &event.target_name,
            &event.changes.to_string(),
            &event.trace_id,
            &prev_hash,
            &hash,
            &event.user_agent,
        ],
    )
    .await?;
    conn.execute("UPDATE audit_heads SET hash = $2 WHERE org_id = $1", &[&org_id.as_str(), &hash]).await?;
    Ok(())
}

/// Tells other nodes to forget a key (or, with no hash, every key of the org). Must be the last
/// statement of its transaction: the `change_log` trigger takes the feed's lock, which is held
/// until commit, draws the sequence, prunes rows an hour older than `at` and notifies listeners
/// (see the migration).
pub(crate) async fn log_change(
    conn: &impl Conn,
    org_id: &OrgId,
    key_hash: Option<&KeyHash>,
    at: OffsetDateTime,
) -> DbResult<()> {
    conn.execute(
        "INSERT INTO change_log (org_id, key_hash, at) VALUES ($1, $2, $3)",
        &[&org_id.as_str(), &key_hash.map(|hash| &hash.0[..]), &at],
    )
    .await?;
    Ok(())
}
