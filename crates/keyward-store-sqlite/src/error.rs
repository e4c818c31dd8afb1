//! The one place sqlite errors become [`StoreError`]s.

use keyward_store::StoreError;
use rusqlite::ffi;

/// The error of code running against a connection: a driver error (mapped once, in
/// [`map_sqlite_error`]) or a domain answer such as `NotFound`. Exists so `?` works on both.
#[derive(Debug)]
pub(crate) struct Fail(pub(crate) StoreError);

pub(crate) type DbResult<T> = Result<T, Fail>;

impl From<rusqlite::Error> for Fail {
    fn from(error: rusqlite::Error) -> Self {
        Self(map_sqlite_error(error))
    }
}

impl From<StoreError> for Fail {
    fn from(error: StoreError) -> Self {
        Self(error)
    }
}

impl From<Fail> for StoreError {
    fn from(fail: Fail) -> Self {
        fail.0
    }
}

/// A fault of the storage, not of the caller, is worth a retry (503): busy or locked (another
/// process holds the file), the WAL index's locking protocol failing (`SQLITE_PROTOCOL`: a process
/// holds the `-shm` lock bytes), unopenable, read-only, unwritable, failing or full storage, no
/// memory, an interrupted statement, a damaged file, and a write refused by a trigger (the schema
/// has none of its own: an operator's guard, such as one stopping audit writes, refused it). A
/// unique violation is a conflict whose name the caller refines; a foreign key violation means
/// the org (or key) the row refers to does not exist; anything else is a bug in a query.
fn map_sqlite_error(error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &error {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::CannotOpen
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::OutOfMemory
            | ErrorCode::OperationInterrupted
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::NotADatabase => StoreError::Unavailable(Box::new(error)),
            ErrorCode::ConstraintViolation => match failure.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    StoreError::Conflict { constraint: "unique" }
                }
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => StoreError::NotFound,
                ffi::SQLITE_CONSTRAINT_TRIGGER => StoreError::Unavailable(Box::new(error)),
                _ => StoreError::Other(Box::new(error)),
            },
            _ => StoreError::Other(Box::new(error)),
        },
        _ => StoreError::Other(Box::new(error)),
    }
}

/// Whether a read failed only because another connection holds a lock (it may be tried again
/// where waiting is allowed).
pub(crate) fn is_busy(fail: &Fail) -> bool {
    let StoreError::Unavailable(source) = &fail.0 else {
        return false;
    };
    source
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code)
        .is_some_and(|code| matches!(code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// A row the code cannot read back: the database was edited by hand or is damaged.
pub(crate) fn bad_row(what: &str) -> Fail {
    Fail(StoreError::Other(format!("unreadable database row: {what}").into()))
}

/// Renames the generic unique-violation conflict to the constraint the caller knows it hit.
pub(crate) fn conflict_as(fail: Fail, constraint: &'static str) -> Fail {
    match fail.0 {
        StoreError::Conflict { .. } => Fail(StoreError::Conflict { constraint }),
        other => Fail(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some("test".to_owned()))
    }

    #[test]
    fn storage_faults_are_unavailable_and_query_bugs_are_not() {
        let unavailable = [
            ffi::SQLITE_BUSY,
            ffi::SQLITE_LOCKED,
            ffi::SQLITE_PROTOCOL,
            ffi::SQLITE_IOERR,
            ffi::SQLITE_IOERR_SHMLOCK,
            ffi::SQLITE_FULL,
            ffi::SQLITE_CANTOPEN,
            ffi::SQLITE_READONLY,
            ffi::SQLITE_NOMEM,
            ffi::SQLITE_CORRUPT,
            ffi::SQLITE_CONSTRAINT_TRIGGER,
        ];
        for code in unavailable {
            assert!(matches!(map_sqlite_error(failure(code)), StoreError::Unavailable(_)), "code {code}");
        }
        assert!(matches!(
            map_sqlite_error(failure(ffi::SQLITE_CONSTRAINT_UNIQUE)),
            StoreError::Conflict { constraint: "unique" }
        ));
        assert!(matches!(map_sqlite_error(failure(ffi::SQLITE_CONSTRAINT_FOREIGNKEY)), StoreError::NotFound));
        for code in [ffi::SQLITE_ERROR, ffi::SQLITE_MISMATCH, ffi::SQLITE_CONSTRAINT_NOTNULL, ffi::SQLITE_RANGE] {
            assert!(matches!(map_sqlite_error(failure(code)), StoreError::Other(_)), "code {code}");
        }
    }
}
