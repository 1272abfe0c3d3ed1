-- Replicas and foreign workers: DML on the tables (no DDL), every API function, the views.
-- ---------------------------------------------------------------------------------------
-- Least privilege. The owner (the role that runs migrations) calls these to grant existing
-- roles their share; run them again after a migration adds functions or views.

-- The runtime role also reads and writes the flow-control tables and calls the new
-- functions; the producer role may look at queues. Everything 0006 granted stays granted
-- (history, dependencies, retry_failed_jobs, the SQL schedule functions, readable_time).
CREATE OR REPLACE FUNCTION {schema}.grant_runtime_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    grantee text := quote_ident(role_name);
BEGIN
    EXECUTE 'GRANT USAGE ON SCHEMA {schema} TO ' || grantee;
    EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.jobs, {schema}.workers,'
            ' {schema}.schedules, {schema}.job_attempts, {schema}.job_dependencies,'
            ' {schema}.queues, {schema}.task_limits, {schema}.fleet_passes TO ' || grantee;
    EXECUTE 'GRANT SELECT ON {schema}.schema_migrations, {schema}.schema_functions,'
            ' {schema}.task_stats,'
            ' {schema}.running_jobs, {schema}.stalled_jobs, {schema}.recent_failures,'
            ' {schema}.schedule_status, {schema}.live_workers, {schema}.attempt_history,'
            ' {schema}.queue_stats TO ' || grantee;
    EXECUTE 'GRANT EXECUTE ON FUNCTION {schema}.job_request, {schema}.check_job_request,'
            ' {schema}.schedule_jobs, {schema}.schedule_job, {schema}.cancel_job,'
            ' {schema}.retry_job, {schema}.retry_failed_jobs, {schema}.add_dependencies,'
            ' {schema}.register_worker, {schema}.worker_heartbeat,'
            ' {schema}.claim_jobs, {schema}.complete_job, {schema}.fail_job,'
            ' {schema}.release_job, {schema}.cancel_requested_jobs,'
            ' {schema}.unregister_worker, {schema}.readable_time, {schema}.add_schedule,'
            ' {schema}.pause_schedule, {schema}.resume_schedule, {schema}.remove_schedule,'
            ' {schema}.claim_flow_jobs, {schema}.bucket_tokens, {schema}.claim_scope,'
            ' {schema}.pause_queue, {schema}.resume_queue, {schema}.set_queue_limits,'
            ' {schema}.set_task_limits, {schema}.check_limits TO ' || grantee;
END
$$;
