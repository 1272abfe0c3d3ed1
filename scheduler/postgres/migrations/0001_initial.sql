-- The job table and the worker (lease) table. The NOTIFY triggers and every other function
-- and view live in ../functions/, applied by migrate after the migrations.
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
