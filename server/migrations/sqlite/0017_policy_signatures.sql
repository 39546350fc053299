-- Signed policy modules (policy.trusted_signers): the signature a module was uploaded with and
-- the trusted key that verified it, kept so that anyone can check it again. NULL when the
-- server needed no signature, and for built-in policies.
ALTER TABLE policies ADD COLUMN signature TEXT;
ALTER TABLE policies ADD COLUMN signer_key TEXT;
ALTER TABLE policies ADD COLUMN signer_name TEXT;
