-- Per task: what waits, what runs, what ended in the last hour, and the lag (how long the
-- oldest due job has waited). Reads only unfinished rows and those finished in the hour.
-- Blocked jobs (0006) are counted in the last column.
CREATE OR REPLACE VIEW {schema}.task_stats AS
SELECT j.task_name,
       count(*) FILTER (WHERE j.status = 'pending' AND j.execution_time <= now()) AS due_now,
       count(*) FILTER (WHERE j.status = 'pending' AND j.execution_time > now()) AS future,
       count(*) FILTER (WHERE j.status = 'running') AS running,
       count(*) FILTER (WHERE j.status = 'succeeded') AS succeeded_last_hour,
       count(*) FILTER (WHERE j.status = 'failed') AS failed_last_hour,
       count(*) FILTER (WHERE j.status = 'cancelled') AS cancelled_last_hour,
       coalesce(extract(epoch FROM now() - min(j.execution_time)
                FILTER (WHERE j.status = 'pending' AND j.execution_time <= now())), 0)::float8
           AS oldest_due_seconds,
       count(*) FILTER (WHERE j.status = 'blocked') AS blocked
FROM {schema}.jobs j
WHERE j.status IN ('pending', 'running', 'blocked')
   OR (j.status IN ('succeeded', 'failed', 'cancelled')
       AND j.finished_at > now() - interval '1 hour')
GROUP BY j.task_name;
