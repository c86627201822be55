-- `cosmos serve` (issue 15).
--
-- A run's GPUs while its model ran, sampled from nvidia-smi on its target: samples, peak and
-- mean utilisation and memory, as a JSON object; NULL until a first sample is taken.
ALTER TABLE runs ADD COLUMN gpu_usage TEXT;
