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

/// Another process holding an exclusive `fcntl` lock on the WAL index's lock bytes (`<db>-shm`
/// bytes 120–127), as a stuck or hostile process would; released on drop.
struct ShmLock(std::process::Child);

impl ShmLock {
    fn take(database: &std::path::Path) -> Self {
        let script = "import fcntl, os, sys\n\
                      fd = os.open(sys.argv[1], os.O_RDWR)\n\
                      fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 8, 120, 0)\n\
                      print('locked', flush=True)\n\
                      sys.stdin.read()\n";
        let shm = format!("{}-shm", database.display());
        let mut child = std::process::Command::new("python3")
            .args(["-c", script, &shm])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        let stdout = child.stdout.as_mut().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("read");
        assert_eq!(line.trim(), "locked", "the helper could not lock {shm}");
        Self(child)
    }
}

impl Drop for ShmLock {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The verification look-up runs on the calling thread, one at a time: while one is stuck on a
/// locked WAL index (sqlite retries for about ten seconds), the next goes to the blocking pool,
/// where the caller's own time bound holds, and the async workers stay free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_read_stuck_on_a_lock_holds_one_worker_not_the_next_reads() {
    use std::time::{Duration, Instant};
    let (_dir, store) = temp_store();
    store.migrate().await.expect("migrate");
    let unknown = keyward_core::key::KeyHash([7; 32]);
    assert_eq!(store.find_key_by_hash(&unknown).await.expect("find_key_by_hash"), None);

    let lock = ShmLock::take(store.path());
    let stuck = {
        let store = store.clone();
        tokio::spawn(async move { store.find_key_by_hash(&unknown).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let bounded = tokio::time::timeout(Duration::from_millis(300), store.find_key_by_hash(&unknown)).await;
    assert!(bounded.is_err(), "the next read waits for the lock too, but on the pool: {bounded:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "its caller's bound held: {:?}", started.elapsed());
    assert!(!stuck.is_finished(), "the first read is still waiting for the lock");

    drop(lock);
    let first = tokio::time::timeout(Duration::from_secs(15), stuck).await.expect("sqlite's retries end");
    assert_eq!(first.expect("the task ran").expect("it reads once the lock is gone"), None);
    for _ in 0..3 {
        assert_eq!(store.find_key_by_hash(&unknown).await.expect("reads are back"), None);
    }
}
