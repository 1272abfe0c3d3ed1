-- Claim up to max_jobs due jobs of `task_names` in `queue_names`, limits, locks and pauses
-- respected, in priority then due-time order; record the successes of done_* first
-- (end_attempts(): fenced, each with its result, JSON text, and attempt-history row).
-- Rows: kind 'completed' (a success written), 'claimed' (a job now running under
-- worker_id, claimed_at stamped), and one 'flow' row whose `controlled` says whether limits
-- or lock keys still concern this worker's queues and tasks, and whose `retry_in` is the
-- seconds until a rate limit that held work back has a token again (NULL: none did). Rows of
-- kind 'problem' name a limit of this worker's queues or tasks that cannot be enforced
-- (limit_problem(): out of bounds, or a kind this schema has no functions for), whose work
-- the claim skips, as if paused, instead of letting its arithmetic fail every claim.
--
-- Limits are rows of a kind (table `limits`); the claim names no kind: it asks each row's
-- kind how many jobs may start (limit_rooms()) and what the starts cost (limit_spend()),
-- through the dispatchers of limit_problem.sql: one statement per kind among this
-- worker's queues' and tasks' limits, and one for each limit that jobs started under.
--
-- Callers are serialised by a transaction-scoped advisory lock; the claim statement runs
-- after it with its own snapshot (READ COMMITTED), so it sees every earlier claim that
-- counted against a limit. Running rows count against limits whoever holds them, an
-- orphaned attempt included, until they leave 'running'.
CREATE OR REPLACE FUNCTION {schema}.claim_flow_jobs(
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
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- The walk over the keys (a recursive query) inflates the planner's estimate of the claim
-- statement: enough to JIT-compile it (more than a second per claim), and to make the plan
-- cache re-plan it on every call (2.5 ms, more than running it) rather than keep the plan
-- it made once. The claim is a handful of index probes whatever the parameters.
SET jit = off SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    clock timestamptz;
    -- How many keyed jobs per range the claim reads in due order before it walks the keys.
    window_size integer;
    -- How many keys one walk visits at most (see key_walk).
    walk_limit constant integer := 100;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION USING ERRCODE = '25000', MESSAGE = format(
            'claim_flow_jobs needs READ COMMITTED (it counts running jobs after taking its'
            ' lock), not %s', current_setting('transaction_isolation'));
    END IF;
    -- The successes first, so the slots they free count for this claim.
    RETURN QUERY
    SELECT 'completed'::text, d.job_id, NULL::text, NULL::text, NULL::text, NULL::integer,
           NULL::integer, NULL::integer, NULL::float8, NULL::float8, NULL::float8,
           NULL::boolean, NULL::float8, NULL::text
    FROM {schema}.end_attempts(
        done_ids, done_owners, done_attempts,
        array_fill('succeeded'::text, ARRAY[coalesce(cardinality(done_ids), 0)]),
        done_results) d;
    IF coalesce(max_jobs, 0) <= 0 OR NOT EXISTS (
        SELECT 1 FROM {schema}.workers w
        WHERE w.worker_id = claim_flow_jobs.worker_id AND w.lease_expires_at > now()
    ) THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('scheduler.flow:{schema}'));
    clock := clock_timestamp();
    lead := least(greatest(coalesce(lead, 0), 0), 3600);
    window_size := least(max_jobs, 10000) + 100;
    RETURN QUERY
    WITH RECURSIVE running AS MATERIALIZED (
        SELECT r.queue, r.task_name FROM {schema}.jobs r WHERE r.status = 'running'
    ), limit_base AS MATERIALIZED (
        -- This worker's queues' and tasks' limits, each with its scope's running jobs.
        SELECT l.scope, l.name, l.kind, l.settings, l.state,
               (SELECT count(*) FROM running r
                WHERE l.name = CASE l.scope WHEN 'queue' THEN r.queue
                                            ELSE r.task_name END) AS running
        FROM {schema}.limits l
        WHERE (l.scope = 'queue' AND l.name = ANY (queue_names))
           OR (l.scope = 'task' AND l.name = ANY (task_names))
    ), limit_rooms AS MATERIALIZED (
        -- How many may start under each limit, asked of its kind's functions in one
        -- statement per kind (limit_rooms(); NaN: it cannot say).
        SELECT u.scope, u.name, k.kind, u.settings, u.state, u.room
        FROM (SELECT b.kind, array_agg(b.scope ORDER BY b.scope, b.name) AS scopes,
                     array_agg(b.name ORDER BY b.scope, b.name) AS names,
                     array_agg(b.settings ORDER BY b.scope, b.name) AS settings,
                     array_agg(b.state ORDER BY b.scope, b.name) AS states,
                     array_agg(b.running ORDER BY b.scope, b.name) AS running
              FROM limit_base b GROUP BY b.kind) k
        CROSS JOIN LATERAL unnest(
            k.scopes, k.names, k.settings, k.states,
            {schema}.limit_rooms(k.kind, k.settings, k.states, k.running, clock))
            AS u(scope, name, settings, state, room)
    ), limit_rows AS MATERIALIZED (
        -- A limit whose kind cannot say is a problem, limit_problem() says why.
        SELECT r.scope, r.name, r.kind, r.settings, r.state,
               CASE WHEN r.room = 'NaN' THEN coalesce(
                   {schema}.limit_problem(r.kind, r.settings),
                   format('limit kind %L could not say how many may start', r.kind))
               END AS problem,
               CASE WHEN r.room <> 'NaN' THEN floor(r.room) END AS room
        FROM limit_rooms r
    ), queue_room AS MATERIALIZED (
        -- A queue's room: the least of its limits' (NULL: unbounded).
        SELECT qn.queue, coalesce(q.paused, false) AS paused,
               (SELECT min(l.room) FROM limit_rows l
                WHERE l.scope = 'queue' AND l.name = qn.queue) AS room,
               (SELECT string_agg(l.problem, '; ' ORDER BY l.kind) FROM limit_rows l
                WHERE l.scope = 'queue' AND l.name = qn.queue) AS problem
        FROM unnest(queue_names) AS qn(queue)
        LEFT JOIN {schema}.queues q ON q.queue = qn.queue
    ), task_room AS MATERIALIZED (
        SELECT l.name AS task_name, min(l.room) AS room,
               string_agg(l.problem, '; ' ORDER BY l.kind) AS problem
        FROM limit_rows l WHERE l.scope = 'task'
        GROUP BY l.name
    ), open_queues AS (
        SELECT r.queue FROM queue_room r
        WHERE NOT r.paused AND r.problem IS NULL AND (r.room IS NULL OR r.room > 0)
    ), open_tasks AS (
        SELECT array(SELECT tn FROM unnest(task_names) AS tn
                     WHERE NOT EXISTS (SELECT 1 FROM task_room r WHERE r.task_name = tn
                                       AND (r.problem IS NOT NULL OR r.room <= 0)))
               AS names
    ), ranges AS MATERIALIZED (
        SELECT oq.queue, tn.task_name, p.priority
        FROM open_queues oq
        CROSS JOIN open_tasks ot
        CROSS JOIN unnest(ot.names) AS tn(task_name)
        CROSS JOIN unnest(ARRAY[20, 10, 5, 1]::smallint[]) AS p(priority)
    ), free_work AS (
        -- One index range scan per open queue, open task and priority (jobs_task_claim_idx):
        -- rows of a task whose limit is full, or that this worker does not run, are never
        -- read, nor are jobs with a lock key, which have their own range of the index; so
        -- the claim reads O(max_jobs) rows per range, not the backlog. Read without locks:
        -- ranked first, then only the rows picked are locked (SKIP LOCKED, see `locked`), so
        -- a claim never holds rows it discards.
        SELECT c.*
        FROM ranges r
        CROSS JOIN LATERAL (
            SELECT j.job_id, j.queue, j.task_name, j.lock_key, j.priority, j.execution_time
            FROM {schema}.jobs j
            WHERE j.status = 'pending' AND j.queue = r.queue AND j.task_name = r.task_name
              AND (j.lock_key IS NOT NULL) IS FALSE AND j.priority = r.priority
              AND j.execution_time <= now() + make_interval(secs => lead)
              AND j.execution_time > '-infinity'  -- see queries.sql claim_jobs
            ORDER BY j.execution_time
            LIMIT max_jobs
        ) c
    ), keyed_work AS MATERIALIZED (
        -- Keyed work in due order, free keys' jobs only, read no further than `window_size`
        -- rows per range: a held key's successors cost at most the window, however many
        -- wait. Each row's key is looked up among the running jobs as it is read, and the
        -- read stops at max_jobs free ones.
        SELECT c.*
        FROM ranges r
        CROSS JOIN LATERAL (
            SELECT w.* FROM (
                SELECT j.job_id, j.queue, j.task_name, j.lock_key, j.priority,
                       j.execution_time
                FROM {schema}.jobs j
                WHERE j.status = 'pending' AND j.queue = r.queue
                  AND j.task_name = r.task_name AND j.lock_key IS NOT NULL
                  AND j.priority = r.priority
                  AND j.execution_time <= now() + make_interval(secs => lead)
                  AND j.execution_time > '-infinity'
                ORDER BY j.execution_time
                LIMIT window_size
            ) w
            WHERE NOT EXISTS (SELECT 1 FROM {schema}.jobs h
                              WHERE h.lock_key = w.lock_key AND h.status = 'running')
            LIMIT max_jobs
        ) c
    ), walk_needed AS (
        -- A range whose window was full, all but fewer than max_jobs of it held keys' jobs,
        -- may hide free keys' work due after the held keys' backlog. Only asked while a
        -- running job holds a key, and of ranges the window left short.
        SELECT 1 FROM ranges r
        WHERE EXISTS (SELECT 1 FROM {schema}.jobs h
                      WHERE h.status = 'running' AND h.lock_key IS NOT NULL)
          AND (SELECT count(*) FROM keyed_work k
               WHERE k.queue = r.queue AND k.task_name = r.task_name
                 AND k.priority = r.priority) < max_jobs
          AND EXISTS (SELECT 1 FROM {schema}.jobs j
                      WHERE j.status = 'pending' AND j.queue = r.queue
                        AND j.task_name = r.task_name AND j.lock_key IS NOT NULL
                        AND j.priority = r.priority
                        AND j.execution_time <= now() + make_interval(secs => lead)
                        AND j.execution_time > '-infinity'
                      ORDER BY j.execution_time
                      OFFSET window_size - 1 LIMIT 1)
        LIMIT 1
    ), key_walk AS (
        -- The keys of pending jobs in key order, one index probe each
        -- (jobs_lock_key_claim_idx), starting after the key the last walk stopped at
        -- (lock_key_walk) and going round to the first key after the last, each with its
        -- first due job (priority, then due time) of this worker's open queues and tasks,
        -- among the key's first 100 due jobs of each priority, unless a running job holds
        -- the key. A walk stops once max_jobs are found, after walk_limit keys, or back
        -- where it started; the next goes on from there, so every key is visited in turn.
        -- (OFFSET 0 keeps each lateral a subquery, probed once per key.)
        SELECT s.after_key AS lock_key, s.after_key AS start_key, false AS wrapped,
               0 AS depth, 0 AS found, NULL::text AS job_id, NULL::text AS queue,
               NULL::text AS task_name, NULL::smallint AS priority,
               NULL::timestamptz AS execution_time
        FROM {schema}.lock_key_walk s
        WHERE EXISTS (SELECT 1 FROM walk_needed)
        UNION ALL
        SELECT n.lock_key, w.start_key, n.wrapped, w.depth + 1,
               w.found + (h.job_id IS NOT NULL)::integer,
               h.job_id, h.queue, h.task_name, h.priority, h.execution_time
        FROM key_walk w
        CROSS JOIN LATERAL (
            SELECT (SELECT j.lock_key FROM {schema}.jobs j
                    WHERE j.status = 'pending' AND j.lock_key IS NOT NULL
                      AND j.lock_key > coalesce(w.lock_key, '')
                    ORDER BY j.lock_key LIMIT 1) AS lock_key
            OFFSET 0
        ) a
        CROSS JOIN LATERAL (
            SELECT coalesce(a.lock_key, CASE WHEN NOT w.wrapped THEN
                       (SELECT j.lock_key FROM {schema}.jobs j
                        WHERE j.status = 'pending' AND j.lock_key IS NOT NULL
                        ORDER BY j.lock_key LIMIT 1) END) AS lock_key,
                   w.wrapped OR a.lock_key IS NULL AS wrapped
            OFFSET 0
        ) n
        LEFT JOIN LATERAL (
            SELECT f.*
            FROM unnest(ARRAY[20, 10, 5, 1]::smallint[]) AS p(priority)
            CROSS JOIN LATERAL (
                SELECT j.job_id, j.queue, j.task_name, j.priority, j.execution_time
                FROM {schema}.jobs j
                WHERE j.status = 'pending' AND j.lock_key = n.lock_key
                  AND j.priority = p.priority
                  AND j.execution_time <= now() + make_interval(secs => lead)
                  AND j.execution_time > '-infinity'
                  -- Asked before the scan: a held key costs this probe, not its jobs.
                  AND NOT EXISTS (SELECT 1 FROM {schema}.jobs h
                                  WHERE h.lock_key = n.lock_key AND h.status = 'running')
                ORDER BY j.execution_time
                LIMIT 100
            ) f
            WHERE f.queue = ANY (ARRAY(SELECT oq.queue FROM open_queues oq))
              AND f.task_name = ANY (ARRAY(SELECT unnest(ot.names) FROM open_tasks ot))
            ORDER BY f.priority DESC, f.execution_time
            LIMIT 1
        ) h ON true
        WHERE w.found < max_jobs AND w.depth < walk_limit AND n.lock_key IS NOT NULL
          AND NOT (n.wrapped AND n.lock_key > coalesce(w.start_key, ''))
    ), walk_moved AS (
        -- The next walk starts after the last key this one visited.
        UPDATE {schema}.lock_key_walk s SET after_key = l.lock_key
        FROM (SELECT w.lock_key FROM key_walk w WHERE w.depth > 0
              ORDER BY w.depth DESC LIMIT 1) l
        RETURNING 1
    ), walked AS (
        SELECT w.job_id, w.queue, w.task_name, w.lock_key, w.priority, w.execution_time
        FROM key_walk w WHERE w.job_id IS NOT NULL
    ), candidates AS MATERIALIZED (
        SELECT f.job_id, f.queue, f.task_name, f.lock_key, f.priority, f.execution_time
        FROM free_work f
        UNION ALL
        SELECT k.job_id, k.queue, k.task_name, k.lock_key, k.priority, k.execution_time
        FROM keyed_work k
        UNION ALL
        SELECT w.job_id, w.queue, w.task_name, w.lock_key, w.priority, w.execution_time
        FROM walked w
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
        WHERE r.room IS NULL OR c.queue_rank <= r.room
    ), picked AS (
        SELECT c.job_id, c.priority, c.execution_time
        FROM within_queue c LEFT JOIN task_room r ON r.task_name = c.task_name
        WHERE r.room IS NULL OR c.task_rank <= r.room
        ORDER BY c.priority DESC, c.execution_time
        LIMIT max_jobs
    ), locked AS (
        -- A row a plain claim holds is skipped; one it claimed since this statement's
        -- snapshot fails the re-checked status (READ COMMITTED re-reads a locked row):
        -- the claim may take fewer than it picked, never a row that is not pending.
        SELECT j.job_id
        FROM {schema}.jobs j
        -- An array, so the primary key serves it whatever the planner guesses of `picked`.
        WHERE j.job_id = ANY (ARRAY(SELECT p.job_id FROM picked p)) AND j.status = 'pending'
        FOR UPDATE OF j SKIP LOCKED
    ), claimed AS (
        UPDATE {schema}.jobs j SET
            status = 'running', lease_owner = claim_flow_jobs.worker_id,
            attempts = j.attempts + 1,
            started_at = greatest(clock, j.execution_time), updated_at = now(),
            claimed_at = now()
        FROM locked
        WHERE j.job_id = locked.job_id
        RETURNING j.job_id, j.queue, j.task_name, j.args::text AS args, j.kwargs::text AS kwargs,
                  j.attempts, j.failures, j.max_retries, j.timeout_seconds,
                  greatest(extract(epoch FROM j.execution_time - clock), 0)::float8 AS starts_in,
                  extract(epoch FROM j.execution_time)::float8 AS due_epoch
    ), spent AS MATERIALIZED (
        -- What starting the claimed jobs costs each limit of an open queue or task, as its
        -- kind records it (a rate limit's bucket loses a token per start), and, for a
        -- limit the starts left without room, how long until time alone gives it some.
        SELECT s.*, CASE WHEN s.room - s.started < 1
                         THEN {schema}.limit_wait(s.kind, s.settings, s.after, clock) END AS wait
        FROM (SELECT l.scope, l.name, l.kind, l.settings, l.state, l.room, c.started,
                     CASE WHEN c.started > 0
                          THEN {schema}.limit_spend(l.kind, l.settings, l.state, c.started,
                                                    clock)
                          ELSE l.state END AS after
              FROM limit_rows l
              CROSS JOIN LATERAL (
                  SELECT count(*) AS started FROM claimed c
                  WHERE l.name = CASE l.scope WHEN 'queue' THEN c.queue
                                              ELSE c.task_name END) c
              WHERE NOT EXISTS (SELECT 1 FROM queue_room r
                                WHERE l.scope = 'queue' AND r.queue = l.name
                                  AND (r.paused OR r.problem IS NOT NULL))
                AND NOT EXISTS (SELECT 1 FROM task_room r
                                WHERE l.scope = 'task' AND r.task_name = l.name
                                  AND r.problem IS NOT NULL)
             ) s
    ), recorded AS (
        -- Only state that changed is written: a limit that nothing started under, or a
        -- kind that keeps no state, is not churned by every claim. Nor is a limit whose
        -- settings set_limit() changed since this statement read them (which reset it).
        UPDATE {schema}.limits l SET state = s.after
        FROM spent s
        WHERE (l.scope, l.name, l.kind) = (s.scope, s.name, s.kind)
          AND l.settings = s.settings AND s.after IS DISTINCT FROM s.state
        RETURNING 1
    )
    SELECT 'claimed'::text, c.job_id, c.task_name, c.args, c.kwargs, c.attempts, c.failures,
           c.max_retries, c.timeout_seconds, c.starts_in, c.due_epoch, NULL::boolean,
           NULL::float8, NULL::text
    FROM claimed c
    UNION ALL
    SELECT 'flow'::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           EXISTS (SELECT 1 FROM queue_room r
                   WHERE (NOT r.paused
                          AND EXISTS (SELECT 1 FROM limit_rows l
                                      WHERE l.scope = 'queue' AND l.name = r.queue))
                      OR r.problem IS NOT NULL)
           OR EXISTS (SELECT 1 FROM task_room)
           OR EXISTS (SELECT 1 FROM candidates c WHERE c.lock_key IS NOT NULL)
           OR EXISTS (SELECT 1 FROM unnest(queue_names) AS qn(queue), {schema}.jobs j
                      WHERE j.status = 'pending' AND j.lock_key IS NOT NULL
                        AND j.queue = qn.queue AND j.execution_time <= now()),
           (SELECT min(s.wait) FROM spent s),
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
