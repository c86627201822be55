-- A prompt's own model (issue 18): the model its runs use when a run names none
-- (`cosmos prompt add … --model transfer2.5`). NULL: the configured default.
ALTER TABLE prompts ADD COLUMN model TEXT;
