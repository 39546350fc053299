-- Each policy's approval requirement is kept on its own (a request is approved only when every
-- one is met), with the roles each voter held among the request's approver roles, and the
-- requester's rights when the request was made (re-checked when the approved request is
-- signed). Rows made before this migration have NULL: one requirement (quorum and
-- approver_roles), and a requester known by subject only.
ALTER TABLE approval_requests ADD COLUMN requirements TEXT;
ALTER TABLE approval_requests ADD COLUMN requester TEXT;
ALTER TABLE approval_votes ADD COLUMN roles TEXT;
