-- Every queue that has jobs waiting or running or a row in `queues`: depth (pending and
-- due now), future (pending, due later), running, paused and its limits; `problem`: why its
-- limits cannot be enforced (its jobs wait until set_queue_limits() fixes them), NULL when
-- none.
CREATE OR REPLACE VIEW {schema}.queue_stats AS
WITH counts AS (
    SELECT j.queue,
           count(*) FILTER (WHERE j.status = 'pending' AND j.execution_time <= now()) AS due_now,
           count(*) FILTER (WHERE j.status = 'pending' AND j.execution_time > now()) AS future,
           count(*) FILTER (WHERE j.status = 'running') AS running
    FROM {schema}.jobs j WHERE j.status IN ('pending', 'running')
    GROUP BY j.queue
)
SELECT coalesce(q.queue, c.queue) AS queue,
       coalesce(c.due_now, 0) AS due_now, coalesce(c.future, 0) AS future,
       coalesce(c.running, 0) AS running, coalesce(q.paused, false) AS paused,
       q.concurrency_limit, q.rate_limit, q.rate_period, q.rate_burst,
       CASE WHEN q.queue IS NOT NULL  -- a queue without a row has no limits to check
            THEN {schema}.limits_problem(q.concurrency_limit, q.rate_limit, q.rate_period,
                                         q.rate_burst) END AS problem
FROM {schema}.queues q FULL JOIN counts c ON c.queue = q.queue;
