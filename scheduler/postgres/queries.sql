-- Every statement the PostgreSQL adapter sends, as named blocks: `-- name --` then a line
-- of purpose. {schema} is replaced by the quoted schema identifier when a store is built.
-- Every time comparison uses the database clock, now(); no replica's clock is trusted.

-- insert_job --
-- The one-row form of insert_jobs: VALUES instead of unnest arrays measured about 7 %
-- faster for single schedule() calls, the most common enqueue, so both forms exist.
INSERT INTO {schema}.jobs AS j
    (job_id, task_name, args, kwargs, priority, execution_time, max_retries, timeout_seconds,
     queue, lock_key, unique_key, trace_context)
VALUES ($1, $2, $3::jsonb, $4::jsonb, $5,
        coalesce($6::timestamptz, now() + make_interval(secs => coalesce($7::float8, 0))),
        $8, $9, $10, $11, $12, $13::jsonb)
ON CONFLICT DO NOTHING
RETURNING j.job_id

-- upsert_job --
-- The one-row form of upsert_jobs (see insert_job).
INSERT INTO {schema}.jobs AS j
    (job_id, task_name, args, kwargs, priority, execution_time, max_retries, timeout_seconds,
     queue, lock_key, unique_key, trace_context)
VALUES ($1, $2, $3::jsonb, $4::jsonb, $5,
        coalesce($6::timestamptz, now() + make_interval(secs => coalesce($7::float8, 0))),
        $8, $9, $10, $11, $12, $13::jsonb)
ON CONFLICT (job_id) DO UPDATE SET
    task_name = excluded.task_name, args = excluded.args, kwargs = excluded.kwargs,
    priority = excluded.priority, execution_time = excluded.execution_time,
    max_retries = excluded.max_retries, timeout_seconds = excluded.timeout_seconds,
    queue = excluded.queue, lock_key = excluded.lock_key, unique_key = excluded.unique_key,
    trace_context = excluded.trace_context, status = 'pending', failures = 0, lost_leases = 0, last_error = NULL,
    cancel_requested_at = NULL,
    started_at = NULL, finished_at = NULL, updated_at = now()
WHERE j.status <> 'running'
RETURNING j.job_id

-- upsert_unique_job --
-- REPLACE for a job with a unique key: overwrite the unfinished job holding the key in
-- place (it keeps its id) while it is pending (or blocked: it stays blocked); insert when
-- no job holds the key. No row: the holder is running. A job_id taken by another job
-- raises unique_violation.
INSERT INTO {schema}.jobs AS j
    (job_id, task_name, args, kwargs, priority, execution_time, max_retries, timeout_seconds,
     queue, lock_key, unique_key, trace_context)
VALUES ($1, $2, $3::jsonb, $4::jsonb, $5,
        coalesce($6::timestamptz, now() + make_interval(secs => coalesce($7::float8, 0))),
        $8, $9, $10, $11, $12, $13::jsonb)
ON CONFLICT (unique_key) WHERE status IN ('pending', 'blocked', 'running')
                          AND unique_key IS NOT NULL
DO UPDATE SET
    task_name = excluded.task_name, args = excluded.args, kwargs = excluded.kwargs,
    priority = excluded.priority, execution_time = excluded.execution_time,
    max_retries = excluded.max_retries, timeout_seconds = excluded.timeout_seconds,
    queue = excluded.queue, lock_key = excluded.lock_key, trace_context = excluded.trace_context,
    failures = 0, lost_leases = 0, last_error = NULL, cancel_requested_at = NULL,
    updated_at = now()
WHERE j.status IN ('pending', 'blocked')
RETURNING j.job_id

-- unique_key_holders --
-- The unfinished jobs holding these unique keys (for IGNORE and the errors).
SELECT unique_key, job_id FROM {schema}.jobs
WHERE unique_key = ANY($1::text[]) AND status IN ('pending', 'blocked', 'running')

-- insert_jobs --
-- Enqueue jobs (one or a batch) in one statement; on an existing id do nothing (RAISE and
-- IGNORE decide in Python). Returns the ids written.
INSERT INTO {schema}.jobs AS j
    (job_id, task_name, args, kwargs, priority, execution_time, max_retries, timeout_seconds,
     queue, lock_key, unique_key, trace_context)
SELECT b.job_id, b.task_name, b.args, b.kwargs, b.priority,
       coalesce(b.execution_time, now() + make_interval(secs => coalesce(b.delay, 0))),
       b.max_retries, b.timeout_seconds, b.queue, b.lock_key, b.unique_key, b.trace_context
FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::jsonb[], $5::smallint[],
            $6::timestamptz[], $7::float8[], $8::integer[], $9::float8[], $10::text[],
            $11::text[], $12::text[], $13::jsonb[])
     AS b(job_id, task_name, args, kwargs, priority, execution_time, delay, max_retries,
          timeout_seconds, queue, lock_key, unique_key, trace_context)
ON CONFLICT DO NOTHING
RETURNING j.job_id

-- upsert_jobs --
-- Enqueue a batch or overwrite jobs with these ids in place, unless running.
INSERT INTO {schema}.jobs AS j
    (job_id, task_name, args, kwargs, priority, execution_time, max_retries, timeout_seconds,
     queue, lock_key, unique_key, trace_context)
SELECT b.job_id, b.task_name, b.args, b.kwargs, b.priority,
       coalesce(b.execution_time, now() + make_interval(secs => coalesce(b.delay, 0))),
       b.max_retries, b.timeout_seconds, b.queue, b.lock_key, b.unique_key, b.trace_context
FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::jsonb[], $5::smallint[],
            $6::timestamptz[], $7::float8[], $8::integer[], $9::float8[], $10::text[],
            $11::text[], $12::text[], $13::jsonb[])
     AS b(job_id, task_name, args, kwargs, priority, execution_time, delay, max_retries,
          timeout_seconds, queue, lock_key, unique_key, trace_context)
ON CONFLICT (job_id) DO UPDATE SET
    task_name = excluded.task_name, args = excluded.args, kwargs = excluded.kwargs,
    priority = excluded.priority, execution_time = excluded.execution_time,
    max_retries = excluded.max_retries, timeout_seconds = excluded.timeout_seconds,
    queue = excluded.queue, lock_key = excluded.lock_key, unique_key = excluded.unique_key,
    trace_context = excluded.trace_context, status = 'pending', failures = 0, lost_leases = 0, last_error = NULL,
    cancel_requested_at = NULL,
    started_at = NULL, finished_at = NULL, updated_at = now()
WHERE j.status <> 'running'
RETURNING j.job_id

-- get_attempts --
-- A job's attempt history, oldest first.
SELECT attempt, worker_id, hostname, outcome, error, error_type, error_message,
       {schema}.readable_time(claimed_at) AS claimed_at,
       {schema}.readable_time(started_at) AS started_at,
       {schema}.readable_time(finished_at) AS finished_at
FROM {schema}.job_attempts
WHERE job_id = $1
ORDER BY attempt

-- get_job --
-- One job row, for inspection. A timestamp Python's datetime cannot hold (plain SQL may
-- store 'infinity' or the year 20000) reads as the nearest one it can (datetime.max or
-- datetime.min, in UTC), so reading a row never fails.
SELECT job_id, task_name, args::text AS args, kwargs::text AS kwargs, status, priority,
       attempts, failures, lost_leases, max_retries, timeout_seconds, last_error,
       error_type, error_message,
       lease_owner, schedule_id, queue, lock_key, unique_key,
       {schema}.readable_time(execution_time) AS execution_time,
       {schema}.readable_time(cancel_requested_at) AS cancel_requested_at,
       {schema}.readable_time(created_at) AS created_at,
       {schema}.readable_time(updated_at) AS updated_at,
       {schema}.readable_time(started_at) AS started_at,
       {schema}.readable_time(finished_at) AS finished_at,
       {schema}.readable_time(fire_time) AS fire_time,
       CASE WHEN status = 'succeeded' THEN result::text END AS result,
       array(SELECT e.depends_on FROM {schema}.job_dependencies e
             WHERE e.job_id = $1 ORDER BY e.depends_on) AS depends_on
FROM {schema}.jobs
WHERE job_id = $1

-- await_job --
-- Ask for a NOTIFY ('finished <id>') when this job finishes; returns its status (no row:
-- no such job). The flag is set only while it is unfinished, so finished jobs are not
-- rewritten.
WITH flagged AS (
    UPDATE {schema}.jobs SET awaited = true
    WHERE job_id = $1 AND NOT awaited AND status NOT IN ('succeeded', 'failed', 'cancelled')
    RETURNING status
)
SELECT coalesce((SELECT status FROM flagged),
                (SELECT status FROM {schema}.jobs WHERE job_id = $1))

-- add_dependencies --
-- Make a job just inserted (same transaction) wait for others; see the SQL function.
SELECT {schema}.add_dependencies($1, $2::text[])

-- cancel_job --
-- Cancel a pending (or blocked) job outright, or flag a running one (its owner is notified
-- by trigger and records the outcome). Returns the status the job had, or no row if there
-- is none.
WITH previous AS (
    SELECT job_id, status FROM {schema}.jobs WHERE job_id = $1 FOR UPDATE
)
UPDATE {schema}.jobs j SET
    status = CASE WHEN p.status IN ('pending', 'blocked') THEN 'cancelled' ELSE j.status END,
    finished_at = CASE WHEN p.status IN ('pending', 'blocked') THEN now() ELSE j.finished_at END,
    cancel_requested_at = coalesce(j.cancel_requested_at, now()),
    updated_at = now()
FROM previous p
WHERE j.job_id = p.job_id AND p.status IN ('pending', 'blocked', 'running')
RETURNING p.status

-- job_status --
-- The status of one job (NULL when it does not exist).
SELECT status FROM {schema}.jobs WHERE job_id = $1

-- claim_jobs --
-- Take up to $4 pending jobs of the tasks $2 in the queues $10 due within $5 seconds, highest
-- priority then earliest due first, skipping rows other replicas are claiming. One index
-- range scan per queue and priority keeps the cost proportional to due rows of the queues
-- this replica works, not to future-dated rows or other queues' backlogs.
-- Only jobs no flow control applies to are taken here: no lock key, a task without limits,
-- a queue neither paused nor limited (the small `queues` and `task_limits` tables are read
-- once per claim, never per row). The others are claim_flow_jobs()'s (migration 0007); a
-- `flow` row says that such work may wait for this replica, and then this claim takes
-- nothing: the flow claim that follows takes free work too, through the per-task index,
-- where this scan of (queue, priority) would read past every keyed or limited job due
-- before the free ones (a held lock key's million successors, once per replica start).
-- Only a worker whose lease is live now, by the database clock, claims anything: a replica
-- that was frozen past its lease cannot take work under its expired identity, even in the
-- moment before it notices. Attempts count here: `attempts` is the fencing token. A job
-- claimed a few milliseconds early (so the claim's commit is paid before its due time)
-- says how long to wait: it never starts before it is due.
-- The same statement records the successes of the attempts in $6..$8 (end_attempts(),
-- fenced), $9 holding each one's result (JSON text): under a backlog one commit thus
-- finishes jobs and claims their successors. Rows have `kind` 'claimed', 'completed' (a
-- success written) or 'flow'.
WITH done AS MATERIALIZED (
    SELECT d.job_id
    FROM {schema}.end_attempts($6::text[], $7::uuid[], $8::integer[],
                               array_fill('succeeded'::text, ARRAY[cardinality($6::text[])]),
                               $9::text[]) d
), live AS (
    SELECT 1 FROM {schema}.workers w WHERE w.worker_id = $1 AND w.lease_expires_at > now()
), scope AS MATERIALIZED (
    SELECT * FROM {schema}.claim_scope($2::text[], $10::text[], $5::float8)
), picked AS (
    SELECT c.job_id
    FROM live
    CROSS JOIN (SELECT * FROM scope WHERE NOT flow) s
    CROSS JOIN unnest(s.open_queues) AS oq(queue)
    CROSS JOIN unnest($3::smallint[]) AS p(priority)
    CROSS JOIN LATERAL (
        SELECT j.job_id, j.priority, j.execution_time
        FROM {schema}.jobs j
        WHERE j.status = 'pending' AND j.queue = oq.queue AND j.priority = p.priority
          AND j.execution_time <= now() + make_interval(secs => $5::float8)
          -- A row due at -infinity (a restore, or a hand with triggers off) would fail the
          -- arithmetic below for every claim; it waits instead, counted in queue_stats.
          AND j.execution_time > '-infinity'
          AND j.task_name = ANY(s.open_tasks) AND j.lock_key IS NULL
        ORDER BY j.execution_time
        LIMIT $4
        FOR UPDATE OF j SKIP LOCKED
    ) c
    ORDER BY c.priority DESC, c.execution_time
    LIMIT $4
), claimed AS (
    UPDATE {schema}.jobs j SET
        status = 'running', lease_owner = $1, attempts = j.attempts + 1,
        started_at = greatest(now(), j.execution_time), updated_at = now(),
        claimed_at = now()
    FROM picked
    WHERE j.job_id = picked.job_id
    RETURNING j.job_id, j.task_name, j.args::text AS args, j.kwargs::text AS kwargs,
              j.attempts, j.failures, j.max_retries, j.timeout_seconds,
              greatest(extract(epoch FROM j.execution_time - now()), 0)::float8 AS starts_in,
              extract(epoch FROM j.execution_time)::float8 AS due_epoch,
              j.queue, greatest(extract(epoch FROM now() - j.execution_time), 0)::float8
                  AS start_lag, j.trace_context::text AS trace_context, j.priority
)
SELECT 'claimed' AS kind, * FROM claimed
UNION ALL
SELECT 'completed', job_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL FROM done
UNION ALL
SELECT 'flow', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL
FROM live CROSS JOIN scope s
WHERE $4 > 0 AND s.flow
-- An UPDATE returns its rows in no particular order: the claim's order is restored here,
-- so that jobs claimed together (a prefetch) start highest priority, then earliest, first.
ORDER BY priority DESC NULLS LAST, due_epoch

-- claim_flow_jobs --
-- The claim of work under flow control; see claim_flow_jobs() in migration 0007. $9 holds
-- each success's result (JSON text), as in claim_jobs. The queue and trace context of the
-- jobs it claimed are read alongside (the claim does not change them); the start lag is
-- measured from the transaction's clock, as in claim_jobs. This statement's snapshot
-- predates the function's own: a job committed while the function waited for its lock
-- reads NULL here, and claimed_details fills it in.
SELECT f.*, j.queue,
       greatest(extract(epoch FROM now()) - f.due_epoch, 0)::float8 AS start_lag,
       j.trace_context::text AS trace_context
FROM {schema}.claim_flow_jobs($1, $2::text[], $3::text[], $4, $5::float8,
                              $6::text[], $7::uuid[], $8::integer[], $9::text[]) f
LEFT JOIN {schema}.jobs j ON f.kind = 'claimed' AND j.job_id = f.job_id
-- In claim order (see claim_jobs); a row this snapshot cannot see sorts last.
ORDER BY j.priority DESC NULLS LAST, f.due_epoch

-- claimed_details --
-- The queue and trace context of jobs just claimed, for the rare claim_flow_jobs row its
-- own statement could not read (see claim_flow_jobs above).
SELECT job_id, queue, trace_context::text AS trace_context
FROM {schema}.jobs WHERE job_id = ANY($1::text[])

-- next_due_delay --
-- Seconds from now until the earliest pending job of the given tasks in the given queues
-- that are not paused (negative if overdue), and the database clock, which maps the due
-- times of jobs claimed early onto ours.
SELECT extract(epoch FROM min(n.execution_time) - now())::float8 AS delay,
       extract(epoch FROM now())::float8 AS clock
FROM unnest($3::text[]) AS qn(queue)
CROSS JOIN unnest($2::smallint[]) AS p(priority)
CROSS JOIN LATERAL (
    SELECT j.execution_time FROM {schema}.jobs j
    WHERE j.status = 'pending' AND j.queue = qn.queue AND j.priority = p.priority
      AND j.task_name = ANY($1::text[])
      -- Infinite times (only by hand) cannot be subtracted from now().
      AND j.execution_time > '-infinity' AND j.execution_time < 'infinity'
    ORDER BY j.execution_time
    LIMIT 1
) n
WHERE NOT EXISTS (SELECT 1 FROM {schema}.queues q WHERE q.queue = qn.queue AND q.paused)

-- end_attempts --
-- End attempts, each with its outcome (end_attempts(): the one fenced write of every
-- outcome). Returns the attempts ended, with their jobs' new status.
SELECT job_id, status
FROM {schema}.end_attempts($1::text[], $2::uuid[], $3::integer[], $4::text[], $5::text[],
                           $6::text[], $7::text[], $8::text[], $9::float8[])

-- register_worker --
-- A new worker identity with a fresh lease.
INSERT INTO {schema}.workers (worker_id, hostname, pid, tasks, lease_expires_at, queues)
VALUES ($1, $2, $3, $4::text[], now() + make_interval(secs => $5::float8), $6::text[])

-- heartbeat --
-- Extend this worker's lease (never revive an expired one) and list the attempts the
-- database says it holds (job id and attempt, in matching order), with their cancel
-- requests. One row per call.
WITH beat AS (
    UPDATE {schema}.workers SET
        lease_expires_at = now() + make_interval(secs => $2::float8),
        heartbeat_at = now(), tasks = $3::text[], queues = $4::text[]
    WHERE worker_id = $1 AND lease_expires_at > now()
    RETURNING worker_id
), held AS (
    SELECT job_id, attempts, cancel_requested_at FROM {schema}.jobs
    WHERE lease_owner = $1 AND status = 'running'
)
SELECT EXISTS (SELECT 1 FROM beat) AS alive,
       array(SELECT job_id FROM held ORDER BY job_id) AS owned,
       array(SELECT attempts FROM held ORDER BY job_id) AS owned_attempts,
       array(SELECT job_id FROM held WHERE cancel_requested_at IS NOT NULL) AS cancel_requested

-- reclaim_attempts --
-- Hand back attempts this worker's live lease holds but that it is not running: a claim whose
-- reply was lost after its commit, a claim abandoned at its deadline, an outcome it gave up
-- writing. Counted as lost leases, like the orphan sweep's ($4 = orphan_retries); fenced per
-- attempt (end_attempts()), so an attempt that finished meanwhile is left alone.
SELECT e.job_id, e.task_name, e.attempt AS attempts, e.status
FROM {schema}.end_attempts($2::text[], array_fill($1::uuid, ARRAY[cardinality($2::text[])]),
                           $3::integer[],
                           array_fill('handed back'::text, ARRAY[cardinality($2::text[])]),
                           lost_budget => $4::integer) e

-- unregister_worker --
-- A worker leaving cleanly (after releasing its jobs).
DELETE FROM {schema}.workers WHERE worker_id = $1

-- reap_orphans --
-- Return running jobs whose owner's lease expired to pending while their lost leases stay
-- within $2 (orphan_retries; delivery is at-least-once across crashes), then to failed (a
-- job that kills its worker every time must not loop forever); a requested cancel wins.
-- Lost leases have their own budget: they never spend max_retries. The orphans are locked
-- here (a peer's sweep skips them) and ended by end_attempts(), fenced on the owner and
-- attempt read here: an attempt that completed meanwhile is no longer 'running'.
WITH orphans AS MATERIALIZED (
    SELECT j.job_id, j.lease_owner, j.attempts FROM {schema}.jobs j
    WHERE j.status = 'running'
      AND NOT EXISTS (SELECT 1 FROM {schema}.workers w
                      WHERE w.worker_id = j.lease_owner AND w.lease_expires_at > now())
    ORDER BY j.job_id
    LIMIT $1
    FOR UPDATE OF j SKIP LOCKED
)
SELECT e.job_id, e.task_name, e.attempt AS attempts, e.owner, e.status
FROM {schema}.end_attempts(
    ARRAY(SELECT o.job_id FROM orphans o ORDER BY o.job_id),
    ARRAY(SELECT o.lease_owner FROM orphans o ORDER BY o.job_id),
    ARRAY(SELECT o.attempts FROM orphans o ORDER BY o.job_id),
    array_fill('lease lost'::text, ARRAY[(SELECT count(*)::integer FROM orphans)]),
    lost_budget => $2::integer) e

-- take_fleet_pass --
-- Whether this replica runs the fleet-wide pass $1 now: a row at most once per $2 seconds
-- for the whole fleet (database clock). Two replicas asking at once: the second waits for
-- the first's row lock, then sees the pass just taken and gets no row.
INSERT INTO {schema}.fleet_passes AS p (pass, last_run_at) VALUES ($1, now())
ON CONFLICT (pass) DO UPDATE SET last_run_at = now()
WHERE p.last_run_at <= now() - make_interval(secs => $2::float8)
RETURNING true AS taken

-- delete_dead_workers --
-- Forget workers whose lease expired and who own no running job any more.
DELETE FROM {schema}.workers w
WHERE w.lease_expires_at < now()
  AND NOT EXISTS (SELECT 1 FROM {schema}.jobs j
                  WHERE j.lease_owner = w.worker_id AND j.status = 'running')

-- fail_unrunnable_jobs --
-- Fail due jobs that no live worker has registered the task of (in the job's queue) for $1
-- seconds: they would otherwise wait forever (a typo, a removed task, a hostile row, a
-- queue no replica works). Jobs of a paused queue wait: pausing is deliberate.
-- The (queue, task) pairs of pending jobs are listed first by skipping through
-- jobs_task_claim_idx (one index probe per pair), and only the pairs no live worker serves
-- are read for old rows: a backlog of millions whose task is served costs a few probes,
-- not a read of every old row with a look at every worker for each.
WITH RECURSIVE pairs AS (
    (SELECT j.queue, j.task_name FROM {schema}.jobs j
     WHERE j.status = 'pending' ORDER BY j.queue, j.task_name LIMIT 1)
    UNION ALL
    SELECT n.queue, n.task_name
    FROM pairs p CROSS JOIN LATERAL (
        SELECT j.queue, j.task_name FROM {schema}.jobs j
        WHERE j.status = 'pending' AND (j.queue, j.task_name) > (p.queue, p.task_name)
        ORDER BY j.queue, j.task_name LIMIT 1
    ) n
), unserved AS (
    SELECT p.queue, p.task_name FROM pairs p
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.workers w
                      WHERE w.lease_expires_at > now() AND p.task_name = ANY(w.tasks)
                        AND (w.queues IS NULL OR p.queue = ANY(w.queues)))
      AND NOT EXISTS (SELECT 1 FROM {schema}.queues q WHERE q.queue = p.queue AND q.paused)
), unrunnable AS (
    SELECT c.job_id
    FROM unserved u
    CROSS JOIN unnest(ARRAY[20, 10, 5, 1]::smallint[]) AS pr(priority)
    CROSS JOIN LATERAL (
        SELECT j.job_id FROM {schema}.jobs j
        WHERE j.status = 'pending' AND j.queue = u.queue AND j.task_name = u.task_name
          AND j.priority = pr.priority
          AND j.execution_time < now() - make_interval(secs => $1::float8)
        LIMIT $2
        FOR UPDATE OF j SKIP LOCKED
    ) c
    LIMIT $2
)
UPDATE {schema}.jobs j SET
    status = 'failed', finished_at = now(), updated_at = now(),
    last_error = format('never run: no live worker registered task %L within %s seconds of'
                        ' its due time', j.task_name, $1::float8)
WHERE j.job_id = ANY (ARRAY(SELECT u.job_id FROM unrunnable u)) AND j.status = 'pending'
RETURNING j.job_id, j.task_name

-- prune_finished_jobs --
-- Delete up to $2 jobs that finished more than $1 seconds ago, oldest first. The ids are
-- gathered into an array so the delete reads them through the primary key: `IN (subquery)`
-- let the planner hash the batch and scan the whole table for it, every batch.
DELETE FROM {schema}.jobs
WHERE job_id = ANY (ARRAY(
    SELECT job_id FROM {schema}.jobs
    WHERE status IN ('succeeded', 'failed', 'cancelled')
      AND finished_at < now() - make_interval(secs => $1::float8)
    ORDER BY finished_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
))

-- insert_schedule --
-- Create a recurring schedule; on an existing id do nothing (RAISE and IGNORE decide in
-- Python). Returns the id when written.
INSERT INTO {schema}.schedules AS s
    (schedule_id, task_name, args, kwargs, trigger, priority, max_retries, timeout_seconds,
     coalesce_policy, misfire_grace_seconds, max_running, jitter_seconds, next_fire_time,
     queue)
VALUES ($1, $2, $3::jsonb, $4::jsonb, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (schedule_id) DO NOTHING
RETURNING s.schedule_id

-- upsert_schedule --
-- Create or overwrite a schedule's definition. Its paused state stays, and so does its next
-- fire time unless the trigger changed. An identical definition writes nothing, so every
-- replica can declare the same schedules at start-up without churn.
INSERT INTO {schema}.schedules AS s
    (schedule_id, task_name, args, kwargs, trigger, priority, max_retries, timeout_seconds,
     coalesce_policy, misfire_grace_seconds, max_running, jitter_seconds, next_fire_time,
     queue)
VALUES ($1, $2, $3::jsonb, $4::jsonb, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (schedule_id) DO UPDATE SET
    task_name = excluded.task_name, args = excluded.args, kwargs = excluded.kwargs,
    trigger = excluded.trigger, priority = excluded.priority,
    max_retries = excluded.max_retries, timeout_seconds = excluded.timeout_seconds,
    coalesce_policy = excluded.coalesce_policy,
    misfire_grace_seconds = excluded.misfire_grace_seconds,
    max_running = excluded.max_running, jitter_seconds = excluded.jitter_seconds,
    queue = excluded.queue,
    next_fire_time = CASE WHEN s.trigger = excluded.trigger THEN s.next_fire_time
                          ELSE excluded.next_fire_time END,
    needs_first_fire = s.needs_first_fire AND s.trigger = excluded.trigger,
    trigger_error = CASE WHEN s.trigger = excluded.trigger THEN s.trigger_error END,
    updated_at = now()
WHERE (s.task_name, s.args, s.kwargs, s.trigger, s.priority, s.max_retries,
       s.timeout_seconds, s.coalesce_policy, s.misfire_grace_seconds, s.max_running,
       s.jitter_seconds, s.queue)
      IS DISTINCT FROM
      (excluded.task_name, excluded.args, excluded.kwargs, excluded.trigger,
       excluded.priority, excluded.max_retries, excluded.timeout_seconds,
       excluded.coalesce_policy, excluded.misfire_grace_seconds, excluded.max_running,
       excluded.jitter_seconds, excluded.queue)
RETURNING s.schedule_id

-- get_schedule --
-- One schedule row, for inspection. Timestamps are clamped to Python's datetime range,
-- as in get_job.
SELECT schedule_id, task_name, args::text AS args, kwargs::text AS kwargs,
       trigger::text AS trigger, priority, max_retries, timeout_seconds, coalesce_policy,
       misfire_grace_seconds, max_running, jitter_seconds, paused, trigger_error, queue,
       {schema}.readable_time(next_fire_time) AS next_fire_time,
       {schema}.readable_time(last_fire_time) AS last_fire_time,
       {schema}.readable_time(created_at) AS created_at,
       {schema}.readable_time(updated_at) AS updated_at
FROM {schema}.schedules
WHERE schedule_id = $1

-- list_schedules --
-- Every schedule, by id. Timestamps are clamped to Python's datetime range, as in get_job.
SELECT schedule_id, task_name, args::text AS args, kwargs::text AS kwargs,
       trigger::text AS trigger, priority, max_retries, timeout_seconds, coalesce_policy,
       misfire_grace_seconds, max_running, jitter_seconds, paused, trigger_error, queue,
       {schema}.readable_time(next_fire_time) AS next_fire_time,
       {schema}.readable_time(last_fire_time) AS last_fire_time,
       {schema}.readable_time(created_at) AS created_at,
       {schema}.readable_time(updated_at) AS updated_at
FROM {schema}.schedules
ORDER BY schedule_id

-- pause_schedule --
-- Stop a schedule firing (on every replica: the ticker skips paused rows).
UPDATE {schema}.schedules SET paused = true, updated_at = now()
WHERE schedule_id = $1
RETURNING schedule_id

-- lock_schedule_for_resume --
-- A schedule's trigger and the database clock, row locked until the resume commits.
SELECT trigger::text AS trigger, now() AS now
FROM {schema}.schedules WHERE schedule_id = $1
FOR UPDATE

-- resume_schedule --
-- Fire again from the next slot after now: slots that passed while paused do not run.
UPDATE {schema}.schedules SET
    paused = false, next_fire_time = $2, needs_first_fire = false, trigger_error = NULL,
    updated_at = now()
WHERE schedule_id = $1

-- remove_schedule --
-- Delete a schedule. Jobs it already created stay (they are ordinary jobs).
DELETE FROM {schema}.schedules WHERE schedule_id = $1
RETURNING schedule_id

-- database_now --
-- The database clock: schedules compute their first fire time from it.
SELECT now()

-- due_schedules --
-- Lock up to $1 active schedules whose next fire time has come, skipping those another
-- replica is firing, with how many of each one's jobs are unfinished (for max_running)
-- and the database clock the ticker plans with.
SELECT s.schedule_id, s.trigger::text AS trigger, s.next_fire_time, s.coalesce_policy,
       s.misfire_grace_seconds, s.max_running, s.jitter_seconds,
       (SELECT count(*) FROM {schema}.jobs j
        WHERE j.schedule_id = s.schedule_id AND j.status IN ('pending', 'running'))::integer
           AS unfinished_jobs,
       now() AS now
FROM {schema}.schedules s
WHERE NOT s.paused AND s.next_fire_time <= now()
ORDER BY s.next_fire_time
LIMIT $1
FOR UPDATE OF s SKIP LOCKED

-- insert_schedule_jobs --
-- One ordinary job per fired slot, copying the schedule's task and options. The unique
-- (schedule_id, fire_time) index makes a slot that already has a job a no-op.
INSERT INTO {schema}.jobs AS j
    (job_id, task_name, args, kwargs, priority, execution_time, max_retries, timeout_seconds,
     schedule_id, fire_time, queue)
SELECT f.job_id, s.task_name, s.args, s.kwargs, s.priority, f.run_at, s.max_retries,
       s.timeout_seconds, s.schedule_id, f.fire_time, s.queue
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[])
     AS f(job_id, schedule_id, fire_time, run_at)
JOIN {schema}.schedules s ON s.schedule_id = f.schedule_id
ON CONFLICT DO NOTHING
RETURNING j.job_id

-- advance_schedules --
-- Move fired schedules to their next fire time (NULL: exhausted), in the transaction that
-- inserted their jobs.
UPDATE {schema}.schedules s SET
    next_fire_time = a.next_fire_time,
    last_fire_time = coalesce(a.last_fire_time, s.last_fire_time),
    updated_at = now()
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])
     AS a(schedule_id, next_fire_time, last_fire_time)
WHERE s.schedule_id = a.schedule_id

-- park_schedule --
-- Pause a schedule this code cannot read (a corrupt or newer trigger) or fire (an
-- out-of-range jitter or grace), so the ticker does not spin on it; $2 says why (shown as
-- trigger_error, kept when NULL).
UPDATE {schema}.schedules
SET paused = true, trigger_error = coalesce($2::text, trigger_error), updated_at = now()
WHERE schedule_id = $1

-- next_schedule_delay --
-- Seconds from now until the earliest active schedule fires (negative if overdue); -1 when
-- a schedule added by SQL waits for its first fire time to be computed.
SELECT CASE WHEN EXISTS (SELECT 1 FROM {schema}.schedules
                         WHERE needs_first_fire AND NOT paused) THEN -1::float8
            ELSE extract(epoch FROM min(next_fire_time) - now())::float8 END
FROM {schema}.schedules WHERE NOT paused AND next_fire_time IS NOT NULL

-- unplanned_schedules --
-- Lock up to $1 schedules added by SQL that wait for their first fire time, with the
-- database clock to compute it from.
SELECT schedule_id, trigger::text AS trigger, now() AS now
FROM {schema}.schedules
WHERE needs_first_fire AND NOT paused
ORDER BY schedule_id
LIMIT $1
FOR UPDATE SKIP LOCKED

-- plan_schedules --
-- Store computed first fire times; a schedule whose trigger Python cannot build ($3 is the
-- reason) is paused with it, so it is visible instead of silently never firing.
UPDATE {schema}.schedules s SET
    next_fire_time = p.next_fire_time, needs_first_fire = false, trigger_error = p.error,
    paused = s.paused OR p.error IS NOT NULL, updated_at = now()
FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS p(schedule_id, next_fire_time, error)
WHERE s.schedule_id = p.schedule_id

-- list_jobs --
-- Operator listing (`scheduler jobs`): newest change first, filtered by statuses ($1),
-- task names ($2) and a window on the last change: from $3 (or $4 seconds before now) to
-- $5 (or $6 seconds before now); NULL filters match everything. At most $7 rows.
SELECT job_id, task_name, status, priority, execution_time, attempts, failures, lost_leases,
       max_retries, last_error, error_type, error_message, lease_owner, schedule_id,
       created_at, updated_at, started_at, finished_at
FROM {schema}.jobs
WHERE ($1::text[] IS NULL OR status = ANY($1::text[]))
  AND ($2::text[] IS NULL OR task_name = ANY($2::text[]))
  AND updated_at >= coalesce($3::timestamptz, now() - make_interval(secs => $4::float8),
                             '-infinity')
  AND updated_at < coalesce($5::timestamptz, now() - make_interval(secs => $6::float8),
                            'infinity')
ORDER BY updated_at DESC, job_id
LIMIT $7

-- purge_jobs_finished_before --
-- Delete up to $3 jobs in the statuses $2 (finished ones only) that finished before $1
-- (or $4 seconds before now), skipping rows being written. Returns how many went.
WITH doomed AS (
    SELECT job_id FROM {schema}.jobs
    WHERE status = ANY($2::text[]) AND status IN ('succeeded', 'failed', 'cancelled')
      AND finished_at < coalesce($1::timestamptz, now() - make_interval(secs => $4::float8))
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), deleted AS (
    -- Through the primary key, never a hash of the batch against the whole table.
    DELETE FROM {schema}.jobs j WHERE j.job_id = ANY (ARRAY(SELECT d.job_id FROM doomed d))
    RETURNING 1
)
SELECT count(*)::integer FROM deleted

-- retry_job --
-- Run a failed or cancelled job again (the SQL API's retry_job: fresh budgets), at $2, or
-- $3 seconds from now, or now.
SELECT {schema}.retry_job($1, $2::timestamptz,
                          CASE WHEN $3::float8 IS NOT NULL THEN make_interval(secs => $3) END)

-- retry_failed_jobs --
-- One batch of the bulk retry: up to $5 failed jobs of task $1 (NULL: any) that finished
-- in [$2, $3), pending again at $4 (NULL: now). Returns their ids.
SELECT job_id FROM {schema}.retry_failed_jobs($1, $2, $3, $4, $5) AS r(job_id)

-- task_stats --
-- The per-task monitoring view, for `scheduler stats`.
SELECT * FROM {schema}.task_stats ORDER BY task_name

-- fleet_stats --
-- Live workers and stalled jobs, for `scheduler stats`.
SELECT (SELECT count(*) FROM {schema}.live_workers)::integer AS live_workers,
       (SELECT count(*) FROM {schema}.stalled_jobs)::integer AS stalled_jobs,
       (SELECT count(*) FROM {schema}.recent_failures)::integer AS failures_last_day

-- pause_queue --
-- Pause a queue fleet-wide (see pause_queue() in migration 0007).
SELECT {schema}.pause_queue($1)

-- resume_queue --
-- Resume a queue; true when it was paused.
SELECT {schema}.resume_queue($1)

-- set_queue_limits --
-- Replace a queue's limits (NULL: none).
SELECT {schema}.set_queue_limits($1, $2, $3, $4, $5)

-- set_task_limits --
-- Replace a task's limits (NULL: none).
SELECT {schema}.set_task_limits($1, $2, $3, $4, $5)

-- set_limit --
-- Set one limit of a kind, or remove it (NULL settings).
SELECT {schema}.set_limit($1, $2, $3, $4::jsonb)

-- queue_stats --
-- Every queue with work or settings, for `scheduler queues` and Scheduler.queues().
SELECT * FROM {schema}.queue_stats ORDER BY queue

-- queue_depths --
-- Per queue, the pending jobs due now and how long the oldest of them has waited (seconds,
-- database clock), for the metrics' gauges: read every few seconds per replica at most.
SELECT j.queue, count(*) AS due,
       extract(epoch FROM now() - min(j.execution_time))::float8 AS oldest_due_age
FROM {schema}.jobs j
WHERE j.status = 'pending' AND j.execution_time <= now() AND j.execution_time > '-infinity'
GROUP BY j.queue

-- task_limits --
-- Every task with limits, and why they cannot be enforced (NULL: they can).
SELECT t.*,
       (SELECT count(*) FROM {schema}.jobs j
        WHERE j.status = 'running' AND j.task_name = t.task_name)::integer AS running
FROM {schema}.task_limits t ORDER BY task_name

-- unserved_tasks --
-- Pending jobs whose task no live worker has registered (in the job's queue): "no worker
-- for this task" in `scheduler status` and the dashboard. Per task and queue, at most $1.
SELECT j.task_name, j.queue, count(*) AS pending,
       {schema}.readable_time(min(j.execution_time)) AS oldest_due
FROM {schema}.jobs j
WHERE j.status = 'pending'
  AND NOT EXISTS (SELECT 1 FROM {schema}.workers w
                  WHERE w.lease_expires_at > now() AND j.task_name = ANY(w.tasks)
                    AND (w.queues IS NULL OR j.queue = ANY(w.queues)))
GROUP BY j.task_name, j.queue
ORDER BY j.task_name, j.queue
LIMIT $1

-- task_served --
-- Whether a live worker has registered task $1, and how many live workers there are.
SELECT EXISTS (SELECT 1 FROM {schema}.workers
               WHERE lease_expires_at > now() AND $1 = ANY(tasks)) AS served,
       (SELECT count(*) FROM {schema}.workers WHERE lease_expires_at > now()) AS live_workers
