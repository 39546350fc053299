-- Document signing: the internal certificate authority and certificates for document keys.

-- The internal CA: one row. Its private key is sealed under the KEK like a software slot, but it
-- lives here and not in `keys`, so that no sign route can ever reach it.
CREATE TABLE certificate_authority (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    algorithm    TEXT NOT NULL,
    certificate  BLOB NOT NULL,
    material     BLOB NOT NULL,
    source       TEXT NOT NULL CHECK (source IN ('generated', 'imported')),
    crl          BLOB,
    crl_number   INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

-- Certificates of document keys: issued by the internal CA or imported with their chain.
CREATE TABLE certificates (
    id                 TEXT PRIMARY KEY,
    key_id             TEXT NOT NULL REFERENCES keys (id),
    serial             TEXT NOT NULL,
    subject            TEXT NOT NULL,
    issuer             TEXT NOT NULL,
    not_before         TEXT NOT NULL,
    not_after          TEXT NOT NULL,
    source             TEXT NOT NULL CHECK (source IN ('internal', 'imported')),
    status             TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    revoked_at         TEXT,
    revocation_reason  TEXT,
    owner              TEXT NOT NULL,
    certificate        BLOB NOT NULL,
    chain              BLOB NOT NULL,
    created_at         TEXT NOT NULL,
    created_by         TEXT NOT NULL
);
CREATE UNIQUE INDEX certificates_issuer_serial ON certificates (issuer, serial);
CREATE INDEX certificates_key ON certificates (key_id, created_at);
CREATE INDEX certificates_owner ON certificates (owner, id);
