-- The job table, the worker (lease) table and the NOTIFY triggers.
-- Placeholders: {schema} is a validated, quoted identifier; {channel} a validated literal.

CREATE TABLE {schema}.jobs (
    job_id              text PRIMARY KEY DEFAULT gen_random_uuid()::text
                        CHECK (length(job_id) BETWEEN 1 AND 255),
    task_name           text NOT NULL CHECK (length(task_name) BETWEEN 1 AND 255),
    args                jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(args) = 'array'),
    kwargs              jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(kwargs) = 'object'),
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    priority            smallint NOT NULL DEFAULT 5 CHECK (priority IN (1, 5, 10, 20)),
    execution_time      timestamptz NOT NULL DEFAULT now(),
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_retries         integer NOT NULL DEFAULT 0 CHECK (max_retries >= 0),
    timeout_seconds     double precision CHECK (timeout_seconds > 0),
    -- The worker holding the lease; the lease itself lives in workers.lease_expires_at so a
    -- heartbeat is one row write per replica, however many jobs it runs.
    lease_owner         uuid,
    cancel_requested_at timestamptz,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    CONSTRAINT jobs_running_has_owner CHECK ((status = 'running') = (lease_owner IS NOT NULL))
);

-- Claim path: per priority, due time order, pending rows only (stays small).
CREATE INDEX jobs_claim_idx ON {schema}.jobs (priority, execution_time) WHERE status = 'pending';
-- Heartbeat and orphan sweep: the running jobs of one worker.
CREATE INDEX jobs_running_idx ON {schema}.jobs (lease_owner) WHERE status = 'running';
-- Retention pruning.
CREATE INDEX jobs_finished_idx ON {schema}.jobs (finished_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled');

CREATE TABLE {schema}.workers (
    worker_id         uuid PRIMARY KEY,
    hostname          text NOT NULL,
    pid               integer NOT NULL,
    tasks             text[] NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    heartbeat_at      timestamptz NOT NULL DEFAULT now(),
    lease_expires_at  timestamptz NOT NULL
);

-- One notification per statement, not per row: the delay until the earliest pending row the
-- statement wrote. Listeners arm a timer with it. Measured with clock_timestamp() so a long
-- transaction does not make the delay look shorter than it is.
CREATE FUNCTION {schema}.notify_due_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    next_due timestamptz;
BEGIN
    SELECT min(execution_time) INTO next_due FROM new_rows WHERE status = 'pending';
    IF next_due IS NOT NULL THEN
        PERFORM pg_notify(TG_ARGV[0],
            'due ' || extract(epoch FROM next_due - clock_timestamp())::text);
    END IF;
    RETURN NULL;
END
$$;

-- Cancellation requests of running jobs reach the replica running them at once, whether
-- they come from cancel_job() or from plain SQL.
CREATE FUNCTION {schema}.notify_cancel_requests() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    requested_id text;
BEGIN
    FOR requested_id IN
        SELECT n.job_id FROM new_rows n JOIN old_rows o USING (job_id)
        WHERE n.status = 'running' AND n.cancel_requested_at IS NOT NULL
          AND o.cancel_requested_at IS NULL
    LOOP
        PERFORM pg_notify(TG_ARGV[0], 'cancel ' || requested_id);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify_insert AFTER INSERT ON {schema}.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_due_jobs({channel});

CREATE TRIGGER jobs_notify_update AFTER UPDATE ON {schema}.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_due_jobs({channel});

CREATE TRIGGER jobs_notify_cancel AFTER UPDATE ON {schema}.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_cancel_requests({channel});
