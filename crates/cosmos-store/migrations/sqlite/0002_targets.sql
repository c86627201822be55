-- Targets: where runs execute. `config` is the JSON of cosmos_core::TargetConfig; at most one
-- target is the default.
CREATE TABLE targets (
    name       TEXT PRIMARY KEY,
    config     TEXT NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX targets_one_default ON targets (is_default) WHERE is_default = 1;
CREATE INDEX runs_live ON runs (status) WHERE status IN ('staging', 'starting', 'running', 'collecting');
