-- Every queue that has jobs waiting or running, is paused or has limits: depth (pending
-- and due now), future (pending, due later), running, paused and its limits (scope_limits);
-- `problem`: why its limits cannot be enforced (its jobs wait until they are fixed), NULL
-- when none.
CREATE OR REPLACE VIEW {schema}.queue_stats AS
WITH counts AS (
    SELECT j.queue,
           count(*) FILTER (WHERE j.status = 'pending' AND j.execution_time <= now()) AS due_now,
           count(*) FILTER (WHERE j.status = 'pending' AND j.execution_time > now()) AS future,
           count(*) FILTER (WHERE j.status = 'running') AS running
    FROM {schema}.jobs j WHERE j.status IN ('pending', 'running')
    GROUP BY j.queue
), settings AS (
    SELECT coalesce(q.queue, s.name) AS queue, q.paused, s.concurrency_limit, s.rate_limit,
           s.rate_period, s.rate_burst, s.problem, s.limits
    FROM {schema}.queues q
    FULL JOIN (SELECT * FROM {schema}.scope_limits WHERE scope = 'queue') s
        ON s.name = q.queue
)
SELECT coalesce(s.queue, c.queue) AS queue,
       coalesce(c.due_now, 0) AS due_now, coalesce(c.future, 0) AS future,
       coalesce(c.running, 0) AS running, coalesce(s.paused, false) AS paused,
       s.concurrency_limit, s.rate_limit, coalesce(s.rate_period, 1) AS rate_period,
       coalesce(s.rate_burst, 1) AS rate_burst, s.problem,
       coalesce(s.limits, '[]') AS limits
FROM settings s FULL JOIN counts c ON c.queue = s.queue;
