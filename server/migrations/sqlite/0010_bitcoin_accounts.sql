-- Bitcoin accounts: the network and the script kind of a wallet account of chain `bitcoin`
-- (testnet and signet addresses look alike, so the network is kept, not inferred).
CREATE TABLE bitcoin_accounts (
    key_id        TEXT PRIMARY KEY REFERENCES wallet_accounts (key_id),
    network       TEXT NOT NULL,
    address_type  TEXT NOT NULL CHECK (address_type IN ('p2wpkh', 'p2tr'))
);
