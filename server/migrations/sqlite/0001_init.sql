-- Keyward schema, version 1.

-- Keys: public half, metadata, and what the backend needs to load the private half
-- (a sealed blob for software slots, a token reference for HSMs). Never plaintext key bytes.
CREATE TABLE keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    algorithm   TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    backend     TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    labels      TEXT NOT NULL DEFAULT '{}',
    public_key  BLOB NOT NULL,
    material    BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- One row per sign request that reached the pipeline's decision, whatever its outcome.
CREATE TABLE sign_requests (
    id               TEXT PRIMARY KEY,
    key_id           TEXT NOT NULL REFERENCES keys (id),
    issuer           TEXT NOT NULL,
    subject          TEXT NOT NULL,
    operation        TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('signed', 'denied', 'failed')),
    intent           TEXT NOT NULL,
    decision         TEXT NOT NULL,
    idempotency_key  TEXT,
    body_hash        BLOB,
    response         TEXT,
    error_code       TEXT,
    error_message    TEXT,
    created_at       TEXT NOT NULL,
    created_unix     INTEGER NOT NULL
);
CREATE UNIQUE INDEX sign_requests_idempotency
    ON sign_requests (issuer, subject, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX sign_requests_key_time ON sign_requests (key_id, created_unix);
CREATE INDEX sign_requests_subject_time ON sign_requests (issuer, subject, created_unix);

-- The hash-chained audit log. hash = SHA-256 over the record's fields and prev_hash.
CREATE TABLE audit_log (
    seq            INTEGER PRIMARY KEY,
    ts             TEXT NOT NULL,
    action         TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    actor_issuer   TEXT NOT NULL,
    actor_subject  TEXT NOT NULL,
    key_id         TEXT,
    request_id     TEXT,
    details        TEXT NOT NULL,
    prev_hash      BLOB NOT NULL,
    hash           BLOB NOT NULL
);
CREATE INDEX audit_log_key ON audit_log (key_id, seq);
CREATE INDEX audit_log_subject ON audit_log (actor_subject, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_ts ON audit_log (ts);

-- The chain's head, updated in the same transaction as each append, so that removing the
-- newest records is detected too.
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  BLOB NOT NULL
);

-- Server facts: e.g. a KEK check value, so a wrong KEK fails at start-up.
CREATE TABLE meta (
    name   TEXT PRIMARY KEY,
    value  BLOB NOT NULL
);
