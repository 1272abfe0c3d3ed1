-- Bounds and roles (issue 19, items 2, 4 and 5): the table changes. The functions this
-- release changes (every bound checked in SQL, a claim that skips an out-of-range limit
-- row, limits_problem(), the payload cap read from `settings`, grant_operator_role()) are
-- in functions/, which migrate applies after this.
--
-- 1. Every stored number has bounds under which no arithmetic on it can overflow or divide
--    by zero (scheduler/limits.py holds the table). Limit rows get CHECKs, added NOT VALID
--    so a database holding an out-of-range row (written by hand, or accepted before this
--    migration: rate_period => 1e-310 was) still upgrades; the claim treats such a row as
--    "paused, with a reason" for only the queue or task it governs.
-- 2. The SQL payload cap moves from the session setting scheduler.max_payload_bytes, which
--    any role could SET, to the one-row table `settings`, which only the owner can write.
-- 3. Roles: producer (enqueue, dependencies, cancel, views), operator (schedules, queues
--    and limits, retries, cancel, views), runtime (replicas and foreign workers:
--    everything). What a producer had beyond that is revoked here.

-- ---------------------------------------------------------------------------------------
-- Settings only the schema owner changes. One row; the SQL enqueue functions (SECURITY
-- DEFINER, run as the owner) read it, no other role may write it.
CREATE TABLE {schema}.settings (
    only_row          boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    max_payload_bytes integer NOT NULL DEFAULT 65536
        CONSTRAINT settings_max_payload_bytes_bounds
        CHECK (max_payload_bytes BETWEEN 1 AND 67108864)
);
-- An owner who raised the cap database- or role-wide (ALTER DATABASE ... SET
-- scheduler.max_payload_bytes) keeps that value, as the migrating session sees it.
INSERT INTO {schema}.settings (max_payload_bytes)
SELECT CASE WHEN s.value ~ '^\s*[0-9]{1,8}\s*$' AND s.value::integer BETWEEN 1 AND 67108864
            THEN s.value::integer ELSE 65536 END
FROM (SELECT current_setting('scheduler.max_payload_bytes', true) AS value) s;

-- ---------------------------------------------------------------------------------------
-- Limits of queues and tasks. rate_period had only "> 0": 1e-310 made the token bucket's
-- refill (elapsed * rate_limit / rate_period) overflow in every claim. From 1 ms to 1000
-- years, every refill, wait and token count is a finite float8 far from overflow.
ALTER TABLE {schema}.queues ADD CONSTRAINT queues_rate_period_bounds
    CHECK (rate_period >= 0.001 AND rate_period <= 31557600000) NOT VALID;
ALTER TABLE {schema}.task_limits ADD CONSTRAINT task_limits_rate_period_bounds
    CHECK (rate_period >= 0.001 AND rate_period <= 31557600000) NOT VALID;

-- claim_flow_jobs() returns one more column (rows of kind 'problem'): a new result type is
-- a new function. migrate gives the rights roles held on the old one back to the new one.
DROP FUNCTION IF EXISTS {schema}.claim_flow_jobs(
    uuid, text[], text[], integer, double precision, text[], uuid[], integer[], text[]);

-- ---------------------------------------------------------------------------------------
-- Durations and times stored by the SQL API get Python's bounds (at most 1000 years; times
-- between 0001-01-02 and 9999-12-30 UTC), checked before anything is written (22023) by
-- the functions (functions/).
--
-- Columns: a NOT VALID CHECK is checked again by every UPDATE of an old row, so it only
-- suits a table whose rows the claim never rewrites while they are out of range (queues and
-- task_limits above: the claim skips such rows). jobs gets none: the claim, the reaper and
-- outcome writes update job rows in bulk, and one old row out of range would fail them
-- all; its readers cope with any stored time or timeout (readable_time(), the claims skip
-- infinite due times) and every writer checks the bounds. schedules is small: its rows
-- out of range are fixed here (paused, clamped to 1000 years, the reason in trigger_error)
-- and the CHECK is validated.
UPDATE {schema}.schedules s SET
    timeout_seconds = CASE WHEN NOT s.timeout_seconds <= 31557600000 THEN 31557600000
                           ELSE s.timeout_seconds END,
    misfire_grace_seconds = CASE WHEN NOT s.misfire_grace_seconds <= 31557600000
                                 THEN 31557600000 ELSE s.misfire_grace_seconds END,
    jitter_seconds = CASE WHEN NOT s.jitter_seconds <= 31557600000 THEN 31557600000
                          ELSE s.jitter_seconds END,
    paused = true,
    trigger_error = 'migration 0011 paused it: its timeout, misfire grace or jitter was over'
                    ' 1000 years (or NaN) and is now 1000 years; set them again'
                    ' (add_schedule with conflict replace) and resume it',
    updated_at = now()
WHERE NOT (coalesce(s.timeout_seconds, 0) <= 31557600000
           AND coalesce(s.misfire_grace_seconds, 0) <= 31557600000
           AND s.jitter_seconds <= 31557600000);
ALTER TABLE {schema}.schedules ADD CONSTRAINT schedules_seconds_bounds
    CHECK (timeout_seconds <= 31557600000 AND misfire_grace_seconds <= 31557600000
           AND jitter_seconds <= 31557600000);

-- Roles granted before this migration. It runs before the function files, on the functions
-- of the release before (a fresh schema has none yet: to_regprocedure() is NULL, no loop
-- runs). migrate gives back rights only for the functions a migration dropped
-- (claim_flow_jobs above, to the roles that held it: the runtime roles), so these revokes
-- stay.
-- The runtime role (it may call claim_scope) may read the new `settings`; a producer
-- (schedule_jobs without claim_jobs) loses the schedule functions grant_producer_role()
-- gave beyond the documented share (grant_operator_role() gives them); nobody but the
-- owner keeps check_job_basics, which 0010's rename left with the roles granted
-- check_job_request before it (check_job_request calls it as the owner).
DO $$
DECLARE
    grantee name;
BEGIN
    FOR grantee IN
        SELECT DISTINCT r.rolname
        FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) AS a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE p.oid = to_regprocedure('{schema}.claim_scope(text[], text[], double precision)')
          AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('GRANT SELECT ON {schema}.settings TO %I', grantee);
    END LOOP;
    FOR grantee IN
        SELECT DISTINCT r.rolname
        FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) AS a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE p.oid = to_regprocedure('{schema}.schedule_jobs({schema}.job_request[], text)')
          AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
          AND NOT has_function_privilege(
              a.grantee, to_regprocedure('{schema}.claim_jobs(uuid, text[], integer, text[])'),
              'EXECUTE')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION {schema}.add_schedule,'
                       ' {schema}.pause_schedule, {schema}.resume_schedule,'
                       ' {schema}.remove_schedule FROM %I', grantee);
    END LOOP;
    FOR grantee IN
        SELECT DISTINCT r.rolname
        FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) AS a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE p.oid = to_regprocedure('{schema}.check_job_basics({schema}.job_request, text)')
          AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION {schema}.check_job_basics FROM %I',
                       grantee);
    END LOOP;
END
$$;
