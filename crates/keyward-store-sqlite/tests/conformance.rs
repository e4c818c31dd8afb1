//! The sqlite backend against the shared story, plus what only a file database can promise.

use keyward_core::audit::{chain_hash, GENESIS};
use keyward_core::ids::{EventId, OrgId, PhoneNumberId};
use keyward_core::record::Actor;
use keyward_store::{conformance, Change, NewAuditEvent, OrgRecord, PhoneNumberRecord, Store, StoreError};
use keyward_store_sqlite::SqliteStore;
use time::macros::datetime;

fn temp_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let store = SqliteStore::open(&url).expect("open");
    (dir, store)
}

fn org(id: &str) -> OrgRecord {
    OrgRecord {
        id: OrgId::parse(id).expect("a valid org id"),
        name: "Acme".to_owned(),
        created_at: datetime!(2026-01-15 10:00:00.5 UTC),
    }
}

#[tokio::test]
async fn sqlite_store_passes_the_conformance_story() {
    let (_dir, store) = temp_store();
    conformance::run(&store).await;
}

#[tokio::test]
async fn database_file_is_in_wal_mode_and_keeps_its_data_across_reopening() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("keyward.db");
    {
        let store = SqliteStore::open(&format!("sqlite:{}", path.display())).expect("open");
        assert_eq!(store.path(), path);
        store.migrate().await.expect("migrate");
        store.insert_org(&org("org_kept")).await.expect("insert org");
        assert!(store.put_setting_if_absent("answer", "42").await.expect("put setting"));
    }
    assert!(path.exists(), "open creates the file");

    let raw = rusqlite::Connection::open(&path).expect("raw connection");
    let mode: String = raw.query_row("PRAGMA journal_mode", [], |row| row.get(0)).expect("journal_mode");
    assert_eq!(mode, "wal");
    drop(raw);

    let store = SqliteStore::open(path.to_str().expect("a UTF-8 path")).expect("reopen from a plain path");
    store.migrate().await.expect("migrate an up-to-date database");
    assert_eq!(store.find_org(&org("org_kept").id).await.expect("find_org"), Some(org("org_kept")));
    assert_eq!(store.setting("answer").await.expect("setting").as_deref(), Some("42"));
}

#[tokio::test]
async fn urls_that_cannot_name_a_shared_file_are_refused() {
    for url in ["", "sqlite://", "sqlite::memory:", "sqlite://keyward.db?mode=rwc"] {
        assert!(matches!(SqliteStore::open(url), Err(StoreError::Other(_))), "{url:?} is refused");
    }
}

#[tokio::test]
async fn a_missing_directory_is_unavailable_not_a_panic() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("missing/keyward.db").display());
    assert!(matches!(SqliteStore::open(&url), Err(StoreError::Unavailable(_))));
}

#[tokio::test]
async fn a_row_edited_by_hand_is_an_error_not_a_panic() {
    let (_dir, store) = temp_store();
    store.migrate().await.expect("migrate");
    store.insert_org(&org("org_a")).await.expect("insert org");
    let raw = rusqlite::Connection::open(store.path()).expect("raw connection");
    raw.execute("UPDATE orgs SET created_at = ?1", [i64::MAX]).expect("edit the row");
    raw.execute("INSERT INTO orgs (id, name, created_at) VALUES ('not an id', 'x', 0)", []).expect("insert a bad row");
    assert!(matches!(store.list_orgs().await, Err(StoreError::Other(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_interleave_writes_and_keep_the_audit_chain() {
    // Two processes sharing the file, as far as SQLite can tell: separate connections.
    let (_dir, first) = temp_store();
    let second = SqliteStore::open(first.path().to_str().expect("a UTF-8 path")).expect("second store");
    let (a, b) = (first.clone(), second.clone());
    let (migrated_a, migrated_b) = tokio::join!(a.migrate(), b.migrate());
    migrated_a.expect("migrate");
    migrated_b.expect("migrate concurrently");
    let org = org("org_shared");
    first.insert_org(&org).await.expect("insert org");

    let writers = (0..40).map(|n| {
        let store = if n % 2 == 0 { first.clone() } else { second.clone() };
        let org_id = org.id.clone();
        tokio::spawn(async move {
            let number = PhoneNumberRecord {
                id: PhoneNumberId::parse(&format!("pn_{n}")).expect("a valid id"),
                number: format!("+1415555{n:04}"),
                created_at: datetime!(2026-01-15 10:00:00 UTC),
            };
            let event = NewAuditEvent {
                id: EventId::parse(&format!("evt_{n}")).expect("a valid id"),
                at: datetime!(2026-01-15 10:00:00 UTC),
                actor: Actor::operator(),
                actor_ip: None,
                action: "phone_number.added".to_owned(),
                target_type: "phone_number".to_owned(),
                target_id: number.id.as_str().to_owned(),
                target_name: number.number.clone(),
                changes: serde_json::Value::Null,
                trace_id: format!("{n:032x}"),
            };
            store.org(&org_id).add_phone_number(&number, &event).await
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.expect("the task ran").expect("no write is lost to SQLITE_BUSY");
    }

    let chain = first.org(&org.id).audit_chain().await.expect("audit_chain");
    assert_eq!(chain.len(), 40);
    let mut prev = GENESIS.to_owned();
    for record in &chain {
        assert_eq!(record.prev_hash, prev, "each event links to the one written before it");
        assert_eq!(record.hash, chain_hash(&record.prev_hash, &record.event.canonical(&org.id)));
        prev.clone_from(&record.hash);
    }
}

#[tokio::test]
async fn writing_into_a_missing_org_is_not_found() {
    let (_dir, store) = temp_store();
    store.migrate().await.expect("migrate");
    let missing = org("org_missing");
    let number = PhoneNumberRecord {
        id: PhoneNumberId::parse("pn_1").expect("a valid id"),
        number: "+14155550100".to_owned(),
        created_at: missing.created_at,
    };
    let event = NewAuditEvent {
        id: EventId::parse("evt_1").expect("a valid id"),
        at: missing.created_at,
        actor: Actor::operator(),
        actor_ip: None,
        action: "phone_number.added".to_owned(),
        target_type: "phone_number".to_owned(),
        target_id: "pn_1".to_owned(),
        target_name: number.number.clone(),
        changes: serde_json::Value::Null,
        trace_id: "0".repeat(32),
    };
    assert!(matches!(store.org(&missing.id).add_phone_number(&number, &event).await, Err(StoreError::NotFound)));
    assert_eq!(store.latest_change().await.expect("latest_change"), 0, "nothing reached the feed");
}

#[tokio::test]
async fn a_follower_behind_the_pruned_feed_is_told_to_forget_every_org() {
    let (_dir, store) = temp_store();
    store.migrate().await.expect("migrate");
    let (a, b) = (org("org_a"), org("org_b"));
    store.insert_org(&a).await.expect("insert org");
    store.insert_org(&b).await.expect("insert org");
    for (n, at) in [(1, datetime!(2026-01-15 10:00 UTC)), (2, datetime!(2026-01-15 12:00 UTC))] {
        let number = PhoneNumberRecord {
            id: PhoneNumberId::parse(&format!("pn_{n}")).expect("a valid id"),
            number: format!("+1415555010{n}"),
            created_at: at,
        };
        let event = NewAuditEvent {
            id: EventId::parse(&format!("evt_{n}")).expect("a valid id"),
            at,
            actor: Actor::operator(),
            actor_ip: None,
            action: "phone_number.added".to_owned(),
            target_type: "phone_number".to_owned(),
            target_id: number.id.as_str().to_owned(),
            target_name: number.number.clone(),
            changes: serde_json::Value::Null,
            trace_id: "0".repeat(32),
        };
        store.org(&a.id).add_phone_number(&number, &event).await.expect("add phone number");
    }
    // The second change, two hours after the first, pruned it.
    assert_eq!(store.changes_since(1).await.expect("changes_since"), (vec![Change::Org(a.id.clone())], 2));
    let (changes, next) = store.changes_since(0).await.expect("changes_since");
    assert_eq!(next, 2);
    assert_eq!(changes, [Change::Org(a.id.clone()), Change::Org(b.id.clone()), Change::Org(a.id.clone())]);
}
