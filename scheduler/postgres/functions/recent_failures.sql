-- Jobs that ended failed in the last 24 hours, newest first, with their error (full text,
-- then type and message: new columns go last so the old ones keep their places) and budgets.
CREATE OR REPLACE VIEW {schema}.recent_failures AS
SELECT j.job_id, j.task_name, j.finished_at, j.last_error, j.attempts, j.failures,
       j.lost_leases, j.max_retries, j.schedule_id, j.error_type, j.error_message
FROM {schema}.jobs j
WHERE j.status = 'failed' AND j.finished_at > now() - interval '24 hours'
ORDER BY j.finished_at DESC;
