-- Batching (issue 17).
--
-- `signature`: what Cosmos treats as global in batch mode (the spec without its prompt and
-- paths, the GPUs, each input's resolution bucket and frame count), hashed when the run is
-- queued. Runs with the same signature may share one process; NULL never batches.
-- `batch_id` / `batch_line`: the batch the run was last placed in and its JSONL line (NULL
-- when it ran alone). `batch_limit`: the largest batch the run may join (halved after a
-- batch ran out of GPU memory; NULL: the target's own limit).
ALTER TABLE runs ADD COLUMN signature TEXT;
ALTER TABLE runs ADD COLUMN batch_id TEXT;
ALTER TABLE runs ADD COLUMN batch_line INTEGER;
ALTER TABLE runs ADD COLUMN batch_limit INTEGER;
CREATE INDEX runs_signature ON runs (signature, priority DESC, created_at)
    WHERE status = 'queued' AND signature IS NOT NULL;
CREATE INDEX runs_batch ON runs (batch_id) WHERE batch_id IS NOT NULL;
