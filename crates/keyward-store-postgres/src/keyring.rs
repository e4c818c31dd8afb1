//! [`KeyringStore`] on PostgreSQL: master key versions, what depends on each, rewraps and
//! rehashes as compare-and-swaps, and the operator's audit chain. Writers to the versions and to
//! the operator chain take one transaction-scoped advisory lock, so nodes rotating at once
//! record one version after the other and the chain never forks.

use async_trait::async_trait;
use keyward_core::audit::GENESIS;
use keyward_core::ids::{EventId, KeyId, OrgId};
use keyward_core::record::{Actor, ActorKind};
use keyward_store::keyring::{
    KeyringStore, MasterKeyRecord, OperatorAuditRecord, Rehash, Rewrap, SealedSecret, VersionUsage,
};
use keyward_store::{NewAuditEvent, StoreError, StoreResult};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::error::{bad_row, DbResult};
use crate::rows::{get, id, log_change, version, Conn};
use crate::{begin, commit, PostgresStore};

/// The advisory lock (`"kwoperat"` as a big-endian integer) of master key versions and the
/// operator chain.
const OPERATOR_LOCK: i64 = 0x6b77_6f70_6572_6174;

fn count(row: &Row, column: &str) -> DbResult<u64> {
    u64::try_from(get::<i64>(row, "api_keys", column)?).map_err(|_| bad_row(&format!("api_keys ({column})")))
}

fn master_key_from_row(row: &Row) -> DbResult<MasterKeyRecord> {
    const T: &str = "master_keys";
    Ok(MasterKeyRecord {
        version: version(row, T, "version")?,
        check: get(row, T, "check_value")?,
        added_at: get(row, T, "added_at")?,
        retired_at: get(row, T, "retired_at")?,
    })
}

fn operator_event_from_row(row: &Row) -> DbResult<OperatorAuditRecord> {
    const T: &str = "operator_events";
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
        changes: serde_json::from_str(get::<&str>(row, T, "changes")?)
            .map_err(|_| bad_row("operator_events.changes"))?,
        trace_id: get(row, T, "trace_id")?,
    };
    Ok(OperatorAuditRecord { event, prev_hash: get(row, T, "prev_hash")?, hash: get(row, T, "hash")? })
}

/// Appends `event` to the operator's chain, inside the caller's transaction, which holds
/// [`OPERATOR_LOCK`].
async fn append_operator_event(conn: &impl Conn, event: &NewAuditEvent) -> DbResult<()> {
    let prev_hash = match conn.opt("SELECT hash FROM operator_events ORDER BY seq DESC LIMIT 1", &[]).await? {
        Some(row) => get(&row, "operator_events", "hash")?,
        None => GENESIS.to_owned(),
    };
    let hash = event.operator_chain_hash(&prev_hash);
    conn.execute(
        "INSERT INTO operator_events (id, at, actor_type, actor_id, actor_name, actor_ip, user_agent, action, \
         target_type, target_id, target_name, changes, trace_id, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        &[
            &event.id.as_str(),
            &event.at,
            &event.actor.kind.as_str(),
            &event.actor.id,
            &event.actor.name,
            &event.actor_ip,
            &event.user_agent,
            &event.action,
            &event.target_type,
            &event.target_id,
            &event.target_name,
            &event.changes.to_string(),
            &event.trace_id,
            &prev_hash,
            &hash,
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl KeyringStore for PostgresStore {
    async fn master_keys(&self) -> StoreResult<Vec<MasterKeyRecord>> {
        let client = self.client().await?;
        let rows = client
            .rows("SELECT version, check_value, added_at, retired_at FROM master_keys ORDER BY version", &[])
            .await?;
        Ok(rows.iter().map(master_key_from_row).collect::<DbResult<_>>()?)
    }

    async fn add_master_key(&self, key: &MasterKeyRecord, event: Option<&NewAuditEvent>) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&OPERATOR_LOCK]).await?;
        let row = tx
            .opt("SELECT coalesce(max(version), 0) AS newest FROM master_keys", &[])
            .await?
            .ok_or_else(|| bad_row("master_keys"))?;
        let newest: i64 = get(&row, "master_keys", "newest")?;
        if i64::from(key.version) <= newest {
            return Err(StoreError::Conflict { constraint: "master_key_version" });
        }
        tx.execute(
            "INSERT INTO master_keys (version, check_value, added_at, retired_at) VALUES ($1, $2, $3, $4)",
            &[&i64::from(key.version), &key.check, &key.added_at, &key.retired_at],
        )
        .await?;
        if let Some(event) = event {
            append_operator_event(&tx, event).await?;
        }
        Ok(commit(tx).await?)
    }

    async fn retire_master_key(&self, version: u32, at: OffsetDateTime, event: &NewAuditEvent) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&OPERATOR_LOCK]).await?;
        let retired = tx
            .execute(
                "UPDATE master_keys SET retired_at = $2 WHERE version = $1 AND retired_at IS NULL \
                 AND version < (SELECT max(version) FROM master_keys) \
                 AND NOT EXISTS (SELECT 1 FROM api_keys WHERE hash_version = $1 AND revoked_at IS NULL) \
                 AND NOT EXISTS (SELECT 1 FROM api_keys WHERE seal_version = $1 \
                                 AND sealed_signing_secret IS NOT NULL)",
                &[&i64::from(version), &at],
            )
            .await?;
        if retired == 0 {
            return Ok(false);
        }
        append_operator_event(&tx, event).await?;
        commit(tx).await?;
        Ok(true)
    }

    async fn master_key_usage(&self) -> StoreResult<Vec<VersionUsage>> {
        let client = self.client().await?;
        let rows = client
            .rows(
                "SELECT version, sum(live)::bigint AS live, sum(revoked)::bigint AS revoked, \
                        sum(secrets)::bigint AS secrets FROM ( \
                   SELECT hash_version AS version, (revoked_at IS NULL)::int AS live, \
                          (revoked_at IS NOT NULL)::int AS revoked, 0 AS secrets FROM api_keys \
                   UNION ALL \
                   SELECT seal_version, 0, 0, 1 FROM api_keys WHERE sealed_signing_secret IS NOT NULL \
                 ) AS used GROUP BY version ORDER BY version",
                &[],
            )
            .await?;
        let usage = rows.iter().map(|row| {
            Ok(VersionUsage {
                version: version(row, "api_keys", "version")?,
                live_keys: count(row, "live")?,
                revoked_keys: count(row, "revoked")?,
                signing_secrets: count(row, "secrets")?,
            })
        });
        Ok(usage.collect::<DbResult<_>>()?)
    }

    async fn secrets_sealed_before(&self, version: u32, after: i64, limit: u32) -> StoreResult<Vec<SealedSecret>> {
        const T: &str = "api_keys";
        let client = self.client().await?;
        let rows = client
            .rows(
                "SELECT seq, id, org_id, seal_version, sealed_signing_secret FROM api_keys \
                 WHERE sealed_signing_secret IS NOT NULL AND seal_version < $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&i64::from(version), &after, &i64::from(limit)],
            )
            .await?;
        let secrets = rows.iter().map(|row| {
            Ok(SealedSecret {
                seq: get(row, T, "seq")?,
                key_id: id(row, T, "id", |text| KeyId::parse(text).ok())?,
                org_id: id(row, T, "org_id", |text| OrgId::parse(text).ok())?,
                version: crate::rows::version(row, T, "seal_version")?,
                sealed: get(row, T, "sealed_signing_secret")?,
            })
        });
        Ok(secrets.collect::<DbResult<_>>()?)
    }

    async fn rewrap_secrets(&self, rewraps: &[Rewrap]) -> StoreResult<usize> {
        if rewraps.is_empty() {
            return Ok(0);
        }
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let mut written = 0;
        for rewrap in rewraps {
            let updated = tx
                .execute(
                    "UPDATE api_keys SET sealed_signing_secret = $4, seal_version = $5 \
                     WHERE id = $1 AND sealed_signing_secret = $2 AND seal_version = $3",
                    &[
                        &rewrap.key_id.as_str(),
                        &rewrap.from,
                        &i64::from(rewrap.from_version),
                        &rewrap.to,
                        &i64::from(rewrap.to_version),
                    ],
                )
                .await?;
            written += usize::try_from(updated).unwrap_or(0);
        }
        commit(tx).await?;
        Ok(written)
    }

    async fn rehash_keys(&self, rehashes: &[Rehash], at: OffsetDateTime) -> StoreResult<usize> {
        if rehashes.is_empty() {
            return Ok(0);
        }
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let mut moved = Vec::new();
        for rehash in rehashes {
            let row = tx
                .opt(
                    "UPDATE api_keys SET hash = $3, hash_version = $4 WHERE id = $1 AND hash = $2 RETURNING org_id",
                    &[&rehash.key_id.as_str(), &&rehash.from.0[..], &&rehash.to.0[..], &i64::from(rehash.to_version)],
                )
                .await?;
            if let Some(row) = row {
                moved.push((id(&row, "api_keys", "org_id", |text| OrgId::parse(text).ok())?, rehash.from));
            }
        }
        // The feed rows last: their trigger holds the feed's lock until the commit.
        for (org_id, from) in &moved {
            log_change(&tx, org_id, Some(from), at).await?;
        }
        commit(tx).await?;
        Ok(moved.len())
    }

    async fn replace_setting(&self, name: &str, old: &str, new: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        let replaced = client
            .execute("UPDATE settings SET value = $3 WHERE name = $1 AND value = $2", &[&name, &old, &new])
            .await?;
        Ok(replaced == 1)
    }

    async fn operator_audit(&self) -> StoreResult<Vec<OperatorAuditRecord>> {
        let client = self.client().await?;
        let rows = client
            .rows(
                "SELECT id, at, actor_type, actor_id, actor_name, actor_ip, user_agent, action, target_type, \
                 target_id, target_name, changes, trace_id, prev_hash, hash FROM operator_events ORDER BY seq",
                &[],
            )
            .await?;
        Ok(rows.iter().map(operator_event_from_row).collect::<DbResult<_>>()?)
    }
}
