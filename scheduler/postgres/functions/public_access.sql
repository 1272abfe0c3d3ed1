-- Applied last. A function is created callable by PUBLIC; every function of the schema is
-- callable only by the roles grant_runtime_role() / grant_producer_role() /
-- grant_operator_role() name (see
-- grant_runtime_role.sql). CREATE OR REPLACE keeps a function's grants; migrate gives back
-- the rights a migration's DROP took. (0005 also granted readable_time() to PUBLIC, but the
-- blanket revokes of 0007 and 0010 took that back: databases have it so, and keep it so.)
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} FROM PUBLIC;
-- limits_problem() is pure and reveals nothing: every role that may read queue_stats (which
-- calls it) must be able to, a dashboard's read-only role included.
GRANT EXECUTE ON FUNCTION {schema}.limits_problem TO PUBLIC;

-- A role given the runtime share (grant_runtime_role.sql) before a revision added a
-- function to it gets that function too: the replicas' own statements call end_attempts(),
-- so a runtime role granted before it existed would otherwise stop claiming at the
-- upgrade. A holder of the share is a role that may call register_worker(), which only
-- this share includes.
DO $$
DECLARE
    holder name;
BEGIN
    FOR holder IN
        SELECT r.rolname FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE p.oid = '{schema}.register_worker'::regproc AND a.privilege_type = 'EXECUTE'
          AND a.grantee <> p.proowner
    LOOP
        PERFORM {schema}.grant_runtime_role(holder);
    END LOOP;
END
$$;
