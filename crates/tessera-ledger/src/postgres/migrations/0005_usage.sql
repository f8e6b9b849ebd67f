-- Schema version 5 of the PostgreSQL ledger: how much each grant is used (Admin/ListGrants,
-- `tessera grants`, `tessera review`). Written in the transaction of the batch that stores
-- the records, one row per distinct key (and day) per batch.

-- (grant, destination, purpose, kind) -> first and last issue (unix ms) and issues in all.
-- Kept whatever its age.
CREATE TABLE grant_usage (
    grant_name text COLLATE "C" NOT NULL,
    destination text COLLATE "C" NOT NULL,
    purpose text COLLATE "C" NOT NULL,
    kind smallint NOT NULL,
    first_ms bigint NOT NULL,
    last_ms bigint NOT NULL,
    total bigint NOT NULL,
    PRIMARY KEY (grant_name, destination, purpose, kind)
);

-- (UTC day, grant, destination, purpose, kind) -> issues in each hour of that day (24
-- counts, hour 0 first). The day comes first: reads from a day on, and the sweep of days
-- older than 400 days, are ranges of the key.
CREATE TABLE grant_usage_days (
    day bigint NOT NULL,
    grant_name text COLLATE "C" NOT NULL,
    destination text COLLATE "C" NOT NULL,
    purpose text COLLATE "C" NOT NULL,
    kind smallint NOT NULL,
    hours bigint[] NOT NULL,
    PRIMARY KEY (day, grant_name, destination, purpose, kind)
);
