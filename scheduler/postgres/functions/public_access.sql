-- Applied last. A function is created callable by PUBLIC; every function of the schema is
-- callable only by the roles grant_runtime_role() / grant_producer_role() /
-- grant_operator_role() name (see
-- grant_runtime_role.sql). CREATE OR REPLACE keeps a function's grants; migrate gives back
-- the rights a migration's DROP took. (0005 also granted readable_time() to PUBLIC, but the
-- blanket revokes of 0007 and 0010 took that back: databases have it so, and keep it so.)
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} FROM PUBLIC;
-- The limit kinds' functions and their dispatchers (limit_*, limit_problem.sql) are pure and
-- reveal nothing: every role that may read queue_stats (which calls them) must be able to,
-- a dashboard's read-only role included. Granted by name, so a new kind's file needs no
-- line here.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
             WHERE p.pronamespace = '{schema}'::regnamespace AND p.proname LIKE 'limit\_%'
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', f);
    END LOOP;
END
$$;
