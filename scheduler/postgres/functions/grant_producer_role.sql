-- Producers (web apps, other services): schedule and cancel through the functions and read
-- the views; no right on any table, so they cannot rewrite a job or claim one.
CREATE OR REPLACE FUNCTION {schema}.grant_producer_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    grantee text := quote_ident(role_name);
BEGIN
    EXECUTE 'GRANT USAGE ON SCHEMA {schema} TO ' || grantee;
    EXECUTE 'GRANT SELECT ON {schema}.task_stats, {schema}.running_jobs,'
            ' {schema}.stalled_jobs, {schema}.recent_failures, {schema}.schedule_status,'
            ' {schema}.live_workers, {schema}.attempt_history, {schema}.queue_stats,'
            ' {schema}.scope_limits, {schema}.task_limits TO ' || grantee;
    EXECUTE 'GRANT EXECUTE ON FUNCTION {schema}.job_request, {schema}.check_job_request,'
            ' {schema}.schedule_jobs, {schema}.schedule_job, {schema}.cancel_job,'
            ' {schema}.add_dependencies TO ' || grantee;
END
$$;
