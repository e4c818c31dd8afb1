//! The tenant view: every query binds `org_id`, so another org's id is simply not found.

use async_trait::async_trait;
use keyward_core::ids::{ChannelId, KeyId, MemberId, OrgId, PhoneNumberId};
use keyward_core::record::KeyRecord;
use keyward_store::{
    rules, AuditFilter, AuditRecord, ChannelRecord, KeyFilter, KeyWrite, MemberRecord, NewAuditEvent, OrgStore, Page,
    Paged, PhoneNumberRecord, StatusFilter, StoreError, StoreResult,
};
use rusqlite::{params, Connection};

use crate::error::{bad_row, conflict_as, DbResult, Fail};
use crate::rows::{
    self, append_event, event_columns, event_from_row, key_columns, key_from_row, log_change, member_columns,
    member_from_row, nanos,
};
use crate::SqliteStore;

pub(crate) struct SqliteOrgStore<'s> {
    store: &'s SqliteStore,
    org_id: OrgId,
}

impl<'s> SqliteOrgStore<'s> {
    pub(crate) fn new(store: &'s SqliteStore, org_id: OrgId) -> Self {
        Self { store, org_id }
    }

    /// Every row of `sql` (whose `?1` is this org's id), mapped by `map`.
    async fn all<T: Send + 'static>(
        &self,
        sql: &'static str,
        map: fn(&rusqlite::Row<'_>) -> DbResult<T>,
    ) -> StoreResult<Vec<T>> {
        let org_id = self.org_id.clone();
        self.store.read(move |conn| rows::collect(conn.prepare_cached(sql)?.query([org_id.as_str()])?, map)).await
    }
}

fn phone_number_from_row(row: &rusqlite::Row<'_>) -> DbResult<PhoneNumberRecord> {
    Ok(PhoneNumberRecord {
        id: PhoneNumberId::parse(&row.get::<_, String>("id")?).map_err(|_| bad_row("phone_numbers.id"))?,
        number: row.get("number")?,
        created_at: rows::time("phone_numbers.created_at", row.get("created_at")?)?,
    })
}

fn channel_from_row(row: &rusqlite::Row<'_>) -> DbResult<ChannelRecord> {
    Ok(ChannelRecord {
        id: ChannelId::parse(&row.get::<_, String>("id")?).map_err(|_| bad_row("channels.id"))?,
        slug: row.get("slug")?,
        name: row.get("name")?,
        created_at: rows::time("channels.created_at", row.get("created_at")?)?,
    })
}

fn find_key(conn: &Connection, org_id: &OrgId, id: &KeyId) -> DbResult<Option<KeyRecord>> {
    let mut stmt =
        conn.prepare_cached(concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = ?1 AND org_id = ?2"))?;
    let mut rows = stmt.query([id.as_str(), org_id.as_str()])?;
    rows.next()?.map(key_from_row).transpose()
}

fn find_member(conn: &Connection, org_id: &OrgId, id: &MemberId) -> DbResult<Option<MemberRecord>> {
    let mut stmt =
        conn.prepare_cached(concat!("SELECT ", member_columns!(), " FROM members WHERE id = ?1 AND org_id = ?2"))?;
    let mut rows = stmt.query([id.as_str(), org_id.as_str()])?;
    rows.next()?.map(member_from_row).transpose()
}

/// A key or event must belong to the view it is written through.
fn check_org(org_id: &OrgId, record_org: &OrgId) -> DbResult<()> {
    if org_id == record_org {
        Ok(())
    } else {
        Err(Fail(StoreError::Other(format!("a record of {record_org} written through {org_id}'s store").into())))
    }
}

#[async_trait]
impl OrgStore for SqliteOrgStore<'_> {
    fn org_id(&self) -> &OrgId {
        &self.org_id
    }

    async fn add_phone_number(&self, number: &PhoneNumberRecord, event: &NewAuditEvent) -> StoreResult<()> {
        let (org_id, number, event) = (self.org_id.clone(), number.clone(), event.clone());
        self.store
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO phone_numbers (id, org_id, number, created_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![number.id.as_str(), org_id.as_str(), number.number, nanos(number.created_at)?])
                .map_err(|error| conflict_as(error.into(), "phone_number"))?;
                append_event(conn, &org_id, &event)?;
                // The sender rule reads the org's numbers: cached policies of the org are stale.
                log_change(conn, &org_id, None, event.at)
            })
            .await
    }

    async fn phone_numbers(&self) -> StoreResult<Vec<PhoneNumberRecord>> {
        self.all(
            "SELECT id, number, created_at FROM phone_numbers WHERE org_id = ?1 ORDER BY created_at, rowid",
            phone_number_from_row,
        )
        .await
    }

    async fn add_channel(&self, channel: &ChannelRecord, event: &NewAuditEvent) -> StoreResult<()> {
        let (org_id, channel, event) = (self.org_id.clone(), channel.clone(), event.clone());
        self.store
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO channels (id, org_id, slug, name, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    channel.id.as_str(),
                    org_id.as_str(),
                    channel.slug,
                    channel.name,
                    nanos(channel.created_at)?
                ])
                .map_err(|error| conflict_as(error.into(), "channel_slug"))?;
                append_event(conn, &org_id, &event)?;
                // Requested channels are checked against the org's: cached policies are stale.
                log_change(conn, &org_id, None, event.at)
            })
            .await
    }

    async fn channels(&self) -> StoreResult<Vec<ChannelRecord>> {
        self.all(
            "SELECT id, slug, name, created_at FROM channels WHERE org_id = ?1 ORDER BY created_at, rowid",
            channel_from_row,
        )
        .await
    }

    async fn insert_key(&self, key: &KeyRecord, event: &NewAuditEvent) -> StoreResult<()> {
        let (org_id, key, event) = (self.org_id.clone(), key.clone(), event.clone());
        self.store
            .write(move |conn| {
                check_org(&org_id, &key.org_id)?;
                rows::insert_key(conn, &key)?;
                append_event(conn, &org_id, &event)?;
                // A node may remember this hash as unknown (negative cache): tell it otherwise.
                log_change(conn, &org_id, Some(&key.hash), event.at)
            })
            .await
    }

    async fn import_keys(&self, keys: &[(KeyRecord, NewAuditEvent)]) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let (org_id, keys) = (self.org_id.clone(), keys.to_vec());
        self.store
            .write(move |conn| {
                for (key, event) in &keys {
                    check_org(&org_id, &key.org_id)?;
                    rows::insert_key(conn, key)?;
                    append_event(conn, &org_id, event)?;
                }
                for (key, event) in &keys {
                    log_change(conn, &org_id, Some(&key.hash), event.at)?;
                }
                Ok(())
            })
            .await
    }

    async fn find_key(&self, id: &KeyId) -> StoreResult<Option<KeyRecord>> {
        let (org_id, id) = (self.org_id.clone(), id.clone());
        self.store.read(move |conn| find_key(conn, &org_id, &id)).await
    }

    async fn list_keys(&self, filter: &KeyFilter, page: Page) -> StoreResult<Paged<KeyRecord>> {
        let (org_id, filter) = (self.org_id.clone(), filter.clone());
        let bounds = page.bounds();
        let (before, fetch) = (bounds.before, bounds.fetch);
        self.store
            .read(move |conn| {
                // One static statement for every filter (a NULL filter matches all), so it is
                // prepared once and cached; `expired` is derived from `now`, as KeyRecord::status.
                let mut stmt = conn.prepare_cached(concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM api_keys WHERE org_id = ?1 AND seq < ?2 AND (?3 IS NULL OR created_by = ?3) AND \
                     (?7 IS NULL OR instr(lower(name), lower(?7)) > 0 OR instr(prefix, ?7) = 1) AND \
                     CASE ?4 \
                       WHEN 'active' THEN revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?5) \
                       WHEN 'revoked' THEN revoked_at IS NOT NULL \
                       WHEN 'expired' THEN revoked_at IS NULL AND expires_at <= ?5 \
                       ELSE 1 \
                     END \
                     ORDER BY seq DESC LIMIT ?6"
                ))?;
                let status = filter.status.map(|status| match status {
                    StatusFilter::Active => "active",
                    StatusFilter::Revoked => "revoked",
                    StatusFilter::Expired => "expired",
                });
                let keys = rows::collect(
                    stmt.query(params![
                        org_id.as_str(),
                        before,
                        filter.created_by,
                        status,
                        nanos(filter.now)?,
                        fetch,
                        filter.search
                    ])?,
                    |row| Ok((row.get("seq")?, key_from_row(row)?)),
                )?;
                Ok(Paged::from_rows(keys, bounds))
            })
            .await
    }

    async fn write_key(&self, write: &KeyWrite<'_>) -> StoreResult<bool> {
        let org_id = self.org_id.clone();
        let (before, after, insert) = (write.before.clone(), write.after.clone(), write.insert.cloned());
        let events = write.events.to_vec();
        self.store
            .write(move |conn| {
                // BEGIN IMMEDIATE holds the write lock: the row cannot change between this read and the update.
                let stored = find_key(conn, &org_id, &before.id)?.ok_or(StoreError::NotFound)?;
                if !rules::same_state(&stored, &before) {
                    return Ok(false);
                }
                check_org(&org_id, &after.org_id)?;
                if let Some(new) = &insert {
                    check_org(&org_id, &new.org_id)?;
                    rows::insert_key(conn, new)?;
                }
                rows::update_key(conn, &after)?;
                for event in &events {
                    append_event(conn, &org_id, event)?;
                }
                let at = events.first().map_or(after.created_at, |event| event.at);
                log_change(conn, &org_id, Some(&after.hash), at)?;
                Ok(true)
            })
            .await
    }

    async fn add_member(&self, member: &MemberRecord, event: &NewAuditEvent) -> StoreResult<()> {
        let (org_id, member, event) = (self.org_id.clone(), member.clone(), event.clone());
        self.store
            .write(move |conn| {
                check_org(&org_id, &member.org_id)?;
                // The only unique column a caller can collide with is the email (ids are random),
                // and it is unique across orgs: login names no org.
                conn.prepare_cached(
                    "INSERT INTO members (id, org_id, email, password_hash, role, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    member.id.as_str(),
                    org_id.as_str(),
                    member.email,
                    member.password_hash,
                    member.role.as_str(),
                    nanos(member.created_at)?
                ])
                .map_err(|error| conflict_as(error.into(), "member_email"))?;
                append_event(conn, &org_id, &event)
            })
            .await
    }

    async fn members(&self) -> StoreResult<Vec<MemberRecord>> {
        self.all(
            concat!("SELECT ", member_columns!(), " FROM members WHERE org_id = ?1 ORDER BY created_at, rowid"),
            member_from_row,
        )
        .await
    }

    async fn find_member(&self, id: &MemberId) -> StoreResult<Option<MemberRecord>> {
        let (org_id, id) = (self.org_id.clone(), id.clone());
        self.store.read(move |conn| find_member(conn, &org_id, &id)).await
    }

    async fn remove_member(&self, id: &MemberId, event: &NewAuditEvent) -> StoreResult<MemberRecord> {
        let (org_id, id, event) = (self.org_id.clone(), id.clone(), event.clone());
        self.store
            .write(move |conn| {
                let member = find_member(conn, &org_id, &id)?.ok_or(StoreError::NotFound)?;
                // The foreign key cascades too; saying it here does not depend on the pragma.
                conn.prepare_cached("DELETE FROM sessions WHERE member_id = ?1")?.execute([id.as_str()])?;
                conn.prepare_cached("DELETE FROM members WHERE id = ?1 AND org_id = ?2")?
                    .execute([id.as_str(), org_id.as_str()])?;
                append_event(conn, &org_id, &event)?;
                log_change(conn, &org_id, None, event.at)?;
                Ok(member)
            })
            .await
    }

    async fn record_event(&self, event: &NewAuditEvent) -> StoreResult<()> {
        let (org_id, event) = (self.org_id.clone(), event.clone());
        self.store.write(move |conn| append_event(conn, &org_id, &event)).await
    }

    async fn list_audit(&self, filter: &AuditFilter, page: Page) -> StoreResult<Paged<AuditRecord>> {
        let (org_id, filter) = (self.org_id.clone(), filter.clone());
        let bounds = page.bounds();
        let (before, fetch) = (bounds.before, bounds.fetch);
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM audit_events WHERE org_id = ?1 AND seq < ?2 \
                     AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR target_id = ?4) \
                     AND (?5 IS NULL OR actor_id = ?5) AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at <= ?7) \
                     ORDER BY seq DESC LIMIT ?8"
                ))?;
                let since = filter.since.map(nanos).transpose()?;
                let until = filter.until.map(nanos).transpose()?;
                let events = rows::collect(
                    stmt.query(params![
                        org_id.as_str(),
                        before,
                        filter.action,
                        filter.target_id,
                        filter.actor_id,
                        since,
                        until,
                        fetch
                    ])?,
                    |row| Ok((row.get("seq")?, event_from_row(row)?)),
                )?;
                Ok(Paged::from_rows(events, bounds))
            })
            .await
    }

    async fn audit_chain(&self) -> StoreResult<Vec<AuditRecord>> {
        self.all(
            concat!("SELECT ", event_columns!(), " FROM audit_events WHERE org_id = ?1 ORDER BY seq"),
            event_from_row,
        )
        .await
    }
}
