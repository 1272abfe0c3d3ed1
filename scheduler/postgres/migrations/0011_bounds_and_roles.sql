-- Bounds and roles (issue 19, items 2, 4 and 5).
--
-- 1. Every stored number has bounds under which no arithmetic on it can overflow or divide
--    by zero (scheduler/limits.py holds the table). Limit rows get CHECKs, added NOT VALID
--    so a database holding an out-of-range row (written by hand, or accepted before this
--    migration: rate_period => 1e-310 was) still upgrades; the claim treats such a row as
--    "paused, with a reason" for only the queue or task it governs, and says why
--    (queue_stats.problem, task problems in claim_flow_jobs' rows, the replica's log).
-- 2. The SQL payload cap moves from the session setting scheduler.max_payload_bytes, which
--    any role could SET, to the one-row table `settings`, which only the owner can write.
-- 3. Roles: producer (enqueue, dependencies, cancel, views), operator (schedules, queues
--    and limits, retries, cancel, views), runtime (replicas and foreign workers:
--    everything). What a producer had beyond that is revoked here.

-- ---------------------------------------------------------------------------------------
-- Settings only the schema owner changes. One row; the SQL enqueue functions (SECURITY
-- DEFINER, run as the owner) read it, no other role may write it.
CREATE TABLE {schema}.settings (
    only_row          boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    max_payload_bytes integer NOT NULL DEFAULT 65536
        CONSTRAINT settings_max_payload_bytes_bounds
        CHECK (max_payload_bytes BETWEEN 1 AND 67108864)
);
-- An owner who raised the cap database- or role-wide (ALTER DATABASE ... SET
-- scheduler.max_payload_bytes) keeps that value, as the migrating session sees it.
INSERT INTO {schema}.settings (max_payload_bytes)
SELECT CASE WHEN s.value ~ '^\s*[0-9]{1,8}\s*$' AND s.value::integer BETWEEN 1 AND 67108864
            THEN s.value::integer ELSE 65536 END
FROM (SELECT current_setting('scheduler.max_payload_bytes', true) AS value) s;

-- ---------------------------------------------------------------------------------------
-- Limits of queues and tasks. rate_period had only "> 0": 1e-310 made the token bucket's
-- refill (elapsed * rate_limit / rate_period) overflow in every claim. From 1 ms to 1000
-- years, every refill, wait and token count is a finite float8 far from overflow.
ALTER TABLE {schema}.queues ADD CONSTRAINT queues_rate_period_bounds
    CHECK (rate_period >= 0.001 AND rate_period <= 31557600000) NOT VALID;
ALTER TABLE {schema}.task_limits ADD CONSTRAINT task_limits_rate_period_bounds
    CHECK (rate_period >= 0.001 AND rate_period <= 31557600000) NOT VALID;

-- Why a limit row cannot be enforced, or NULL when it is in bounds. The claim skips the
-- work such a row governs instead of computing with it; check_limits() refuses it.
CREATE FUNCTION {schema}.limits_problem(
    concurrency_limit integer, rate_limit integer, rate_period double precision,
    rate_burst integer
) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN $1 < 1 THEN format(
            'concurrency_limit must be NULL (no limit) or an integer from 1 to 2147483647,'
            ' got %s (to stop a queue, pause it)', $1)
        WHEN $2 < 1 THEN format(
            'rate_limit must be NULL (no limit) or an integer from 1 to 2147483647, got %s', $2)
        WHEN $4 IS NULL OR $4 < 1 THEN format(
            'rate_burst must be an integer from 1 to 2147483647, got %s',
            coalesce($4::text, 'NULL'))
        -- Written so NaN fails too (NaN sorts above every number).
        WHEN $3 IS NULL OR NOT ($3 >= 0.001 AND $3 <= 31557600000) THEN format(
            'rate_period must be seconds from 0.001 (1 ms) to 31557600000 (1000 years),'
            ' got %s', coalesce($3::text, 'NULL'))
    END
$$;

CREATE OR REPLACE FUNCTION {schema}.check_limits(
    concurrency_limit integer, rate_limit integer, rate_period double precision,
    rate_burst integer
) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    problem text := {schema}.limits_problem(concurrency_limit, rate_limit, rate_period,
                                            rate_burst);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = problem;
    END IF;
END
$$;

-- The tokens in a bucket at `at` (NULL when there is no rate limit), computed so that no
-- stored value can make it fail: out-of-range limits give 0 (the claim skips such rows
-- anyway), tokens are clamped to [0, burst] (NaN and infinities included), an infinite
-- refilled_at counts as a full bucket, and the refill is capped before it is multiplied.
CREATE OR REPLACE FUNCTION {schema}.bucket_tokens(
    tokens double precision, refilled_at timestamptz, rate_limit integer,
    rate_period double precision, rate_burst integer, at timestamptz
) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN $3 IS NULL THEN NULL
        WHEN {schema}.limits_problem(NULL, $3, $4, $5) IS NOT NULL THEN 0
        WHEN $2 IS NULL OR NOT isfinite($2) OR NOT isfinite($6) THEN $5::float8
        ELSE least($5::float8,
                   least($5::float8, greatest(coalesce($1, $5::float8), 0))
                   + least(greatest(extract(epoch FROM $6)::float8
                                    - extract(epoch FROM $2)::float8, 0) / $4,
                           $5::float8) * $3)
    END
$$;

-- claim_scope (0007), restated: a queue or task whose limit row is out of bounds is not
-- open to the plain claim, and sends the worker through claim_flow_jobs(), which reports
-- the problem. `lead` is clamped to an hour, so now() + lead cannot overflow.
CREATE OR REPLACE FUNCTION {schema}.claim_scope(
    task_names text[], queue_names text[], lead double precision,
    OUT open_queues text[], OUT open_tasks text[], OUT flow boolean
)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    lead := least(greatest(coalesce(lead, 0), 0), 3600);
    IF NOT EXISTS (SELECT 1 FROM {schema}.queues) AND NOT EXISTS (
        SELECT 1 FROM {schema}.task_limits
    ) THEN
        open_queues := queue_names;  -- nothing is paused or limited anywhere
        open_tasks := task_names;
        flow := false;
    ELSE
        SELECT array_agg(qn ORDER BY qn) INTO open_queues FROM unnest(queue_names) AS qn
        WHERE NOT EXISTS (SELECT 1 FROM {schema}.queues q WHERE q.queue = qn
                          AND (q.paused OR q.concurrency_limit IS NOT NULL
                               OR q.rate_limit IS NOT NULL
                               OR {schema}.limits_problem(q.concurrency_limit, q.rate_limit,
                                                          q.rate_period, q.rate_burst)
                                  IS NOT NULL));
        SELECT array_agg(tn) INTO open_tasks FROM unnest(task_names) AS tn
        WHERE NOT EXISTS (SELECT 1 FROM {schema}.task_limits t WHERE t.task_name = tn
                          AND (t.concurrency_limit IS NOT NULL OR t.rate_limit IS NOT NULL
                               OR {schema}.limits_problem(t.concurrency_limit, t.rate_limit,
                                                          t.rate_period, t.rate_burst)
                                  IS NOT NULL));
        flow := EXISTS (SELECT 1 FROM {schema}.queues q
                        WHERE q.queue = ANY (queue_names)
                          AND ((NOT q.paused AND (q.concurrency_limit IS NOT NULL
                                                  OR q.rate_limit IS NOT NULL))
                               OR {schema}.limits_problem(q.concurrency_limit, q.rate_limit,
                                                          q.rate_period, q.rate_burst)
                                  IS NOT NULL))
             OR EXISTS (SELECT 1 FROM {schema}.task_limits t
                        WHERE t.task_name = ANY (task_names)
                          AND (t.concurrency_limit IS NOT NULL OR t.rate_limit IS NOT NULL
                               OR {schema}.limits_problem(t.concurrency_limit, t.rate_limit,
                                                          t.rate_period, t.rate_burst)
                                  IS NOT NULL));
    END IF;
    IF NOT flow THEN
        flow := EXISTS (SELECT 1 FROM unnest(open_queues) AS oq(queue)
                        CROSS JOIN LATERAL (
                            SELECT 1 FROM {schema}.jobs j
                            WHERE j.status = 'pending' AND j.lock_key IS NOT NULL
                              AND j.queue = oq.queue
                              AND j.execution_time <= now() + make_interval(secs => lead)
                            LIMIT 1) l);
    END IF;
    open_queues := coalesce(open_queues, '{}');
    open_tasks := coalesce(open_tasks, '{}');
END
$$;

-- claim_flow_jobs (0007), restated with one more column: rows of kind 'problem' name a
-- limit row of this worker's queues or tasks that is out of bounds, whose work the claim
-- skips (as if paused) instead of letting its arithmetic fail every claim. Everything
-- else is unchanged. A new result type is a new function: drop it and grant it back below.
DROP FUNCTION {schema}.claim_flow_jobs(
    uuid, text[], text[], integer, double precision, text[], uuid[], integer[], text[]);
CREATE FUNCTION {schema}.claim_flow_jobs(
    worker_id     uuid,
    task_names    text[],
    queue_names   text[],
    max_jobs      integer,
    lead          double precision DEFAULT 0,
    done_ids      text[] DEFAULT '{}',
    done_owners   uuid[] DEFAULT '{}',
    done_attempts integer[] DEFAULT '{}',
    done_results  text[] DEFAULT '{}'
) RETURNS TABLE (
    kind text, job_id text, task_name text, args text, kwargs text, attempts integer,
    failures integer, max_retries integer, timeout_seconds double precision,
    starts_in double precision, due_epoch double precision, controlled boolean,
    retry_in double precision, problem text
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    clock timestamptz;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION USING ERRCODE = '25000', MESSAGE = format(
            'claim_flow_jobs needs READ COMMITTED (it counts running jobs after taking its'
            ' lock), not %s', current_setting('transaction_isolation'));
    END IF;
    RETURN QUERY
    WITH done AS (
        UPDATE {schema}.jobs j SET
            status = 'succeeded', lease_owner = NULL, last_error = NULL,
            finished_at = now(), updated_at = now(), result = d.result::jsonb
        FROM unnest(done_ids, done_owners, done_attempts, done_results)
             AS d(job_id, owner, attempt, result)
        WHERE j.job_id = d.job_id AND j.lease_owner = d.owner AND j.attempts = d.attempt
          AND j.status = 'running'
        RETURNING j.job_id, j.attempts, d.owner, j.claimed_at, j.started_at
    ), done_history AS (
        INSERT INTO {schema}.job_attempts
            (job_id, attempt, worker_id, hostname, claimed_at, started_at, outcome, error)
        SELECT d.job_id, d.attempts, d.owner, w.hostname, d.claimed_at, d.started_at,
               'succeeded', NULL
        FROM done d LEFT JOIN {schema}.workers w ON w.worker_id = d.owner
    )
    SELECT 'completed'::text, d.job_id, NULL::text, NULL::text, NULL::text, NULL::integer,
           NULL::integer, NULL::integer, NULL::float8, NULL::float8, NULL::float8,
           NULL::boolean, NULL::float8, NULL::text
    FROM done d;
    IF coalesce(max_jobs, 0) <= 0 OR NOT EXISTS (
        SELECT 1 FROM {schema}.workers w
        WHERE w.worker_id = claim_flow_jobs.worker_id AND w.lease_expires_at > now()
    ) THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('scheduler.flow:{schema}'));
    clock := clock_timestamp();
    lead := least(greatest(coalesce(lead, 0), 0), 3600);
    RETURN QUERY
    WITH running AS MATERIALIZED (
        SELECT r.queue, r.task_name FROM {schema}.jobs r WHERE r.status = 'running'
    ), queue_room AS MATERIALIZED (
        SELECT q.queue, q.paused, q.rate_limit, q.rate_period,
               {schema}.limits_problem(q.concurrency_limit, q.rate_limit, q.rate_period,
                                       q.rate_burst) AS problem,
               q.concurrency_limit - (SELECT count(*) FROM running r WHERE r.queue = q.queue)
                   AS slots,
               {schema}.bucket_tokens(q.tokens, q.refilled_at, q.rate_limit, q.rate_period,
                                      q.rate_burst, clock) AS tokens
        FROM {schema}.queues q WHERE q.queue = ANY (queue_names)
    ), task_room AS MATERIALIZED (
        SELECT t.task_name, t.rate_limit, t.rate_period,
               {schema}.limits_problem(t.concurrency_limit, t.rate_limit, t.rate_period,
                                       t.rate_burst) AS problem,
               t.concurrency_limit
                   - (SELECT count(*) FROM running r WHERE r.task_name = t.task_name) AS slots,
               {schema}.bucket_tokens(t.tokens, t.refilled_at, t.rate_limit, t.rate_period,
                                      t.rate_burst, clock) AS tokens
        FROM {schema}.task_limits t WHERE t.task_name = ANY (task_names)
    ), open_queues AS (
        SELECT qn.queue FROM unnest(queue_names) AS qn(queue)
        WHERE NOT EXISTS (SELECT 1 FROM queue_room r WHERE r.queue = qn.queue
                          AND (r.paused OR r.problem IS NOT NULL
                               OR least(r.slots, floor(r.tokens)) <= 0))
    ), open_tasks AS (
        SELECT array(SELECT tn FROM unnest(task_names) AS tn
                     WHERE NOT EXISTS (SELECT 1 FROM task_room r WHERE r.task_name = tn
                                       AND (r.problem IS NOT NULL
                                            OR least(r.slots, floor(r.tokens)) <= 0)))
               AS names
    ), candidates AS MATERIALIZED (
        SELECT c.*
        FROM open_queues oq
        CROSS JOIN open_tasks ot
        CROSS JOIN unnest(ARRAY[20, 10, 5, 1]::smallint[]) AS p(priority)
        CROSS JOIN LATERAL (
            SELECT j.job_id, j.queue, j.task_name, j.lock_key, j.priority, j.execution_time
            FROM {schema}.jobs j
            WHERE j.status = 'pending' AND j.queue = oq.queue AND j.priority = p.priority
              AND j.execution_time <= now() + make_interval(secs => lead)
              AND j.execution_time > '-infinity'  -- see queries.sql claim_jobs
              AND j.task_name = ANY (ot.names)
              AND (j.lock_key IS NULL OR NOT EXISTS (
                       SELECT 1 FROM {schema}.jobs h
                       WHERE h.lock_key = j.lock_key AND h.status = 'running'))
            ORDER BY j.execution_time
            LIMIT max_jobs
            FOR UPDATE OF j SKIP LOCKED
        ) c
    ), one_per_key AS (
        SELECT c.*, row_number() OVER (PARTITION BY c.queue
                                       ORDER BY c.priority DESC, c.execution_time) AS queue_rank
        FROM (SELECT c.*, row_number() OVER (PARTITION BY c.lock_key
                                             ORDER BY c.priority DESC, c.execution_time) AS key_rank
              FROM candidates c) c
        WHERE c.lock_key IS NULL OR c.key_rank = 1
    ), within_queue AS (
        SELECT c.*, row_number() OVER (PARTITION BY c.task_name
                                       ORDER BY c.priority DESC, c.execution_time) AS task_rank
        FROM one_per_key c LEFT JOIN queue_room r ON r.queue = c.queue
        WHERE least(r.slots, floor(r.tokens)) IS NULL
           OR c.queue_rank <= least(r.slots, floor(r.tokens))
    ), picked AS (
        SELECT c.job_id FROM within_queue c LEFT JOIN task_room r ON r.task_name = c.task_name
        WHERE least(r.slots, floor(r.tokens)) IS NULL
           OR c.task_rank <= least(r.slots, floor(r.tokens))
        ORDER BY c.priority DESC, c.execution_time
        LIMIT max_jobs
    ), claimed AS (
        UPDATE {schema}.jobs j SET
            status = 'running', lease_owner = claim_flow_jobs.worker_id,
            attempts = j.attempts + 1,
            started_at = greatest(clock, j.execution_time), updated_at = now(),
            claimed_at = now()
        FROM picked
        WHERE j.job_id = picked.job_id
        RETURNING j.job_id, j.queue, j.task_name, j.args::text AS args, j.kwargs::text AS kwargs,
                  j.attempts, j.failures, j.max_retries, j.timeout_seconds,
                  greatest(extract(epoch FROM j.execution_time - clock), 0)::float8 AS starts_in,
                  extract(epoch FROM j.execution_time)::float8 AS due_epoch
    ), queue_left AS (
        SELECT s.*, s.available - s.spent AS tokens
        FROM (SELECT r.queue, r.rate_limit, r.rate_period, r.tokens AS available,
                     (SELECT count(*) FROM claimed c WHERE c.queue = r.queue) AS spent
              FROM queue_room r
              WHERE r.rate_limit IS NOT NULL AND NOT r.paused AND r.problem IS NULL) s
    ), task_left AS (
        SELECT s.*, s.available - s.spent AS tokens
        FROM (SELECT r.task_name, r.rate_limit, r.rate_period, r.tokens AS available,
                     (SELECT count(*) FROM claimed c WHERE c.task_name = r.task_name) AS spent
              FROM task_room r WHERE r.rate_limit IS NOT NULL AND r.problem IS NULL) s
    ), queue_spent AS (
        -- Only buckets that paid for a start are written: an untouched one refills on
        -- paper (bucket_tokens) and its row is not churned by every claim.
        UPDATE {schema}.queues q SET tokens = l.tokens, refilled_at = clock
        FROM queue_left l WHERE q.queue = l.queue AND l.spent > 0
        RETURNING 1
    ), task_spent AS (
        UPDATE {schema}.task_limits t SET tokens = l.tokens, refilled_at = clock
        FROM task_left l WHERE t.task_name = l.task_name AND l.spent > 0
        RETURNING 1
    )
    SELECT 'claimed'::text, c.job_id, c.task_name, c.args, c.kwargs, c.attempts, c.failures,
           c.max_retries, c.timeout_seconds, c.starts_in, c.due_epoch, NULL::boolean,
           NULL::float8, NULL::text
    FROM claimed c
    UNION ALL
    SELECT 'flow'::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           EXISTS (SELECT 1 FROM queue_room r
                   WHERE (NOT r.paused AND (r.slots IS NOT NULL OR r.rate_limit IS NOT NULL))
                      OR r.problem IS NOT NULL)
           OR EXISTS (SELECT 1 FROM task_room)
           OR EXISTS (SELECT 1 FROM candidates c WHERE c.lock_key IS NOT NULL)
           OR EXISTS (SELECT 1 FROM unnest(queue_names) AS qn(queue), {schema}.jobs j
                      WHERE j.status = 'pending' AND j.lock_key IS NOT NULL
                        AND j.queue = qn.queue AND j.execution_time <= now()),
           (SELECT min((1 - w.tokens) * w.rate_period / w.rate_limit)
            FROM (SELECT l.tokens, l.rate_period, l.rate_limit FROM queue_left l
                  UNION ALL
                  SELECT l.tokens, l.rate_period, l.rate_limit FROM task_left l) w
            WHERE w.tokens < 1),
           NULL::text
    UNION ALL
    -- One row per limit row this worker's claim skipped because it is out of bounds.
    SELECT 'problem'::text, NULL, r.task_name, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, format('task %L: %s', r.task_name, r.problem)
    FROM task_room r WHERE r.problem IS NOT NULL
    UNION ALL
    SELECT 'problem'::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, format('queue %L: %s', r.queue, r.problem)
    FROM queue_room r WHERE r.problem IS NOT NULL;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Durations and times stored by the SQL API get Python's bounds (at most 1000 years; times
-- between 0001-01-02 and 9999-12-30 UTC), checked before anything is written (22023). The
-- functions below are restated whole from 0005/0006 with only those checks added.
--
-- Columns: a NOT VALID CHECK is checked again by every UPDATE of an old row, so it only
-- suits a table whose rows the claim never rewrites while they are out of range (queues and
-- task_limits above: the claim skips such rows). jobs gets none: the claim, the reaper and
-- outcome writes update job rows in bulk, and one old row out of range would fail them
-- all; its readers cope with any stored time or timeout (readable_time(), the claims skip
-- infinite due times) and every writer checks the bounds. schedules is small: its rows
-- out of range are fixed here (paused, clamped to 1000 years, the reason in trigger_error)
-- and the CHECK is validated.
UPDATE {schema}.schedules s SET
    timeout_seconds = CASE WHEN NOT s.timeout_seconds <= 31557600000 THEN 31557600000
                           ELSE s.timeout_seconds END,
    misfire_grace_seconds = CASE WHEN NOT s.misfire_grace_seconds <= 31557600000
                                 THEN 31557600000 ELSE s.misfire_grace_seconds END,
    jitter_seconds = CASE WHEN NOT s.jitter_seconds <= 31557600000 THEN 31557600000
                          ELSE s.jitter_seconds END,
    paused = true,
    trigger_error = 'migration 0011 paused it: its timeout, misfire grace or jitter was over'
                    ' 1000 years (or NaN) and is now 1000 years; set them again'
                    ' (add_schedule with conflict replace) and resume it',
    updated_at = now()
WHERE NOT (coalesce(s.timeout_seconds, 0) <= 31557600000
           AND coalesce(s.misfire_grace_seconds, 0) <= 31557600000
           AND s.jitter_seconds <= 31557600000);
ALTER TABLE {schema}.schedules ADD CONSTRAINT schedules_seconds_bounds
    CHECK (timeout_seconds <= 31557600000 AND misfire_grace_seconds <= 31557600000
           AND jitter_seconds <= 31557600000);

CREATE OR REPLACE FUNCTION {schema}.register_worker(
    tasks     text[],
    lease     interval DEFAULT '30 seconds',
    hostname  text DEFAULT NULL,
    pid       integer DEFAULT NULL,
    worker_id uuid DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    bad_name text;
    new_id uuid := coalesce(worker_id, gen_random_uuid());
BEGIN
    IF tasks IS NULL OR cardinality(tasks) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'tasks must name at least one task this worker runs';
    END IF;
    SELECT t INTO bad_name FROM unnest(tasks) AS t
    WHERE t IS NULL OR length(t) > 255 OR t !~ '^[A-Za-z_][[:alnum:]_.:<>-]*$' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'task name %s may contain only letters, digits and _ . : < > -',
            coalesce(quote_literal(bad_name), 'NULL'));
    END IF;
    IF lease IS NULL OR lease <= interval '0' OR extract(epoch FROM lease) > 31557600000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'lease must be > 0 and at most 1000 years, got %s', coalesce(lease::text, 'NULL'));
    END IF;
    INSERT INTO {schema}.workers AS w (worker_id, hostname, pid, tasks, lease_expires_at)
    VALUES (new_id, coalesce(hostname, host(inet_client_addr()), 'local'), coalesce(pid, 0),
            tasks, now() + lease);
    RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION {schema}.worker_heartbeat(worker_id uuid, lease interval DEFAULT '30 seconds')
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF lease IS NULL OR lease <= interval '0' OR extract(epoch FROM lease) > 31557600000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'lease must be > 0 and at most 1000 years, got %s', coalesce(lease::text, 'NULL'));
    END IF;
    UPDATE {schema}.workers w SET lease_expires_at = now() + lease, heartbeat_at = now()
    WHERE w.worker_id = worker_heartbeat.worker_id AND w.lease_expires_at > now();
    RETURN FOUND;
END
$$;

CREATE OR REPLACE FUNCTION {schema}.fail_job(
    worker_id uuid, job_id text, attempt integer, error text,
    retry_at timestamptz DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    new_status text;
    ended {schema}.jobs%ROWTYPE;
BEGIN
    IF retry_at IS NOT NULL AND NOT (retry_at >= '0001-01-02 00:00:00+00'
                                     AND retry_at <= '9999-12-30 00:00:00+00') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'retry_at must lie between 0001-01-02 and 9999-12-30 UTC, got %s', retry_at);
    END IF;
    UPDATE {schema}.jobs j SET
        failures = j.failures + 1,
        status = CASE WHEN j.failures + 1 <= j.max_retries AND j.cancel_requested_at IS NULL
                      THEN 'pending' ELSE 'failed' END,
        execution_time = CASE WHEN j.failures + 1 <= j.max_retries
                                   AND j.cancel_requested_at IS NULL
                              THEN coalesce(fail_job.retry_at, now())
                              ELSE j.execution_time END,
        finished_at = CASE WHEN j.failures + 1 <= j.max_retries AND j.cancel_requested_at IS NULL
                           THEN NULL ELSE now() END,
        lease_owner = NULL, last_error = left(fail_job.error, 8000), updated_at = now()
    WHERE j.job_id = fail_job.job_id AND j.lease_owner = fail_job.worker_id
      AND j.attempts = fail_job.attempt AND j.status = 'running'
    RETURNING j.* INTO ended;
    IF ended.job_id IS NOT NULL THEN
        PERFORM {schema}.record_attempt(ended.job_id, ended.attempts, fail_job.worker_id,
                                        'failed', ended.last_error, ended.claimed_at,
                                        ended.started_at);
    END IF;
    RETURN ended.status;
END
$$;

CREATE OR REPLACE FUNCTION {schema}.retry_job(
    job_id text, run_at timestamptz DEFAULT NULL, delay interval DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    current_status text;
    unmet integer;
    broken text;
BEGIN
    IF run_at IS NOT NULL AND delay IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pass either run_at or delay, not both';
    END IF;
    IF run_at IS NOT NULL AND NOT (run_at >= '0001-01-02 00:00:00+00'
                                   AND run_at <= '9999-12-30 00:00:00+00') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'run_at must lie between 0001-01-02 and 9999-12-30 UTC, got %s', run_at);
    END IF;
    IF delay < interval '0' OR extract(epoch FROM delay) > 31557600000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('delay must be from 0 to 1000 years, got %s', delay);
    END IF;
    PERFORM 1 FROM {schema}.job_dependencies e WHERE e.job_id = retry_job.job_id
    ORDER BY e.depends_on FOR UPDATE;
    SELECT j.status INTO current_status FROM {schema}.jobs j
    WHERE j.job_id = retry_job.job_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = format(
            'no job %L (unknown, or pruned after the retention period)', retry_job.job_id);
    END IF;
    IF current_status NOT IN ('failed', 'cancelled') THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format(
            'job %L is %s; only failed or cancelled jobs can be retried (to run a job again'
            ' after it succeeded, schedule it with conflict => ''replace'')',
            retry_job.job_id, current_status);
    END IF;
    SELECT d.job_id INTO broken
    FROM {schema}.job_dependencies e JOIN {schema}.jobs d ON d.job_id = e.depends_on
    WHERE e.job_id = retry_job.job_id AND NOT e.satisfied
      AND d.status IN ('failed', 'cancelled')
    ORDER BY d.job_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format(
            'job %L depends on %L, which did not succeed; retry %L first, then this job'
            ' (it then waits for it)', retry_job.job_id, broken, broken);
    END IF;
    SELECT count(*) INTO unmet FROM {schema}.job_dependencies e
    WHERE e.job_id = retry_job.job_id AND NOT e.satisfied;
    UPDATE {schema}.jobs j SET
        status = CASE WHEN unmet > 0 THEN 'blocked' ELSE 'pending' END, blocked_by = unmet,
        failures = 0, lost_leases = 0, cancel_requested_at = NULL,
        execution_time = coalesce(retry_job.run_at, now() + coalesce(retry_job.delay, '0')),
        started_at = NULL, finished_at = NULL, updated_at = now()
    WHERE j.job_id = retry_job.job_id;
    RETURN CASE WHEN unmet > 0 THEN 'blocked' ELSE 'pending' END;
END
$$;

CREATE OR REPLACE FUNCTION {schema}.add_schedule(
    schedule_id   text,
    task_name     text,
    cron          text DEFAULT NULL,
    every         interval DEFAULT NULL,
    timezone      text DEFAULT 'UTC',
    args          jsonb DEFAULT '[]',
    kwargs        jsonb DEFAULT '{}',
    priority      integer DEFAULT 5,
    max_retries   integer DEFAULT 0,
    timeout       interval DEFAULT NULL,
    coalesce_policy text DEFAULT 'latest',
    misfire_grace interval DEFAULT NULL,
    max_running   integer DEFAULT 1,
    jitter        interval DEFAULT NULL,
    conflict      text DEFAULT 'raise'
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    policy text := lower(conflict);
    request {schema}.job_request;
    trigger_json jsonb;
    written text;
BEGIN
    IF policy IS NULL OR policy NOT IN ('raise', 'ignore', 'replace') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'conflict must be ''raise'', ''ignore'' or ''replace'', got %L', conflict);
    END IF;
    IF schedule_id IS NULL OR schedule_id = '' OR length(schedule_id) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'schedule_id must be a text of 1 to 200 characters, got %L',
            left(schedule_id, 300));
    END IF;
    -- The job part of the schedule is checked like schedule_job()'s.
    request := {schema}.check_job_request({schema}.job_request(
        task_name, args, kwargs, NULL, NULL, NULL, priority, max_retries, timeout));
    IF (cron IS NULL) = (every IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'give exactly one of cron (an expression) or every (an interval)';
    END IF;
    IF cron IS NOT NULL THEN
        IF array_length(regexp_split_to_array(btrim(cron), '\s+'), 1) NOT IN (5, 6)
           OR cron !~ '^[[:space:][:alnum:]*/,?#-]+$' THEN
            RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
                'cron must have 5 fields (minute hour day month weekday), or 6 with seconds'
                ' first, of digits, names and * / , - ?; got %L', cron);
        END IF;
        IF timezone IS NULL
           OR NOT EXISTS (SELECT 1 FROM pg_timezone_names z WHERE z.name = timezone) THEN
            RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
                'unknown time zone %L; use an IANA name such as ''Europe/Berlin''', timezone);
        END IF;
        trigger_json := jsonb_build_object(
            'type', 'cron', 'expression', btrim(cron), 'timezone', timezone);
    ELSE
        IF every <= interval '0' OR extract(epoch FROM every) > 31557600000 THEN
            RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
                'every must be a positive interval of at most 1000 years, got %s', every);
        END IF;
        IF timezone IS DISTINCT FROM 'UTC' THEN
            RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE =
                'timezone applies to cron schedules; an interval runs on elapsed time'
                ' (leave timezone as ''UTC'')';
        END IF;
        trigger_json := jsonb_build_object('type', 'interval',
            'seconds', extract(epoch FROM every)::float8, 'start', NULL, 'end', NULL);
    END IF;
    IF coalesce_policy IS NULL OR coalesce_policy NOT IN ('latest', 'all', 'skip') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'coalesce_policy must be ''latest'', ''all'' or ''skip'', got %L',
            coalesce_policy);
    END IF;
    IF misfire_grace <= interval '0' OR extract(epoch FROM misfire_grace) > 31557600000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'misfire_grace must be > 0 and at most 1000 years (or NULL for no limit), got %s',
            misfire_grace);
    END IF;
    IF max_running < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'max_running must be >= 1 (or NULL for no limit), got %s', max_running);
    END IF;
    IF jitter < interval '0' OR extract(epoch FROM jitter) > 31557600000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('jitter must be from 0 to 1000 years, got %s', jitter);
    END IF;

    INSERT INTO {schema}.schedules AS s
        (schedule_id, task_name, args, kwargs, trigger, priority, max_retries,
         timeout_seconds, coalesce_policy, misfire_grace_seconds, max_running,
         jitter_seconds, next_fire_time, needs_first_fire)
    VALUES (add_schedule.schedule_id, request.task_name, request.args, request.kwargs,
            trigger_json, request.priority, request.max_retries,
            extract(epoch FROM request.timeout)::float8, add_schedule.coalesce_policy,
            extract(epoch FROM misfire_grace)::float8, add_schedule.max_running,
            coalesce(extract(epoch FROM jitter)::float8, 0), NULL, true)
    ON CONFLICT ON CONSTRAINT schedules_pkey DO NOTHING
    RETURNING s.schedule_id INTO written;
    IF written IS NOT NULL OR policy = 'ignore' THEN
        RETURN add_schedule.schedule_id;
    END IF;
    IF policy = 'raise' THEN
        RAISE EXCEPTION USING ERRCODE = '23505', MESSAGE = format(
            'a schedule with id %L already exists; pass conflict => ''ignore'' to keep it'
            ' or ''replace'' to overwrite its definition', add_schedule.schedule_id);
    END IF;
    UPDATE {schema}.schedules s SET
        task_name = request.task_name, args = request.args, kwargs = request.kwargs,
        priority = request.priority, max_retries = request.max_retries,
        timeout_seconds = extract(epoch FROM request.timeout)::float8,
        coalesce_policy = add_schedule.coalesce_policy,
        misfire_grace_seconds = extract(epoch FROM misfire_grace)::float8,
        max_running = add_schedule.max_running,
        jitter_seconds = coalesce(extract(epoch FROM jitter)::float8, 0),
        needs_first_fire = s.needs_first_fire OR s.trigger IS DISTINCT FROM trigger_json,
        trigger_error = CASE WHEN s.trigger IS DISTINCT FROM trigger_json THEN NULL
                             ELSE s.trigger_error END,
        trigger = trigger_json, updated_at = now()
    WHERE s.schedule_id = add_schedule.schedule_id;
    RETURN add_schedule.schedule_id;
END
$$;

-- ---------------------------------------------------------------------------------------
-- check_job_basics (0005's check_job_request, renamed by 0010), restated: the payload cap
-- comes from `settings` (a session SET of scheduler.max_payload_bytes no longer changes
-- it), and run_at, delay and timeout have Python's bounds, so now() + delay and every
-- stored time stay inside both PostgreSQL's and Python's ranges.
CREATE OR REPLACE FUNCTION {schema}.check_job_basics(request {schema}.job_request, label text DEFAULT NULL)
RETURNS {schema}.job_request
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    prefix text := CASE WHEN label IS NULL THEN '' ELSE label || ': ' END;
    max_bytes integer := coalesce(
        (SELECT s.max_payload_bytes FROM {schema}.settings s), 65536);
    size integer;
BEGIN
    IF request IS NULL OR request.task_name IS NULL OR request.task_name = ''
       OR length(request.task_name) > 255 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix
            || 'task_name must be a non-empty text of at most 255 characters, got '
            || coalesce(quote_literal(left(request.task_name, 300)), 'NULL');
    END IF;
    IF request.task_name !~ '^[A-Za-z_][[:alnum:]_.:<>-]*$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'task name %L may contain only letters, digits and _ . : < > - and must start'
            ' with a letter or _ (a registered task is named module:function)',
            request.task_name);
    END IF;
    request.args := coalesce(request.args, '[]');
    request.kwargs := coalesce(request.kwargs, '{}');
    IF jsonb_typeof(request.args) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'args must be a JSON array of positional arguments, got %s (for one argument'
            ' write ''[value]'' or jsonb_build_array(value))', jsonb_typeof(request.args));
    END IF;
    IF jsonb_typeof(request.kwargs) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'kwargs must be a JSON object of keyword arguments, got %s',
            jsonb_typeof(request.kwargs));
    END IF;
    size := octet_length(request.args::text) + octet_length(request.kwargs::text);
    IF size > max_bytes THEN
        RAISE EXCEPTION USING ERRCODE = '54000', MESSAGE = prefix || format(
            'job arguments encode to %s bytes, over the cap of %s; store large data'
            ' elsewhere (a table, object storage) and pass its key (the schema owner sets'
            ' the cap: UPDATE settings SET max_payload_bytes = ...)', size, max_bytes);
    END IF;
    IF request.run_at IS NOT NULL AND request.delay IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = prefix || 'pass either run_at or delay, not both';
    END IF;
    -- Python's bounds (scheduler/limits.py): its datetime reads every stored time back.
    IF request.run_at IS NOT NULL AND NOT (request.run_at >= '0001-01-02 00:00:00+00'
                                           AND request.run_at <= '9999-12-30 00:00:00+00') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'run_at must lie between 0001-01-02 and 9999-12-30 UTC, got %s; to park a job,'
            ' schedule it far ahead or cancel it', request.run_at);
    END IF;
    IF request.delay < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'delay must be >= 0, got %s; for a time in the past use run_at (due at once)',
            request.delay);
    END IF;
    IF extract(epoch FROM request.delay) > 31557600000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'delay must be at most 1000 years, got %s', request.delay);
    END IF;
    request.run_at := coalesce(request.run_at, now() + coalesce(request.delay, interval '0'));
    request.delay := NULL;
    IF request.job_id IS NULL THEN
        request.job_id := gen_random_uuid()::text;
    ELSIF request.job_id = '' OR length(request.job_id) > 255 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'job_id must be a text of 1 to 255 characters, got %L', left(request.job_id, 300));
    END IF;
    IF request.priority IS NULL OR request.priority NOT IN (1, 5, 10, 20) THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'unknown priority %s; use one of LOW (1), NORMAL (5), HIGH (10), CRITICAL (20)',
            coalesce(request.priority::text, 'NULL'));
    END IF;
    IF request.max_retries IS NULL OR request.max_retries < 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'max_retries must be an integer >= 0, got %s',
            coalesce(request.max_retries::text, 'NULL'));
    END IF;
    IF request.timeout <= interval '0' OR extract(epoch FROM request.timeout) > 31557600000
    THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'timeout must be > 0 and at most 1000 years (or NULL for none), got %s',
            request.timeout);
    END IF;
    RETURN request;
END
$$;

-- ---------------------------------------------------------------------------------------
-- queue_stats (0007) with one more column: `problem`, why the queue's limits cannot be
-- enforced (its jobs wait until they are fixed with set_queue_limits()), NULL when none.
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

-- ---------------------------------------------------------------------------------------
-- Roles. Each grant helper gives exactly its role's share; test_roles.py asserts the whole
-- matrix of EXECUTE rights over every function of the schema.
--   producer  enqueue (schedule_job(s), job_request, check_job_request), add_dependencies
--             (the SQL way to enqueue a job that waits for others), cancel_job, the views
--   operator  schedules (add/pause/resume/remove_schedule), queues and limits
--             (pause/resume_queue, set_queue/task_limits), retry_job(s), cancel_job, the
--             views and `settings`
--   runtime   replicas and foreign workers: the tables (DML), every API function
-- limits_problem() is pure and reveals nothing: PUBLIC may call it, so every role that may
-- read queue_stats (which calls it) still can, a dashboard's read-only role included.
CREATE OR REPLACE FUNCTION {schema}.grant_runtime_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    grantee text := quote_ident(role_name);
BEGIN
    EXECUTE 'GRANT USAGE ON SCHEMA {schema} TO ' || grantee;
    EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.jobs, {schema}.workers,'
            ' {schema}.schedules, {schema}.job_attempts, {schema}.job_dependencies,'
            ' {schema}.queues, {schema}.task_limits TO ' || grantee;
    EXECUTE 'GRANT SELECT ON {schema}.schema_migrations, {schema}.settings,'
            ' {schema}.task_stats, {schema}.running_jobs, {schema}.stalled_jobs,'
            ' {schema}.recent_failures, {schema}.schedule_status, {schema}.live_workers,'
            ' {schema}.attempt_history, {schema}.queue_stats TO ' || grantee;
    EXECUTE 'GRANT EXECUTE ON FUNCTION {schema}.job_request, {schema}.check_job_request,'
            ' {schema}.schedule_jobs, {schema}.schedule_job, {schema}.cancel_job,'
            ' {schema}.retry_job, {schema}.retry_failed_jobs, {schema}.add_dependencies,'
            ' {schema}.register_worker, {schema}.worker_heartbeat,'
            ' {schema}.claim_jobs, {schema}.complete_job, {schema}.fail_job,'
            ' {schema}.release_job, {schema}.cancel_requested_jobs,'
            ' {schema}.unregister_worker, {schema}.readable_time, {schema}.add_schedule,'
            ' {schema}.pause_schedule, {schema}.resume_schedule, {schema}.remove_schedule,'
            ' {schema}.claim_flow_jobs, {schema}.bucket_tokens, {schema}.claim_scope,'
            ' {schema}.pause_queue, {schema}.resume_queue, {schema}.set_queue_limits,'
            ' {schema}.set_task_limits, {schema}.check_limits TO ' || grantee;
END
$$;

CREATE OR REPLACE FUNCTION {schema}.grant_producer_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    grantee text := quote_ident(role_name);
BEGIN
    EXECUTE 'GRANT USAGE ON SCHEMA {schema} TO ' || grantee;
    EXECUTE 'GRANT SELECT ON {schema}.task_stats, {schema}.running_jobs,'
            ' {schema}.stalled_jobs, {schema}.recent_failures, {schema}.schedule_status,'
            ' {schema}.live_workers, {schema}.attempt_history, {schema}.queue_stats TO '
            || grantee;
    EXECUTE 'GRANT EXECUTE ON FUNCTION {schema}.job_request, {schema}.check_job_request,'
            ' {schema}.schedule_jobs, {schema}.schedule_job, {schema}.cancel_job,'
            ' {schema}.add_dependencies TO ' || grantee;
END
$$;

CREATE FUNCTION {schema}.grant_operator_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    grantee text := quote_ident(role_name);
BEGIN
    EXECUTE 'GRANT USAGE ON SCHEMA {schema} TO ' || grantee;
    EXECUTE 'GRANT SELECT ON {schema}.settings, {schema}.task_stats, {schema}.running_jobs,'
            ' {schema}.stalled_jobs, {schema}.recent_failures, {schema}.schedule_status,'
            ' {schema}.live_workers, {schema}.attempt_history, {schema}.queue_stats TO '
            || grantee;
    EXECUTE 'GRANT EXECUTE ON FUNCTION {schema}.cancel_job, {schema}.retry_job,'
            ' {schema}.retry_failed_jobs, {schema}.add_schedule, {schema}.pause_schedule,'
            ' {schema}.resume_schedule, {schema}.remove_schedule, {schema}.pause_queue,'
            ' {schema}.resume_queue, {schema}.set_queue_limits, {schema}.set_task_limits TO '
            || grantee;
END
$$;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {schema}.limits_problem TO PUBLIC;

-- Roles granted before this migration: the runtime role (it may call claim_scope) gets the
-- recreated claim_flow_jobs back; a producer (schedule_jobs without claim_jobs) loses the schedule functions
-- grant_producer_role() gave beyond the documented share (grant_operator_role() gives
-- them); nobody but the owner keeps check_job_basics, which 0010's rename left with the
-- roles granted check_job_request before it (check_job_request calls it as the owner).
DO $$
DECLARE
    grantee name;
BEGIN
    FOR grantee IN
        SELECT DISTINCT r.rolname
        FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) AS a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE p.oid = '{schema}.claim_scope(text[], text[], double precision)'::regprocedure
          AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION {schema}.claim_flow_jobs TO %I', grantee);
        EXECUTE format('GRANT SELECT ON {schema}.settings TO %I', grantee);
    END LOOP;
    FOR grantee IN
        SELECT DISTINCT r.rolname
        FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) AS a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE p.oid = '{schema}.schedule_jobs({schema}.job_request[], text)'::regprocedure
          AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
          AND NOT has_function_privilege(
              a.grantee, '{schema}.claim_jobs(uuid, text[], integer, text[])'::regprocedure,
              'EXECUTE')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION {schema}.add_schedule,'
                       ' {schema}.pause_schedule, {schema}.resume_schedule,'
                       ' {schema}.remove_schedule FROM %I', grantee);
    END LOOP;
    FOR grantee IN
        SELECT DISTINCT r.rolname
        FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) AS a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE p.oid = '{schema}.check_job_basics({schema}.job_request, text)'::regprocedure
          AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION {schema}.check_job_basics FROM %I',
                       grantee);
    END LOOP;
END
$$;
