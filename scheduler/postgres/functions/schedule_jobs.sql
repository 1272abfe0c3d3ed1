-- Enqueue a batch, all or nothing; returns, in input order, each job's id or, for a job
-- whose unique key an unfinished job holds, that job's id ('ignore', 'replace').
-- `conflict` on an existing id: 'raise' (23505), 'ignore' (keep it, change nothing, return
-- its id) or 'replace' (overwrite a pending or finished job in place: pending again,
-- failures and lost_leases reset, attempts keep counting; a running job is never touched:
-- 55006). On a held unique key, what the header of migrations/0010_sql_flow_columns.sql
-- says. Exactly the policies of Scheduler.schedule_many(). Ids and unique keys must each be
-- distinct within the batch.
CREATE OR REPLACE FUNCTION {schema}.schedule_jobs(
    jobs {schema}.job_request[], conflict text DEFAULT 'raise'
) RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    policy text := lower(conflict);
    checked {schema}.job_request[] := '{}';
    request {schema}.job_request;
    n integer := 0;
    kept text;
    duplicate text;
    written text[];
    ids text[];
    refused text;
    holder text;
    violated text;
BEGIN
    IF policy IS NULL OR policy NOT IN ('raise', 'ignore', 'replace') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'conflict must be ''raise'', ''ignore'' or ''replace'', got %s',
            coalesce(quote_literal(conflict), 'NULL'));
    END IF;
    IF jobs IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'jobs must be an array of job_request (empty for none), got NULL';
    END IF;
    FOREACH request IN ARRAY jobs LOOP
        n := n + 1;
        -- A one-job batch is schedule_job(): its messages need no position.
        checked := checked || {schema}.check_job_request(
            request, CASE WHEN cardinality(jobs) > 1 THEN format('jobs[%s]', n) END);
    END LOOP;
    IF cardinality(checked) = 0 THEN
        RETURN '{}';
    END IF;
    SELECT d.key INTO duplicate FROM (
        SELECT 'job_id ' || quote_literal(c.job_id) AS key FROM unnest(checked) AS c
        UNION ALL
        SELECT 'unique_key ' || quote_literal(c.unique_key) FROM unnest(checked) AS c
        WHERE c.unique_key IS NOT NULL
    ) d GROUP BY d.key HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('%s appears twice in one batch', duplicate);
    END IF;
    ids := ARRAY(SELECT c.job_id FROM unnest(checked) AS c);

    IF policy = 'replace' THEN
        -- Jobs without a unique key replace by id, as in 0005.
        WITH w AS (
            INSERT INTO {schema}.jobs AS j
                (job_id, task_name, args, kwargs, priority, execution_time, max_retries,
                 timeout_seconds, queue, lock_key, unique_key)
            SELECT c.job_id, c.task_name, c.args, c.kwargs, c.priority, c.run_at,
                   c.max_retries, extract(epoch FROM c.timeout)::float8, c.queue, c.lock_key,
                   NULL
            FROM unnest(checked) AS c WHERE c.unique_key IS NULL
            ON CONFLICT (job_id) DO UPDATE SET
                task_name = excluded.task_name, args = excluded.args, kwargs = excluded.kwargs,
                priority = excluded.priority, execution_time = excluded.execution_time,
                max_retries = excluded.max_retries, timeout_seconds = excluded.timeout_seconds,
                queue = excluded.queue, lock_key = excluded.lock_key, unique_key = NULL,
                status = 'pending', failures = 0, lost_leases = 0, last_error = NULL,
                cancel_requested_at = NULL,
                started_at = NULL, finished_at = NULL, updated_at = now()
            WHERE j.status <> 'running'
            RETURNING j.job_id
        )
        SELECT array_agg(w.job_id) INTO written FROM w;
        SELECT c.job_id INTO refused FROM unnest(checked) WITH ORDINALITY AS c
        WHERE c.unique_key IS NULL AND NOT (c.job_id = ANY (coalesce(written, '{}')))
        ORDER BY c.ordinality LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION USING ERRCODE = '55006', MESSAGE = format(
                'job %L is running, so nothing was replaced; cancel it first (cancel_job)'
                ' or schedule under another id', refused);
        END IF;
        -- Jobs with one replace the unfinished job holding the key, or are inserted.
        n := 0;
        FOREACH request IN ARRAY checked LOOP
            n := n + 1;
            CONTINUE WHEN request.unique_key IS NULL;
            BEGIN
                INSERT INTO {schema}.jobs AS j
                    (job_id, task_name, args, kwargs, priority, execution_time, max_retries,
                     timeout_seconds, queue, lock_key, unique_key)
                VALUES (request.job_id, request.task_name, request.args, request.kwargs,
                        request.priority, request.run_at, request.max_retries,
                        extract(epoch FROM request.timeout)::float8, request.queue,
                        request.lock_key, request.unique_key)
                ON CONFLICT (unique_key) WHERE status IN ('pending', 'blocked', 'running')
                                          AND unique_key IS NOT NULL
                DO UPDATE SET
                    task_name = excluded.task_name, args = excluded.args,
                    kwargs = excluded.kwargs, priority = excluded.priority,
                    execution_time = excluded.execution_time,
                    max_retries = excluded.max_retries,
                    timeout_seconds = excluded.timeout_seconds, queue = excluded.queue,
                    lock_key = excluded.lock_key, failures = 0, lost_leases = 0,
                    last_error = NULL, cancel_requested_at = NULL, updated_at = now()
                WHERE j.status IN ('pending', 'blocked')
                RETURNING j.job_id INTO kept;
            EXCEPTION WHEN unique_violation THEN
                GET STACKED DIAGNOSTICS violated = CONSTRAINT_NAME;
                IF violated IS DISTINCT FROM 'jobs_pkey' THEN
                    RAISE;
                END IF;
                RAISE EXCEPTION USING ERRCODE = '23505', CONSTRAINT = 'jobs_pkey',
                    MESSAGE = format(
                        'a job with id %L already exists and does not hold unique_key %L;'
                        ' replace with a unique key replaces the job holding the key, so'
                        ' schedule it under another job_id (or none)',
                        request.job_id, request.unique_key);
            END;
            IF NOT FOUND THEN
                SELECT h.job_id INTO holder FROM {schema}.jobs h
                WHERE h.unique_key = request.unique_key AND h.status = 'running';
                RAISE EXCEPTION USING ERRCODE = '55006', MESSAGE = format(
                    'job %L holds unique_key %L and is running, so nothing was replaced;'
                    ' cancel it first (cancel_job) or let it finish', holder,
                    request.unique_key);
            END IF;
            ids[n] := kept;
        END LOOP;
        RETURN ids;
    END IF;

    -- 'raise' and 'ignore': insert what conflicts with nothing (neither an id nor a held
    -- unique key), then decide on the rest.
    WITH w AS (
        INSERT INTO {schema}.jobs AS j
            (job_id, task_name, args, kwargs, priority, execution_time, max_retries,
             timeout_seconds, queue, lock_key, unique_key)
        SELECT c.job_id, c.task_name, c.args, c.kwargs, c.priority, c.run_at,
               c.max_retries, extract(epoch FROM c.timeout)::float8, c.queue, c.lock_key,
               c.unique_key
        FROM unnest(checked) AS c
        ON CONFLICT DO NOTHING
        RETURNING j.job_id
    )
    SELECT array_agg(w.job_id) INTO written FROM w;
    IF coalesce(cardinality(written), 0) = cardinality(checked) THEN
        RETURN ids;
    END IF;
    IF policy = 'ignore' THEN
        -- The holder's id for a held key; else (the id exists) the id asked for.
        RETURN ARRAY(
            SELECT coalesce(h.job_id, c.job_id)
            FROM unnest(checked) WITH ORDINALITY AS c
            LEFT JOIN {schema}.jobs h
                ON h.unique_key = c.unique_key AND h.status IN ('pending', 'blocked', 'running')
               AND NOT (c.job_id = ANY (coalesce(written, '{}')))
            ORDER BY c.ordinality);
    END IF;
    SELECT c.job_id, c.unique_key, h.job_id INTO refused, duplicate, holder
    FROM unnest(checked) WITH ORDINALITY AS c
    LEFT JOIN {schema}.jobs h
        ON h.unique_key = c.unique_key AND h.status IN ('pending', 'blocked', 'running')
    WHERE NOT (c.job_id = ANY (coalesce(written, '{}')))
    ORDER BY c.ordinality LIMIT 1;
    IF holder IS DISTINCT FROM refused AND holder IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '23505', CONSTRAINT = 'jobs_unique_key_idx',
            MESSAGE = format(
                'job %L already holds unique_key %L (it is pending, blocked or running);'
                ' pass conflict => ''ignore'' to keep it (its id is returned) or'
                ' ''replace'' to overwrite it while it is pending', holder, duplicate);
    END IF;
    RAISE EXCEPTION USING ERRCODE = '23505', MESSAGE = format(
        'a job with id %L already exists; pass conflict => ''ignore'' to keep it or'
        ' ''replace'' to overwrite it', refused);
END
$$;
