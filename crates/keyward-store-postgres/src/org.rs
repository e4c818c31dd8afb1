//! The tenant view: every query binds `org_id`, so another org's id is simply not found.

use async_trait::async_trait;
use keyward_core::ids::{ChannelId, KeyId, MemberId, OrgId, PhoneNumberId};
use keyward_core::record::KeyRecord;
use keyward_store::{
    rules, AuditFilter, AuditRecord, ChannelRecord, KeyFilter, KeyWrite, MemberRecord, NewAuditEvent, OrgStore, Page,
    Paged, PhoneNumberRecord, StatusFilter, StoreError, StoreResult,
};
use tokio_postgres::Row;

use crate::error::{bad_row, other, DbResult};
use crate::rows::{
    self, append_event, event_columns, event_from_row, get, key_columns, key_from_row, log_change, member_columns,
    member_from_row, Conn,
};
use crate::{begin, commit, PostgresStore};

pub(crate) struct PostgresOrgStore<'s> {
    store: &'s PostgresStore,
    org_id: OrgId,
}

impl<'s> PostgresOrgStore<'s> {
    pub(crate) fn new(store: &'s PostgresStore, org_id: OrgId) -> Self {
        Self { store, org_id }
    }

    /// Every row of `sql` (whose `$1` is this org's id), mapped by `map`.
    async fn all<T>(&self, sql: &str, map: fn(&Row) -> DbResult<T>) -> StoreResult<Vec<T>> {
        let client = self.store.client().await?;
        let rows = client.rows(sql, &[&self.org_id.as_str()]).await?;
        Ok(rows.iter().map(map).collect::<DbResult<_>>()?)
    }
}

fn phone_number_from_row(row: &Row) -> DbResult<PhoneNumberRecord> {
    Ok(PhoneNumberRecord {
        id: PhoneNumberId::parse(get(row, "phone_numbers", "id")?).map_err(|_| bad_row("phone_numbers.id"))?,
        number: get(row, "phone_numbers", "number")?,
        created_at: get(row, "phone_numbers", "created_at")?,
    })
}

fn channel_from_row(row: &Row) -> DbResult<ChannelRecord> {
    Ok(ChannelRecord {
        id: ChannelId::parse(get(row, "channels", "id")?).map_err(|_| bad_row("channels.id"))?,
        slug: get(row, "channels", "slug")?,
        name: get(row, "channels", "name")?,
        created_at: get(row, "channels", "created_at")?,
    })
}

async fn find_key(conn: &impl Conn, org_id: &OrgId, id: &KeyId, lock: bool) -> DbResult<Option<KeyRecord>> {
    let sql = if lock {
        concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1 AND org_id = $2 FOR UPDATE")
    } else {
        concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1 AND org_id = $2")
    };
    conn.opt(sql, &[&id.as_str(), &org_id.as_str()]).await?.as_ref().map(key_from_row).transpose()
}

async fn find_member(conn: &impl Conn, org_id: &OrgId, id: &MemberId, lock: bool) -> DbResult<Option<MemberRecord>> {
    let sql = if lock {
        concat!("SELECT ", member_columns!(), " FROM members WHERE id = $1 AND org_id = $2 FOR UPDATE")
    } else {
        concat!("SELECT ", member_columns!(), " FROM members WHERE id = $1 AND org_id = $2")
    };
    conn.opt(sql, &[&id.as_str(), &org_id.as_str()]).await?.as_ref().map(member_from_row).transpose()
}

/// A key or event must belong to the view it is written through.
fn check_org(org_id: &OrgId, record_org: &OrgId) -> DbResult<()> {
    if org_id == record_org {
        Ok(())
    } else {
        Err(other(format!("a record of {record_org} written through {org_id}'s store")))
    }
}

#[async_trait]
impl OrgStore for PostgresOrgStore<'_> {
    fn org_id(&self) -> &OrgId {
        &self.org_id
    }

    async fn add_phone_number(&self, number: &PhoneNumberRecord, event: &NewAuditEvent) -> StoreResult<()> {
        let mut client = self.store.client().await?;
        let tx = begin(&mut client).await?;
        tx.execute(
            "INSERT INTO phone_numbers (id, org_id, number, created_at) VALUES ($1, $2, $3, $4)",
            &[&number.id.as_str(), &self.org_id.as_str(), &number.number, &number.created_at],
        )
        .await?;
        append_event(&tx, &self.org_id, event).await?;
        // The sender rule reads the org's numbers: cached policies of the org are stale.
        log_change(&tx, &self.org_id, None, event.at).await?;
        Ok(commit(tx).await?)
    }

    async fn phone_numbers(&self) -> StoreResult<Vec<PhoneNumberRecord>> {
        self.all(
            "SELECT id, number, created_at FROM phone_numbers WHERE org_id = $1 ORDER BY created_at, seq",
            phone_number_from_row,
        )
        .await
    }

    async fn add_channel(&self, channel: &ChannelRecord, event: &NewAuditEvent) -> StoreResult<()> {
        let mut client = self.store.client().await?;
        let tx = begin(&mut client).await?;
        tx.execute(
            "INSERT INTO channels (id, org_id, slug, name, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[&channel.id.as_str(), &self.org_id.as_str(), &channel.slug, &channel.name, &channel.created_at],
        )
        .await?;
        append_event(&tx, &self.org_id, event).await?;
        // The channel rule reads the org's channels.
        log_change(&tx, &self.org_id, None, event.at).await?;
        Ok(commit(tx).await?)
    }

    async fn channels(&self) -> StoreResult<Vec<ChannelRecord>> {
        self.all(
            "SELECT id, slug, name, created_at FROM channels WHERE org_id = $1 ORDER BY created_at, seq",
            channel_from_row,
        )
        .await
    }

    async fn insert_key(&self, key: &KeyRecord, event: &NewAuditEvent) -> StoreResult<()> {
        check_org(&self.org_id, &key.org_id)?;
        let mut client = self.store.client().await?;
        let tx = begin(&mut client).await?;
        rows::insert_key(&tx, key).await?;
        append_event(&tx, &self.org_id, event).await?;
        // A node may have cached "no such key" for this hash.
        log_change(&tx, &self.org_id, Some(&key.hash), event.at).await?;
        Ok(commit(tx).await?)
    }

    async fn import_keys(&self, keys: &[(KeyRecord, NewAuditEvent)]) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        for (key, _) in keys {
            check_org(&self.org_id, &key.org_id)?;
        }
        let mut client = self.store.client().await?;
        let tx = begin(&mut client).await?;
        for (key, event) in keys {
            rows::insert_key(&tx, key).await?;
            append_event(&tx, &self.org_id, event).await?;
        }
        // The feed rows last: their trigger holds the feed's lock until the commit.
        for (key, event) in keys {
            log_change(&tx, &self.org_id, Some(&key.hash), event.at).await?;
        }
        Ok(commit(tx).await?)
    }

    async fn find_key(&self, id: &KeyId) -> StoreResult<Option<KeyRecord>> {
        let client = self.store.client().await?;
        Ok(find_key(&client, &self.org_id, id, false).await?)
    }

    async fn list_keys(&self, filter: &KeyFilter, page: Page) -> StoreResult<Paged<KeyRecord>> {
        let bounds = page.bounds();
        let (before, fetch) = (bounds.before, bounds.fetch);
        let status = filter.status.map(|status| match status {
            StatusFilter::Active => "active",
            StatusFilter::Revoked => "revoked",
            StatusFilter::Expired => "expired",
        });
        let client = self.store.client().await?;
        // One static statement for every filter (a NULL filter matches all), so it is prepared
        // once per connection; `expired` is derived from `now`, as KeyRecord::status.
        let rows = client
            .rows(
                concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM api_keys WHERE org_id = $1 AND seq < $2 AND ($3::text IS NULL OR created_by = $3) AND \
                     ($7::text IS NULL OR strpos(lower(name), lower($7)) > 0 OR strpos(prefix, $7) = 1) AND \
                     CASE $4::text \
                       WHEN 'active' THEN revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $5) \
                       WHEN 'revoked' THEN revoked_at IS NOT NULL \
                       WHEN 'expired' THEN revoked_at IS NULL AND expires_at <= $5 \
                       ELSE true \
                     END \
                     ORDER BY seq DESC LIMIT $6"
                ),
                &[&self.org_id.as_str(), &before, &filter.created_by, &status, &filter.now, &fetch, &filter.search],
            )
            .await?;
        let keys = rows
            .iter()
            .map(|row| Ok((get(row, "api_keys", "seq")?, key_from_row(row)?)))
            .collect::<DbResult<Vec<_>>>()?;
        Ok(Paged::from_rows(keys, bounds))
    }

    async fn write_key(&self, write: &KeyWrite<'_>) -> StoreResult<bool> {
        let (before, after) = (write.before, write.after);
        check_org(&self.org_id, &after.org_id)?;
        if after.id != before.id || after.hash != before.hash {
            return Err(other(format!("a write of {} may not change the key's id or hash", before.id)).into());
        }
        if let Some(new) = write.insert {
            check_org(&self.org_id, &new.org_id)?;
        }
        // No event, no change.
        let Some(first) = write.events.first() else {
            return Err(other(format!("a write of {} carries no audit event", before.id)).into());
        };
        let mut client = self.store.client().await?;
        let tx = begin(&mut client).await?;
        // The row lock makes the compare and the swap one step: a concurrent writer of this key,
        // on any node, waits here and then compares against what this transaction stored.
        let stored = find_key(&tx, &self.org_id, &before.id, true).await?.ok_or(StoreError::NotFound)?;
        if !rules::same_state(&stored, before) {
            // Dropping the transaction rolls it back; it wrote nothing.
            return Ok(false);
        }
        if let Some(new) = write.insert {
            rows::insert_key(&tx, new).await?;
        }
        rows::update_key(&tx, after).await?;
        for event in write.events {
            append_event(&tx, &self.org_id, event).await?;
        }
        log_change(&tx, &self.org_id, Some(&after.hash), first.at).await?;
        commit(tx).await?;
        Ok(true)
    }

    async fn add_member(&self, member: &MemberRecord, event: &NewAuditEvent) -> StoreResult<()> {
        check_org(&self.org_id, &member.org_id)?;
        let mut client = self.store.client().await?;
        let tx = begin(&mut client).await?;
        tx.execute(
            "INSERT INTO members (id, org_id, email, password_hash, role, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &member.id.as_str(),
                &self.org_id.as_str(),
                &member.email,
                &member.password_hash,
                &member.role.as_str(),
                &member.created_at,
            ],
        )
        .await?;
        append_event(&tx, &self.org_id, event).await?;
        Ok(commit(tx).await?)
    }

    async fn members(&self) -> StoreResult<Vec<MemberRecord>> {
        self.all(
            concat!("SELECT ", member_columns!(), " FROM members WHERE org_id = $1 ORDER BY created_at, seq"),
            member_from_row,
        )
        .await
    }

    async fn find_member(&self, id: &MemberId) -> StoreResult<Option<MemberRecord>> {
        let client = self.store.client().await?;
        Ok(find_member(&client, &self.org_id, id, false).await?)
    }

    async fn remove_member(&self, id: &MemberId, event: &NewAuditEvent) -> StoreResult<MemberRecord> {
        let mut client = self.store.client().await?;
        let tx = begin(&mut client).await?;
        let member = find_member(&tx, &self.org_id, id, true).await?.ok_or(StoreError::NotFound)?;
        // The foreign key cascades too; saying it here keeps the two deletes in plain sight.
        tx.execute("DELETE FROM sessions WHERE member_id = $1", &[&id.as_str()]).await?;
        tx.execute("DELETE FROM members WHERE id = $1 AND org_id = $2", &[&id.as_str(), &self.org_id.as_str()]).await?;
        append_event(&tx, &self.org_id, event).await?;
        // Cached verifications of the org may rest on the member (a key created by them).
        log_change(&tx, &self.org_id, None, event.at).await?;
        commit(tx).await?;
        Ok(member)
    }

    async fn record_event(&self, event: &NewAuditEvent) -> StoreResult<()> {
        let mut client = self.store.client().await?;
        let tx = begin(&mut client).await?;
        append_event(&tx, &self.org_id, event).await?;
        Ok(commit(tx).await?)
    }

    async fn list_audit(&self, filter: &AuditFilter, page: Page) -> StoreResult<Paged<AuditRecord>> {
        let bounds = page.bounds();
        let (before, fetch) = (bounds.before, bounds.fetch);
        let client = self.store.client().await?;
        let rows = client
            .rows(
                concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM audit_events WHERE org_id = $1 AND seq < $2 \
                     AND ($3::text IS NULL OR action = $3) AND ($4::text IS NULL OR target_id = $4) \
                     AND ($5::text IS NULL OR actor_id = $5) \
                     AND ($6::timestamptz IS NULL OR at >= $6) AND ($7::timestamptz IS NULL OR at <= $7) \
                     ORDER BY seq DESC LIMIT $8"
                ),
                &[
                    &self.org_id.as_str(),
                    &before,
                    &filter.action,
                    &filter.target_id,
                    &filter.actor_id,
                    &filter.since,
                    &filter.until,
                    &fetch,
                ],
            )
            .await?;
        let events = rows
            .iter()
            .map(|row| Ok((get(row, "audit_events", "seq")?, event_from_row(row)?)))
            .collect::<DbResult<Vec<_>>>()?;
        Ok(Paged::from_rows(events, bounds))
    }

    async fn audit_chain(&self) -> StoreResult<Vec<AuditRecord>> {
        self.all(
            concat!("SELECT ", event_columns!(), " FROM audit_events WHERE org_id = $1 ORDER BY seq"),
            event_from_row,
        )
        .await
    }
}
