-- End a batch of attempts, each with its outcome: the one write by which a job leaves
-- 'running'. Everything that ends an attempt comes here: the claims (successes ride in the
-- claim's commit), the runner's other outcomes, the SQL worker protocol (complete_job,
-- fail_job, release_job, unregister_worker), the heartbeat's hand-back and the orphan
-- sweep. A new outcome is its name in `known_outcomes`, its branches here and its class
-- in scheduler/outcomes.py.
--
-- Fenced here and only here: an attempt changes its job only while the row is 'running'
-- under that owner with that attempt number (the fencing token). A stale one changes
-- nothing and gets no row back. Each row returned: an attempt ended, its job's new status.
--
--   outcome      the job becomes                                        spends
--   succeeded    succeeded, its result stored                           -
--   failed,      pending again after `delay` seconds while failures     one of max_retries
--   timed out    stay within max_retries, else failed
--   cancelled    cancelled (a requested cancel interrupted it)          -
--   released     pending now (a graceful stop gave it back)             -
--   snoozed      pending again after `delay` seconds (it asked to be)   -
--   lease lost   pending now while lost leases stay within              one lost lease
--                `lost_budget`, else failed (its worker stopped
--                heartbeating)
--   handed back  as lease lost, keeping its due time (its live worker
--                held it but never ran or recorded it)
-- A requested cancel wins over every outcome that would make the job pending (a failure
-- then ends failed, anything else cancelled). `error` is the text kept in last_error and the
-- history row (a traceback, a reason; lease lost and handed back write their own), cut to
-- 8,000 characters; `error_types`/`error_messages` its parts (NULL: derived by trigger).
-- `run_ats`, where given, is the time a failed or snoozed job runs again, instead of
-- `delays` seconds from now (fail_job's retry_at, kept exactly).
-- Whether this file creates end_attempts() for the first time (see the grant at the end).
SELECT set_config('scheduler.end_attempts_is_new',
                  (to_regproc('{schema}.end_attempts') IS NULL)::text, true);

CREATE OR REPLACE FUNCTION {schema}.end_attempts(
    job_ids         text[],
    owners          uuid[],
    attempt_numbers integer[],
    outcomes        text[],
    results         text[] DEFAULT '{}',
    errors          text[] DEFAULT '{}',
    error_types     text[] DEFAULT '{}',
    error_messages  text[] DEFAULT '{}',
    delays          double precision[] DEFAULT '{}',
    lost_budget     integer DEFAULT 0,
    run_ats         timestamptz[] DEFAULT '{}'
) RETURNS TABLE (job_id text, attempt integer, owner uuid, task_name text, status text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    -- Every outcome's name, listed here only: the history table does not constrain it, as
    -- this function writes every history row (see the table above for each one's branch).
    known_outcomes CONSTANT text[] := ARRAY['succeeded', 'failed', 'timed out', 'cancelled',
                                            'released', 'snoozed', 'lease lost',
                                            'handed back'];
BEGIN
    IF coalesce(cardinality(job_ids), 0) = 0 THEN
        RETURN;  -- the claim calls this on every pass: nothing to end costs no statement
    END IF;
    -- One element per attempt in every array given (the optional ones may be empty): a
    -- short array would silently fence or NULL the rest.
    IF cardinality(owners) IS DISTINCT FROM cardinality(job_ids)
       OR cardinality(attempt_numbers) IS DISTINCT FROM cardinality(job_ids)
       OR cardinality(outcomes) IS DISTINCT FROM cardinality(job_ids)
       OR EXISTS (SELECT 1 FROM unnest(ARRAY[cardinality(results), cardinality(errors),
                                             cardinality(error_types),
                                             cardinality(error_messages), cardinality(delays),
                                             cardinality(run_ats)]) AS c(n)
                  WHERE c.n IS NULL OR c.n NOT IN (0, cardinality(job_ids))) THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'end_attempts: owners, attempt_numbers and outcomes need one element per job id'
            ' (%s), and each other array none or as many', cardinality(job_ids));
    END IF;
    -- The same attempt twice would end it with whichever outcome came first. (One job may
    -- appear with different attempts or owners: stale ones are fenced, as one alone is.)
    IF (SELECT count(DISTINCT (a.job_id, a.owner, a.attempt)) <> count(*)
        FROM unnest(job_ids, owners, attempt_numbers) AS a(job_id, owner, attempt)) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'end_attempts: an attempt (job id, owner, attempt number) appears twice';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(outcomes) AS o(outcome)
               WHERE o.outcome IS NULL OR o.outcome <> ALL (known_outcomes)) THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'end_attempts: an outcome must be one of %s; got %s',
            array_to_string(known_outcomes, ', '), outcomes);
    END IF;
    RETURN QUERY
    WITH ending AS (
        SELECT e.*
        FROM unnest(job_ids, owners, attempt_numbers, outcomes, results, errors, error_types,
                    error_messages, delays, run_ats)
             AS e(job_id, owner, attempt, outcome, result, error, error_type, error_message,
                  delay, run_at)
    ), held AS (
        -- Each attempt's row by primary key (OFFSET 0 keeps the fence checks out of the
        -- lookup): statistics taken while few jobs ran make a plan that scans every
        -- running row per attempt look cheaper, and a cached plan keeps it. Locked, so
        -- the decision reads the row as it is now: a cancel request committed a moment
        -- ago counts. The attempt's times are read here for its history row.
        SELECT e.*, j.claimed_at, j.started_at,
               CASE
                   WHEN e.outcome IN ('succeeded', 'cancelled') THEN e.outcome
                   WHEN e.outcome IN ('failed', 'timed out') THEN
                       CASE WHEN j.failures + 1 <= j.max_retries
                                 AND j.cancel_requested_at IS NULL
                            THEN 'pending' ELSE 'failed' END
                   WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                   WHEN e.outcome IN ('released', 'snoozed') THEN 'pending'
                   WHEN j.lost_leases + 1 <= coalesce(lost_budget, 0) THEN 'pending'
                   ELSE 'failed'
               END AS next_status
        FROM ending e
        CROSS JOIN LATERAL (
            SELECT r.* FROM {schema}.jobs r WHERE r.job_id = e.job_id OFFSET 0 FOR UPDATE
        ) j
        WHERE j.lease_owner = e.owner AND j.attempts = e.attempt AND j.status = 'running'
    ), ended AS (
        UPDATE {schema}.jobs j SET
            status = h.next_status,
            failures = j.failures + (h.outcome IN ('failed', 'timed out'))::integer,
            lost_leases = j.lost_leases + (h.outcome IN ('lease lost', 'handed back'))::integer,
            execution_time = CASE
                WHEN h.next_status <> 'pending' THEN j.execution_time
                WHEN h.outcome IN ('failed', 'timed out', 'snoozed')
                    THEN coalesce(h.run_at, now() + make_interval(secs => coalesce(h.delay, 0)))
                WHEN h.outcome = 'lease lost' THEN now()
                ELSE j.execution_time END,
            started_at = CASE WHEN h.next_status = 'pending' AND h.outcome IN ('released', 'snoozed')
                              THEN NULL ELSE j.started_at END,
            finished_at = CASE WHEN h.next_status = 'pending' THEN NULL ELSE now() END,
            result = CASE WHEN h.outcome = 'succeeded' THEN h.result::jsonb ELSE j.result END,
            last_error = CASE h.outcome
                WHEN 'succeeded' THEN NULL
                WHEN 'snoozed' THEN j.last_error
                WHEN 'lease lost' THEN format(
                    'attempt %s lost its lease: worker %s stopped heartbeating',
                    j.attempts, j.lease_owner)
                WHEN 'handed back' THEN format(
                    'attempt %s was claimed by worker %s but never run or recorded'
                    ' (claim reply lost, or outcome not writable); handed back',
                    j.attempts, j.lease_owner)
                ELSE left(h.error, 8000) END,
            -- NULL parts with a new text: the error_parts trigger derives them.
            error_type = CASE WHEN h.outcome = 'snoozed' THEN j.error_type
                              ELSE h.error_type END,
            error_message = CASE WHEN h.outcome = 'snoozed' THEN j.error_message
                                 ELSE h.error_message END,
            lease_owner = NULL, updated_at = now()
        FROM held h
        WHERE j.job_id = h.job_id
        RETURNING j.job_id, j.attempts, h.owner, j.task_name, j.status, h.outcome, h.delay,
                  h.claimed_at, h.started_at, j.last_error, h.error_type, h.error_message
    ), history AS (
        INSERT INTO {schema}.job_attempts
            (job_id, attempt, worker_id, hostname, claimed_at, started_at, outcome, error,
             error_type, error_message)
        SELECT e.job_id, e.attempts, e.owner, w.hostname, e.claimed_at, e.started_at,
               -- A graceful stop or a snooze that a cancel request overtook is a cancel.
               CASE WHEN e.outcome IN ('released', 'snoozed') AND e.status = 'cancelled'
                    THEN 'cancelled' ELSE e.outcome END,
               CASE e.outcome
                   WHEN 'succeeded' THEN NULL
                   WHEN 'snoozed' THEN format('snoozed for %s seconds', e.delay)
                   ELSE e.last_error END,
               CASE WHEN e.outcome IN ('failed', 'timed out') THEN e.error_type END,
               CASE WHEN e.outcome IN ('failed', 'timed out') THEN e.error_message END
        FROM ended e LEFT JOIN {schema}.workers w ON w.worker_id = e.owner
    )
    SELECT e.job_id, e.attempts, e.owner, e.task_name, e.status FROM ended e;
END
$$;

-- Once, at the upgrade that adds this function: the roles that could already end attempts
-- (EXECUTE on the SQL worker protocol's complete_job, or UPDATE on jobs, as a replica's
-- role has) may call it, since a replica's claims call it. A later re-apply grants
-- nothing, so a right an administrator revoked stays revoked.
DO $$
DECLARE
    holder name;
BEGIN
    IF current_setting('scheduler.end_attempts_is_new', true) IS DISTINCT FROM 'true' THEN
        RETURN;
    END IF;
    FOR holder IN
        SELECT DISTINCT r.rolname
        FROM (SELECT a.grantee, p.proowner AS owner
              FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) a
              WHERE p.pronamespace = '{schema}'::regnamespace AND p.proname = 'complete_job'
                AND a.privilege_type = 'EXECUTE'
              UNION ALL
              SELECT a.grantee, c.relowner
              FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
              WHERE c.oid = '{schema}.jobs'::regclass AND a.privilege_type = 'UPDATE') g
        JOIN pg_roles r ON r.oid = g.grantee
        WHERE g.grantee <> g.owner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION {schema}.end_attempts TO %I', holder);
    END LOOP;
END
$$;
