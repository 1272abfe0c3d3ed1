-- Fleet-wide flow control: queues (routing, pause), concurrency limits and rate limits per
-- queue and per task, per-key locks and unique keys. Every limit is enforced by the
-- database in the claim (or, for unique keys, by an index), never by a replica's memory.
--
-- Two claim paths. The plain claim (queries.sql claim_jobs) takes only jobs no limit
-- applies to: no lock key, a queue and a task without limits, a queue not paused; it is as
-- cheap as before. Everything else goes through claim_flow_jobs() below, which serialises
-- its callers on one transaction-scoped advisory lock and then counts, with a snapshot
-- taken after the lock, what runs: two claimers never both see the same free room.

ALTER TABLE {schema}.jobs
    ADD COLUMN queue      text NOT NULL DEFAULT 'default' CHECK (length(queue) BETWEEN 1 AND 255),
    ADD COLUMN lock_key   text CHECK (length(lock_key) BETWEEN 1 AND 255),
    ADD COLUMN unique_key text CHECK (length(unique_key) BETWEEN 1 AND 255);

-- Claim path: per queue, per priority, due time order, pending rows only. A replica reads
-- only the queues it works, whatever waits in the others.
DROP INDEX {schema}.jobs_claim_idx;
CREATE INDEX jobs_claim_idx ON {schema}.jobs (queue, priority, execution_time)
    WHERE status = 'pending';
-- Whether due lock-keyed work waits (the plain claim leaves it to claim_flow_jobs).
CREATE INDEX jobs_locked_pending_idx ON {schema}.jobs (queue, execution_time)
    WHERE status = 'pending' AND lock_key IS NOT NULL;
-- A lock key is held by at most one running job: the claim never tries otherwise, and this
-- index makes it a database guarantee whatever writes the rows.
CREATE UNIQUE INDEX jobs_running_lock_key_idx ON {schema}.jobs (lock_key)
    WHERE status = 'running' AND lock_key IS NOT NULL;
-- At most one unfinished (pending, blocked on dependencies (0006), or running) job per
-- unique key. An index entry of an insert that rolls back reserves nothing; two concurrent
-- inserts of one key cannot both commit.
CREATE UNIQUE INDEX jobs_unique_key_idx ON {schema}.jobs (unique_key)
    WHERE status IN ('pending', 'blocked', 'running') AND unique_key IS NOT NULL;

-- Queues that are paused or limited. A queue with no row is active and unlimited. The rate
-- limit is a token bucket: `rate_burst` tokens at most, refilled at rate_limit per
-- rate_period seconds; each start takes one. `tokens` NULL means full.
CREATE TABLE {schema}.queues (
    queue             text PRIMARY KEY CHECK (length(queue) BETWEEN 1 AND 255),
    paused            boolean NOT NULL DEFAULT false,
    concurrency_limit integer CHECK (concurrency_limit >= 1),
    rate_limit        integer CHECK (rate_limit >= 1),
    rate_period       double precision NOT NULL DEFAULT 1 CHECK (rate_period > 0),
    rate_burst        integer NOT NULL DEFAULT 1 CHECK (rate_burst >= 1),
    tokens            double precision,
    refilled_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Limits of one task across all its queues, with the same meaning.
CREATE TABLE {schema}.task_limits (
    task_name         text PRIMARY KEY CHECK (length(task_name) BETWEEN 1 AND 255),
    concurrency_limit integer CHECK (concurrency_limit >= 1),
    rate_limit        integer CHECK (rate_limit >= 1),
    rate_period       double precision NOT NULL DEFAULT 1 CHECK (rate_period > 0),
    rate_burst        integer NOT NULL DEFAULT 1 CHECK (rate_burst >= 1),
    tokens            double precision,
    refilled_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- The queue a recurring schedule's jobs go to.
ALTER TABLE {schema}.schedules
    ADD COLUMN queue text NOT NULL DEFAULT 'default' CHECK (length(queue) BETWEEN 1 AND 255);

-- The queues a worker works (NULL: a worker from before queues, which took every queue),
-- so the reaper fails only jobs no live worker can ever claim.
ALTER TABLE {schema}.workers ADD COLUMN queues text[];

-- The tokens in a bucket at `at` (NULL when there is no rate limit).
CREATE FUNCTION {schema}.bucket_tokens(
    tokens double precision, refilled_at timestamptz, rate_limit integer,
    rate_period double precision, rate_burst integer, at timestamptz
) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN $3 IS NULL THEN NULL ELSE
        least($5::float8, coalesce($1, $5::float8)
              + greatest(extract(epoch FROM $6 - coalesce($2, $6)), 0) * $3 / $4)
    END
$$;

-- What the plain claim (queries.sql claim_jobs) may take: of `queue_names`, the queues
-- neither paused nor limited; of `task_names`, the tasks without limits; and whether work
-- under flow control may wait for this worker (a limited queue or task of its, or a due
-- job with a lock key in an open queue), which claim_flow_jobs() then takes. STABLE: it
-- reads with the claim's snapshot. A plpgsql function keeps its plans across calls, so
-- the claim pays no planning for this on the hot path.
CREATE FUNCTION {schema}.claim_scope(
    task_names text[], queue_names text[], lead double precision,
    OUT open_queues text[], OUT open_tasks text[], OUT flow boolean
)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
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
                               OR q.rate_limit IS NOT NULL));
        SELECT array_agg(tn) INTO open_tasks FROM unnest(task_names) AS tn
        WHERE NOT EXISTS (SELECT 1 FROM {schema}.task_limits t WHERE t.task_name = tn
                          AND (t.concurrency_limit IS NOT NULL OR t.rate_limit IS NOT NULL));
        flow := EXISTS (SELECT 1 FROM {schema}.queues q
                        WHERE q.queue = ANY (queue_names) AND NOT q.paused
                          AND (q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL))
             OR EXISTS (SELECT 1 FROM {schema}.task_limits t
                        WHERE t.task_name = ANY (task_names)
                          AND (t.concurrency_limit IS NOT NULL OR t.rate_limit IS NOT NULL));
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

-- Claim up to max_jobs due jobs of `task_names` in `queue_names`, limits, locks and pauses
-- respected, in priority then due-time order; record the successes of done_* first (fenced,
-- like the plain claim, with each one's result (JSON text) and attempt-history row, as
-- in 0006). Rows: kind 'completed' (a success written), 'claimed' (a job now running
-- under worker_id, claimed_at stamped), and one 'flow' row whose `controlled` says whether limits or
-- lock keys still concern this worker's queues and tasks, and whose `retry_in` is the
-- seconds until a rate limit that held work back has a token again (NULL: none did).
--
-- Callers are serialised by a transaction-scoped advisory lock; the claim statement runs
-- after it with its own snapshot (READ COMMITTED), so it sees every earlier claim that
-- counted against a limit. Running rows count against limits whoever holds them, an
-- orphaned attempt included, until they leave 'running'.
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
    retry_in double precision
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
           NULL::boolean, NULL::float8
    FROM done d;
    IF coalesce(max_jobs, 0) <= 0 OR NOT EXISTS (
        SELECT 1 FROM {schema}.workers w
        WHERE w.worker_id = claim_flow_jobs.worker_id AND w.lease_expires_at > now()
    ) THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('scheduler.flow:{schema}'));
    clock := clock_timestamp();
    RETURN QUERY
    WITH running AS MATERIALIZED (
        SELECT r.queue, r.task_name FROM {schema}.jobs r WHERE r.status = 'running'
    ), queue_room AS MATERIALIZED (
        SELECT q.queue, q.paused, q.rate_limit, q.rate_period,
               q.concurrency_limit - (SELECT count(*) FROM running r WHERE r.queue = q.queue)
                   AS slots,
               {schema}.bucket_tokens(q.tokens, q.refilled_at, q.rate_limit, q.rate_period,
                                      q.rate_burst, clock) AS tokens
        FROM {schema}.queues q WHERE q.queue = ANY (queue_names)
    ), task_room AS MATERIALIZED (
        SELECT t.task_name, t.rate_limit, t.rate_period,
               t.concurrency_limit
                   - (SELECT count(*) FROM running r WHERE r.task_name = t.task_name) AS slots,
               {schema}.bucket_tokens(t.tokens, t.refilled_at, t.rate_limit, t.rate_period,
                                      t.rate_burst, clock) AS tokens
        FROM {schema}.task_limits t WHERE t.task_name = ANY (task_names)
    ), open_queues AS (
        SELECT qn.queue FROM unnest(queue_names) AS qn(queue)
        WHERE NOT EXISTS (SELECT 1 FROM queue_room r WHERE r.queue = qn.queue
                          AND (r.paused OR least(r.slots, floor(r.tokens)) <= 0))
    ), open_tasks AS (
        SELECT array(SELECT tn FROM unnest(task_names) AS tn
                     WHERE NOT EXISTS (SELECT 1 FROM task_room r WHERE r.task_name = tn
                                       AND least(r.slots, floor(r.tokens)) <= 0)) AS names
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
              FROM queue_room r WHERE r.rate_limit IS NOT NULL AND NOT r.paused) s
    ), task_left AS (
        SELECT s.*, s.available - s.spent AS tokens
        FROM (SELECT r.task_name, r.rate_limit, r.rate_period, r.tokens AS available,
                     (SELECT count(*) FROM claimed c WHERE c.task_name = r.task_name) AS spent
              FROM task_room r WHERE r.rate_limit IS NOT NULL) s
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
           NULL::float8
    FROM claimed c
    UNION ALL
    SELECT 'flow'::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           EXISTS (SELECT 1 FROM queue_room r
                   WHERE NOT r.paused AND (r.slots IS NOT NULL OR r.rate_limit IS NOT NULL))
           OR EXISTS (SELECT 1 FROM task_room)
           OR EXISTS (SELECT 1 FROM candidates c WHERE c.lock_key IS NOT NULL)
           OR EXISTS (SELECT 1 FROM unnest(queue_names) AS qn(queue), {schema}.jobs j
                      WHERE j.status = 'pending' AND j.lock_key IS NOT NULL
                        AND j.queue = qn.queue AND j.execution_time <= now()),
           (SELECT min((1 - w.tokens) * w.rate_period / w.rate_limit)
            FROM (SELECT l.tokens, l.rate_period, l.rate_limit FROM queue_left l
                  UNION ALL
                  SELECT l.tokens, l.rate_period, l.rate_limit FROM task_left l) w
            WHERE w.tokens < 1);
END
$$;

-- The worker protocol's claim, now queue- and limit-aware: every claim of a foreign worker
-- goes through claim_flow_jobs(). `queue_names` defaults to the 'default' queue.
DROP FUNCTION {schema}.claim_jobs(uuid, text[], integer);
CREATE FUNCTION {schema}.claim_jobs(
    worker_id uuid, task_names text[] DEFAULT NULL, max_jobs integer DEFAULT 1,
    queue_names text[] DEFAULT ARRAY['default']
) RETURNS TABLE (
    job_id text, attempt integer, task_name text, args jsonb, kwargs jsonb,
    priority smallint, max_retries integer, failures integer,
    timeout_seconds double precision, execution_time timestamptz
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    registered text[];
BEGIN
    IF max_jobs IS NULL OR max_jobs < 1 OR max_jobs > 1000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'max_jobs must be between 1 and 1000, got %s', coalesce(max_jobs::text, 'NULL'));
    END IF;
    IF queue_names IS NULL OR cardinality(queue_names) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'queue_names must name at least one queue (the default is ''default'')';
    END IF;
    SELECT w.tasks INTO registered FROM {schema}.workers w
    WHERE w.worker_id = claim_jobs.worker_id AND w.lease_expires_at > now();
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format(
            'worker %s has no live lease (never registered, expired or unregistered): stop'
            ' the jobs it runs and register a new worker', claim_jobs.worker_id);
    END IF;
    -- The join reads priority and due time, which a claim does not change (this statement's
    -- snapshot predates the claim); everything else comes from the claim itself.
    RETURN QUERY
    SELECT c.job_id, c.attempts, c.task_name, c.args::jsonb, c.kwargs::jsonb, j.priority,
           c.max_retries, c.failures, c.timeout_seconds, j.execution_time
    FROM {schema}.claim_flow_jobs(claim_jobs.worker_id,
                                  coalesce(claim_jobs.task_names, registered),
                                  claim_jobs.queue_names, claim_jobs.max_jobs) AS c
    JOIN {schema}.jobs j ON j.job_id = c.job_id
    WHERE c.kind = 'claimed'
    ORDER BY j.priority DESC, j.execution_time;
END
$$;

-- retry_failed_jobs (0006) skips a failed job whose unique key another unfinished job has
-- taken since, or that an older failed job of the same key retried in this call took:
-- retrying it would give the key two holders (retry_job() refuses that: 23505).
CREATE OR REPLACE FUNCTION {schema}.retry_failed_jobs(
    task_name text DEFAULT NULL, since timestamptz DEFAULT NULL,
    until timestamptz DEFAULT NULL, run_at timestamptz DEFAULT NULL,
    max_jobs integer DEFAULT 1000
) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    found_id text;
    found_key text;
    keys_taken text[] := '{}';
BEGIN
    IF max_jobs IS NULL OR max_jobs < 1 OR max_jobs > 100000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'max_jobs must be between 1 and 100000, got %s', coalesce(max_jobs::text, 'NULL'));
    END IF;
    FOR found_id, found_key IN
        SELECT j.job_id, j.unique_key FROM {schema}.jobs j
        WHERE j.status = 'failed'
          AND (task_name IS NULL OR j.task_name = task_name)
          AND j.finished_at >= coalesce(since, '-infinity')
          AND j.finished_at < coalesce(until, now())
          AND (j.unique_key IS NULL OR NOT EXISTS (
                   SELECT 1 FROM {schema}.jobs h
                   WHERE h.unique_key = j.unique_key
                     AND h.status IN ('pending', 'blocked', 'running')))
        ORDER BY j.finished_at
        LIMIT max_jobs
        FOR UPDATE OF j SKIP LOCKED
    LOOP
        IF found_key = ANY (keys_taken) THEN
            CONTINUE;  -- an older failed job of this key was just retried: it holds the key
        END IF;
        keys_taken := keys_taken || found_key;
        PERFORM {schema}.retry_job(found_id, run_at);
        RETURN NEXT found_id;
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Operating queues and limits from SQL (the Python API and the CLI call the same).

-- Pause a queue fleet-wide: no worker claims from it until resume_queue(); running jobs
-- finish. Returns true.
CREATE FUNCTION {schema}.pause_queue(queue text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO {schema}.queues AS q (queue, paused) VALUES ($1, true)
    ON CONFLICT (queue) DO UPDATE SET paused = true, updated_at = now()
    RETURNING true
$$;

-- Resume a paused queue. Returns whether it was paused.
CREATE FUNCTION {schema}.resume_queue(queue text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH was AS (SELECT q.paused FROM {schema}.queues q WHERE q.queue = $1 FOR UPDATE),
    changed AS (
        UPDATE {schema}.queues q SET paused = false, updated_at = now()
        WHERE q.queue = $1 RETURNING 1
    )
    SELECT coalesce((SELECT paused FROM was), false)
$$;

-- Set (replace) the limits of a queue; NULL removes a limit. concurrency_limit: at most
-- that many of its jobs run at once, fleet-wide. rate_limit: at most that many starts per
-- rate_period seconds on average, rate_burst of them at once. Changing the rate refills
-- the bucket.
CREATE FUNCTION {schema}.set_queue_limits(
    queue text, concurrency_limit integer DEFAULT NULL, rate_limit integer DEFAULT NULL,
    rate_period double precision DEFAULT 1, rate_burst integer DEFAULT 1
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM {schema}.check_limits(concurrency_limit, rate_limit, rate_period, rate_burst);
    IF queue IS NULL OR length(queue) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'queue must be a text of 1 to 255 characters';
    END IF;
    INSERT INTO {schema}.queues AS q
        (queue, concurrency_limit, rate_limit, rate_period, rate_burst)
    VALUES (set_queue_limits.queue, set_queue_limits.concurrency_limit,
            set_queue_limits.rate_limit, set_queue_limits.rate_period,
            set_queue_limits.rate_burst)
    ON CONFLICT ON CONSTRAINT queues_pkey DO UPDATE SET
        concurrency_limit = excluded.concurrency_limit, rate_limit = excluded.rate_limit,
        rate_period = excluded.rate_period, rate_burst = excluded.rate_burst,
        tokens = CASE WHEN (q.rate_limit, q.rate_period, q.rate_burst)
                           IS NOT DISTINCT FROM
                           (excluded.rate_limit, excluded.rate_period, excluded.rate_burst)
                      THEN q.tokens END,
        refilled_at = CASE WHEN (q.rate_limit, q.rate_period, q.rate_burst)
                                IS NOT DISTINCT FROM
                                (excluded.rate_limit, excluded.rate_period, excluded.rate_burst)
                           THEN q.refilled_at END,
        updated_at = now();
END
$$;

-- Set (replace) the limits of a task, as set_queue_limits(); all NULL removes the row.
CREATE FUNCTION {schema}.set_task_limits(
    task_name text, concurrency_limit integer DEFAULT NULL, rate_limit integer DEFAULT NULL,
    rate_period double precision DEFAULT 1, rate_burst integer DEFAULT 1
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM {schema}.check_limits(concurrency_limit, rate_limit, rate_period, rate_burst);
    IF task_name IS NULL OR length(task_name) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'task_name must be a text of 1 to 255 characters';
    END IF;
    IF concurrency_limit IS NULL AND rate_limit IS NULL THEN
        DELETE FROM {schema}.task_limits t WHERE t.task_name = set_task_limits.task_name;
        RETURN;
    END IF;
    INSERT INTO {schema}.task_limits AS t
        (task_name, concurrency_limit, rate_limit, rate_period, rate_burst)
    VALUES (set_task_limits.task_name, set_task_limits.concurrency_limit,
            set_task_limits.rate_limit, set_task_limits.rate_period,
            set_task_limits.rate_burst)
    ON CONFLICT ON CONSTRAINT task_limits_pkey DO UPDATE SET
        concurrency_limit = excluded.concurrency_limit, rate_limit = excluded.rate_limit,
        rate_period = excluded.rate_period, rate_burst = excluded.rate_burst,
        tokens = CASE WHEN (t.rate_limit, t.rate_period, t.rate_burst)
                           IS NOT DISTINCT FROM
                           (excluded.rate_limit, excluded.rate_period, excluded.rate_burst)
                      THEN t.tokens END,
        refilled_at = CASE WHEN (t.rate_limit, t.rate_period, t.rate_burst)
                                IS NOT DISTINCT FROM
                                (excluded.rate_limit, excluded.rate_period, excluded.rate_burst)
                           THEN t.refilled_at END,
        updated_at = now();
END
$$;

CREATE FUNCTION {schema}.check_limits(
    concurrency_limit integer, rate_limit integer, rate_period double precision,
    rate_burst integer
) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF concurrency_limit < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'concurrency_limit must be >= 1 (NULL for none; to stop a queue, pause it), got %s',
            concurrency_limit);
    END IF;
    IF rate_limit < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'rate_limit must be >= 1 (NULL for none), got %s', rate_limit);
    END IF;
    IF rate_period IS NULL OR NOT rate_period > 0 OR rate_period IN ('Infinity', 'NaN') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'rate_period must be a finite number of seconds > 0, got %s',
            coalesce(rate_period::text, 'NULL'));
    END IF;
    IF rate_burst IS NULL OR rate_burst < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'rate_burst must be >= 1, got %s', coalesce(rate_burst::text, 'NULL'));
    END IF;
END
$$;

-- Every queue that has jobs waiting or running or a row in `queues`: depth (pending and
-- due now), future (pending, due later), running, paused and its limits.
CREATE VIEW {schema}.queue_stats AS
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
       q.concurrency_limit, q.rate_limit, q.rate_period, q.rate_burst
FROM {schema}.queues q FULL JOIN counts c ON c.queue = q.queue;

-- The runtime role also reads and writes the flow-control tables and calls the new
-- functions; the producer role may look at queues. Everything 0006 granted stays granted
-- (history, dependencies, retry_failed_jobs, the SQL schedule functions, readable_time).
CREATE OR REPLACE FUNCTION {schema}.grant_runtime_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    grantee text := quote_ident(role_name);
BEGIN
    EXECUTE 'GRANT USAGE ON SCHEMA {schema} TO ' || grantee;
    EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.jobs, {schema}.workers,'
            ' {schema}.schedules, {schema}.job_attempts, {schema}.job_dependencies,'
            ' {schema}.queues, {schema}.task_limits TO ' || grantee;
    EXECUTE 'GRANT SELECT ON {schema}.schema_migrations, {schema}.task_stats,'
            ' {schema}.running_jobs, {schema}.stalled_jobs, {schema}.recent_failures,'
            ' {schema}.schedule_status, {schema}.live_workers, {schema}.attempt_history,'
            ' {schema}.queue_stats TO ' || grantee;
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
            ' {schema}.add_dependencies, {schema}.add_schedule, {schema}.pause_schedule,'
            ' {schema}.resume_schedule, {schema}.remove_schedule TO ' || grantee;
END
$$;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} FROM PUBLIC;
