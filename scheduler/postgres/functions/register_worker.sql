-- ---------------------------------------------------------------------------------------
-- The worker protocol, for workers written in any language (pgjobs' consume/ack/nack).
-- A worker registers with a lease, extends it with worker_heartbeat() well within the
-- lease, claims due jobs, and ends each attempt with complete_job(), fail_job() or
-- release_job() naming (worker_id, job_id, attempt): the fencing token. A write whose
-- token is stale (the job was reaped and claimed again) changes nothing and returns
-- false/NULL. A worker that stops heartbeating loses its lease; any Python replica's
-- reaper returns its jobs to pending as lost leases. Cancel requests arrive on the
-- schema's NOTIFY channel ('cancel <job_id>') and in cancel_requested_jobs().

-- A new worker identity; returns its id. `tasks` are the task names it runs (replicas use
-- them to know a task has a live worker). hostname and pid are for monitoring.
CREATE OR REPLACE FUNCTION {schema}.register_worker(
    tasks     text[],
    lease     interval DEFAULT '30 seconds',
    hostname  text DEFAULT NULL,
    pid       integer DEFAULT NULL,
    worker_id uuid DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    bad_name text;
    new_id uuid := coalesce(worker_id, gen_random_uuid());
BEGIN
    IF tasks IS NULL OR cardinality(tasks) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'tasks must name at least one task this worker runs';
    END IF;
    SELECT t INTO bad_name FROM unnest(tasks) AS t
    WHERE t IS NULL OR length(t) > 255 OR t !~ '^[A-Za-z_][[:alnum:]_.:<>-]*$' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'task name %s may contain only letters, digits and _ . : < > -',
            coalesce(quote_literal(bad_name), 'NULL'));
    END IF;
    IF lease IS NULL OR lease <= interval '0' OR extract(epoch FROM lease) > 31557600000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'lease must be > 0 and at most 1000 years, got %s', coalesce(lease::text, 'NULL'));
    END IF;
    INSERT INTO {schema}.workers AS w (worker_id, hostname, pid, tasks, lease_expires_at)
    VALUES (new_id, coalesce(hostname, host(inet_client_addr()), 'local'), coalesce(pid, 0),
            tasks, now() + lease);
    RETURN new_id;
END
$$;
