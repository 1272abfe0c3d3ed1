-- Recurring schedules. A schedule row stores its trigger (as JSON written by
-- scheduler.triggers) and the next fire time; each due fire time becomes an ordinary job
-- carrying (schedule_id, fire_time), unique, so a slot fires at most once.

CREATE TABLE {schema}.schedules (
    schedule_id           text PRIMARY KEY CHECK (length(schedule_id) BETWEEN 1 AND 200),
    task_name             text NOT NULL CHECK (length(task_name) BETWEEN 1 AND 255),
    args                  jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(args) = 'array'),
    kwargs                jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(kwargs) = 'object'),
    trigger               jsonb NOT NULL,
    priority              smallint NOT NULL DEFAULT 5 CHECK (priority IN (1, 5, 10, 20)),
    max_retries           integer NOT NULL DEFAULT 0 CHECK (max_retries >= 0),
    timeout_seconds       double precision CHECK (timeout_seconds > 0),
    coalesce_policy       text NOT NULL DEFAULT 'latest'
                          CHECK (coalesce_policy IN ('latest', 'all', 'skip')),
    misfire_grace_seconds double precision CHECK (misfire_grace_seconds > 0),
    max_running           integer CHECK (max_running > 0),  -- NULL: no limit
    jitter_seconds        double precision NOT NULL DEFAULT 0 CHECK (jitter_seconds >= 0),
    paused                boolean NOT NULL DEFAULT false,
    -- NULL once the trigger is exhausted (a date trigger that fired, an interval past its end).
    next_fire_time        timestamptz,
    last_fire_time        timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- The ticker's scan: due, active schedules in fire-time order.
CREATE INDEX schedules_due_idx ON {schema}.schedules (next_fire_time)
    WHERE NOT paused AND next_fire_time IS NOT NULL;

ALTER TABLE {schema}.jobs
    ADD COLUMN schedule_id text,
    ADD COLUMN fire_time   timestamptz,
    ADD CONSTRAINT jobs_slot_complete CHECK ((schedule_id IS NULL) = (fire_time IS NULL));

-- At most one job per slot, whatever the number of replicas, restarts or clock skew.
CREATE UNIQUE INDEX jobs_schedule_slot_idx ON {schema}.jobs (schedule_id, fire_time)
    WHERE schedule_id IS NOT NULL;
-- max_running counts a schedule's unfinished jobs.
CREATE INDEX jobs_schedule_unfinished_idx ON {schema}.jobs (schedule_id)
    WHERE schedule_id IS NOT NULL AND status IN ('pending', 'running');
