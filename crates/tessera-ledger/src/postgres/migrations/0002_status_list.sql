-- Schema version 2: a credential's entry in a Token Status List (the JWT's `status` claim).
-- NULL for X.509 credentials and for records written before version 2. Adding nullable
-- columns without a default rewrites no row.
ALTER TABLE credentials ADD COLUMN status_list text COLLATE "C";
ALTER TABLE credentials ADD COLUMN status_idx bigint;
-- Status lists are rebuilt at start from the live records that have an entry, only.
CREATE INDEX credentials_status ON credentials (expires_at, credential_id)
    WHERE status_list IS NOT NULL;
