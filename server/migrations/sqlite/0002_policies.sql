-- WASM policies: uploaded modules and their ordered bindings to keys.

CREATE TABLE policies (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    version             TEXT NOT NULL,
    description         TEXT NOT NULL DEFAULT '',
    digest              TEXT NOT NULL,
    module              BLOB NOT NULL,
    size                INTEGER NOT NULL,
    -- The effective limits (JSON: fuel, timeout_ms, memory_bytes), resolved at upload.
    limits              TEXT NOT NULL,
    validates_settings  INTEGER NOT NULL,
    created_at          TEXT NOT NULL,
    created_by          TEXT NOT NULL,
    UNIQUE (name, version)
);

-- A key's policies, evaluated in `position` order.
CREATE TABLE policy_bindings (
    key_id     TEXT NOT NULL REFERENCES keys (id),
    position   INTEGER NOT NULL,
    policy_id  TEXT NOT NULL REFERENCES policies (id),
    settings   TEXT NOT NULL DEFAULT 'null',
    bound_at   TEXT NOT NULL,
    bound_by   TEXT NOT NULL,
    PRIMARY KEY (key_id, position)
);
CREATE INDEX policy_bindings_policy ON policy_bindings (policy_id);

-- The host context counts signatures per key and per principal over the last hour and day.
CREATE INDEX sign_requests_signed_key ON sign_requests (key_id, created_unix)
    WHERE status = 'signed';
CREATE INDEX sign_requests_signed_subject ON sign_requests (issuer, subject, created_unix)
    WHERE status = 'signed';
