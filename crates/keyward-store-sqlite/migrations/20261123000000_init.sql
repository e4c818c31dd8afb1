-- keyward SQLite schema, first version. An applied migration is never edited: add a new file.
-- Times are INTEGER Unix nanoseconds (UTC); lists and objects are JSON text.

CREATE TABLE settings (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE orgs (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE phone_numbers (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    number TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (org_id, number)
) STRICT;

CREATE TABLE channels (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (org_id, slug)
) STRICT;

-- seq is the list order and the cursor; AUTOINCREMENT so a seq is never reused.
CREATE TABLE api_keys (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    prefix TEXT NOT NULL,
    hash BLOB NOT NULL UNIQUE,
    sealed_signing_secret BLOB,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    hmac_required INTEGER NOT NULL,
    rate_limit INTEGER,
    expires_at INTEGER,
    ip_allowlist TEXT NOT NULL,
    phone_allowlist TEXT NOT NULL,
    channels TEXT NOT NULL,
    environment TEXT NOT NULL,
    external_id TEXT,
    meta TEXT,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at INTEGER,
    revoked_by TEXT,
    last_used_at INTEGER
) STRICT;

CREATE INDEX api_keys_org_seq ON api_keys (org_id, seq);

-- Each event's hash covers prev_hash and its canonical content (keyward_core::audit::chain_hash).
CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    at INTEGER NOT NULL,
    actor_type TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    actor_ip TEXT,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    target_name TEXT NOT NULL,
    changes TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
) STRICT;

CREATE INDEX audit_events_org_seq ON audit_events (org_id, seq);

-- The feed other nodes follow to drop cached policies: a key (key_hash) or a whole org (NULL).
-- No foreign key: it is a log, pruned after an hour.
CREATE TABLE change_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id TEXT NOT NULL,
    key_hash BLOB,
    at INTEGER NOT NULL
) STRICT;

CREATE INDEX change_log_at ON change_log (at);
