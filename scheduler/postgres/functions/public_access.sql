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
