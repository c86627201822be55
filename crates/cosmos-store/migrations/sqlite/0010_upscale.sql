-- 4K upscale chains and prompt upsampling (issue 17).
--
-- `upscale_of`: the run whose output an upscale run enlarges. The queue holds such a run
-- until its parent succeeds (then pins it to the parent's target, where the parent's output
-- already is) and cancels it when the parent fails or is cancelled, in the transaction that
-- ends the parent.
-- `model_prompt`: the prompt text the model actually used, when it differs from the run's
-- (Cosmos's prompt upsampler rewrote it), read from the output's prompt file.
ALTER TABLE runs ADD COLUMN upscale_of TEXT REFERENCES runs (id) ON DELETE SET NULL;
ALTER TABLE runs ADD COLUMN model_prompt TEXT;
CREATE INDEX runs_upscale_of ON runs (upscale_of) WHERE upscale_of IS NOT NULL;
