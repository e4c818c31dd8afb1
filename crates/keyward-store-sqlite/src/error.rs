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

/// Busy, locked, unopenable, failing or full storage is worth a retry (503); a unique violation is a
/// conflict whose name the caller refines; a foreign key violation means the org (or key) the row
/// refers to does not exist; anything else is a bug or a damaged database.
fn map_sqlite_error(error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &error {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull => StoreError::Unavailable(Box::new(error)),
            ErrorCode::ConstraintViolation => match failure.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    StoreError::Conflict { constraint: "unique" }
                }
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => StoreError::NotFound,
                _ => StoreError::Other(Box::new(error)),
            },
            _ => StoreError::Other(Box::new(error)),
        },
        _ => StoreError::Other(Box::new(error)),
    }
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
