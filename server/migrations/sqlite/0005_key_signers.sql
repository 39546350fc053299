-- Per-key access control: who may sign with a key, as a JSON array of entries
-- (`subject:<sub>`, `role:<role>`, `group:<name>`). An empty array admits every signer.
ALTER TABLE keys ADD COLUMN signers TEXT NOT NULL DEFAULT '[]';
