//! The sqlite backend against the shared story, plus what only a file database can promise.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use keyward_core::ids::OrgId;
use keyward_store::{conformance, OrgRecord, Store, StoreError};
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

/// Each database a file of its own in one temporary directory.
struct SqliteFiles {
    dir: tempfile::TempDir,
    created: AtomicUsize,
}

#[async_trait::async_trait]
impl conformance::Backend for SqliteFiles {
    async fn create_database(&self) -> String {
        let n = self.created.fetch_add(1, Ordering::Relaxed);
        format!("sqlite://{}", self.dir.path().join(format!("keyward-{n}.db")).display())
    }

    async fn open(&self, database: &str) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(database).expect("open"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_conformance_story() {
    let files = SqliteFiles { dir: tempfile::tempdir().expect("a temporary directory"), created: AtomicUsize::new(0) };
    conformance::run_all(&files).await;
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
