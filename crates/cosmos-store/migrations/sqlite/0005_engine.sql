-- The engine (issue 12).
--
-- Events get a global sequence that never goes back: AUTOINCREMENT keeps an id from being
-- reused after the newest events were deleted with their run, so a follower that reads
-- "events after N" never misses one. The table is rebuilt to get it.
CREATE TABLE run_events_seq (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id   TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    at       INTEGER NOT NULL,
    stage    TEXT NOT NULL,
    progress REAL,
    message  TEXT NOT NULL
);
INSERT INTO run_events_seq (id, run_id, at, stage, progress, message)
    SELECT id, run_id, at, stage, progress, message FROM run_events ORDER BY id;
DROP TABLE run_events;
ALTER TABLE run_events_seq RENAME TO run_events;
CREATE INDEX run_events_run ON run_events (run_id, id);

-- Fenced leases: the token changes whenever the lease changes hands, and every write a
-- driver makes names the owner and token it holds, so a driver that lost its lease (paused
-- past its expiry, then resumed) writes nothing.
ALTER TABLE runs ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
-- Why a run failed, as a stable code beside the message (`failure_reason`).
ALTER TABLE runs ADD COLUMN failure_code TEXT;
-- The exact command that started the model, as a JSON argument vector.
ALTER TABLE runs ADD COLUMN launch_command TEXT;
-- The sweep a run was submitted in (the id of its first run), for cancelling a sweep.
ALTER TABLE runs ADD COLUMN sweep_id TEXT;
CREATE INDEX runs_sweep ON runs (sweep_id) WHERE sweep_id IS NOT NULL;
