-- Job outcomes (issue 12): the return value of a job, and waking whoever waits for a job
-- to finish.
--
-- `result` holds what a successful attempt returned, as JSON (read only while the job is
-- succeeded: a later REPLACE or retry makes it stale, and get_job hides it then).
-- `awaited` is set by wait_for_job(): only jobs somebody waits for send a NOTIFY when
-- they finish, so ordinary completions add no notification (NOTIFY serialises commits).

ALTER TABLE {schema}.jobs
    ADD COLUMN result  jsonb,
    ADD COLUMN awaited boolean NOT NULL DEFAULT false;

-- 'finished <job id>' for every awaited job a statement moved to a terminal status.
CREATE FUNCTION {schema}.notify_finished_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    finished_id text;
BEGIN
    FOR finished_id IN
        SELECT n.job_id FROM new_rows n JOIN old_rows o USING (job_id)
        WHERE n.awaited AND n.status IN ('succeeded', 'failed', 'cancelled')
          AND o.status IS DISTINCT FROM n.status
    LOOP
        PERFORM pg_notify(TG_ARGV[0], 'finished ' || finished_id);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify_finished AFTER UPDATE ON {schema}.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_finished_jobs({channel});

-- Attempt history: one row per ended attempt, written by the statement that records how it
-- ended (the success batch of claim_jobs, fail_job, cancel_running_job, release_job,
-- reap_orphans, reclaim_attempts and the SQL worker functions below), so it can never
-- disagree with the job row. Deleted with its job (retention pruning, purge).
-- `claimed_at` is when the claim committed; `started_at` when the attempt was due to start
-- (the claim, or the due time of a job claimed a moment early).
ALTER TABLE {schema}.jobs ADD COLUMN claimed_at timestamptz;

CREATE TABLE {schema}.job_attempts (
    job_id      text NOT NULL REFERENCES {schema}.jobs (job_id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    worker_id   uuid,
    hostname    text,
    claimed_at  timestamptz,
    started_at  timestamptz,
    finished_at timestamptz NOT NULL DEFAULT now(),
    outcome     text NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'timed out', 'cancelled',
                                                 'lease lost', 'released', 'handed back',
                                                 'snoozed')),
    error       text,
    PRIMARY KEY (job_id, attempt)
);

-- The SQL worker protocol (0005) records attempt history too, and stamps claimed_at. Same
-- signatures and semantics as before.
CREATE OR REPLACE FUNCTION {schema}.claim_jobs(
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
            started_at = now(), claimed_at = now(), updated_at = now()
        FROM picked
        WHERE j.job_id = picked.job_id
        RETURNING j.job_id, j.attempts, j.task_name, j.args, j.kwargs, j.priority,
                  j.max_retries, j.failures, j.timeout_seconds, j.execution_time
    )
    SELECT * FROM claimed ORDER BY claimed.priority DESC, claimed.execution_time;
END
$$;

-- One history row for an attempt a worker function ended (read before the job row changes).
CREATE FUNCTION {schema}.record_attempt(
    job_id text, attempt integer, worker_id uuid, outcome text, error text,
    claimed_at timestamptz, started_at timestamptz
) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO {schema}.job_attempts
        (job_id, attempt, worker_id, hostname, claimed_at, started_at, outcome, error)
    SELECT $1, $2, $3, (SELECT w.hostname FROM {schema}.workers w WHERE w.worker_id = $3),
           $6, $7, $4, $5
    ON CONFLICT DO NOTHING
$$;
REVOKE EXECUTE ON FUNCTION {schema}.record_attempt FROM PUBLIC;

CREATE OR REPLACE FUNCTION {schema}.complete_job(worker_id uuid, job_id text, attempt integer)
RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH done AS (
        UPDATE {schema}.jobs j SET
            status = 'succeeded', lease_owner = NULL, last_error = NULL,
            finished_at = now(), updated_at = now()
        WHERE j.job_id = $2 AND j.lease_owner = $1 AND j.attempts = $3 AND j.status = 'running'
        RETURNING j.job_id, j.attempts, j.claimed_at, j.started_at
    ), history AS (
        INSERT INTO {schema}.job_attempts
            (job_id, attempt, worker_id, hostname, claimed_at, started_at, outcome)
        SELECT d.job_id, d.attempts, $1,
               (SELECT w.hostname FROM {schema}.workers w WHERE w.worker_id = $1),
               d.claimed_at, d.started_at, 'succeeded'
        FROM done d
    )
    SELECT EXISTS (SELECT 1 FROM done)
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
    RETURNING j.* INTO ended;
    IF ended.job_id IS NOT NULL THEN
        PERFORM {schema}.record_attempt(ended.job_id, ended.attempts, fail_job.worker_id,
                                        'failed', ended.last_error, ended.claimed_at,
                                        ended.started_at);
    END IF;
    RETURN ended.status;
END
$$;

CREATE OR REPLACE FUNCTION {schema}.release_job(
    worker_id uuid, job_id text, attempt integer, reason text DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    held {schema}.jobs%ROWTYPE;
    new_status text;
BEGIN
    SELECT j.* INTO held FROM {schema}.jobs j
    WHERE j.job_id = release_job.job_id AND j.lease_owner = release_job.worker_id
      AND j.attempts = release_job.attempt AND j.status = 'running'
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE {schema}.jobs j SET
        status = CASE WHEN j.cancel_requested_at IS NULL THEN 'pending' ELSE 'cancelled' END,
        finished_at = CASE WHEN j.cancel_requested_at IS NULL THEN NULL ELSE now() END,
        started_at = CASE WHEN j.cancel_requested_at IS NULL THEN NULL ELSE j.started_at END,
        lease_owner = NULL, last_error = left(release_job.reason, 8000), updated_at = now()
    WHERE j.job_id = release_job.job_id
    RETURNING j.status INTO new_status;
    PERFORM {schema}.record_attempt(held.job_id, held.attempts, release_job.worker_id,
                                    CASE WHEN new_status = 'cancelled' THEN 'cancelled'
                                         ELSE 'released' END,
                                    left(release_job.reason, 8000), held.claimed_at,
                                    held.started_at);
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION {schema}.unregister_worker(worker_id uuid) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH held AS (
        SELECT j.job_id, j.attempts, j.claimed_at, j.started_at FROM {schema}.jobs j
        WHERE j.lease_owner = $1 AND j.status = 'running'
    ), released AS (
        UPDATE {schema}.jobs j SET
            status = CASE WHEN j.cancel_requested_at IS NULL THEN 'pending' ELSE 'cancelled' END,
            finished_at = CASE WHEN j.cancel_requested_at IS NULL THEN NULL ELSE now() END,
            started_at = CASE WHEN j.cancel_requested_at IS NULL THEN NULL ELSE j.started_at END,
            lease_owner = NULL, last_error = 'released: its worker unregistered',
            updated_at = now()
        WHERE j.lease_owner = $1 AND j.status = 'running'
        RETURNING j.job_id, j.status
    ), history AS (
        INSERT INTO {schema}.job_attempts
            (job_id, attempt, worker_id, hostname, claimed_at, started_at, outcome, error)
        SELECT r.job_id, h.attempts, $1,
               (SELECT w.hostname FROM {schema}.workers w WHERE w.worker_id = $1),
               h.claimed_at, h.started_at,
               CASE WHEN r.status = 'cancelled' THEN 'cancelled' ELSE 'released' END,
               'released: its worker unregistered'
        FROM released r JOIN held h USING (job_id)
    ), gone AS (
        DELETE FROM {schema}.workers w WHERE w.worker_id = $1 RETURNING 1
    )
    SELECT count(*)::integer FROM released
$$;

-- Attempt history for monitoring and producers (who have no right on the tables).
CREATE VIEW {schema}.attempt_history AS
SELECT a.job_id, j.task_name, a.attempt, a.outcome, a.error, a.worker_id, a.hostname,
       a.claimed_at, a.started_at, a.finished_at, a.finished_at - a.started_at AS duration
FROM {schema}.job_attempts a JOIN {schema}.jobs j USING (job_id);

-- Retry in bulk: up to max_jobs failed jobs of `task_name` (NULL: every task) that finished
-- in [since, until) (default: ever, until now), oldest first, each exactly as retry_job()
-- does (fresh budgets, attempts keep counting, pending at run_at or now); returns their ids.
-- Rows another transaction holds are skipped. Call it again until it returns fewer than
-- max_jobs: with a fixed `until`, jobs that fail again meanwhile are not picked up twice.
CREATE FUNCTION {schema}.retry_failed_jobs(
    task_name text DEFAULT NULL, since timestamptz DEFAULT NULL,
    until timestamptz DEFAULT NULL, run_at timestamptz DEFAULT NULL,
    max_jobs integer DEFAULT 1000
) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    found_id text;
BEGIN
    IF max_jobs IS NULL OR max_jobs < 1 OR max_jobs > 100000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'max_jobs must be between 1 and 100000, got %s', coalesce(max_jobs::text, 'NULL'));
    END IF;
    FOR found_id IN
        SELECT j.job_id FROM {schema}.jobs j
        WHERE j.status = 'failed'
          AND (task_name IS NULL OR j.task_name = task_name)
          AND j.finished_at >= coalesce(since, '-infinity')
          AND j.finished_at < coalesce(until, now())
        ORDER BY j.finished_at
        LIMIT max_jobs
        FOR UPDATE OF j SKIP LOCKED
    LOOP
        PERFORM {schema}.retry_job(found_id, run_at);
        RETURN NEXT found_id;
    END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION {schema}.retry_failed_jobs FROM PUBLIC;

-- ---------------------------------------------------------------------------------------
-- Dependencies. A job that depends on others waits in status 'blocked' until every one of
-- them succeeded, then becomes 'pending' (due at its own execution_time, or at once); if
-- one fails or is cancelled, it is cancelled, naming that job. Claims look only at
-- 'pending' rows, so blocked jobs cost the claim nothing and the claim statement and its
-- index are unchanged. `blocked_by` counts the dependencies not yet succeeded (only
-- meaningful while blocked); `has_dependants` marks the jobs whose end must be
-- propagated, so a job nobody depends on finishes without any trigger work.
-- Cycles cannot be built: dependencies are added only to a fresh job (pending, never
-- claimed) that nobody depends on yet, and must already exist.
ALTER TABLE {schema}.jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE {schema}.jobs
    ADD CONSTRAINT jobs_status_check CHECK (
        status IN ('pending', 'blocked', 'running', 'succeeded', 'failed', 'cancelled')),
    ADD COLUMN blocked_by integer NOT NULL DEFAULT 0 CHECK (blocked_by >= 0),
    ADD COLUMN has_dependants boolean NOT NULL DEFAULT false;

CREATE TABLE {schema}.job_dependencies (
    job_id     text NOT NULL REFERENCES {schema}.jobs (job_id) ON DELETE CASCADE,
    depends_on text NOT NULL REFERENCES {schema}.jobs (job_id) ON DELETE CASCADE,
    -- Set once the dependency succeeded (never unset: a dependency counts once).
    satisfied  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (job_id, depends_on),
    CHECK (job_id <> depends_on)
);
CREATE INDEX job_dependencies_depends_on_idx ON {schema}.job_dependencies (depends_on);

-- Make `job_id` (a fresh job, in the transaction that scheduled it) wait for `depends_on`.
-- Each dependency is locked, so one finishing concurrently is seen either finished here or
-- as having this dependant there. Already succeeded ones count as met; one already failed
-- or cancelled cancels the job at once. Returns the job's status: 'pending' (all met),
-- 'blocked' or 'cancelled'. P0002 names an unknown dependency; 55000 if the job is not
-- fresh (claimed before, already has dependencies, or others depend on it).
CREATE FUNCTION {schema}.add_dependencies(job_id text, depends_on text[]) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    wanted text[];
    missing text;
    job {schema}.jobs%ROWTYPE;
    unmet integer;
    ended record;
BEGIN
    IF depends_on IS NULL OR cardinality(depends_on) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'depends_on must name at least one job';
    END IF;
    SELECT array_agg(DISTINCT d ORDER BY d) INTO wanted FROM unnest(depends_on) AS d;
    IF job_id = ANY (wanted) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('job %L cannot depend on itself', job_id);
    END IF;
    SELECT j.* INTO job FROM {schema}.jobs j WHERE j.job_id = add_dependencies.job_id
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = format('no job %L', job_id);
    END IF;
    -- In id order, so two producers never lock the same jobs in opposite orders.
    PERFORM 1 FROM {schema}.jobs j WHERE j.job_id = ANY (wanted)
    ORDER BY j.job_id FOR NO KEY UPDATE;
    SELECT w INTO missing FROM unnest(wanted) AS w
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.jobs j WHERE j.job_id = w) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = format(
            'job %L depends on %L, which does not exist (unknown, or pruned after the'
            ' retention period); schedule the dependencies first', job_id, missing);
    END IF;
    IF job.status <> 'pending' OR job.attempts > 0 OR job.has_dependants
       OR EXISTS (SELECT 1 FROM {schema}.job_dependencies e WHERE e.job_id = job.job_id) THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format(
            'job %L is not fresh (%s, %s attempts%s): dependencies are given when a job is'
            ' scheduled, in the same transaction', job_id, job.status, job.attempts,
            CASE WHEN job.has_dependants THEN ', others depend on it' ELSE '' END);
    END IF;
    UPDATE {schema}.jobs j SET has_dependants = true
    WHERE j.job_id = ANY (wanted) AND NOT j.has_dependants;
    INSERT INTO {schema}.job_dependencies (job_id, depends_on, satisfied)
    SELECT job.job_id, j.job_id, j.status = 'succeeded'
    FROM {schema}.jobs j WHERE j.job_id = ANY (wanted);
    SELECT j.job_id, j.status INTO ended FROM {schema}.jobs j
    WHERE j.job_id = ANY (wanted) AND j.status IN ('failed', 'cancelled')
    ORDER BY j.job_id LIMIT 1;
    IF FOUND THEN
        UPDATE {schema}.jobs j SET status = 'cancelled', finished_at = now(), updated_at = now(),
            last_error = format('cancelled: dependency %L %s', ended.job_id,
                                CASE ended.status WHEN 'failed' THEN 'failed'
                                                  ELSE 'was cancelled' END)
        WHERE j.job_id = job.job_id;
        RETURN 'cancelled';
    END IF;
    SELECT count(*) INTO unmet FROM {schema}.jobs j
    WHERE j.job_id = ANY (wanted) AND j.status <> 'succeeded';
    IF unmet > 0 THEN
        UPDATE {schema}.jobs j SET status = 'blocked', blocked_by = unmet, updated_at = now()
        WHERE j.job_id = job.job_id;
        RETURN 'blocked';
    END IF;
    RETURN 'pending';
END
$$;
REVOKE EXECUTE ON FUNCTION {schema}.add_dependencies FROM PUBLIC;

-- A job with dependants finished: a success counts down its blocked dependants (the last
-- one makes them pending); a failure or cancellation cancels them, naming this job, and
-- their own dependants in turn (the trigger fires again for them). Row locks on the edges
-- and the dependants make concurrent finishes of several dependencies count exactly once.
CREATE FUNCTION {schema}.settle_dependants() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.status = 'succeeded' THEN
        WITH met AS (
            UPDATE {schema}.job_dependencies e SET satisfied = true
            WHERE e.depends_on = NEW.job_id AND NOT e.satisfied
            RETURNING e.job_id
        ), counted AS (
            SELECT m.job_id, count(*)::integer AS n FROM met m GROUP BY m.job_id
        )
        UPDATE {schema}.jobs d SET
            blocked_by = greatest(d.blocked_by - c.n, 0),
            status = CASE WHEN d.blocked_by - c.n <= 0 THEN 'pending' ELSE 'blocked' END,
            updated_at = now()
        FROM counted c
        WHERE d.job_id = c.job_id AND d.status = 'blocked';
    ELSE
        UPDATE {schema}.jobs d SET
            status = 'cancelled', finished_at = now(), updated_at = now(),
            last_error = format('cancelled: dependency %L %s', NEW.job_id,
                                CASE NEW.status WHEN 'failed' THEN 'failed'
                                                ELSE 'was cancelled' END)
        FROM {schema}.job_dependencies e
        WHERE e.depends_on = NEW.job_id AND d.job_id = e.job_id AND d.status = 'blocked';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_settle_dependants AFTER UPDATE ON {schema}.jobs
    FOR EACH ROW
    WHEN (NEW.has_dependants AND NEW.status IS DISTINCT FROM OLD.status
          AND NEW.status IN ('succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION {schema}.settle_dependants();

-- A blocked job stays blocked while a dependency has not succeeded, whoever rewrites it
-- (a REPLACE, a hand-written UPDATE): only the count reaching 0 releases it.
CREATE FUNCTION {schema}.keep_blocked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.status := 'blocked';
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_keep_blocked BEFORE UPDATE ON {schema}.jobs
    FOR EACH ROW
    WHEN (OLD.status = 'blocked' AND NEW.status = 'pending' AND NEW.blocked_by > 0)
    EXECUTE FUNCTION {schema}.keep_blocked();

-- cancel_job (0005) also cancels a blocked job at once.
CREATE OR REPLACE FUNCTION {schema}.cancel_job(job_id text) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH previous AS (
        SELECT j.job_id, j.status FROM {schema}.jobs j WHERE j.job_id = $1 FOR UPDATE
    ), changed AS (
        UPDATE {schema}.jobs j SET
            status = CASE WHEN p.status IN ('pending', 'blocked') THEN 'cancelled'
                          ELSE j.status END,
            finished_at = CASE WHEN p.status IN ('pending', 'blocked') THEN now()
                               ELSE j.finished_at END,
            cancel_requested_at = coalesce(j.cancel_requested_at, now()),
            updated_at = now()
        FROM previous p
        WHERE j.job_id = p.job_id AND p.status IN ('pending', 'blocked', 'running')
        RETURNING p.status
    )
    SELECT CASE WHEN status = 'running' THEN 'cancel_requested' ELSE 'cancelled' END
    FROM changed
$$;

-- retry_job (0005), aware of dependencies: a retried job whose dependencies have not all
-- succeeded waits for them again ('blocked'); one whose dependency failed or was cancelled
-- is refused (55000): retry that dependency first. The edges are locked before the job,
-- in the order settle_dependants() takes them, so a dependency finishing meanwhile is
-- counted exactly once.
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
    IF run_at IS NOT NULL AND NOT isfinite(run_at) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('run_at must be a finite time, got %s', run_at);
    END IF;
    IF delay < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('delay must be >= 0, got %s', delay);
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

-- task_stats (0005) also counts blocked jobs (a new last column).
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

-- ---------------------------------------------------------------------------------------
-- Least privilege (0005), extended to the history table, its view and the new functions,
-- and to readable_time() (0004), which get_job() needs and 0005's REVOKE took from PUBLIC.
CREATE OR REPLACE FUNCTION {schema}.grant_runtime_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    grantee text := quote_ident(role_name);
BEGIN
    EXECUTE 'GRANT USAGE ON SCHEMA {schema} TO ' || grantee;
    EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.jobs, {schema}.workers,'
            ' {schema}.schedules, {schema}.job_attempts, {schema}.job_dependencies TO '
            || grantee;
    EXECUTE 'GRANT SELECT ON {schema}.schema_migrations, {schema}.task_stats,'
            ' {schema}.running_jobs, {schema}.stalled_jobs, {schema}.recent_failures,'
            ' {schema}.schedule_status, {schema}.live_workers, {schema}.attempt_history TO '
            || grantee;
    EXECUTE 'GRANT EXECUTE ON FUNCTION {schema}.job_request, {schema}.check_job_request,'
            ' {schema}.schedule_jobs, {schema}.schedule_job, {schema}.cancel_job,'
            ' {schema}.retry_job, {schema}.retry_failed_jobs, {schema}.add_dependencies,'
            ' {schema}.register_worker,'
            ' {schema}.worker_heartbeat,'
            ' {schema}.claim_jobs, {schema}.complete_job, {schema}.fail_job,'
            ' {schema}.release_job, {schema}.cancel_requested_jobs,'
            ' {schema}.unregister_worker, {schema}.readable_time, {schema}.add_schedule,'
            ' {schema}.pause_schedule, {schema}.resume_schedule, {schema}.remove_schedule TO '
            || grantee;
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
            ' {schema}.live_workers, {schema}.attempt_history TO ' || grantee;
    EXECUTE 'GRANT EXECUTE ON FUNCTION {schema}.job_request, {schema}.check_job_request,'
            ' {schema}.schedule_jobs, {schema}.schedule_job, {schema}.cancel_job,'
            ' {schema}.add_dependencies, {schema}.add_schedule, {schema}.pause_schedule,'
            ' {schema}.resume_schedule, {schema}.remove_schedule TO ' || grantee;
END
$$;
