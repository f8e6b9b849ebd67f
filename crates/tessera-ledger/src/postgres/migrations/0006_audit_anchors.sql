-- Schema version 6 of the PostgreSQL ledger: where each audit log's hash chain is anchored
-- (its last line's seq and hash), so that lines deleted from the end of a log are detected.

-- Audit log id (the hash of its first line) -> its last anchored line.
CREATE TABLE audit_anchors (
    log text COLLATE "C" PRIMARY KEY,
    seq bigint NOT NULL,
    hash text NOT NULL,
    at_ms bigint NOT NULL
);
