-- usage_reservations is emptied and refilled all the time: a vacuum that finds its last pages
-- empty would take the table's exclusive lock to cut them off, stalling every sign request
-- (and retrying for up to five seconds while they keep the table busy). Never truncate it.
ALTER TABLE usage_reservations SET (vacuum_truncate = false);
