-- Sign requests are read by id and by idempotency key only: the host context counts signatures
-- in usage_counters, and nothing lists sign requests by key or principal. These four indexes were
-- written with every signature and never read.
DROP INDEX IF EXISTS sign_requests_key_time;
DROP INDEX IF EXISTS sign_requests_subject_time;
DROP INDEX IF EXISTS sign_requests_signed_key;
DROP INDEX IF EXISTS sign_requests_signed_subject;
