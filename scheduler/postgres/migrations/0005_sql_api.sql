-- The SQL-level API: functions with the Python API's semantics and validation (for other
-- languages, triggers, psql), a language-neutral worker protocol fenced like the Python
-- engine, monitoring views, and helpers that grant least-privilege roles.
--
-- Every function is SECURITY DEFINER with a fixed search_path, so a role that may only
-- EXECUTE them (a producer) writes jobs without any right on the tables; EXECUTE is revoked
-- from PUBLIC (functions/public_access.sql) and granted by grant_producer_role() /
-- grant_runtime_role(). The functions and views themselves are in ../functions/.
-- Errors are raised with a SQLSTATE a driver can map:
--   22023 invalid_parameter_value       bad input (nothing is written)
--   54000 program_limit_exceeded        arguments over the payload cap
--   23505 unique_violation              conflict 'raise' met an existing job id
--   55006 object_in_use                 conflict 'replace' met a running job
--   55000 object_not_in_prerequisite_state  retry of a job that is not failed/cancelled;
--                                       a claim by a worker whose lease is not live
--   P0002 no_data_found                 retry of an unknown job

-- Schedules added from SQL wait for a replica to compute their first fire time (see
-- functions/add_schedule.sql); one whose trigger Python cannot build is paused with the reason.
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
