-- Keyward schema for PostgreSQL: the net result of the SQLite migrations 0001-0012 (same tables, columns and constraints).
--
-- Types: SQLite INTEGER (also 0/1 booleans and INTEGER PRIMARY KEY) is BIGINT, BLOB is BYTEA,
-- TEXT is TEXT COLLATE "C" (byte order, as SQLite compares text), so that ORDER BY and the
-- pagination cursors do not depend on the database's locale. Columns that SQLite migrations added later with ALTER TABLE are at the end of
-- their table, as in SQLite. The data-only steps of the SQLite migrations (0007's carry-over of
-- recent signatures into usage_counters, 0012's copy of bitcoin_accounts into
-- wallet_accounts.settings) have nothing to move in a new database and are left out, as is the
-- bitcoin_accounts table that 0012 drops.

-- Keys: public half, metadata, and what the backend needs to load the private half
-- (a sealed blob for software slots, a token reference for HSMs). Never plaintext key bytes.
-- `signers`: per-key access control, who may sign with a key, as a JSON array of entries
-- (`subject:<sub>`, `role:<role>`, `group:<name>`). An empty array admits every signer.
CREATE TABLE keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    algorithm   TEXT COLLATE "C" NOT NULL,
    purpose     TEXT COLLATE "C" NOT NULL,
    backend     TEXT COLLATE "C" NOT NULL,
    status      TEXT COLLATE "C" NOT NULL CHECK (status IN ('active', 'disabled')),
    labels      TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    public_key  BYTEA NOT NULL,
    material    BYTEA NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    created_by  TEXT COLLATE "C" NOT NULL,
    updated_at  TEXT COLLATE "C" NOT NULL,
    signers     TEXT COLLATE "C" NOT NULL DEFAULT '[]'
);

-- One row per sign request that reached the pipeline's decision, whatever its outcome.
CREATE TABLE sign_requests (
    id               TEXT COLLATE "C" PRIMARY KEY,
    key_id           TEXT COLLATE "C" NOT NULL REFERENCES keys (id),
    issuer           TEXT COLLATE "C" NOT NULL,
    subject          TEXT COLLATE "C" NOT NULL,
    operation        TEXT COLLATE "C" NOT NULL,
    status           TEXT COLLATE "C" NOT NULL CHECK (status IN ('signed', 'denied', 'failed')),
    intent           TEXT COLLATE "C" NOT NULL,
    decision         TEXT COLLATE "C" NOT NULL,
    idempotency_key  TEXT COLLATE "C",
    body_hash        BYTEA,
    response         TEXT COLLATE "C",
    error_code       TEXT COLLATE "C",
    error_message    TEXT COLLATE "C",
    created_at       TEXT COLLATE "C" NOT NULL,
    created_unix     BIGINT NOT NULL
);
CREATE UNIQUE INDEX sign_requests_idempotency
    ON sign_requests (issuer, subject, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX sign_requests_key_time ON sign_requests (key_id, created_unix);
CREATE INDEX sign_requests_subject_time ON sign_requests (issuer, subject, created_unix);
-- The host context counts signatures per key and per principal over the last hour and day.
CREATE INDEX sign_requests_signed_key ON sign_requests (key_id, created_unix)
    WHERE status = 'signed';
CREATE INDEX sign_requests_signed_subject ON sign_requests (issuer, subject, created_unix)
    WHERE status = 'signed';

-- The hash-chained audit log. hash = SHA-256 over the record's fields and prev_hash.
-- `seq` is assigned by the audit writer (not an identity column).
CREATE TABLE audit_log (
    seq            BIGINT PRIMARY KEY,
    ts             TEXT COLLATE "C" NOT NULL,
    action         TEXT COLLATE "C" NOT NULL,
    outcome        TEXT COLLATE "C" NOT NULL,
    actor_issuer   TEXT COLLATE "C" NOT NULL,
    actor_subject  TEXT COLLATE "C" NOT NULL,
    key_id         TEXT COLLATE "C",
    request_id     TEXT COLLATE "C",
    details        TEXT COLLATE "C" NOT NULL,
    prev_hash      BYTEA NOT NULL,
    hash           BYTEA NOT NULL
);
CREATE INDEX audit_log_key ON audit_log (key_id, seq);
CREATE INDEX audit_log_subject ON audit_log (actor_subject, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_ts ON audit_log (ts);

-- The chain's head, updated in the same transaction as each append, so that removing the
-- newest records is detected too.
CREATE TABLE audit_head (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  BYTEA NOT NULL
);

-- Server facts: e.g. a KEK check value, so a wrong KEK fails at start-up.
CREATE TABLE meta (
    name   TEXT COLLATE "C" PRIMARY KEY,
    value  BYTEA NOT NULL
);

-- WASM policies: uploaded modules and their ordered bindings to keys.
CREATE TABLE policies (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    name                TEXT COLLATE "C" NOT NULL,
    version             TEXT COLLATE "C" NOT NULL,
    description         TEXT COLLATE "C" NOT NULL DEFAULT '',
    digest              TEXT COLLATE "C" NOT NULL,
    module              BYTEA NOT NULL,
    size                BIGINT NOT NULL,
    -- The effective limits (JSON: fuel, timeout_ms, memory_bytes), resolved at upload.
    limits              TEXT COLLATE "C" NOT NULL,
    validates_settings  BIGINT NOT NULL,
    created_at          TEXT COLLATE "C" NOT NULL,
    created_by          TEXT COLLATE "C" NOT NULL,
    UNIQUE (name, version)
);

-- A key's policies, evaluated in `position` order.
CREATE TABLE policy_bindings (
    key_id     TEXT COLLATE "C" NOT NULL REFERENCES keys (id),
    position   BIGINT NOT NULL,
    policy_id  TEXT COLLATE "C" NOT NULL REFERENCES policies (id),
    settings   TEXT COLLATE "C" NOT NULL DEFAULT 'null',
    bound_at   TEXT COLLATE "C" NOT NULL,
    bound_by   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (key_id, position)
);
CREATE INDEX policy_bindings_policy ON policy_bindings (policy_id);

-- Document signing: the internal certificate authority and certificates for document keys.

-- The internal CA: one row. Its private key is sealed under the KEK like a software slot, but it
-- lives here and not in `keys`, so that no sign route can ever reach it.
CREATE TABLE certificate_authority (
    id           BIGINT PRIMARY KEY CHECK (id = 1),
    algorithm    TEXT COLLATE "C" NOT NULL,
    certificate  BYTEA NOT NULL,
    material     BYTEA NOT NULL,
    source       TEXT COLLATE "C" NOT NULL CHECK (source IN ('generated', 'imported')),
    crl          BYTEA,
    crl_number   BIGINT NOT NULL DEFAULT 0,
    created_at   TEXT COLLATE "C" NOT NULL,
    updated_at   TEXT COLLATE "C" NOT NULL
);

-- Certificates of document keys: issued by the internal CA or imported with their chain.
CREATE TABLE certificates (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    key_id             TEXT COLLATE "C" NOT NULL REFERENCES keys (id),
    serial             TEXT COLLATE "C" NOT NULL,
    subject            TEXT COLLATE "C" NOT NULL,
    issuer             TEXT COLLATE "C" NOT NULL,
    not_before         TEXT COLLATE "C" NOT NULL,
    not_after          TEXT COLLATE "C" NOT NULL,
    source             TEXT COLLATE "C" NOT NULL CHECK (source IN ('internal', 'imported')),
    status             TEXT COLLATE "C" NOT NULL CHECK (status IN ('active', 'revoked')),
    revoked_at         TEXT COLLATE "C",
    revocation_reason  TEXT COLLATE "C",
    owner              TEXT COLLATE "C" NOT NULL,
    certificate        BYTEA NOT NULL,
    chain              BYTEA NOT NULL,
    created_at         TEXT COLLATE "C" NOT NULL,
    created_by         TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX certificates_issuer_serial ON certificates (issuer, serial);
CREATE INDEX certificates_key ON certificates (key_id, created_at);
CREATE INDEX certificates_owner ON certificates (owner, id);

-- Sign requests that wait for approvers, and the votes cast on them.
-- `requirements`, `requester` (and approval_votes.roles): each policy's approval requirement is
-- kept on its own (a request is approved only when every one is met), with the roles each voter
-- held among the request's approver roles, and the requester's rights when the request was made
-- (re-checked when the approved request is signed). NULL means one requirement (quorum and
-- approver_roles), and a requester known by subject only.
CREATE TABLE approval_requests (
    id               TEXT COLLATE "C" PRIMARY KEY,
    key_id           TEXT COLLATE "C" NOT NULL REFERENCES keys (id),
    issuer           TEXT COLLATE "C" NOT NULL,
    subject          TEXT COLLATE "C" NOT NULL,
    operation        TEXT COLLATE "C" NOT NULL,
    status           TEXT COLLATE "C" NOT NULL CHECK (status IN ('pending_approval', 'approved', 'signed',
                                                     'rejected', 'expired', 'cancelled', 'failed')),
    intent           TEXT COLLATE "C" NOT NULL,
    verdict          TEXT COLLATE "C" NOT NULL,
    -- The exact bytes to sign and the signature options, fixed when the request was made.
    to_sign          TEXT COLLATE "C" NOT NULL,
    options          TEXT COLLATE "C" NOT NULL,
    quorum           BIGINT NOT NULL CHECK (quorum >= 1),
    approver_roles   TEXT COLLATE "C" NOT NULL,
    reason           TEXT COLLATE "C" NOT NULL,
    expires_at       TEXT COLLATE "C" NOT NULL,
    expires_unix     BIGINT NOT NULL,
    idempotency_key  TEXT COLLATE "C",
    body_hash        BYTEA,
    result           TEXT COLLATE "C",
    error_code       TEXT COLLATE "C",
    error_message    TEXT COLLATE "C",
    created_at       TEXT COLLATE "C" NOT NULL,
    updated_at       TEXT COLLATE "C" NOT NULL,
    requirements     TEXT COLLATE "C",
    requester        TEXT COLLATE "C"
);
CREATE UNIQUE INDEX approval_requests_idempotency
    ON approval_requests (issuer, subject, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX approval_requests_status ON approval_requests (status, expires_unix);

CREATE TABLE approval_votes (
    request_id  TEXT COLLATE "C" NOT NULL REFERENCES approval_requests (id),
    issuer      TEXT COLLATE "C" NOT NULL,
    subject     TEXT COLLATE "C" NOT NULL,
    decision    TEXT COLLATE "C" NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment     TEXT COLLATE "C",
    created_at  TEXT COLLATE "C" NOT NULL,
    roles       TEXT COLLATE "C",
    PRIMARY KEY (request_id, issuer, subject)
);

-- Usage counters for the policy host context: how much a key or a principal signed, in
-- minute buckets (span 60, for the last hour) and hour buckets (span 3600, for the last day).
-- Updated in the audit writer's transaction together with the signed request, so a count can
-- never disagree with the audit log. `amount` is a decimal string (values up to 2^256) for
-- metrics that add up a value, such as the wei a key sent.
CREATE TABLE usage_counters (
    scope   TEXT COLLATE "C" NOT NULL,
    metric  TEXT COLLATE "C" NOT NULL,
    span    BIGINT NOT NULL CHECK (span IN (60, 3600)),
    bucket  BIGINT NOT NULL,
    count   BIGINT NOT NULL,
    amount  TEXT COLLATE "C" NOT NULL DEFAULT '0',
    PRIMARY KEY (scope, metric, span, bucket)
);

-- Usage reserved by sign requests in flight on any node (see store::pending): a request
-- inserts its row before its policies read the counters and the audit writer deletes it in the
-- transaction that records the usage; rows of a node that died expire.
CREATE TABLE usage_reservations (
    id           BIGSERIAL PRIMARY KEY,
    node_id      TEXT COLLATE "C" NOT NULL,
    scope        TEXT COLLATE "C" NOT NULL,
    metric       TEXT COLLATE "C" NOT NULL,
    count        BIGINT NOT NULL,
    amount       TEXT COLLATE "C" NOT NULL,
    created_unix BIGINT NOT NULL
);
CREATE INDEX usage_reservations_scope ON usage_reservations (scope, metric);
CREATE INDEX usage_reservations_created ON usage_reservations (created_unix);

-- Cloud Signature Consortium API: credential authorizations and their SADs.
-- Only the SHA-256 of a SAD is stored; the SAD itself is handed to the client once.
CREATE TABLE csc_authorizations (
    id              TEXT COLLATE "C" PRIMARY KEY,
    issuer          TEXT COLLATE "C" NOT NULL,
    subject         TEXT COLLATE "C" NOT NULL,
    credential_id   TEXT COLLATE "C" NOT NULL REFERENCES keys (id),
    num_signatures  BIGINT NOT NULL CHECK (num_signatures >= 1),
    hash_algorithm  TEXT COLLATE "C" NOT NULL,
    -- JSON array of {"hash": hex, "approval": request id or null}: the hashes bound at SCAL 2.
    hashes          TEXT COLLATE "C" NOT NULL,
    -- pending: waiting for approval requests; issued: a SAD exists; used: the SAD was consumed.
    status          TEXT COLLATE "C" NOT NULL CHECK (status IN ('pending', 'issued', 'used')),
    sad_hash        BYTEA UNIQUE,
    expires_unix    BIGINT,
    description     TEXT COLLATE "C",
    created_at      TEXT COLLATE "C" NOT NULL,
    updated_at      TEXT COLLATE "C" NOT NULL
);
CREATE INDEX csc_authorizations_owner
    ON csc_authorizations (issuer, subject, credential_id, status, created_at);

-- HD wallets: a BIP-39 seed sealed under the KEK (like a software key), never the mnemonic.
CREATE TABLE wallets (
    id           TEXT COLLATE "C" PRIMARY KEY,
    name         TEXT COLLATE "C" NOT NULL UNIQUE,
    words        BIGINT NOT NULL,
    passphrase   BIGINT NOT NULL,
    origin       TEXT COLLATE "C" NOT NULL CHECK (origin IN ('generated', 'imported')),
    fingerprint  TEXT COLLATE "C" NOT NULL,
    seed         BYTEA NOT NULL,
    labels       TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    created_at   TEXT COLLATE "C" NOT NULL,
    created_by   TEXT COLLATE "C" NOT NULL
);

-- Accounts: keys (in the keys table, so ACLs, policies, approvals and audit apply) derived
-- from a wallet at a path. `chain_ids` (JSON array) restricts an Ethereum key to chain ids;
-- empty admits any.
-- `settings`: chain-specific settings of the account, a JSON object that the account's chain
-- wrote at creation and reads back (for a Bitcoin account its network and script kind, kept
-- because testnet and signet addresses look alike), so that the store knows no chain.
CREATE TABLE wallet_accounts (
    key_id      TEXT COLLATE "C" PRIMARY KEY REFERENCES keys (id),
    wallet_id   TEXT COLLATE "C" NOT NULL REFERENCES wallets (id),
    chain       TEXT COLLATE "C" NOT NULL,
    path        TEXT COLLATE "C" NOT NULL,
    address     TEXT COLLATE "C" NOT NULL,
    chain_ids   TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    created_at  TEXT COLLATE "C" NOT NULL,
    settings    TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    UNIQUE (wallet_id, chain, path)
);
CREATE INDEX wallet_accounts_wallet ON wallet_accounts (wallet_id, created_at);
