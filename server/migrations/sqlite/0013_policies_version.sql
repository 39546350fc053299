-- A key's policies version: bumped with every change of its policy bindings, so that the audit
-- writer can refuse a signature judged under bindings that changed since (on any node).
ALTER TABLE keys ADD COLUMN policies_version INTEGER NOT NULL DEFAULT 0;
