-- The client's User-Agent beside its IP on each audit event (NULL for events written before,
-- and for changes made outside HTTP).
ALTER TABLE audit_events ADD COLUMN user_agent TEXT;
