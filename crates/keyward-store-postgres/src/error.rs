//! The one place PostgreSQL and pool errors become [`StoreError`]s.

use std::io;

use deadpool_postgres::PoolError;
use keyward_store::StoreError;
use tokio_postgres::error::SqlState;

/// The error of code running against a connection: a driver or pool error (mapped once, in
/// [`map_postgres_error`]) or a domain answer such as `NotFound`. Exists so `?` works on both.
#[derive(Debug)]
pub(crate) struct Fail(pub(crate) StoreError);

pub(crate) type DbResult<T> = Result<T, Fail>;

impl From<tokio_postgres::Error> for Fail {
    fn from(error: tokio_postgres::Error) -> Self {
        Self(map_postgres_error(error))
    }
}

impl From<PoolError> for Fail {
    fn from(error: PoolError) -> Self {
        Self(match error {
            PoolError::Backend(error) => map_postgres_error(error),
            // Every connection is busy, or connecting took too long, or the pool is shutting down.
            PoolError::Timeout(_) | PoolError::Closed => StoreError::Unavailable(Box::new(error)),
            PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => StoreError::Other(Box::new(error)),
        })
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

/// A fault of the database server ([`is_storage_fault`]) or of the connection to it is worth a
/// retry (503). A unique violation is a conflict named after its constraint; a foreign key
/// violation means the org (or member) the row refers to does not exist. Anything else is a bug
/// in a query.
fn map_postgres_error(error: tokio_postgres::Error) -> StoreError {
    if let Some(db) = error.as_db_error() {
        let code = db.code();
        if *code == SqlState::UNIQUE_VIOLATION {
            return StoreError::Conflict { constraint: conflict_name(db.constraint()) };
        }
        if *code == SqlState::FOREIGN_KEY_VIOLATION {
            return StoreError::NotFound;
        }
        let retry = is_storage_fault(code);
        return if retry { StoreError::Unavailable(Box::new(error)) } else { StoreError::Other(Box::new(error)) };
    }
    // Not an answer of the server: the connection closed, could not be opened (refused, timed
    // out, reset) or broke mid-query. Only errors of our own (parameter or column types, a bad
    // connection setting) carry no I/O cause.
    if error.is_closed() || has_io_cause(&error) {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Other(Box::new(error))
    }
}

/// Faults of the database server, not of the caller: connection (08), insufficient resources
/// (53: disk full, out of memory or connections), operator intervention (57: shutdown, cancelled
/// or timed-out statements), system errors (58: I/O), internal errors (XX: data corrupted),
/// transaction rollbacks (40: serialization failures, deadlocks), lock timeouts, a read-only
/// server (a standby after a failover), and an exception raised by a trigger (the schema raises
/// none of its own: an operator's guard refused the write).
fn is_storage_fault(code: &SqlState) -> bool {
    let class = code.code().get(..2).unwrap_or_default();
    matches!(class, "08" | "40" | "53" | "57" | "58" | "XX")
        || [SqlState::LOCK_NOT_AVAILABLE, SqlState::READ_ONLY_SQL_TRANSACTION, SqlState::RAISE_EXCEPTION].contains(code)
}

fn has_io_cause(error: &tokio_postgres::Error) -> bool {
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        if inner.is::<io::Error>() {
            return true;
        }
        cause = inner.source();
    }
    false
}

/// The contract's name for each unique constraint of the schema, as the sqlite backend names
/// them: the whole insert of an org, number, channel, member or session conflicts under one name.
/// Keys and audit events collide only on random ids or hashes: a plain `unique`.
fn conflict_name(constraint: Option<&str>) -> &'static str {
    match constraint {
        Some("orgs_pkey") => "org_id",
        Some("phone_numbers_pkey" | "phone_numbers_org_number") => "phone_number",
        Some("channels_pkey" | "channels_org_slug") => "channel_slug",
        Some("members_pkey" | "members_email_key") => "member_email",
        Some("sessions_pkey") => "session_token",
        Some("master_keys_pkey") => "master_key_version",
        _ => "unique",
    }
}

/// A row the code cannot read back: the database was edited by hand or is damaged.
pub(crate) fn bad_row(what: &str) -> Fail {
    Fail(StoreError::Other(format!("unreadable database row: {what}").into()))
}

/// A record written through the wrong view, or a time PostgreSQL cannot hold: a caller's bug.
pub(crate) fn other(message: String) -> Fail {
    Fail(StoreError::Other(message.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_faults_are_storage_faults_and_query_bugs_are_not() {
        for code in [
            SqlState::CONNECTION_FAILURE,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::DISK_FULL,
            SqlState::OUT_OF_MEMORY,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::QUERY_CANCELED,
            SqlState::IO_ERROR,
            SqlState::DATA_CORRUPTED,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::READ_ONLY_SQL_TRANSACTION,
            SqlState::RAISE_EXCEPTION,
        ] {
            assert!(is_storage_fault(&code), "{}", code.code());
        }
        for code in [
            SqlState::SYNTAX_ERROR,
            SqlState::UNDEFINED_COLUMN,
            SqlState::NOT_NULL_VIOLATION,
            SqlState::CHECK_VIOLATION,
            SqlState::INVALID_TEXT_REPRESENTATION,
        ] {
            assert!(!is_storage_fault(&code), "{}", code.code());
        }
    }
}
