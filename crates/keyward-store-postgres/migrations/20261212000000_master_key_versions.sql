-- Master-key rotation. Each key hash and sealed signing secret records the master key version it
-- was made under (rows written before rotation existed were made under version 1); the versions
-- the database knows are listed with a check value that recognises each key (the key itself is
-- never stored); and the operator has an audit chain of its own, for events of no org
-- (rotations, retirements). Same columns as the SQLite backend's migration. Adding a column with
-- a constant default rewrites no row.
ALTER TABLE api_keys ADD COLUMN hash_version bigint NOT NULL DEFAULT 1;
ALTER TABLE api_keys ADD COLUMN seal_version bigint NOT NULL DEFAULT 1;

CREATE TABLE master_keys (
    version bigint CONSTRAINT master_keys_pkey PRIMARY KEY,
    check_value text NOT NULL,
    added_at timestamptz NOT NULL,
    retired_at timestamptz
);

-- Each event's hash covers prev_hash and its canonical content, with null for the org
-- (NewAuditEvent::operator_chain_hash). Appends are serialised by a transaction-scoped advisory
-- lock (see the store), so the chain never forks across nodes.
CREATE TABLE operator_events (
    seq bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT operator_events_pkey PRIMARY KEY,
    id text NOT NULL CONSTRAINT operator_events_id_key UNIQUE,
    at timestamptz NOT NULL,
    actor_type text NOT NULL,
    actor_id text NOT NULL,
    actor_name text NOT NULL,
    actor_ip text,
    user_agent text,
    action text NOT NULL,
    target_type text NOT NULL,
    target_id text NOT NULL,
    target_name text NOT NULL,
    changes text NOT NULL,
    trace_id text NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL
);
