-- ---------------------------------------------------------------------------------------
-- Monitoring views (psql, Grafana, postgres_exporter). Times are the database clock's.

-- Running attempts with the worker that holds them and for how long.
CREATE OR REPLACE VIEW {schema}.running_jobs AS
SELECT j.job_id, j.task_name, j.attempts AS attempt, j.lease_owner AS worker_id,
       w.hostname, w.pid, j.started_at, now() - j.started_at AS runtime,
       w.lease_expires_at, j.cancel_requested_at
FROM {schema}.jobs j
LEFT JOIN {schema}.workers w ON w.worker_id = j.lease_owner
WHERE j.status = 'running';
