-- Console members and their sessions. Same conventions as the first migration: times are
-- INTEGER Unix nanoseconds (UTC).

-- email is lower-cased by the caller and unique across every org: login names no org.
CREATE TABLE members (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE INDEX members_org ON members (org_id, created_at);

-- Only hashes of the cookie token and of the CSRF token. Removing a member ends its sessions
-- (the store also deletes them explicitly, in the same transaction).
CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY NOT NULL,
    csrf_hash BLOB NOT NULL,
    member_id TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_member ON sessions (member_id);
