-- Reads of the web dashboard (scheduler.dashboard). Each block reads through an index:
-- tests/integration/test_dashboard_plans.py fails when one starts scanning the jobs table.
-- Every list is paged by a keyset cursor (the sort key of the last row shown), never by
-- OFFSET, and each status has its own statement so PostgreSQL can match its partial index
-- even with a generic plan. $1 is a task name, $2 a queue (NULL: any). ORDER BY names the
-- table's columns (j.), not the readable_time() outputs of the same name, so an index can
-- serve the order and a page reads only its own rows.

-- overview_counts --
-- Per queue and task: pending due now and later, running, blocked, ended in the last $1
-- seconds (throughput), failed in the last hour, and when the oldest due job was due.
-- Each part reads one partial index; the ended part reads only the window's rows.
SELECT queue, task_name,
       sum(due_now)::bigint AS due_now, sum(future)::bigint AS future,
       sum(running)::bigint AS running, sum(blocked)::bigint AS blocked,
       sum(succeeded_recent)::bigint AS succeeded_recent,
       sum(failed_recent)::bigint AS failed_recent,
       sum(failed_hour)::bigint AS failed_hour,
       coalesce(extract(epoch FROM now() - min(oldest_due)), 0)::float8 AS lag_seconds
FROM (
    SELECT queue, task_name,
           count(*) FILTER (WHERE execution_time <= now()) AS due_now,
           count(*) FILTER (WHERE execution_time > now()) AS future,
           0 AS running, 0 AS blocked, 0 AS succeeded_recent, 0 AS failed_recent,
           0 AS failed_hour,
           min(execution_time) FILTER (WHERE execution_time <= now()
                                        AND execution_time > '-infinity') AS oldest_due
    FROM {schema}.jobs WHERE status = 'pending' GROUP BY queue, task_name
    UNION ALL
    SELECT queue, task_name, 0, 0, count(*), 0, 0, 0, 0, NULL
    FROM {schema}.jobs WHERE status = 'running' GROUP BY queue, task_name
    UNION ALL
    SELECT queue, task_name, 0, 0, 0, count(*), 0, 0, 0, NULL
    FROM {schema}.jobs WHERE status = 'blocked' GROUP BY queue, task_name
    UNION ALL
    SELECT queue, task_name, 0, 0, 0, 0,
           count(*) FILTER (WHERE status = 'succeeded'),
           count(*) FILTER (WHERE status = 'failed'), 0, NULL
    FROM {schema}.jobs
    WHERE status IN ('succeeded', 'failed', 'cancelled')
      AND finished_at > now() - make_interval(secs => $1::float8)
    GROUP BY queue, task_name
    UNION ALL
    SELECT queue, task_name, 0, 0, 0, 0, 0, 0, count(*), NULL
    FROM {schema}.jobs
    WHERE status = 'failed' AND updated_at > now() - interval '1 hour'
    GROUP BY queue, task_name
) AS parts
GROUP BY queue, task_name
ORDER BY queue, task_name

-- queue_settings --
-- Queues that were paused or limited (small tables: a row per such queue and per limit),
-- and why their limits cannot be enforced (NULL: they can).
SELECT coalesce(q.queue, s.name) AS queue, coalesce(q.paused, false) AS paused,
       s.concurrency_limit, s.rate_limit, coalesce(s.rate_period, 1) AS rate_period,
       coalesce(s.rate_burst, 1) AS rate_burst, s.problem
FROM {schema}.queues q
FULL JOIN (SELECT * FROM {schema}.scope_limits WHERE scope = 'queue') s ON s.name = q.queue
ORDER BY 1

-- live_worker_count --
-- How many replicas hold a live lease.
SELECT count(*)::integer FROM {schema}.workers WHERE lease_expires_at > now()

-- jobs_pending --
-- Pending jobs in the claim index's order: queue, priority, due time (then id), after
-- the cursor ($3 queue, $4 priority, $5 due time, $6 id). At most $7 rows.
SELECT job_id, task_name, queue, status, priority, attempts, max_retries,
       right(last_error, 400) AS last_error, error_message, schedule_id,
       {schema}.readable_time(execution_time) AS execution_time,
       {schema}.readable_time(started_at) AS started_at,
       {schema}.readable_time(finished_at) AS finished_at,
       {schema}.readable_time(updated_at) AS updated_at,
       json_build_array(queue, priority, execution_time::text, job_id)::text AS cursor
FROM {schema}.jobs AS j
WHERE status = 'pending'
  AND (queue, priority, execution_time, job_id)
      > ($3::text, $4::smallint, $5::text::timestamptz, $6::text)
  AND ($1::text IS NULL OR task_name = $1::text)
  AND ($2::text IS NULL OR queue = $2::text)
ORDER BY j.queue, j.priority, j.execution_time, j.job_id
LIMIT $7

-- jobs_running --
-- Running jobs, longest running first, after the cursor ($3 start time, $4 id). The
-- running rows are few (at most the fleet's slots): their partial index holds only them.
SELECT job_id, task_name, queue, status, priority, attempts, max_retries,
       right(last_error, 400) AS last_error, error_message, schedule_id,
       {schema}.readable_time(execution_time) AS execution_time,
       {schema}.readable_time(started_at) AS started_at,
       {schema}.readable_time(finished_at) AS finished_at,
       {schema}.readable_time(updated_at) AS updated_at,
       json_build_array(coalesce(started_at, '-infinity')::text, job_id)::text AS cursor
FROM {schema}.jobs AS j
WHERE status = 'running'
  AND (coalesce(started_at, '-infinity'), job_id) > ($3::text::timestamptz, $4::text)
  AND ($1::text IS NULL OR task_name = $1::text)
  AND ($2::text IS NULL OR queue = $2::text)
ORDER BY coalesce(j.started_at, '-infinity'), j.job_id
LIMIT $5

-- jobs_succeeded --
-- Succeeded jobs, latest finished first, before the cursor ($3 finish time, $4 id).
SELECT job_id, task_name, queue, status, priority, attempts, max_retries,
       right(last_error, 400) AS last_error, error_message, schedule_id,
       {schema}.readable_time(execution_time) AS execution_time,
       {schema}.readable_time(started_at) AS started_at,
       {schema}.readable_time(finished_at) AS finished_at,
       {schema}.readable_time(updated_at) AS updated_at,
       json_build_array(finished_at::text, job_id)::text AS cursor
FROM {schema}.jobs AS j
WHERE status = 'succeeded'
  AND (finished_at, job_id) < ($3::text::timestamptz, $4::text)
  AND ($1::text IS NULL OR task_name = $1::text)
  AND ($2::text IS NULL OR queue = $2::text)
ORDER BY j.finished_at DESC, j.job_id DESC
LIMIT $5

-- jobs_failed --
-- Failed jobs, latest change first, before the cursor ($3 change time, $4 id).
SELECT job_id, task_name, queue, status, priority, attempts, max_retries,
       right(last_error, 400) AS last_error, error_message, schedule_id,
       {schema}.readable_time(execution_time) AS execution_time,
       {schema}.readable_time(started_at) AS started_at,
       {schema}.readable_time(finished_at) AS finished_at,
       {schema}.readable_time(updated_at) AS updated_at,
       json_build_array(updated_at::text, job_id)::text AS cursor
FROM {schema}.jobs AS j
WHERE status = 'failed'
  AND (updated_at, job_id) < ($3::text::timestamptz, $4::text)
  AND ($1::text IS NULL OR task_name = $1::text)
  AND ($2::text IS NULL OR queue = $2::text)
ORDER BY j.updated_at DESC, j.job_id DESC
LIMIT $5

-- jobs_cancelled --
-- Cancelled jobs, latest change first, before the cursor ($3 change time, $4 id).
SELECT job_id, task_name, queue, status, priority, attempts, max_retries,
       right(last_error, 400) AS last_error, error_message, schedule_id,
       {schema}.readable_time(execution_time) AS execution_time,
       {schema}.readable_time(started_at) AS started_at,
       {schema}.readable_time(finished_at) AS finished_at,
       {schema}.readable_time(updated_at) AS updated_at,
       json_build_array(updated_at::text, job_id)::text AS cursor
FROM {schema}.jobs AS j
WHERE status = 'cancelled'
  AND (updated_at, job_id) < ($3::text::timestamptz, $4::text)
  AND ($1::text IS NULL OR task_name = $1::text)
  AND ($2::text IS NULL OR queue = $2::text)
ORDER BY j.updated_at DESC, j.job_id DESC
LIMIT $5

-- jobs_blocked --
-- Jobs waiting for their dependencies, latest change first, before the cursor ($3 change
-- time, $4 id).
SELECT job_id, task_name, queue, status, priority, attempts, max_retries,
       right(last_error, 400) AS last_error, error_message, schedule_id,
       {schema}.readable_time(execution_time) AS execution_time,
       {schema}.readable_time(started_at) AS started_at,
       {schema}.readable_time(finished_at) AS finished_at,
       {schema}.readable_time(updated_at) AS updated_at,
       json_build_array(updated_at::text, job_id)::text AS cursor
FROM {schema}.jobs AS j
WHERE status = 'blocked'
  AND (updated_at, job_id) < ($3::text::timestamptz, $4::text)
  AND ($1::text IS NULL OR task_name = $1::text)
  AND ($2::text IS NULL OR queue = $2::text)
ORDER BY j.updated_at DESC, j.job_id DESC
LIMIT $5

-- job_exists --
-- Whether a job id is known (the id search: a primary key look-up).
SELECT true FROM {schema}.jobs WHERE job_id = $1

-- schedules_page --
-- Schedules by id after the cursor $1, at most $2, with their unfinished jobs (read
-- through the index of unfinished scheduled jobs).
SELECT s.schedule_id, s.task_name, s.trigger::text AS trigger, s.paused, s.queue,
       s.trigger_error,
       {schema}.readable_time(s.next_fire_time) AS next_fire_time,
       {schema}.readable_time(s.last_fire_time) AS last_fire_time,
       (SELECT count(*) FROM {schema}.jobs j
        WHERE j.schedule_id = s.schedule_id AND j.status IN ('pending', 'running'))
           AS unfinished_jobs
FROM {schema}.schedules s
WHERE s.schedule_id > $1
ORDER BY s.schedule_id
LIMIT $2

-- workers_page --
-- Replicas by liveness then host, with heartbeat age and up to 20 of their running jobs
-- (through the running jobs' index, by lease owner). The workers table holds one row per
-- replica.
SELECT w.worker_id, w.hostname, w.pid, w.tasks, w.queues,
       w.lease_expires_at > now() AS live,
       extract(epoch FROM now() - w.heartbeat_at)::float8 AS heartbeat_age,
       {schema}.readable_time(w.started_at) AS started_at,
       {schema}.readable_time(w.heartbeat_at) AS heartbeat_at,
       (SELECT count(*) FROM {schema}.jobs j
        WHERE j.lease_owner = w.worker_id AND j.status = 'running') AS running_count,
       ARRAY(SELECT j.job_id FROM {schema}.jobs j
             WHERE j.lease_owner = w.worker_id AND j.status = 'running'
             ORDER BY j.started_at, j.job_id LIMIT 20) AS running_job_ids,
       ARRAY(SELECT j.task_name FROM {schema}.jobs j
             WHERE j.lease_owner = w.worker_id AND j.status = 'running'
             ORDER BY j.started_at, j.job_id LIMIT 20) AS running_task_names
FROM {schema}.workers w
ORDER BY w.lease_expires_at > now() DESC, w.hostname, w.pid, w.worker_id
LIMIT $1
