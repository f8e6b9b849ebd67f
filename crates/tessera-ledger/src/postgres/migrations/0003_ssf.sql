-- Schema version 3 of the PostgreSQL ledger: Shared Signals delivery state (OpenID SSF 1.0).
-- (Version 2 is the Token Status List's.)

-- Stream id -> the stream: its owner (receiver SPIFFE ID), the event sequence it starts after,
-- its configuration (JSON as the server wrote it), and which replica pushes it until when.
CREATE TABLE ssf_streams (
    stream_id text COLLATE "C" PRIMARY KEY,
    owner text COLLATE "C" NOT NULL,
    from_sequence bigint NOT NULL,
    config text NOT NULL,
    lease_holder text,
    lease_until_ms bigint NOT NULL DEFAULT 0
);
CREATE INDEX ssf_streams_owner ON ssf_streams (owner);

-- SETs queued for a stream until acknowledged. (stream_id, jti) is the key, so every replica
-- may queue the SET of an event it saw: the first insert wins, the others change nothing.
CREATE TABLE ssf_sets (
    stream_id text COLLATE "C" NOT NULL REFERENCES ssf_streams ON DELETE CASCADE,
    jti text COLLATE "C" NOT NULL,
    position bigint NOT NULL,
    set_jwt text NOT NULL,
    queued_at_ms bigint NOT NULL,
    PRIMARY KEY (stream_id, jti)
);
-- Delivery order.
CREATE INDEX ssf_sets_order ON ssf_sets (stream_id, position, jti);

-- The last event sequence whose SETs were queued.
CREATE TABLE ssf_cursor (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    last bigint NOT NULL
);
INSERT INTO ssf_cursor (id, last) VALUES (true, 0);
