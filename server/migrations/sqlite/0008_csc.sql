-- Cloud Signature Consortium API: credential authorizations and their SADs.
-- Only the SHA-256 of a SAD is stored; the SAD itself is handed to the client once.
CREATE TABLE csc_authorizations (
    id              TEXT PRIMARY KEY,
    issuer          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    credential_id   TEXT NOT NULL REFERENCES keys (id),
    num_signatures  INTEGER NOT NULL CHECK (num_signatures >= 1),
    hash_algorithm  TEXT NOT NULL,
    -- JSON array of {"hash": hex, "approval": request id or null}: the hashes bound at SCAL 2.
    hashes          TEXT NOT NULL,
    -- pending: waiting for approval requests; issued: a SAD exists; used: the SAD was consumed.
    status          TEXT NOT NULL CHECK (status IN ('pending', 'issued', 'used')),
    sad_hash        BLOB UNIQUE,
    expires_unix    INTEGER,
    description     TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX csc_authorizations_owner
    ON csc_authorizations (issuer, subject, credential_id, status, created_at);
