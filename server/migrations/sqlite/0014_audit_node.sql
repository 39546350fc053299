-- The node that wrote each audit record (`[server] node_id`); covered by the record's hash.
-- Records written before this column existed have none, and hash as they always did.
ALTER TABLE audit_log ADD COLUMN node_id TEXT;
