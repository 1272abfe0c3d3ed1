-- Attempt history for monitoring and producers (who have no right on the tables); the error
-- parts last, so the old columns keep their places.
CREATE OR REPLACE VIEW {schema}.attempt_history AS
SELECT a.job_id, j.task_name, a.attempt, a.outcome, a.error, a.worker_id, a.hostname,
       a.claimed_at, a.started_at, a.finished_at, a.finished_at - a.started_at AS duration,
       a.error_type, a.error_message
FROM {schema}.job_attempts a JOIN {schema}.jobs j USING (job_id);
