-- Schema version 1 of the PostgreSQL ledger. Text keys use the "C" collation, so they sort
-- bytewise as in the redb ledger (ids, page tokens and scans agree between the two).

-- Credential id -> record. `expired` is set by the transaction that appends the credential's
-- `expired` event, so expiry emits exactly one event per credential across replicas.
CREATE TABLE credentials (
    credential_id text COLLATE "C" PRIMARY KEY,
    kind smallint NOT NULL,
    workload text NOT NULL,
    owner text NOT NULL,
    destination text NOT NULL,
    purpose text NOT NULL,
    grant_name text NOT NULL,
    evidence_kind smallint NOT NULL,
    evidence_hash text NOT NULL,
    issued_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    status smallint NOT NULL,
    ci_issuer text,
    ci_subject text,
    ci_run_id text,
    ci_jti text,
    expired boolean NOT NULL DEFAULT false
);
-- Listing newest first.
CREATE INDEX credentials_issued ON credentials (issued_at, credential_id);
-- Sweeping in expiry order.
CREATE INDEX credentials_expiry ON credentials (expires_at, credential_id);
-- Expiry events: only credentials without one yet.
CREATE INDEX credentials_unexpired ON credentials (expires_at, credential_id) WHERE NOT expired;
-- X.509 credentials, restored for the CRL.
CREATE INDEX credentials_x509 ON credentials (expires_at, credential_id) WHERE kind = 1;

-- One-time evidence keys (CI token replay guard), kept until `expires_at`.
CREATE TABLE replay (
    key text COLLATE "C" PRIMARY KEY,
    expires_at bigint NOT NULL
);
CREATE INDEX replay_expiry ON replay (expires_at, key);

-- Revocation id -> rule (JSON of the stored rule, its sequence included).
CREATE TABLE rules (
    revocation_id text COLLATE "C" PRIMARY KEY,
    sequence bigint NOT NULL,
    effective_at bigint NOT NULL,
    rule text NOT NULL
);

-- The global event sequence. `issued` and `expired` events name their credential; `revoked`
-- ones carry the JSON of their rule.
CREATE TABLE events (
    sequence bigint PRIMARY KEY,
    kind smallint NOT NULL,
    at bigint NOT NULL,
    credential_id text COLLATE "C",
    rule text
);

-- (expiry minute bucket, selector code, value) -> credentials with that value expiring then.
CREATE TABLE live_counts (
    expires_at bigint NOT NULL,
    selector smallint NOT NULL,
    value text COLLATE "C" NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (expires_at, selector, value)
);

-- The one counter every sequence comes from. A batch takes its sequences from it at the end of
-- its transaction and holds the row lock until COMMIT, so sequences commit in order.
CREATE TABLE ledger_sequence (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    last bigint NOT NULL
);
INSERT INTO ledger_sequence (id, last) VALUES (true, 0);

-- Locked FOR UPDATE by expiry and sweep, so concurrent replicas take turns.
CREATE TABLE expire_lock (
    id boolean PRIMARY KEY DEFAULT true CHECK (id)
);
INSERT INTO expire_lock (id) VALUES (true);
