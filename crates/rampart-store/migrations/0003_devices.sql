-- rampart credential store, version 3: device credentials for signed requests (issue 18).
-- An Ed25519 device keeps only its public key here (raw 32 bytes, standard base64). An
-- HMAC device keeps NO key material here: its secret lives only encrypted in `secrets`
-- (name `device:<name>:<generation>`, kind `device_hmac`), under a data key.

CREATE TABLE devices (
    name TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    scopes TEXT NOT NULL,
    roles TEXT NOT NULL,
    -- `hmac-sha256` or `ed25519`: the algorithm every signature of the device must use.
    alg TEXT NOT NULL,
    -- Bumped by every rotation; names the current HMAC secret.
    generation BIGINT NOT NULL,
    -- The current Ed25519 public key (NULL for HMAC devices).
    public_key TEXT,
    -- The credential replaced by the last rotation stays valid until prev_until
    -- (NULL = no previous credential in use).
    prev_generation BIGINT,
    prev_public_key TEXT,
    prev_until BIGINT,
    created_at BIGINT NOT NULL,
    rotated_at BIGINT,
    revoked_at BIGINT,
    -- Optional per-device rate-limit override (NULL = the route's tier applies).
    rate_per_minute BIGINT,
    rate_burst BIGINT,
    rate_tier TEXT,
    seq BIGINT NOT NULL
);
CREATE INDEX devices_seq ON devices (seq);
