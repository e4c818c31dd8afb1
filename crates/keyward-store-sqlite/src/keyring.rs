//! [`KeyringStore`] on sqlite: master key versions, what depends on each, rewraps and rehashes as
//! compare-and-swaps, and the operator's audit chain. Each write is one `BEGIN IMMEDIATE`
//! transaction on the one writer, so a read-then-write inside it cannot be overtaken.

use async_trait::async_trait;
use keyward_core::audit::GENESIS;
use keyward_core::ids::{EventId, KeyId, OrgId};
use keyward_core::record::{Actor, ActorKind};
use keyward_store::keyring::{
    KeyringStore, MasterKeyRecord, OperatorAuditRecord, Rehash, Rewrap, SealedSecret, VersionUsage,
};
use keyward_store::{NewAuditEvent, StoreError, StoreResult};
use rusqlite::{params, Connection, OptionalExtension, Row};
use time::OffsetDateTime;

use crate::error::{bad_row, DbResult, Fail};
use crate::rows::{self, log_change, nanos, time, version};
use crate::SqliteStore;

fn count(row: &Row<'_>, column: &str) -> DbResult<u64> {
    u64::try_from(row.get::<_, i64>(column)?).map_err(|_| bad_row(&format!("api_keys ({column})")))
}

fn master_key_from_row(row: &Row<'_>) -> DbResult<MasterKeyRecord> {
    Ok(MasterKeyRecord {
        version: version(row, "master_keys", "version")?,
        check: row.get("check_value")?,
        added_at: time("master_keys.added_at", row.get("added_at")?)?,
        retired_at: row
            .get::<_, Option<i64>>("retired_at")?
            .map(|at| time("master_keys.retired_at", at))
            .transpose()?,
    })
}

fn operator_event_from_row(row: &Row<'_>) -> DbResult<OperatorAuditRecord> {
    const T: &str = "operator_events";
    let actor = Actor {
        kind: ActorKind::parse(&row.get::<_, String>("actor_type")?)
            .ok_or_else(|| bad_row("operator_events.actor_type"))?,
        id: row.get("actor_id")?,
        name: row.get("actor_name")?,
    };
    let event = NewAuditEvent {
        id: EventId::parse(&row.get::<_, String>("id")?).map_err(|_| bad_row("operator_events.id"))?,
        at: time("operator_events.at", row.get("at")?)?,
        actor,
        actor_ip: row.get("actor_ip")?,
        user_agent: row.get("user_agent")?,
        action: row.get("action")?,
        target_type: row.get("target_type")?,
        target_id: row.get("target_id")?,
        target_name: row.get("target_name")?,
        changes: serde_json::from_str(&row.get::<_, String>("changes")?)
            .map_err(|_| bad_row(&format!("{T}.changes")))?,
        trace_id: row.get("trace_id")?,
    };
    Ok(OperatorAuditRecord { event, prev_hash: row.get("prev_hash")?, hash: row.get("hash")? })
}

/// Appends `event` to the operator's chain, inside the caller's write transaction.
fn append_operator_event(conn: &Connection, event: &NewAuditEvent) -> DbResult<()> {
    let prev_hash: String = conn
        .prepare_cached("SELECT hash FROM operator_events ORDER BY seq DESC LIMIT 1")?
        .query_row([], |row| row.get(0))
        .optional()?
        .unwrap_or_else(|| GENESIS.to_owned());
    let hash = event.operator_chain_hash(&prev_hash);
    conn.prepare_cached(
        "INSERT INTO operator_events (id, at, actor_type, actor_id, actor_name, actor_ip, user_agent, action, \
         target_type, target_id, target_name, changes, trace_id, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        event.id.as_str(),
        nanos(event.at)?,
        event.actor.kind.as_str(),
        event.actor.id,
        event.actor.name,
        event.actor_ip,
        event.user_agent,
        event.action,
        event.target_type,
        event.target_id,
        event.target_name,
        event.changes.to_string(),
        event.trace_id,
        prev_hash,
        hash,
    ])?;
    Ok(())
}

#[async_trait]
impl KeyringStore for SqliteStore {
    async fn master_keys(&self) -> StoreResult<Vec<MasterKeyRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT version, check_value, added_at, retired_at FROM master_keys ORDER BY version",
            )?;
            let keys = rows::collect(stmt.query([])?, master_key_from_row)?;
            Ok(keys)
        })
        .await
    }

    async fn add_master_key(&self, key: &MasterKeyRecord, event: Option<&NewAuditEvent>) -> StoreResult<()> {
        let (key, event) = (key.clone(), event.cloned());
        self.write(move |conn| {
            let newest: i64 = conn
                .prepare_cached("SELECT coalesce(max(version), 0) FROM master_keys")?
                .query_row([], |row| row.get(0))?;
            if i64::from(key.version) <= newest {
                return Err(Fail(StoreError::Conflict { constraint: "master_key_version" }));
            }
            conn.prepare_cached(
                "INSERT INTO master_keys (version, check_value, added_at, retired_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                key.version,
                key.check,
                nanos(key.added_at)?,
                key.retired_at.map(nanos).transpose()?
            ])?;
            match &event {
                Some(event) => append_operator_event(conn, event),
                None => Ok(()),
            }
        })
        .await
    }

    async fn retire_master_key(&self, version: u32, at: OffsetDateTime, event: &NewAuditEvent) -> StoreResult<bool> {
        let event = event.clone();
        self.write(move |conn| {
            let retired = conn
                .prepare_cached(
                    "UPDATE master_keys SET retired_at = ?2 WHERE version = ?1 AND retired_at IS NULL \
                     AND version < (SELECT max(version) FROM master_keys) \
                     AND NOT EXISTS (SELECT 1 FROM api_keys WHERE hash_version = ?1 AND revoked_at IS NULL) \
                     AND NOT EXISTS (SELECT 1 FROM api_keys WHERE seal_version = ?1 \
                                     AND sealed_signing_secret IS NOT NULL)",
                )?
                .execute(params![version, nanos(at)?])?;
            if retired == 0 {
                return Ok(false);
            }
            append_operator_event(conn, &event)?;
            Ok(true)
        })
        .await
    }

    async fn master_key_usage(&self) -> StoreResult<Vec<VersionUsage>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT version, sum(live) AS live, sum(revoked) AS revoked, sum(secrets) AS secrets FROM ( \
                   SELECT hash_version AS version, revoked_at IS NULL AS live, revoked_at IS NOT NULL AS revoked, \
                          0 AS secrets FROM api_keys \
                   UNION ALL \
                   SELECT seal_version, 0, 0, 1 FROM api_keys WHERE sealed_signing_secret IS NOT NULL \
                 ) GROUP BY version ORDER BY version",
            )?;
            let usage = rows::collect(stmt.query([])?, |row| {
                Ok(VersionUsage {
                    version: version(row, "api_keys", "version")?,
                    live_keys: count(row, "live")?,
                    revoked_keys: count(row, "revoked")?,
                    signing_secrets: count(row, "secrets")?,
                })
            })?;
            Ok(usage)
        })
        .await
    }

    async fn secrets_sealed_before(&self, version: u32, after: i64, limit: u32) -> StoreResult<Vec<SealedSecret>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, id, org_id, seal_version, sealed_signing_secret FROM api_keys \
                 WHERE sealed_signing_secret IS NOT NULL AND seal_version < ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let secrets = rows::collect(stmt.query(params![version, after, limit])?, |row| {
                Ok(SealedSecret {
                    seq: row.get("seq")?,
                    key_id: KeyId::parse(&row.get::<_, String>("id")?).map_err(|_| bad_row("api_keys.id"))?,
                    org_id: OrgId::parse(&row.get::<_, String>("org_id")?).map_err(|_| bad_row("api_keys.org_id"))?,
                    version: version_of(row)?,
                    sealed: row.get("sealed_signing_secret")?,
                })
            })?;
            Ok(secrets)
        })
        .await
    }

    async fn rewrap_secrets(&self, rewraps: &[Rewrap]) -> StoreResult<usize> {
        if rewraps.is_empty() {
            return Ok(0);
        }
        let rewraps = rewraps.to_vec();
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE api_keys SET sealed_signing_secret = ?4, seal_version = ?5 \
                 WHERE id = ?1 AND sealed_signing_secret = ?2 AND seal_version = ?3",
            )?;
            let mut written = 0;
            for rewrap in &rewraps {
                written += stmt.execute(params![
                    rewrap.key_id.as_str(),
                    rewrap.from,
                    rewrap.from_version,
                    rewrap.to,
                    rewrap.to_version
                ])?;
            }
            Ok(written)
        })
        .await
    }

    async fn rehash_keys(&self, rehashes: &[Rehash], at: OffsetDateTime) -> StoreResult<usize> {
        if rehashes.is_empty() {
            return Ok(0);
        }
        let rehashes = rehashes.to_vec();
        self.write(move |conn| {
            let mut written = 0;
            for rehash in &rehashes {
                let org: Option<String> = conn
                    .prepare_cached(
                        "UPDATE api_keys SET hash = ?3, hash_version = ?4 WHERE id = ?1 AND hash = ?2 RETURNING org_id",
                    )?
                    .query_row(
                        params![rehash.key_id.as_str(), &rehash.from.0[..], &rehash.to.0[..], rehash.to_version],
                        |row| row.get(0),
                    )
                    .optional()?;
                if let Some(org) = org {
                    let org = OrgId::parse(&org).map_err(|_| bad_row("api_keys.org_id"))?;
                    log_change(conn, &org, Some(&rehash.from), at)?;
                    written += 1;
                }
            }
            Ok(written)
        })
        .await
    }

    async fn replace_setting(&self, name: &str, old: &str, new: &str) -> StoreResult<bool> {
        let (name, old, new) = (name.to_owned(), old.to_owned(), new.to_owned());
        self.write(move |conn| {
            let replaced = conn
                .prepare_cached("UPDATE settings SET value = ?3 WHERE name = ?1 AND value = ?2")?
                .execute([name, old, new])?;
            Ok(replaced == 1)
        })
        .await
    }

    async fn operator_audit(&self) -> StoreResult<Vec<OperatorAuditRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at, actor_type, actor_id, actor_name, actor_ip, user_agent, action, target_type, \
                 target_id, target_name, changes, trace_id, prev_hash, hash FROM operator_events ORDER BY seq",
            )?;
            let events = rows::collect(stmt.query([])?, operator_event_from_row)?;
            Ok(events)
        })
        .await
    }
}

fn version_of(row: &Row<'_>) -> DbResult<u32> {
    version(row, "api_keys", "seal_version")
}
