-- The exact input the policies of a key judged each sign request with (the sign request as
-- policies see it, host context included), kept for `POST /v1/policies/{id}/replay` and
-- `keyward policy replay`, and pruned after `policy.replay_retention_days` or beyond
-- `policy.replay_max_inputs` rows.
CREATE TABLE policy_inputs (
    request_id    TEXT PRIMARY KEY,
    key_id        TEXT NOT NULL,
    operation     TEXT NOT NULL,
    created_unix  BIGINT NOT NULL,
    -- The SignRequest JSON, exactly as it was given to the key's policies.
    request       TEXT NOT NULL,
    -- The combined verdict of the key's policies then: allow, deny or require_approval.
    decision      TEXT NOT NULL,
    reason        TEXT
);
CREATE INDEX policy_inputs_time ON policy_inputs (created_unix);
CREATE INDEX policy_inputs_key_time ON policy_inputs (key_id, created_unix);
