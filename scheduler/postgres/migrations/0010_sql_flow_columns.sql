-- The SQL producer API (0005) takes the flow-control columns of 0007: schedule_job(),
-- job_request() and schedule_jobs() accept a queue, a lock key and a unique key, checked
-- as Python checks them, and a unique key meets `conflict` exactly as in Python:
--   'raise'   23505 (constraint jobs_unique_key_idx) naming the unfinished job holding it;
--   'ignore'  nothing written, the holder's id returned;
--   'replace' the holder overwritten in place while pending (or blocked: it stays
--             blocked), keeping its id, which is returned; 55006 if it is running.
-- Old calls keep working: the new parameters come last, with defaults (queue 'default').

ALTER TYPE {schema}.job_request
    ADD ATTRIBUTE queue text,
    ADD ATTRIBUTE lock_key text,
    ADD ATTRIBUTE unique_key text;

-- A changed signature is a new function: drop the old one so one name keeps one function
-- (the grant helpers name functions without arguments). migrate gives the rights back to
-- the roles that held them once functions/ is applied. 0005's check_job_request() became
-- check_job_basics() here (see functions/check_job_basics.sql); a database that never had
-- it gets it from functions/ like any other.
DROP FUNCTION IF EXISTS {schema}.job_request(
    text, jsonb, jsonb, timestamptz, interval, text, integer, integer, interval);

DROP FUNCTION IF EXISTS {schema}.schedule_job(
    text, jsonb, jsonb, timestamptz, interval, text, integer, integer, interval, text);
