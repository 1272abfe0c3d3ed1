-- Running rows whose worker's lease lapsed (or whose worker row is gone), not reaped yet:
-- a reaper runs every reap_interval on every replica, so rows that stay here for long mean
-- no replica is reaping.
CREATE OR REPLACE VIEW {schema}.stalled_jobs AS
SELECT j.job_id, j.task_name, j.attempts AS attempt, j.lease_owner AS worker_id,
       w.hostname, w.lease_expires_at,
       now() - coalesce(w.lease_expires_at, j.updated_at) AS stalled_for
FROM {schema}.jobs j
LEFT JOIN {schema}.workers w ON w.worker_id = j.lease_owner
WHERE j.status = 'running' AND (w.worker_id IS NULL OR w.lease_expires_at <= now());
