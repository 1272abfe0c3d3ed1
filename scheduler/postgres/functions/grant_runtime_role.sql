-- Replicas and foreign workers: DML on the tables (no DDL), every API function, the views.
-- ---------------------------------------------------------------------------------------
-- Least privilege. The owner (the role that runs migrations) calls these to grant existing
-- roles their share; run them again after a migration adds functions or views.

-- Each grant helper gives exactly its role's share; test_roles.py asserts the whole matrix
-- of EXECUTE rights over every function of the schema.
--   producer  enqueue (schedule_job(s), job_request, check_job_request), add_dependencies
--             (the SQL way to enqueue a job that waits for others), cancel_job, the views
--   operator  schedules (add/pause/resume/remove_schedule), queues and limits
--             (pause/resume_queue, set_queue/task_limits), retry_job(s), cancel_job, the
--             views and `settings`
--   runtime   replicas and foreign workers: the tables (DML), every API function, the
--             views, `settings`
-- The limit kinds' functions (limit_*) are pure and reveal nothing: PUBLIC may call them
-- (public_access.sql), so every role that may read queue_stats (which calls them) can.
CREATE OR REPLACE FUNCTION {schema}.grant_runtime_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    grantee text := quote_ident(role_name);
BEGIN
    EXECUTE 'GRANT USAGE ON SCHEMA {schema} TO ' || grantee;
    EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.jobs, {schema}.workers,'
            ' {schema}.schedules, {schema}.job_attempts, {schema}.job_dependencies,'
            ' {schema}.queues, {schema}.limits, {schema}.fleet_passes TO ' || grantee;
    EXECUTE 'GRANT SELECT ON {schema}.schema_migrations, {schema}.schema_functions,'
            ' {schema}.settings, {schema}.task_stats, {schema}.running_jobs, {schema}.stalled_jobs,'
            ' {schema}.recent_failures, {schema}.schedule_status, {schema}.live_workers,'
            ' {schema}.attempt_history, {schema}.queue_stats, {schema}.scope_limits,'
            ' {schema}.task_limits TO ' || grantee;
    EXECUTE 'GRANT EXECUTE ON FUNCTION {schema}.job_request, {schema}.check_job_request,'
            ' {schema}.schedule_jobs, {schema}.schedule_job, {schema}.cancel_job,'
            ' {schema}.retry_job, {schema}.retry_failed_jobs, {schema}.add_dependencies,'
            ' {schema}.register_worker, {schema}.worker_heartbeat,'
            ' {schema}.claim_jobs, {schema}.end_attempts, {schema}.complete_job, {schema}.fail_job,'
            ' {schema}.release_job, {schema}.cancel_requested_jobs,'
            ' {schema}.unregister_worker, {schema}.readable_time, {schema}.add_schedule,'
            ' {schema}.pause_schedule, {schema}.resume_schedule, {schema}.remove_schedule,'
            ' {schema}.claim_flow_jobs, {schema}.claim_scope,'
            ' {schema}.pause_queue, {schema}.resume_queue, {schema}.set_queue_limits,'
            ' {schema}.set_task_limits, {schema}.set_limit TO ' || grantee;
END
$$;
