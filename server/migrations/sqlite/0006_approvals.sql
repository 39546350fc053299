-- Sign requests that wait for approvers, and the votes cast on them.
CREATE TABLE approval_requests (
    id               TEXT PRIMARY KEY,
    key_id           TEXT NOT NULL REFERENCES keys (id),
    issuer           TEXT NOT NULL,
    subject          TEXT NOT NULL,
    operation        TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending_approval', 'approved', 'signed',
                                                     'rejected', 'expired', 'cancelled', 'failed')),
    intent           TEXT NOT NULL,
    verdict          TEXT NOT NULL,
    -- The exact bytes to sign and the signature options, fixed when the request was made.
    to_sign          TEXT NOT NULL,
    options          TEXT NOT NULL,
    quorum           INTEGER NOT NULL CHECK (quorum >= 1),
    approver_roles   TEXT NOT NULL,
    reason           TEXT NOT NULL,
    expires_at       TEXT NOT NULL,
    expires_unix     INTEGER NOT NULL,
    idempotency_key  TEXT,
    body_hash        BLOB,
    result           TEXT,
    error_code       TEXT,
    error_message    TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE UNIQUE INDEX approval_requests_idempotency
    ON approval_requests (issuer, subject, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX approval_requests_status ON approval_requests (status, expires_unix);

CREATE TABLE approval_votes (
    request_id  TEXT NOT NULL REFERENCES approval_requests (id),
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    decision    TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment     TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (request_id, issuer, subject)
);
