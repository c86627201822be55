-- cosmos schema, version 1. Times are Unix milliseconds (UTC). Ids are prefixed ULIDs, so
-- ordering by id is ordering by creation time.

CREATE TABLE input_sets (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    dir         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX input_sets_fingerprint ON input_sets (fingerprint);
CREATE INDEX input_sets_created ON input_sets (created_at);

CREATE TABLE input_files (
    input_set_id TEXT NOT NULL REFERENCES input_sets (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    path         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    frames       INTEGER NOT NULL,
    fps          REAL NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    duration     REAL NOT NULL,
    codec        TEXT NOT NULL,
    PRIMARY KEY (input_set_id, kind)
);

-- `seq` is the stable integer key the full-text index refers to (a plain rowid may change
-- on VACUUM when a table has no INTEGER PRIMARY KEY).
CREATE TABLE prompts (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL UNIQUE,
    text         TEXT NOT NULL,
    negative     TEXT,
    input_set_id TEXT REFERENCES input_sets (id) ON DELETE SET NULL,
    parent_id    TEXT REFERENCES prompts (id) ON DELETE SET NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX prompts_created ON prompts (created_at);
CREATE INDEX prompts_input_set ON prompts (input_set_id);
CREATE INDEX prompts_parent ON prompts (parent_id);
CREATE INDEX prompts_text ON prompts (text);

CREATE VIRTUAL TABLE prompts_fts USING fts5 (
    name, text, negative,
    content = 'prompts', content_rowid = 'seq',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER prompts_fts_insert AFTER INSERT ON prompts BEGIN
    INSERT INTO prompts_fts (rowid, name, text, negative)
    VALUES (new.seq, new.name, new.text, new.negative);
END;

CREATE TRIGGER prompts_fts_delete AFTER DELETE ON prompts BEGIN
    INSERT INTO prompts_fts (prompts_fts, rowid, name, text, negative)
    VALUES ('delete', old.seq, old.name, old.text, old.negative);
END;

CREATE TRIGGER prompts_fts_update AFTER UPDATE OF name, text, negative ON prompts BEGIN
    INSERT INTO prompts_fts (prompts_fts, rowid, name, text, negative)
    VALUES ('delete', old.seq, old.name, old.text, old.negative);
    INSERT INTO prompts_fts (rowid, name, text, negative)
    VALUES (new.seq, new.name, new.text, new.negative);
END;

-- A run copies the prompt text, negative text and input set it was created with.
-- priority, attempts and the lease columns belong to the queue.
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    prompt_id        TEXT NOT NULL REFERENCES prompts (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('transfer', 'upscale', 'enhance')),
    status           TEXT NOT NULL CHECK (status IN ('queued', 'staging', 'starting', 'running',
                                                     'collecting', 'succeeded', 'failed',
                                                     'cancelled')),
    name             TEXT,
    prompt_text      TEXT NOT NULL,
    negative_prompt  TEXT,
    input_set_id     TEXT REFERENCES input_sets (id) ON DELETE SET NULL,
    params           TEXT NOT NULL,
    gpus             INTEGER NOT NULL DEFAULT 1,
    target           TEXT,
    priority         INTEGER NOT NULL DEFAULT 0,
    parent_run_id    TEXT REFERENCES runs (id) ON DELETE SET NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    failure_reason   TEXT,
    rating           INTEGER CHECK (rating BETWEEN 1 AND 5),
    outputs          TEXT NOT NULL DEFAULT '[]',
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER
);
CREATE INDEX runs_created ON runs (created_at, id);
CREATE INDEX runs_prompt ON runs (prompt_id, created_at);
CREATE INDEX runs_status ON runs (status, created_at);
CREATE INDEX runs_input_set ON runs (input_set_id);
CREATE INDEX runs_parent ON runs (parent_run_id);
CREATE INDEX runs_queue ON runs (priority DESC, created_at) WHERE status = 'queued';

CREATE TABLE run_events (
    id       INTEGER PRIMARY KEY,
    run_id   TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    at       INTEGER NOT NULL,
    stage    TEXT NOT NULL,
    progress REAL,
    message  TEXT NOT NULL
);
CREATE INDEX run_events_run ON run_events (run_id, id);
