-- Workers whose lease is live, with how many attempts each holds.
CREATE OR REPLACE VIEW {schema}.live_workers AS
SELECT w.worker_id, w.hostname, w.pid, w.tasks, w.started_at, w.heartbeat_at,
       w.lease_expires_at, w.lease_expires_at - now() AS lease_left,
       (SELECT count(*) FROM {schema}.jobs j
        WHERE j.lease_owner = w.worker_id AND j.status = 'running') AS running_jobs
FROM {schema}.workers w
WHERE w.lease_expires_at > now();
