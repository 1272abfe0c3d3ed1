-- The SQL-level API: functions with the Python API's semantics and validation (for other
-- languages, triggers, psql), a language-neutral worker protocol fenced like the Python
-- engine, monitoring views, and helpers that grant least-privilege roles.
--
-- Every function is SECURITY DEFINER with a fixed search_path, so a role that may only
-- EXECUTE them (a producer) writes jobs without any right on the tables; EXECUTE is revoked
-- from PUBLIC at the end and granted by grant_producer_role() / grant_runtime_role().
-- Errors are raised with a SQLSTATE a driver can map:
--   22023 invalid_parameter_value       bad input (nothing is written)
--   54000 program_limit_exceeded        arguments over the payload cap
--   23505 unique_violation              conflict 'raise' met an existing job id
--   55006 object_in_use                 conflict 'replace' met a running job
--   55000 object_not_in_prerequisite_state  retry of a job that is not failed/cancelled;
--                                       a claim by a worker whose lease is not live
--   P0002 no_data_found                 retry of an unknown job

-- Schedules added from SQL wait for a replica to compute their first fire time (see
-- add_schedule below); one whose trigger Python cannot build is paused with the reason.
ALTER TABLE {schema}.schedules
    ADD COLUMN needs_first_fire boolean NOT NULL DEFAULT false,
    ADD COLUMN trigger_error    text;

CREATE INDEX schedules_unplanned_idx ON {schema}.schedules (schedule_id)
    WHERE needs_first_fire AND NOT paused;

-- One job to schedule: the fields of schedule_job(), for schedule_jobs() batches. Build
-- values with job_request(task_name, ...), which fills the defaults.
CREATE TYPE {schema}.job_request AS (
    task_name   text,
    args        jsonb,
    kwargs      jsonb,
    run_at      timestamptz,
    delay       interval,
    job_id      text,
    priority    integer,
    max_retries integer,
    timeout     interval
);

CREATE FUNCTION {schema}.job_request(
    task_name   text,
    args        jsonb DEFAULT '[]',
    kwargs      jsonb DEFAULT '{}',
    run_at      timestamptz DEFAULT NULL,
    delay       interval DEFAULT NULL,
    job_id      text DEFAULT NULL,
    priority    integer DEFAULT 5,
    max_retries integer DEFAULT 0,
    timeout     interval DEFAULT NULL
) RETURNS {schema}.job_request
LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW($1, $2, $3, $4, $5, $6, $7, $8, $9)::{schema}.job_request
$$;

-- The checks of Scheduler.schedule(), as SQL can make them; returns the request with its
-- defaults filled in (a generated id, the due time). `label` prefixes messages in batches.
-- The payload cap is the setting scheduler.max_payload_bytes (default 65536, the Python
-- default), measured on jsonb's text form.
CREATE FUNCTION {schema}.check_job_request(request {schema}.job_request, label text DEFAULT NULL)
RETURNS {schema}.job_request
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    prefix text := CASE WHEN label IS NULL THEN '' ELSE label || ': ' END;
    max_bytes integer := coalesce(
        nullif(current_setting('scheduler.max_payload_bytes', true), '')::integer, 65536);
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
            ' elsewhere (a table, object storage) and pass its key, or raise the setting'
            ' scheduler.max_payload_bytes', size, max_bytes);
    END IF;
    IF request.run_at IS NOT NULL AND request.delay IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = prefix || 'pass either run_at or delay, not both';
    END IF;
    IF request.run_at IS NOT NULL AND NOT isfinite(request.run_at) THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'run_at must be a finite time, got %s; to park a job, schedule it far ahead or'
            ' cancel it', request.run_at);
    END IF;
    IF request.delay < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'delay must be >= 0, got %s; for a time in the past use run_at (due at once)',
            request.delay);
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
    IF request.timeout <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'timeout must be > 0 (or NULL for none), got %s', request.timeout);
    END IF;
    RETURN request;
END
$$;

-- Enqueue a batch, all or nothing; returns the ids in input order. `conflict` on an
-- existing id: 'raise' (23505), 'ignore' (keep it, change nothing, return its id) or
-- 'replace' (overwrite a pending or finished job in place: pending again, failures and
-- lost_leases reset, attempts keep counting; a running job is never touched: 55006).
-- Exactly the policies of Scheduler.schedule_many().
CREATE FUNCTION {schema}.schedule_jobs(
    jobs {schema}.job_request[], conflict text DEFAULT 'raise'
) RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    policy text := lower(conflict);
    request {schema}.job_request;
    checked {schema}.job_request[] := '{}';
    count_in integer := 0;
    duplicate text;
    written text[];
    refused text;
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
        count_in := count_in + 1;
        -- A one-job batch is schedule_job(): its messages need no position.
        checked := checked || {schema}.check_job_request(
            request, CASE WHEN cardinality(jobs) > 1 THEN format('jobs[%s]', count_in) END);
    END LOOP;
    IF count_in = 0 THEN
        RETURN '{}';
    END IF;
    SELECT c.job_id INTO duplicate FROM unnest(checked) AS c
    GROUP BY c.job_id HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('job_id %L appears twice in one batch', duplicate);
    END IF;

    IF policy = 'replace' THEN
        WITH w AS (
            INSERT INTO {schema}.jobs AS j
                (job_id, task_name, args, kwargs, priority, execution_time, max_retries,
                 timeout_seconds)
            SELECT c.job_id, c.task_name, c.args, c.kwargs, c.priority, c.run_at,
                   c.max_retries, extract(epoch FROM c.timeout)::float8
            FROM unnest(checked) AS c
            ON CONFLICT (job_id) DO UPDATE SET
                task_name = excluded.task_name, args = excluded.args, kwargs = excluded.kwargs,
                priority = excluded.priority, execution_time = excluded.execution_time,
                max_retries = excluded.max_retries, timeout_seconds = excluded.timeout_seconds,
                status = 'pending', failures = 0, lost_leases = 0, last_error = NULL,
                cancel_requested_at = NULL,
                started_at = NULL, finished_at = NULL, updated_at = now()
            WHERE j.status <> 'running'
            RETURNING j.job_id
        )
        SELECT array_agg(w.job_id) INTO written FROM w;
    ELSE
        WITH w AS (
            INSERT INTO {schema}.jobs AS j
                (job_id, task_name, args, kwargs, priority, execution_time, max_retries,
                 timeout_seconds)
            SELECT c.job_id, c.task_name, c.args, c.kwargs, c.priority, c.run_at,
                   c.max_retries, extract(epoch FROM c.timeout)::float8
            FROM unnest(checked) AS c
            ON CONFLICT (job_id) DO NOTHING
            RETURNING j.job_id
        )
        SELECT array_agg(w.job_id) INTO written FROM w;
    END IF;

    IF policy <> 'ignore' AND coalesce(cardinality(written), 0) < count_in THEN
        SELECT c.job_id INTO refused FROM unnest(checked) WITH ORDINALITY AS c
        WHERE NOT (c.job_id = ANY (coalesce(written, '{}')))
        ORDER BY c.ordinality LIMIT 1;
        IF policy = 'replace' THEN
            RAISE EXCEPTION USING ERRCODE = '55006', MESSAGE = format(
                'job %L is running, so nothing was replaced; cancel it first (cancel_job)'
                ' or schedule under another id', refused);
        END IF;
        RAISE EXCEPTION USING ERRCODE = '23505', MESSAGE = format(
            'a job with id %L already exists; pass conflict => ''ignore'' to keep it or'
            ' ''replace'' to overwrite it', refused);
    END IF;
    RETURN ARRAY(SELECT c.job_id FROM unnest(checked) WITH ORDINALITY AS c ORDER BY c.ordinality);
END
$$;

-- Enqueue one job; returns its id. With neither run_at nor delay it is due now (the
-- database's now). See schedule_jobs() for `conflict`.
CREATE FUNCTION {schema}.schedule_job(
    task_name   text,
    args        jsonb DEFAULT '[]',
    kwargs      jsonb DEFAULT '{}',
    run_at      timestamptz DEFAULT NULL,
    delay       interval DEFAULT NULL,
    job_id      text DEFAULT NULL,
    priority    integer DEFAULT 5,
    max_retries integer DEFAULT 0,
    timeout     interval DEFAULT NULL,
    conflict    text DEFAULT 'raise'
) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT ({schema}.schedule_jobs(
        ARRAY[ROW($1, $2, $3, $4, $5, $6, $7, $8, $9)::{schema}.job_request], $10))[1]
$$;

-- Cancel a job: a pending one becomes cancelled at once and never starts ('cancelled'); a
-- running one gets cancel_requested_at, its worker is notified (the trigger of 0001) and
-- records the outcome ('cancel_requested'). NULL: no such job, or it already finished.
CREATE FUNCTION {schema}.cancel_job(job_id text) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH previous AS (
        SELECT j.job_id, j.status FROM {schema}.jobs j WHERE j.job_id = $1 FOR UPDATE
    ), changed AS (
        UPDATE {schema}.jobs j SET
            status = CASE WHEN p.status = 'pending' THEN 'cancelled' ELSE j.status END,
            finished_at = CASE WHEN p.status = 'pending' THEN now() ELSE j.finished_at END,
            cancel_requested_at = coalesce(j.cancel_requested_at, now()),
            updated_at = now()
        FROM previous p
        WHERE j.job_id = p.job_id AND p.status IN ('pending', 'running')
        RETURNING p.status
    )
    SELECT CASE status WHEN 'pending' THEN 'cancelled' ELSE 'cancel_requested' END
    FROM changed
$$;

-- Run a failed or cancelled job again: pending at run_at, after delay, or now. Its budgets
-- start afresh (failures and lost_leases to 0, so it gets max_retries and orphan_retries
-- again, like REPLACE); attempts keep counting (attempt numbers never repeat); last_error
-- stays until the next attempt ends, so the reason of the retry remains visible.
-- Returns 'pending'. P0002 for an unknown job, 55000 for any other status.
CREATE FUNCTION {schema}.retry_job(
    job_id text, run_at timestamptz DEFAULT NULL, delay interval DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    current_status text;
BEGIN
    IF run_at IS NOT NULL AND delay IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pass either run_at or delay, not both';
    END IF;
    IF run_at IS NOT NULL AND NOT isfinite(run_at) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('run_at must be a finite time, got %s', run_at);
    END IF;
    IF delay < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('delay must be >= 0, got %s', delay);
    END IF;
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
    UPDATE {schema}.jobs j SET
        status = 'pending', failures = 0, lost_leases = 0, cancel_requested_at = NULL,
        execution_time = coalesce(retry_job.run_at, now() + coalesce(retry_job.delay, '0')),
        started_at = NULL, finished_at = NULL, updated_at = now()
    WHERE j.job_id = retry_job.job_id;
    RETURN 'pending';
END
$$;

-- ---------------------------------------------------------------------------------------
-- The worker protocol, for workers written in any language (pgjobs' consume/ack/nack).
-- A worker registers with a lease, extends it with worker_heartbeat() well within the
-- lease, claims due jobs, and ends each attempt with complete_job(), fail_job() or
-- release_job() naming (worker_id, job_id, attempt): the fencing token. A write whose
-- token is stale (the job was reaped and claimed again) changes nothing and returns
-- false/NULL. A worker that stops heartbeating loses its lease; any Python replica's
-- reaper returns its jobs to pending as lost leases. Cancel requests arrive on the
-- schema's NOTIFY channel ('cancel <job_id>') and in cancel_requested_jobs().

-- A new worker identity; returns its id. `tasks` are the task names it runs (replicas use
-- them to know a task has a live worker). hostname and pid are for monitoring.
CREATE FUNCTION {schema}.register_worker(
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
    IF lease IS NULL OR lease <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('lease must be > 0, got %s', coalesce(lease::text, 'NULL'));
    END IF;
    INSERT INTO {schema}.workers AS w (worker_id, hostname, pid, tasks, lease_expires_at)
    VALUES (new_id, coalesce(hostname, host(inet_client_addr()), 'local'), coalesce(pid, 0),
            tasks, now() + lease);
    RETURN new_id;
END
$$;

-- Extend a live lease by `lease` from now; false when the lease already lapsed (it is never
-- revived): the worker must stop the jobs it runs, their rows are a peer's to reap, and
-- register again under a new id.
CREATE FUNCTION {schema}.worker_heartbeat(worker_id uuid, lease interval DEFAULT '30 seconds')
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF lease IS NULL OR lease <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('lease must be > 0, got %s', coalesce(lease::text, 'NULL'));
    END IF;
    UPDATE {schema}.workers w SET lease_expires_at = now() + lease, heartbeat_at = now()
    WHERE w.worker_id = worker_heartbeat.worker_id AND w.lease_expires_at > now();
    RETURN FOUND;
END
$$;

-- Take up to max_jobs due pending jobs of `task_names` (default: the worker's registered
-- tasks), highest priority then earliest due first, skipping rows others are claiming;
-- each becomes running under this worker with attempt = attempts + 1. Raises 55000 when
-- the worker's lease is not live (checked in this transaction, by the database clock).
CREATE FUNCTION {schema}.claim_jobs(
    worker_id uuid, task_names text[] DEFAULT NULL, max_jobs integer DEFAULT 1
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
    SELECT w.tasks INTO registered FROM {schema}.workers w
    WHERE w.worker_id = claim_jobs.worker_id AND w.lease_expires_at > now();
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format(
            'worker %s has no live lease (never registered, expired or unregistered): stop'
            ' the jobs it runs and register a new worker', claim_jobs.worker_id);
    END IF;
    RETURN QUERY
    WITH picked AS (
        SELECT c.job_id
        FROM unnest(ARRAY[20, 10, 5, 1]::smallint[]) AS p(priority)
        CROSS JOIN LATERAL (
            SELECT j.job_id, j.priority, j.execution_time
            FROM {schema}.jobs j
            WHERE j.status = 'pending' AND j.priority = p.priority
              AND j.execution_time <= now()
              AND j.task_name = ANY (coalesce(claim_jobs.task_names, registered))
            ORDER BY j.execution_time
            LIMIT claim_jobs.max_jobs
            FOR UPDATE SKIP LOCKED
        ) c
        ORDER BY c.priority DESC, c.execution_time
        LIMIT claim_jobs.max_jobs
    ), claimed AS (
        UPDATE {schema}.jobs j SET
            status = 'running', lease_owner = claim_jobs.worker_id, attempts = j.attempts + 1,
            started_at = now(), updated_at = now()
        FROM picked
        WHERE j.job_id = picked.job_id
        RETURNING j.job_id, j.attempts, j.task_name, j.args, j.kwargs, j.priority,
                  j.max_retries, j.failures, j.timeout_seconds, j.execution_time
    )
    SELECT * FROM claimed ORDER BY claimed.priority DESC, claimed.execution_time;
END
$$;

-- Record a success. Fenced: true only when this worker still holds this attempt.
CREATE FUNCTION {schema}.complete_job(worker_id uuid, job_id text, attempt integer)
RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH done AS (
        UPDATE {schema}.jobs j SET
            status = 'succeeded', lease_owner = NULL, last_error = NULL,
            finished_at = now(), updated_at = now()
        WHERE j.job_id = $2 AND j.lease_owner = $1 AND j.attempts = $3 AND j.status = 'running'
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM done)
$$;

-- Record a failed attempt: it spends one of max_retries, exactly like the Python engine.
-- Back to pending at retry_at (default now) while failures stay within max_retries and
-- nobody asked to cancel, else failed. Returns the new status, or NULL when fenced (a
-- stale token: nothing changed). The error is kept, cut to 8,000 characters.
CREATE FUNCTION {schema}.fail_job(
    worker_id uuid, job_id text, attempt integer, error text,
    retry_at timestamptz DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    new_status text;
BEGIN
    IF retry_at IS NOT NULL AND NOT isfinite(retry_at) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('retry_at must be a finite time, got %s', retry_at);
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
    RETURNING j.status INTO new_status;
    RETURN new_status;
END
$$;

-- Give an attempt back without spending a budget (a graceful stop): pending at once, or
-- cancelled when a cancel was requested. Fenced; true when it changed the job.
CREATE FUNCTION {schema}.release_job(
    worker_id uuid, job_id text, attempt integer, reason text DEFAULT NULL
) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH released AS (
        UPDATE {schema}.jobs j SET
            status = CASE WHEN j.cancel_requested_at IS NULL THEN 'pending' ELSE 'cancelled' END,
            finished_at = CASE WHEN j.cancel_requested_at IS NULL THEN NULL ELSE now() END,
            started_at = CASE WHEN j.cancel_requested_at IS NULL THEN NULL ELSE j.started_at END,
            lease_owner = NULL, last_error = left($4, 8000), updated_at = now()
        WHERE j.job_id = $2 AND j.lease_owner = $1 AND j.attempts = $3 AND j.status = 'running'
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM released)
$$;

-- The attempts this worker holds whose cancellation was requested: stop them and record
-- the outcome (release_job() records a requested cancel as cancelled).
CREATE FUNCTION {schema}.cancel_requested_jobs(worker_id uuid)
RETURNS TABLE (job_id text, attempt integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT j.job_id, j.attempts FROM {schema}.jobs j
    WHERE j.lease_owner = $1 AND j.status = 'running' AND j.cancel_requested_at IS NOT NULL
    ORDER BY j.job_id
$$;

-- A worker leaving cleanly: its running attempts go back to pending at once (no budget
-- spent; a requested cancel wins) and its row is deleted. Returns how many it released.
CREATE FUNCTION {schema}.unregister_worker(worker_id uuid) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH released AS (
        UPDATE {schema}.jobs j SET
            status = CASE WHEN j.cancel_requested_at IS NULL THEN 'pending' ELSE 'cancelled' END,
            finished_at = CASE WHEN j.cancel_requested_at IS NULL THEN NULL ELSE now() END,
            started_at = CASE WHEN j.cancel_requested_at IS NULL THEN NULL ELSE j.started_at END,
            lease_owner = NULL, last_error = 'released: its worker unregistered',
            updated_at = now()
        WHERE j.lease_owner = $1 AND j.status = 'running'
        RETURNING 1
    ), gone AS (
        DELETE FROM {schema}.workers w WHERE w.worker_id = $1 RETURNING 1
    )
    SELECT count(*)::integer FROM released
$$;

-- ---------------------------------------------------------------------------------------
-- Monitoring views (psql, Grafana, postgres_exporter). Times are the database clock's.

-- Per task: what waits, what runs, what ended in the last hour, and the lag (how long the
-- oldest due job has waited). Reads only unfinished rows and those finished in the hour.
CREATE VIEW {schema}.task_stats AS
SELECT j.task_name,
       count(*) FILTER (WHERE j.status = 'pending' AND j.execution_time <= now()) AS due_now,
       count(*) FILTER (WHERE j.status = 'pending' AND j.execution_time > now()) AS future,
       count(*) FILTER (WHERE j.status = 'running') AS running,
       count(*) FILTER (WHERE j.status = 'succeeded') AS succeeded_last_hour,
       count(*) FILTER (WHERE j.status = 'failed') AS failed_last_hour,
       count(*) FILTER (WHERE j.status = 'cancelled') AS cancelled_last_hour,
       coalesce(extract(epoch FROM now() - min(j.execution_time)
                FILTER (WHERE j.status = 'pending' AND j.execution_time <= now())), 0)::float8
           AS oldest_due_seconds
FROM {schema}.jobs j
WHERE j.status IN ('pending', 'running')
   OR (j.status IN ('succeeded', 'failed', 'cancelled')
       AND j.finished_at > now() - interval '1 hour')
GROUP BY j.task_name;

-- Running attempts with the worker that holds them and for how long.
CREATE VIEW {schema}.running_jobs AS
SELECT j.job_id, j.task_name, j.attempts AS attempt, j.lease_owner AS worker_id,
       w.hostname, w.pid, j.started_at, now() - j.started_at AS runtime,
       w.lease_expires_at, j.cancel_requested_at
FROM {schema}.jobs j
LEFT JOIN {schema}.workers w ON w.worker_id = j.lease_owner
WHERE j.status = 'running';

-- Running rows whose worker's lease lapsed (or whose worker row is gone), not reaped yet:
-- a reaper runs every reap_interval on every replica, so rows that stay here for long mean
-- no replica is reaping.
CREATE VIEW {schema}.stalled_jobs AS
SELECT j.job_id, j.task_name, j.attempts AS attempt, j.lease_owner AS worker_id,
       w.hostname, w.lease_expires_at,
       now() - coalesce(w.lease_expires_at, j.updated_at) AS stalled_for
FROM {schema}.jobs j
LEFT JOIN {schema}.workers w ON w.worker_id = j.lease_owner
WHERE j.status = 'running' AND (w.worker_id IS NULL OR w.lease_expires_at <= now());

-- Jobs that ended failed in the last 24 hours, newest first, with their error and budgets.
CREATE VIEW {schema}.recent_failures AS
SELECT j.job_id, j.task_name, j.finished_at, j.last_error, j.attempts, j.failures,
       j.lost_leases, j.max_retries, j.schedule_id
FROM {schema}.jobs j
WHERE j.status = 'failed' AND j.finished_at > now() - interval '24 hours'
ORDER BY j.finished_at DESC;

-- Recurring schedules with their next fire time and unfinished jobs.
CREATE VIEW {schema}.schedule_status AS
SELECT s.schedule_id, s.task_name, s.trigger, s.paused, s.next_fire_time,
       s.next_fire_time - now() AS next_fire_in, s.last_fire_time, s.trigger_error,
       (SELECT count(*) FROM {schema}.jobs j
        WHERE j.schedule_id = s.schedule_id AND j.status IN ('pending', 'running'))
           AS unfinished_jobs
FROM {schema}.schedules s;

-- Workers whose lease is live, with how many attempts each holds.
CREATE VIEW {schema}.live_workers AS
SELECT w.worker_id, w.hostname, w.pid, w.tasks, w.started_at, w.heartbeat_at,
       w.lease_expires_at, w.lease_expires_at - now() AS lease_left,
       (SELECT count(*) FROM {schema}.jobs j
        WHERE j.lease_owner = w.worker_id AND j.status = 'running') AS running_jobs
FROM {schema}.workers w
WHERE w.lease_expires_at > now();

-- ---------------------------------------------------------------------------------------
-- Recurring schedules from SQL. SQL cannot compute cron fire times the way Python does
-- (croniter, zoneinfo, DST), so a schedule added here is stored with its trigger and
-- `needs_first_fire`; the first replica whose ticker sees it computes the next fire time
-- from the database clock or, if Python cannot build the trigger (an expression croniter
-- refuses, a zone zoneinfo lacks), pauses it and records why in `trigger_error`, shown by
-- schedule_status and get_schedule().

-- A schedule waiting for its first fire time wakes the tickers at once.
CREATE OR REPLACE FUNCTION {schema}.notify_schedules() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    next_fire timestamptz;
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE needs_first_fire AND NOT paused) THEN
        PERFORM pg_notify(TG_ARGV[0], 'schedule 0');
        RETURN NULL;
    END IF;
    SELECT min(next_fire_time) INTO next_fire FROM new_rows WHERE NOT paused;
    IF next_fire IS NOT NULL THEN
        PERFORM pg_notify(TG_ARGV[0],
            'schedule ' || extract(epoch FROM next_fire - clock_timestamp())::text);
    END IF;
    RETURN NULL;
END
$$;

-- Add a recurring schedule of a cron expression (5 fields, or 6 with seconds first, in
-- `timezone`) or of an interval (`every`, elapsed time on a grid anchored at the Unix
-- epoch). The options mean what Scheduler.add_schedule()'s do; `conflict` on an existing
-- id: 'raise' (23505), 'ignore' (keep it), 'replace' (overwrite the definition; a changed
-- trigger gets a new first fire time; the paused state stays). Returns the schedule id.
CREATE FUNCTION {schema}.add_schedule(
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
        IF every <= interval '0' THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = format('every must be a positive interval, got %s', every);
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
    IF misfire_grace <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'misfire_grace must be > 0 (or NULL for no limit), got %s', misfire_grace);
    END IF;
    IF max_running < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'max_running must be >= 1 (or NULL for no limit), got %s', max_running);
    END IF;
    IF jitter < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('jitter must be >= 0, got %s', jitter);
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

-- Stop a schedule firing on every replica. False: no such schedule.
CREATE FUNCTION {schema}.pause_schedule(schedule_id text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH paused AS (
        UPDATE {schema}.schedules s SET paused = true, updated_at = now()
        WHERE s.schedule_id = pause_schedule.schedule_id RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM paused)
$$;

-- Fire again from the next slot after now (a replica computes it): slots that passed while
-- paused do not run. False: no such schedule.
CREATE FUNCTION {schema}.resume_schedule(schedule_id text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH resumed AS (
        UPDATE {schema}.schedules s SET
            paused = false, needs_first_fire = true, trigger_error = NULL,
            updated_at = now()
        WHERE s.schedule_id = resume_schedule.schedule_id RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM resumed)
$$;

-- Delete a schedule; jobs it already fired stay. False: no such schedule.
CREATE FUNCTION {schema}.remove_schedule(schedule_id text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH removed AS (
        DELETE FROM {schema}.schedules s
        WHERE s.schedule_id = remove_schedule.schedule_id RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM removed)
$$;

-- ---------------------------------------------------------------------------------------
-- Least privilege. The owner (the role that runs migrations) calls these to grant existing
-- roles their share; run them again after a migration adds functions or views.

-- Replicas and foreign workers: DML on the tables (no DDL), every API function, the views.
CREATE FUNCTION {schema}.grant_runtime_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    grantee text := quote_ident(role_name);
BEGIN
    EXECUTE 'GRANT USAGE ON SCHEMA {schema} TO ' || grantee;
    EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.jobs, {schema}.workers,'
            ' {schema}.schedules TO ' || grantee;
    EXECUTE 'GRANT SELECT ON {schema}.schema_migrations, {schema}.task_stats,'
            ' {schema}.running_jobs, {schema}.stalled_jobs, {schema}.recent_failures,'
            ' {schema}.schedule_status, {schema}.live_workers TO ' || grantee;
    EXECUTE 'GRANT EXECUTE ON FUNCTION {schema}.job_request, {schema}.check_job_request,'
            ' {schema}.schedule_jobs, {schema}.schedule_job, {schema}.cancel_job,'
            ' {schema}.retry_job, {schema}.register_worker, {schema}.worker_heartbeat,'
            ' {schema}.claim_jobs, {schema}.complete_job, {schema}.fail_job,'
            ' {schema}.release_job, {schema}.cancel_requested_jobs,'
            ' {schema}.unregister_worker, {schema}.add_schedule, {schema}.pause_schedule,'
            ' {schema}.resume_schedule, {schema}.remove_schedule TO ' || grantee;
END
$$;

-- Producers (web apps, other services): schedule and cancel through the functions and read
-- the views; no right on any table, so they cannot rewrite a job or claim one.
CREATE FUNCTION {schema}.grant_producer_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    grantee text := quote_ident(role_name);
BEGIN
    EXECUTE 'GRANT USAGE ON SCHEMA {schema} TO ' || grantee;
    EXECUTE 'GRANT SELECT ON {schema}.task_stats, {schema}.running_jobs,'
            ' {schema}.stalled_jobs, {schema}.recent_failures, {schema}.schedule_status,'
            ' {schema}.live_workers TO ' || grantee;
    EXECUTE 'GRANT EXECUTE ON FUNCTION {schema}.job_request, {schema}.check_job_request,'
            ' {schema}.schedule_jobs, {schema}.schedule_job, {schema}.cancel_job,'
            ' {schema}.add_schedule, {schema}.pause_schedule, {schema}.resume_schedule,'
            ' {schema}.remove_schedule TO ' || grantee;
END
$$;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} FROM PUBLIC;
-- Pure and reading no table: every role that inspects jobs needs it.
GRANT EXECUTE ON FUNCTION {schema}.readable_time(timestamptz) TO PUBLIC;
