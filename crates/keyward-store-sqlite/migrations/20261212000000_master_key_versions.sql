-- Master-key rotation. Each key hash and sealed signing secret records the master key version it
-- was made under (rows written before rotation existed were made under version 1); the versions
-- the database knows are listed with a check value that recognises each key (the key itself is
-- never stored); and the operator has an audit chain of its own, for events of no org
-- (rotations, retirements). Same conventions as the first migration.
ALTER TABLE api_keys ADD COLUMN hash_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE api_keys ADD COLUMN seal_version INTEGER NOT NULL DEFAULT 1;

CREATE TABLE master_keys (
    version INTEGER PRIMARY KEY NOT NULL,
    check_value TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    retired_at INTEGER
) STRICT;

-- Each event's hash covers prev_hash and its canonical content, with null for the org
-- (NewAuditEvent::operator_chain_hash).
CREATE TABLE operator_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    at INTEGER NOT NULL,
    actor_type TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    actor_ip TEXT,
    user_agent TEXT,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    target_name TEXT NOT NULL,
    changes TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
) STRICT;
