-- rampart credential store, version 1: API keys and revocations.
-- Portable SQL: the same text runs on SQLite and PostgreSQL. Times are Unix seconds
-- (BIGINT), lists are space-separated TEXT, hashes are lower-case hex TEXT.

-- One change counter for the whole store. Every write bumps it inside its own
-- transaction and stamps the rows it touches with the new value, so a poller reads
-- "rows with seq > last seen" and misses nothing: the counter row stays locked until
-- the writing transaction commits, so sequence order is commit order.
CREATE TABLE rampart_seq (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO rampart_seq (name, value) VALUES ('changes', 0);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tenant TEXT NOT NULL,
    scopes TEXT NOT NULL,
    roles TEXT NOT NULL,
    -- HMAC-SHA256(pepper, "rpk_<id>_<secret>"), hex; never the key itself.
    key_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    -- Optional per-key rate-limit override (NULL = the route's tier applies).
    rate_per_minute BIGINT,
    rate_burst BIGINT,
    rate_tier TEXT,
    seq BIGINT NOT NULL
);
CREATE INDEX api_keys_seq ON api_keys (seq);

CREATE TABLE revocations (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    -- The entry lapses at this time (when the revoked credential would have expired);
    -- NULL = never.
    until_at BIGINT,
    created_at BIGINT NOT NULL,
    reason TEXT,
    seq BIGINT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX revocations_seq ON revocations (seq);
