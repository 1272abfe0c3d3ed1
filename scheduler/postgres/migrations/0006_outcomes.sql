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

-- Attempt history: one row per ended attempt, written by the statement that records how it
-- ended (the success batch of claim_jobs, fail_job, cancel_running_job, release_job,
-- reap_orphans, reclaim_attempts and the SQL worker functions in functions/), so it can never
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
