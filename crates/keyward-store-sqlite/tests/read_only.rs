//! `SqliteStore::open_read_only`: another process's database, read and followed, never written.

use keyward_core::ids::{KeyId, OrgId};
use keyward_store::{OrgRecord, Store, StoreError};
use keyward_store_sqlite::SqliteStore;
use time::macros::datetime;

fn org(id: &str) -> OrgRecord {
    OrgRecord {
        id: OrgId::parse(id).expect("a valid org id"),
        name: "Acme".to_owned(),
        created_at: datetime!(2026-01-15 10:00:00 UTC),
    }
}

/// What the error says, past the store's generic "database error".
fn cause(error: &StoreError) -> String {
    std::error::Error::source(error).map(ToString::to_string).unwrap_or_default()
}

#[tokio::test]
async fn a_read_only_store_reads_what_the_writer_commits_and_refuses_every_write() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let writer = SqliteStore::open(&url).expect("open");
    writer.migrate().await.expect("migrate");
    writer.insert_org(&org("org_first")).await.expect("insert org");
    assert!(writer.put_setting_if_absent("answer", "42").await.expect("put setting"));

    let reader = SqliteStore::open_read_only(&url).expect("open read-only");
    assert!(reader.is_read_only() && !writer.is_read_only());
    assert_eq!(reader.setting("answer").await.expect("read setting").as_deref(), Some("42"));
    assert_eq!(reader.latest_change().await.expect("feed"), writer.latest_change().await.expect("feed"));

    // What the writer commits later is seen by the open reader (WAL: readers beside the writer).
    writer.insert_org(&org("org_second")).await.expect("insert org");
    let seen: Vec<String> =
        reader.list_orgs().await.expect("list orgs").into_iter().map(|o| o.id.as_str().to_owned()).collect();
    assert_eq!(seen, ["org_first", "org_second"]);

    assert!(reader.migrate().await.is_err(), "no migration");
    assert!(reader.insert_org(&org("org_third")).await.is_err(), "no insert");
    assert!(reader.put_setting_if_absent("other", "1").await.is_err(), "no setting");
    let id = KeyId::parse("key_0123456789abcdef").expect("a valid key id");
    assert!(reader.record_last_used(&[(id, datetime!(2026-01-15 10:00:00 UTC))]).await.is_err(), "no last-used");
    assert_eq!(writer.list_orgs().await.expect("list orgs").len(), 2, "nothing was written through the reader");
    assert_eq!(writer.setting("other").await.expect("read setting"), None);
}

#[tokio::test]
async fn a_read_only_store_neither_creates_nor_migrates_a_database() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("missing.db");
    let error = SqliteStore::open_read_only(missing.to_str().expect("utf-8")).expect_err("no file");
    assert!(cause(&error).contains("does not exist"), "{error:?}");
    assert!(!missing.exists(), "a read-only open must not create the file");

    // A file the server never migrated (here: created and left empty).
    let blank = dir.path().join("blank.db");
    drop(SqliteStore::open(blank.to_str().expect("utf-8")).expect("open"));
    let error = SqliteStore::open_read_only(blank.to_str().expect("utf-8")).expect_err("not migrated");
    assert!(cause(&error).contains("not a migrated keyward database"), "{error:?}");
}
