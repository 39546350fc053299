-- The node that wrote each audit record (`[server] node_id`); covered by the record's hash.
ALTER TABLE audit_log ADD COLUMN node_id TEXT COLLATE "C";
