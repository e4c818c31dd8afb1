-- keyward PostgreSQL schema, first version. An applied migration is never edited: add a new file.
-- The same tables and columns as the SQLite backend's migrations, plus audit_heads.
-- Times are timestamptz (microseconds, UTC). Lists and objects are JSON *text*, encoded exactly as
-- the SQLite backend encodes them: jsonb would rewrite numbers and key order and refuse "\u0000",
-- and the audit chain hashes the exact content of `changes`.
-- Constraint names are spelled out: the store maps a unique violation to the contract's conflict
-- name through them (src/error.rs).

CREATE TABLE settings (
    name text CONSTRAINT settings_pkey PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE orgs (
    id text CONSTRAINT orgs_pkey PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL
);

-- seq breaks ties between rows created in the same microsecond (SQLite's rowid).
CREATE TABLE phone_numbers (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id text CONSTRAINT phone_numbers_pkey PRIMARY KEY,
    org_id text NOT NULL REFERENCES orgs (id),
    number text NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT phone_numbers_org_number UNIQUE (org_id, number)
);

CREATE TABLE channels (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id text CONSTRAINT channels_pkey PRIMARY KEY,
    org_id text NOT NULL REFERENCES orgs (id),
    slug text NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT channels_org_slug UNIQUE (org_id, slug)
);

-- seq is the list order and the cursor; an identity is never reused.
CREATE TABLE api_keys (
    seq bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT api_keys_pkey PRIMARY KEY,
    id text NOT NULL CONSTRAINT api_keys_id_key UNIQUE,
    org_id text NOT NULL REFERENCES orgs (id),
    prefix text NOT NULL,
    hash bytea NOT NULL CONSTRAINT api_keys_hash_key UNIQUE,
    sealed_signing_secret bytea,
    name text NOT NULL,
    scopes text NOT NULL,
    hmac_required boolean NOT NULL,
    rate_limit bigint,
    expires_at timestamptz,
    ip_allowlist text NOT NULL,
    phone_allowlist text NOT NULL,
    channels text NOT NULL,
    environment text NOT NULL,
    external_id text,
    meta text,
    created_at timestamptz NOT NULL,
    created_by text NOT NULL,
    revoked_at timestamptz,
    revoked_by text,
    last_used_at timestamptz
);

CREATE INDEX api_keys_org_seq ON api_keys (org_id, seq);

-- Each event's hash covers prev_hash and its canonical content (NewAuditEvent::chain_hash).
CREATE TABLE audit_events (
    seq bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT audit_events_pkey PRIMARY KEY,
    id text NOT NULL CONSTRAINT audit_events_id_key UNIQUE,
    org_id text NOT NULL REFERENCES orgs (id),
    at timestamptz NOT NULL,
    actor_type text NOT NULL,
    actor_id text NOT NULL,
    actor_name text NOT NULL,
    actor_ip text,
    action text NOT NULL,
    target_type text NOT NULL,
    target_id text NOT NULL,
    target_name text NOT NULL,
    changes text NOT NULL,
    trace_id text NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL
);

CREATE INDEX audit_events_org_seq ON audit_events (org_id, seq);

-- The hash of each org's newest event. A change locks its org's row (SELECT ... FOR UPDATE) before
-- it reads prev_hash, so concurrent writers on any number of nodes append one after another and
-- the chain never forks. The row is created with the genesis hash on the org's first event.
CREATE TABLE audit_heads (
    org_id text CONSTRAINT audit_heads_pkey PRIMARY KEY REFERENCES orgs (id),
    hash text NOT NULL
);

-- The feed other nodes follow to drop cached policies: a key (key_hash) or a whole org (NULL).
-- No foreign key: it is a log, pruned after an hour.
--
-- Followers read `seq > last seen`, so the feed must be ordered by commit, not merely by
-- sequence: with a plain bigserial a transaction that took seq 5 but commits after seq 6 was read
-- would be skipped forever. The trigger below prevents that in the database itself. It takes a
-- transaction-scoped advisory lock (0x6b776368616e6765, "kwchange") before it draws the next seq,
-- and that lock is held until the inserting transaction commits or rolls back. So a transaction
-- can only draw a seq after every transaction that drew a lower one has finished, and a higher
-- seq becomes visible only after every lower one (or never, when its transaction rolled back).
-- Writers therefore serialise on the feed insert, which is why it is the last statement of each
-- transaction: the lock is held only for the commit. The same trigger prunes rows an hour older
-- than the new one (under the lock, so concurrent prunes never contend) and signals followers
-- that LISTEN on keyward_changes; a notification is delivered only when its transaction commits.
CREATE SEQUENCE change_log_seq AS bigint;

CREATE TABLE change_log (
    seq bigint CONSTRAINT change_log_pkey PRIMARY KEY, -- no default: the trigger assigns it
    org_id text NOT NULL,
    key_hash bytea,
    at timestamptz NOT NULL
);

ALTER SEQUENCE change_log_seq OWNED BY change_log.seq;

CREATE INDEX change_log_at ON change_log (at);

CREATE FUNCTION change_log_in_commit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7743767384249231205);
    NEW.seq := nextval('change_log_seq');
    DELETE FROM change_log WHERE at < NEW.at - interval '1 hour';
    PERFORM pg_notify('keyward_changes', '');
    RETURN NEW;
END;
$$;

CREATE TRIGGER change_log_in_commit_order BEFORE INSERT ON change_log
    FOR EACH ROW EXECUTE FUNCTION change_log_in_commit_order();

-- Console members and their sessions.
-- email is lower-cased by the caller and unique across every org: login names no org.
CREATE TABLE members (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id text CONSTRAINT members_pkey PRIMARY KEY,
    org_id text NOT NULL REFERENCES orgs (id),
    email text NOT NULL CONSTRAINT members_email_key UNIQUE,
    password_hash text NOT NULL,
    role text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE INDEX members_org ON members (org_id, created_at, seq);

-- Only hashes of the cookie token and of the CSRF token. Removing a member ends its sessions
-- (the store also deletes them explicitly, in the same transaction).
CREATE TABLE sessions (
    token_hash bytea CONSTRAINT sessions_pkey PRIMARY KEY,
    csrf_hash bytea NOT NULL,
    member_id text NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    org_id text NOT NULL REFERENCES orgs (id),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_member ON sessions (member_id);
