-- rampart audit sink in PostgreSQL (audit.postgres_url): run once per database as its
-- owner or an administrator, in the schema the gateways use (the URL's search_path, else
-- public). Idempotent. The gateways connect as `rampart_audit`, a role that may INSERT
-- and SELECT and nothing else: it cannot rewrite or remove a record, and the triggers
-- below refuse UPDATE, DELETE and TRUNCATE to every other role too (a superuser can still
-- disable them; `rampart audit verify --postgres` names by seq what such a change broke).
--
--   psql -v ON_ERROR_STOP=1 -d rampart -f deploy/postgres/audit.sql
--   psql -d rampart -c "ALTER ROLE rampart_audit PASSWORD '…'"   -- or use certificates
--
-- `record` is the record line exactly as in the segment files (text: jsonb would re-spell
-- it and break its hash; query with record::jsonb). One chain per node: (node, seq).

CREATE TABLE IF NOT EXISTS rampart_audit_records (
    node   text   NOT NULL CHECK (node ~ '^[A-Za-z0-9._-]{1,64}$'),
    seq    bigint NOT NULL CHECK (seq >= 0),
    ts     text   NOT NULL,
    record text   NOT NULL,
    prev   text   NOT NULL CHECK (prev ~ '^[0-9a-f]{64}$'),
    hash   text   NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    PRIMARY KEY (node, seq)
);

CREATE TABLE IF NOT EXISTS rampart_audit_checkpoints (
    node        text   NOT NULL CHECK (node ~ '^[A-Za-z0-9._-]{1,64}$'),
    size        bigint NOT NULL CHECK (size >= 0),
    ts          text   NOT NULL,
    key_id      text   NOT NULL,
    fingerprint text   NOT NULL,
    why         text   NOT NULL,
    note        text   NOT NULL
);
CREATE INDEX IF NOT EXISTS rampart_audit_checkpoints_node ON rampart_audit_checkpoints (node, size);

CREATE OR REPLACE FUNCTION rampart_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rampart audit tables are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

DROP TRIGGER IF EXISTS rampart_audit_records_append_only ON rampart_audit_records;
CREATE TRIGGER rampart_audit_records_append_only
    BEFORE UPDATE OR DELETE ON rampart_audit_records
    FOR EACH ROW EXECUTE FUNCTION rampart_audit_append_only();
DROP TRIGGER IF EXISTS rampart_audit_records_no_truncate ON rampart_audit_records;
CREATE TRIGGER rampart_audit_records_no_truncate
    BEFORE TRUNCATE ON rampart_audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION rampart_audit_append_only();
DROP TRIGGER IF EXISTS rampart_audit_checkpoints_append_only ON rampart_audit_checkpoints;
CREATE TRIGGER rampart_audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON rampart_audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION rampart_audit_append_only();
DROP TRIGGER IF EXISTS rampart_audit_checkpoints_no_truncate ON rampart_audit_checkpoints;
CREATE TRIGGER rampart_audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON rampart_audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION rampart_audit_append_only();

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rampart_audit') THEN
        CREATE ROLE rampart_audit LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO rampart_audit', current_schema());
END
$$;

REVOKE ALL ON rampart_audit_records, rampart_audit_checkpoints FROM PUBLIC;
REVOKE ALL ON rampart_audit_records, rampart_audit_checkpoints FROM rampart_audit;
GRANT SELECT, INSERT ON rampart_audit_records, rampart_audit_checkpoints TO rampart_audit;
