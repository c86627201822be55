-- What a new user and a fault tester hit (issue 13).
--
-- A run placed on a rehearsal target (cosmos-sim standing in for Cosmos) is marked at the
-- claim, so it is labelled as rehearsal output wherever it is shown, even after the target
-- is gone.
ALTER TABLE runs ADD COLUMN rehearsal INTEGER NOT NULL DEFAULT 0;
-- A favourite beside the 1–5 rating (`cosmos rate`).
ALTER TABLE runs ADD COLUMN favourite INTEGER NOT NULL DEFAULT 0;
-- A run is retried at most once (`cosmos retry`): the retry looks for an earlier one.
CREATE INDEX runs_retry_of ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
-- Targets a run could not start on (a JSON array of names): it is placed elsewhere before
-- it is failed.
ALTER TABLE runs ADD COLUMN avoid_targets TEXT;
