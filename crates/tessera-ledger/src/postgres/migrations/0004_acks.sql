-- Schema version 4 of the PostgreSQL ledger: relying parties' acknowledgements of revocation
-- rules, the evidence every replica shows in Admin/GetRevocation.

-- (revocation id, relying party SPIFFE ID) -> unix ms of its first acknowledgement.
CREATE TABLE revocation_acks (
    revocation_id text COLLATE "C" NOT NULL,
    relying_party text COLLATE "C" NOT NULL,
    at_ms bigint NOT NULL,
    PRIMARY KEY (revocation_id, relying_party)
);
-- Forgetting old acknowledgements.
CREATE INDEX revocation_acks_at ON revocation_acks (at_ms);
