//! The verification look-up runs on the calling thread while the database answers quickly.
//!
//! It is one read through the unique index on the key hash, served from memory in some 15 µs.
//! Sent to tokio's blocking pool it costs two thread hand-offs more (a pool thread woken, then
//! the waiting task): more CPU than the read itself, and on a busy two-core machine a wait for a
//! core at each hand-off, which made the p99 of a cold verification milliseconds (profiled with
//! `perf`: futex waits and wake-ups led; figures in the README's performance table).
//!
//! A read on the calling thread cannot be given up on, so it is only tried where it cannot
//! wait for long:
//! - on an idle reader connection, with no busy timeout (a lock held elsewhere sends it to the
//!   blocking pool, where the verifier's `store_read_timeout` bounds the wait);
//! - one at a time, so a stuck one holds one async worker, never all of them;
//! - while the database is quick: one inline read slower than [`SLOW_READ`] (pages read from a
//!   cold disk, or a process holding the WAL index's lock bytes, which makes sqlite retry for
//!   about ten seconds whatever the busy timeout) or failing on the storage sends every read to
//!   the blocking pool, until one read there is quick again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keyward_store::{StoreError, StoreResult};
use rusqlite::Connection;

use crate::error::{is_busy, DbResult};
use crate::{Inner, SqliteStore, BUSY_TIMEOUT};

/// Past this, a read is not one the async workers should wait for.
const SLOW_READ: Duration = Duration::from_millis(2);

/// Whether reads may run on the calling thread, and whether one does.
#[derive(Debug)]
pub(crate) struct InlineGate {
    open: AtomicBool,
    running: AtomicBool,
}

impl Default for InlineGate {
    fn default() -> Self {
        Self { open: AtomicBool::new(true), running: AtomicBool::new(false) }
    }
}

impl SqliteStore {
    /// Runs `query` on this thread when the gate lets it, on the blocking pool otherwise.
    pub(crate) async fn read_inline<T, F>(&self, query: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> DbResult<T> + Send + 'static,
    {
        if let Some(result) = self.inner.try_read_here(&query) {
            return result;
        }
        let inner = std::sync::Arc::clone(&self.inner);
        self.read(move |conn| {
            let started = Instant::now();
            let result = query(conn);
            if result.is_ok() && started.elapsed() < SLOW_READ {
                inner.inline.open.store(true, Ordering::Release);
            }
            result
        })
        .await
    }
}

impl Inner {
    /// `None` when the read is not for this thread (the gate is shut, another inline read runs,
    /// no reader is idle, or the database is busy): nothing was read.
    fn try_read_here<T>(&self, query: &impl Fn(&Connection) -> DbResult<T>) -> Option<StoreResult<T>> {
        let gate = &self.inline;
        if !gate.open.load(Ordering::Acquire) || gate.running.swap(true, Ordering::AcqRel) {
            return None;
        }
        let _running = Running(&gate.running);
        let conn = self.idle_readers.lock().pop()?;
        let started = Instant::now();
        let result = conn.busy_timeout(Duration::ZERO).map_err(Into::into).and_then(|()| query(&conn));
        let slow = started.elapsed() >= SLOW_READ;
        // A connection that cannot get its patience back is not handed to blocking reads.
        if conn.busy_timeout(BUSY_TIMEOUT).is_ok() {
            self.idle_readers.lock().push(conn);
        }
        match result {
            Err(fail) if is_busy(&fail) => None,
            result => {
                if slow || matches!(result, Err(crate::error::Fail(StoreError::Unavailable(_)))) {
                    gate.open.store(false, Ordering::Release);
                }
                Some(result.map_err(Into::into))
            }
        }
    }
}

/// Lets the next inline read in when this one ends, however it ends.
struct Running<'g>(&'g AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use keyward_store::Store;

    use super::*;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(dir.path().join("keyward.db").to_str().expect("a UTF-8 path")).expect("open");
        (dir, store)
    }

    /// Which thread ran each query.
    fn on_thread(threads: &Arc<parking_lot::Mutex<Vec<std::thread::ThreadId>>>) {
        threads.lock().push(std::thread::current().id());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_read_sends_the_next_ones_to_the_pool_until_one_is_quick_there() {
        let (_dir, store) = store();
        store.migrate().await.expect("migrate");
        store.ping().await.expect("a first read, which leaves an idle reader");
        let here = std::thread::current().id();
        let threads = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let slow = Arc::new(AtomicUsize::new(1));
        for _ in 0..4 {
            let (threads, slow) = (Arc::clone(&threads), Arc::clone(&slow));
            store
                .read_inline(move |conn| {
                    on_thread(&threads);
                    if slow.fetch_sub(1, Ordering::AcqRel) == 1 {
                        std::thread::sleep(SLOW_READ * 2);
                    }
                    Ok(conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))?)
                })
                .await
                .expect("read");
        }
        let threads = threads.lock().clone();
        assert_eq!(threads[0], here, "the first read runs here");
        assert_ne!(threads[1], here, "after a slow one, the next goes to the pool");
        assert_eq!(threads[2..], [here, here], "a quick read on the pool opens the way again");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_second_read_while_one_runs_here_goes_to_the_pool() {
        let (_dir, store) = store();
        store.migrate().await.expect("migrate");
        for _ in 0..2 {
            let reader = crate::connect_reader(store.path()).expect("a reader");
            store.inner.idle_readers.lock().push(reader);
        }
        let inner = Arc::clone(&store.inner);
        let nested = store.inner.try_read_here(&|_conn: &Connection| {
            // Another caller arriving while this read runs is not let in.
            Ok(inner.try_read_here(&|_conn: &Connection| Ok(())).is_none())
        });
        assert!(matches!(nested, Some(Ok(true))), "the second read was refused");
        assert!(store.inner.try_read_here(&|_conn: &Connection| Ok(())).is_some(), "and the next one is let in");
    }
}
