-- Chain-specific settings of a wallet account: a JSON object that the account's chain wrote
-- at creation and reads back (for a Bitcoin account its network and script kind, kept because
-- testnet and signet addresses look alike). Replaces the table of one chain's settings, so
-- that the store knows no chain.
ALTER TABLE wallet_accounts ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
UPDATE wallet_accounts
   SET settings = (SELECT json_object('network', b.network, 'address_type', b.address_type)
                     FROM bitcoin_accounts b WHERE b.key_id = wallet_accounts.key_id)
 WHERE key_id IN (SELECT key_id FROM bitcoin_accounts);
DROP TABLE bitcoin_accounts;
