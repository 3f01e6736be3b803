-- rampart credential store, version 2: envelope encryption (issue 18).
-- Data keys are stored only wrapped under the key-encryption key (which never enters the
-- database); secrets only as ciphertexts under a data key. Binary values are standard
-- base64 TEXT so the same SQL runs on SQLite and PostgreSQL.

CREATE TABLE data_keys (
    id TEXT PRIMARY KEY,
    -- 1, 2, 3…: bound into the wrapping's associated data together with the id.
    version BIGINT NOT NULL,
    -- nonce ‖ AES-256-GCM(KEK, key) ‖ tag, base64; never the key itself.
    wrapped TEXT NOT NULL,
    -- Which provider wrapped it (`local` = crypto.kek).
    kms TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- 1 for the one data key new secrets are encrypted under, else 0.
    is_primary BIGINT NOT NULL,
    seq BIGINT NOT NULL
);

CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    -- What the secret is for (`device_hmac`, `operator`, …).
    kind TEXT NOT NULL,
    -- The data key the ciphertext names (also inside the ciphertext, authenticated).
    dek_id TEXT NOT NULL REFERENCES data_keys (id),
    -- format ‖ id ‖ nonce ‖ AES-256-GCM(data key, secret) ‖ tag, base64.
    ciphertext TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    seq BIGINT NOT NULL
);
CREATE INDEX secrets_seq ON secrets (seq);
