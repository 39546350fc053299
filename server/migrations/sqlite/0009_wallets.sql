-- HD wallets: a BIP-39 seed sealed under the KEK (like a software key), never the mnemonic.
CREATE TABLE wallets (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    words        INTEGER NOT NULL,
    passphrase   INTEGER NOT NULL,
    origin       TEXT NOT NULL CHECK (origin IN ('generated', 'imported')),
    fingerprint  TEXT NOT NULL,
    seed         BLOB NOT NULL,
    labels       TEXT NOT NULL DEFAULT '{}',
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL
);

-- Accounts: keys (in the keys table, so ACLs, policies, approvals and audit apply) derived
-- from a wallet at a path. `chain_ids` (JSON array) restricts an Ethereum key to chain ids;
-- empty admits any.
CREATE TABLE wallet_accounts (
    key_id      TEXT PRIMARY KEY REFERENCES keys (id),
    wallet_id   TEXT NOT NULL REFERENCES wallets (id),
    chain       TEXT NOT NULL,
    path        TEXT NOT NULL,
    address     TEXT NOT NULL,
    chain_ids   TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL,
    UNIQUE (wallet_id, chain, path)
);
CREATE INDEX wallet_accounts_wallet ON wallet_accounts (wallet_id, created_at);
