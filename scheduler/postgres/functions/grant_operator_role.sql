-- Operators (people and tools that run the fleet): schedules, queues and limits, retries
-- and cancels through the functions; read the views and `settings`; no right on any table.
CREATE OR REPLACE FUNCTION {schema}.grant_operator_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    grantee text := quote_ident(role_name);
BEGIN
    EXECUTE 'GRANT USAGE ON SCHEMA {schema} TO ' || grantee;
    EXECUTE 'GRANT SELECT ON {schema}.settings, {schema}.task_stats, {schema}.running_jobs,'
            ' {schema}.stalled_jobs, {schema}.recent_failures, {schema}.schedule_status,'
            ' {schema}.live_workers, {schema}.attempt_history, {schema}.queue_stats,'
            ' {schema}.scope_limits, {schema}.task_limits TO ' || grantee;
    EXECUTE 'GRANT EXECUTE ON FUNCTION {schema}.cancel_job, {schema}.retry_job,'
            ' {schema}.retry_failed_jobs, {schema}.add_schedule, {schema}.pause_schedule,'
            ' {schema}.resume_schedule, {schema}.remove_schedule, {schema}.pause_queue,'
            ' {schema}.resume_queue, {schema}.set_queue_limits, {schema}.set_task_limits,'
            ' {schema}.set_limit TO ' || grantee;
END
$$;
