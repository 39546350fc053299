-- Usage counters for the policy host context: how much a key or a principal signed, in
-- minute buckets (span 60, for the last hour) and hour buckets (span 3600, for the last day).
-- Updated in the audit writer's transaction together with the signed request, so a count can
-- never disagree with the audit log. `amount` is a decimal string (values up to 2^256) for
-- metrics that add up a value, such as the wei a key sent.
CREATE TABLE usage_counters (
    scope   TEXT NOT NULL,
    metric  TEXT NOT NULL,
    span    INTEGER NOT NULL CHECK (span IN (60, 3600)),
    bucket  INTEGER NOT NULL,
    count   INTEGER NOT NULL,
    amount  TEXT NOT NULL DEFAULT '0',
    PRIMARY KEY (scope, metric, span, bucket)
) WITHOUT ROWID;

-- Carry over the signatures of the last 25 hours made before this table existed.
INSERT INTO usage_counters (scope, metric, span, bucket, count)
SELECT 'key:' || key_id, 'signatures', 60, created_unix / 60, COUNT(*)
FROM sign_requests
WHERE status = 'signed' AND created_unix >= CAST(strftime('%s', 'now') AS INTEGER) - 3720
GROUP BY key_id, created_unix / 60;
INSERT INTO usage_counters (scope, metric, span, bucket, count)
SELECT 'key:' || key_id, 'signatures', 3600, created_unix / 3600, COUNT(*)
FROM sign_requests
WHERE status = 'signed' AND created_unix >= CAST(strftime('%s', 'now') AS INTEGER) - 93600
GROUP BY key_id, created_unix / 3600;
INSERT INTO usage_counters (scope, metric, span, bucket, count)
SELECT 'principal:' || issuer || char(10) || subject, 'signatures', 60, created_unix / 60, COUNT(*)
FROM sign_requests
WHERE status = 'signed' AND created_unix >= CAST(strftime('%s', 'now') AS INTEGER) - 3720
GROUP BY issuer, subject, created_unix / 60;
INSERT INTO usage_counters (scope, metric, span, bucket, count)
SELECT 'principal:' || issuer || char(10) || subject, 'signatures', 3600, created_unix / 3600, COUNT(*)
FROM sign_requests
WHERE status = 'signed' AND created_unix >= CAST(strftime('%s', 'now') AS INTEGER) - 93600
GROUP BY issuer, subject, created_unix / 3600;
