-- From a bare GPU host to a verified target (issue 14).
--
-- What a run ran on, recorded before its model starts: the image (its digest), the
-- cosmos-transfer1 checkout (its commit) and the checkpoints (their manifest's hash), as a
-- JSON object; NULL for runs that never started, or that started before this column existed.
ALTER TABLE runs ADD COLUMN supply TEXT;
