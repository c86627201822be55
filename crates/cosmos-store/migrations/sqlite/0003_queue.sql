-- The queue (DESIGN.md §4). A run is claimed by setting its lease while it is queued; the claim
-- also places it: `target` and `gpu_devices` (a JSON array of device indices) name the slots
-- it holds until it finishes. `not_before` delays an automatic retry.
-- `target_pin` is the target the user asked for (`--target`); a retry is placed afresh
-- within it.
ALTER TABLE runs ADD COLUMN gpu_devices TEXT;
ALTER TABLE runs ADD COLUMN not_before INTEGER;
ALTER TABLE runs ADD COLUMN target_pin TEXT;
-- The model's exit status, kept once read so the container can go before the run ends.
ALTER TABLE runs ADD COLUMN exit_code INTEGER;
-- Slots in use: the non-terminal runs that hold devices.
CREATE INDEX runs_placed ON runs (target) WHERE gpu_devices IS NOT NULL
    AND status IN ('queued', 'staging', 'starting', 'running', 'collecting');

-- Live worker processes (`cosmos worker`, `cosmos serve`), each renewing `seen_at`.
CREATE TABLE workers (
    id         TEXT PRIMARY KEY,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL
);

-- Paused scopes: '*' is the whole queue, anything else a target name.
CREATE TABLE queue_pauses (
    scope TEXT PRIMARY KEY,
    since INTEGER NOT NULL
);

-- Which targets already hold an input set's blobs (placement prefers them).
CREATE TABLE target_inputs (
    target       TEXT NOT NULL,
    input_set_id TEXT NOT NULL REFERENCES input_sets (id) ON DELETE CASCADE,
    PRIMARY KEY (target, input_set_id)
);

-- What the workers last saw of each target (for `cosmos status`).
CREATE TABLE target_health (
    target     TEXT PRIMARY KEY,
    reachable  INTEGER NOT NULL CHECK (reachable IN (0, 1)),
    since      INTEGER NOT NULL,
    checked_at INTEGER NOT NULL
);
CREATE INDEX runs_finished ON runs (finished_at) WHERE status = 'succeeded';
