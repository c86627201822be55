-- How many GPUs a worker last saw on a target (nvidia-smi at preflight), so `cosmos status`
-- can show the slots a target really offers when it has fewer GPUs than configured.
ALTER TABLE target_health ADD COLUMN gpus INTEGER;
