-- Hooks on run events (issue 18).
--
-- One row per (occasion, hook): the process that inserts it delivers, so a hook hears of an
-- occasion once however many processes see it. `occasion` names what happened
-- (`run.failed:<run id>`, `queue.empty:<run id>`, `target.unreachable:<target>:<window>`);
-- `state` is `sending` until the delivery ends `delivered` or `failed` (with `detail`).
CREATE TABLE hook_deliveries (
    occasion   TEXT NOT NULL,
    hook       TEXT NOT NULL,
    event      TEXT NOT NULL,
    run_id     TEXT,
    claimed_at INTEGER NOT NULL,
    state      TEXT NOT NULL DEFAULT 'sending',
    attempts   INTEGER NOT NULL DEFAULT 0,
    detail     TEXT,
    ended_at   INTEGER,
    PRIMARY KEY (occasion, hook)
);
CREATE INDEX hook_deliveries_by_hook ON hook_deliveries (hook, claimed_at);
