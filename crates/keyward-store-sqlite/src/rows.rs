//! Rows to records and back: times as Unix nanoseconds, lists and objects as JSON text.
//! A row that does not decode is an error (`StoreError::Other`), never a panic.

use keyward_core::audit::GENESIS;
use keyward_core::ids::{EventId, KeyId, MemberId, OrgId};
use keyward_core::key::{Environment, KeyHash};
use keyward_core::record::{self, Actor, ActorKind, Channels, KeyRecord, KeySettings, Role};
use keyward_core::validate::parse_ip_entry;
use keyward_store::{AuditRecord, Change, MemberRecord, NewAuditEvent, OrgRecord, SessionRecord};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::{bad_row, DbResult, Fail};

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

/// How long the change feed keeps a row. Nodes poll it every 100 ms; one that falls further
/// behind than this is told to drop every org's cache (see `changes_since`).
const CHANGE_RETENTION_NANOS: i64 = 3_600 * 1_000_000_000;

/// Nanoseconds fit in an i64 from 1677 to 2262.
/// Every row of a query, each mapped by `map`.
pub(crate) fn collect<T>(
    mut rows: rusqlite::Rows<'_>,
    mut map: impl FnMut(&Row<'_>) -> DbResult<T>,
) -> DbResult<Vec<T>> {
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

pub(crate) fn nanos(at: OffsetDateTime) -> DbResult<i64> {
    i64::try_from(at.unix_timestamp_nanos())
        .map_err(|_| Fail(keyward_store::StoreError::Other(format!("time {at} is outside 1677–2262").into())))
}

fn opt_nanos(at: Option<OffsetDateTime>) -> DbResult<Option<i64>> {
    at.map(nanos).transpose()
}

pub(crate) fn time(column: &str, nanos: i64) -> DbResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).map_err(|_| bad_row(column))
}

fn opt_time(column: &str, nanos: Option<i64>) -> DbResult<Option<OffsetDateTime>> {
    nanos.map(|nanos| time(column, nanos)).transpose()
}

fn string_list(column: &str, text: &str) -> DbResult<Vec<String>> {
    serde_json::from_str(text).map_err(|_| bad_row(column))
}

/// The settings columns of `api_keys`, encoded.
pub(crate) struct SettingsColumns<'a> {
    pub(crate) name: &'a str,
    pub(crate) scopes: String,
    pub(crate) hmac_required: bool,
    pub(crate) rate_limit: Option<i64>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) ip_allowlist: String,
    pub(crate) phone_allowlist: String,
    pub(crate) channels: String,
    pub(crate) environment: &'static str,
    pub(crate) external_id: Option<&'a str>,
    pub(crate) meta: Option<String>,
}

impl<'a> SettingsColumns<'a> {
    pub(crate) fn encode(settings: &'a KeySettings) -> DbResult<Self> {
        Ok(Self {
            name: &settings.name,
            scopes: Value::from(settings.scopes.clone()).to_string(),
            hmac_required: settings.hmac_required,
            rate_limit: settings.rate_limit.map(i64::from),
            expires_at: opt_nanos(settings.expires_at)?,
            ip_allowlist: record::ip_json(&settings.ip_allowlist).to_string(),
            phone_allowlist: Value::from(settings.phone_allowlist.clone()).to_string(),
            channels: record::channels_json(&settings.channels).to_string(),
            environment: settings.environment.as_str(),
            external_id: settings.external_id.as_deref(),
            meta: settings.meta.clone().map(|meta| Value::Object(meta).to_string()),
        })
    }
}

pub(crate) fn insert_key(conn: &Connection, key: &KeyRecord) -> DbResult<()> {
    let settings = SettingsColumns::encode(&key.settings)?;
    conn.prepare_cached(
        "INSERT INTO api_keys (id, org_id, prefix, hash, sealed_signing_secret, name, scopes, hmac_required, \
         rate_limit, expires_at, ip_allowlist, phone_allowlist, channels, environment, external_id, meta, \
         created_at, created_by, revoked_at, revoked_by, last_used_at, hash_version, seal_version) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, \
         ?22, ?23)",
    )?
    .execute(params![
        key.id.as_str(),
        key.org_id.as_str(),
        key.prefix,
        &key.hash.0[..],
        key.sealed_signing_secret,
        settings.name,
        settings.scopes,
        settings.hmac_required,
        settings.rate_limit,
        settings.expires_at,
        settings.ip_allowlist,
        settings.phone_allowlist,
        settings.channels,
        settings.environment,
        settings.external_id,
        settings.meta,
        nanos(key.created_at)?,
        key.created_by,
        opt_nanos(key.revoked_at)?,
        key.revoked_by,
        opt_nanos(key.last_used_at)?,
        key.hash_version,
        key.seal_version,
    ])?;
    Ok(())
}

/// Writes the settings and revocation of a key already stored in `org`.
pub(crate) fn update_key(conn: &Connection, key: &KeyRecord) -> DbResult<()> {
    let settings = SettingsColumns::encode(&key.settings)?;
    conn.prepare_cached(
        "UPDATE api_keys SET name = ?3, scopes = ?4, hmac_required = ?5, rate_limit = ?6, expires_at = ?7, \
         ip_allowlist = ?8, phone_allowlist = ?9, channels = ?10, environment = ?11, external_id = ?12, \
         meta = ?13, revoked_at = ?14, revoked_by = ?15 \
         WHERE id = ?1 AND org_id = ?2",
    )?
    .execute(params![
        key.id.as_str(),
        key.org_id.as_str(),
        settings.name,
        settings.scopes,
        settings.hmac_required,
        settings.rate_limit,
        settings.expires_at,
        settings.ip_allowlist,
        settings.phone_allowlist,
        settings.channels,
        settings.environment,
        settings.external_id,
        settings.meta,
        opt_nanos(key.revoked_at)?,
        key.revoked_by,
    ])?;
    Ok(())
}

pub(crate) fn key_from_row(row: &Row<'_>) -> DbResult<KeyRecord> {
    let hash: Vec<u8> = row.get("hash")?;
    let ip_allowlist = string_list("api_keys.ip_allowlist", &row.get::<_, String>("ip_allowlist")?)?
        .iter()
        .map(|entry| parse_ip_entry(entry).ok_or_else(|| bad_row("api_keys.ip_allowlist")))
        .collect::<DbResult<Vec<_>>>()?;
    let channels = match serde_json::from_str(&row.get::<_, String>("channels")?) {
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
    let meta = row
        .get::<_, Option<String>>("meta")?
        .map(|text| serde_json::from_str(&text).map_err(|_| bad_row("api_keys.meta")))
        .transpose()?;
    let rate_limit = row
        .get::<_, Option<i64>>("rate_limit")?
        .map(|limit| u32::try_from(limit).map_err(|_| bad_row("api_keys.rate_limit")))
        .transpose()?;
    let settings = KeySettings {
        name: row.get("name")?,
        scopes: string_list("api_keys.scopes", &row.get::<_, String>("scopes")?)?,
        hmac_required: row.get("hmac_required")?,
        rate_limit,
        expires_at: opt_time("api_keys.expires_at", row.get("expires_at")?)?,
        ip_allowlist,
        phone_allowlist: string_list("api_keys.phone_allowlist", &row.get::<_, String>("phone_allowlist")?)?,
        channels,
        environment: Environment::parse(&row.get::<_, String>("environment")?)
            .ok_or_else(|| bad_row("api_keys.environment"))?,
        external_id: row.get("external_id")?,
        meta,
    };
    Ok(KeyRecord {
        id: KeyId::parse(&row.get::<_, String>("id")?).map_err(|_| bad_row("api_keys.id"))?,
        org_id: OrgId::parse(&row.get::<_, String>("org_id")?).map_err(|_| bad_row("api_keys.org_id"))?,
        prefix: row.get("prefix")?,
        hash: KeyHash::from_slice(&hash).ok_or_else(|| bad_row("api_keys.hash"))?,
        hash_version: version(row, "api_keys", "hash_version")?,
        sealed_signing_secret: row.get("sealed_signing_secret")?,
        seal_version: version(row, "api_keys", "seal_version")?,
        settings,
        created_at: time("api_keys.created_at", row.get("created_at")?)?,
        created_by: row.get("created_by")?,
        revoked_at: opt_time("api_keys.revoked_at", row.get("revoked_at")?)?,
        revoked_by: row.get("revoked_by")?,
        last_used_at: opt_time("api_keys.last_used_at", row.get("last_used_at")?)?,
    })
}

/// A master key version column: a positive integer.
pub(crate) fn version(row: &Row<'_>, table: &str, column: &str) -> DbResult<u32> {
    let value: i64 = row.get(column)?;
    u32::try_from(value).ok().filter(|v| *v > 0).ok_or_else(|| bad_row(&format!("{table}.{column}")))
}

pub(crate) fn org_from_row(row: &Row<'_>) -> DbResult<OrgRecord> {
    Ok(OrgRecord {
        id: OrgId::parse(&row.get::<_, String>("id")?).map_err(|_| bad_row("orgs.id"))?,
        name: row.get("name")?,
        created_at: time("orgs.created_at", row.get("created_at")?)?,
    })
}

pub(crate) fn event_from_row(row: &Row<'_>) -> DbResult<AuditRecord> {
    let actor = Actor {
        kind: ActorKind::parse(&row.get::<_, String>("actor_type")?)
            .ok_or_else(|| bad_row("audit_events.actor_type"))?,
        id: row.get("actor_id")?,
        name: row.get("actor_name")?,
    };
    let event = NewAuditEvent {
        id: EventId::parse(&row.get::<_, String>("id")?).map_err(|_| bad_row("audit_events.id"))?,
        at: time("audit_events.at", row.get("at")?)?,
        actor,
        actor_ip: row.get("actor_ip")?,
        user_agent: row.get("user_agent")?,
        action: row.get("action")?,
        target_type: row.get("target_type")?,
        target_id: row.get("target_id")?,
        target_name: row.get("target_name")?,
        changes: serde_json::from_str(&row.get::<_, String>("changes")?)
            .map_err(|_| bad_row("audit_events.changes"))?,
        trace_id: row.get("trace_id")?,
    };
    Ok(AuditRecord {
        event,
        org_id: OrgId::parse(&row.get::<_, String>("org_id")?).map_err(|_| bad_row("audit_events.org_id"))?,
        prev_hash: row.get("prev_hash")?,
        hash: row.get("hash")?,
    })
}

pub(crate) fn member_from_row(row: &Row<'_>) -> DbResult<MemberRecord> {
    Ok(MemberRecord {
        id: MemberId::parse(&row.get::<_, String>("id")?).map_err(|_| bad_row("members.id"))?,
        org_id: OrgId::parse(&row.get::<_, String>("org_id")?).map_err(|_| bad_row("members.org_id"))?,
        email: row.get("email")?,
        password_hash: row.get("password_hash")?,
        role: Role::parse(&row.get::<_, String>("role")?).ok_or_else(|| bad_row("members.role"))?,
        created_at: time("members.created_at", row.get("created_at")?)?,
    })
}

/// A row of [`session_join`]: the session and its member.
pub(crate) fn session_from_row(row: &Row<'_>) -> DbResult<(SessionRecord, MemberRecord)> {
    let hash = |column: &str| -> DbResult<KeyHash> {
        let bytes: Vec<u8> = row.get(column)?;
        KeyHash::from_slice(&bytes).ok_or_else(|| bad_row(&format!("sessions.{column}")))
    };
    let session = SessionRecord {
        token_hash: hash("token_hash")?,
        csrf_hash: hash("csrf_hash")?,
        member_id: MemberId::parse(&row.get::<_, String>("session_member_id")?)
            .map_err(|_| bad_row("sessions.member_id"))?,
        org_id: OrgId::parse(&row.get::<_, String>("session_org_id")?).map_err(|_| bad_row("sessions.org_id"))?,
        created_at: time("sessions.created_at", row.get("session_created_at")?)?,
        expires_at: time("sessions.expires_at", row.get("expires_at")?)?,
    };
    Ok((session, member_from_row(row)?))
}

/// Appends `event` to the org's hash chain. Runs inside the caller's write transaction, which
/// holds the database's write lock, so no other writer can slip an event in between read and insert.
pub(crate) fn append_event(conn: &Connection, org_id: &OrgId, event: &NewAuditEvent) -> DbResult<()> {
    let prev_hash: String = conn
        .prepare_cached("SELECT hash FROM audit_events WHERE org_id = ?1 ORDER BY seq DESC LIMIT 1")?
        .query_row([org_id.as_str()], |row| row.get(0))
        .optional()?
        .unwrap_or_else(|| GENESIS.to_owned());
    let hash = event.chain_hash(org_id, &prev_hash);
    conn.prepare_cached(
        "INSERT INTO audit_events (id, org_id, at, actor_type, actor_id, actor_name, actor_ip, action, target_type, \
         target_id, target_name, changes, trace_id, prev_hash, hash, user_agent) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        event.id.as_str(),
        org_id.as_str(),
        nanos(event.at)?,
        event.actor.kind.as_str(),
        event.actor.id,
        event.actor.name,
        event.actor_ip,
        event.action,
        event.target_type,
        event.target_id,
        event.target_name,
        event.changes.to_string(),
        event.trace_id,
        prev_hash,
        hash,
        event.user_agent,
    ])?;
    Ok(())
}

/// Tells other nodes to forget a key (or, with no hash, every key of the org), and prunes the
/// feed's old rows on the way, through the `at` index.
pub(crate) fn log_change(
    conn: &Connection,
    org_id: &OrgId,
    key_hash: Option<&KeyHash>,
    at: OffsetDateTime,
) -> DbResult<()> {
    let at = nanos(at)?;
    conn.prepare_cached("INSERT INTO change_log (org_id, key_hash, at) VALUES (?1, ?2, ?3)")?.execute(params![
        org_id.as_str(),
        key_hash.map(|hash| &hash.0[..]),
        at
    ])?;
    conn.prepare_cached("DELETE FROM change_log WHERE at < ?1")?
        .execute([at.saturating_sub(CHANGE_RETENTION_NANOS)])?;
    Ok(())
}

pub(crate) fn change_from_row(row: &Row<'_>) -> DbResult<Change> {
    let org_id = OrgId::parse(&row.get::<_, String>("org_id")?).map_err(|_| bad_row("change_log.org_id"))?;
    Ok(match row.get::<_, Option<Vec<u8>>>("key_hash")? {
        Some(hash) => Change::Key(KeyHash::from_slice(&hash).ok_or_else(|| bad_row("change_log.key_hash"))?),
        None => Change::Org(org_id),
    })
}
