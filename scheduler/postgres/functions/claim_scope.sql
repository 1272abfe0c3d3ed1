-- What the plain claim (queries.sql claim_jobs) may take: of `queue_names`, the queues
-- neither paused nor limited; of `task_names`, the tasks without limits; and whether work
-- under flow control may wait for this worker (a limited queue or task of its, or a due
-- job with a lock key of one of its tasks in an open queue), which claim_flow_jobs() then
-- takes. STABLE: it
-- reads with the claim's snapshot. A plpgsql function keeps its plans across calls, so
-- the claim pays no planning for this on the hot path. A queue or task whose limit row is
-- out of bounds (limit_problem()) is not open to the plain claim: it sends the worker
-- through claim_flow_jobs(), which reports the problem. `lead` is clamped to an hour, so
-- now() + lead cannot overflow.
CREATE OR REPLACE FUNCTION {schema}.claim_scope(
    task_names text[], queue_names text[], lead double precision,
    OUT open_queues text[], OUT open_tasks text[], OUT flow boolean
)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    lead := least(greatest(coalesce(lead, 0), 0), 3600);
    IF NOT EXISTS (SELECT 1 FROM {schema}.queues) AND NOT EXISTS (
        SELECT 1 FROM {schema}.limits
    ) THEN
        open_queues := queue_names;  -- nothing is paused or limited anywhere
        open_tasks := task_names;
        flow := false;
    ELSE
        -- A limit row of any kind, in bounds or not, is the serialised claim's to apply.
        SELECT array_agg(qn ORDER BY qn) INTO open_queues FROM unnest(queue_names) AS qn
        WHERE NOT EXISTS (SELECT 1 FROM {schema}.queues q WHERE q.queue = qn AND q.paused)
          AND NOT EXISTS (SELECT 1 FROM {schema}.limits l
                          WHERE l.scope = 'queue' AND l.name = qn);
        SELECT array_agg(tn) INTO open_tasks FROM unnest(task_names) AS tn
        WHERE NOT EXISTS (SELECT 1 FROM {schema}.limits l
                          WHERE l.scope = 'task' AND l.name = tn);
        flow := EXISTS (SELECT 1 FROM {schema}.limits l
                        WHERE l.scope = 'queue' AND l.name = ANY (queue_names)
                          AND NOT EXISTS (SELECT 1 FROM {schema}.queues q
                                          WHERE q.queue = l.name AND q.paused))
             OR EXISTS (SELECT 1 FROM {schema}.limits l
                        WHERE l.scope = 'task' AND l.name = ANY (task_names));
    END IF;
    IF NOT flow THEN
        flow := EXISTS (SELECT 1 FROM unnest(open_queues) AS oq(queue)
                        CROSS JOIN LATERAL (
                            SELECT 1 FROM {schema}.jobs j
                            WHERE j.status = 'pending' AND j.lock_key IS NOT NULL
                              AND j.queue = oq.queue
                              AND j.execution_time <= now() + make_interval(secs => lead)
                            LIMIT 1) l);
        IF flow THEN
            -- Due keyed work waits in these queues (one probe per queue, above): is any of
            -- it of a task this worker runs? Keyed work of other tasks must not send it
            -- through the serialised claim (one probe per queue, task and priority, in the
            -- keyed range of jobs_task_claim_idx).
            flow := EXISTS (SELECT 1 FROM unnest(open_queues) AS oq(queue)
                            CROSS JOIN unnest(open_tasks) AS tn(task_name)
                            CROSS JOIN unnest(ARRAY[20, 10, 5, 1]::smallint[]) AS p(priority)
                            CROSS JOIN LATERAL (
                                SELECT 1 FROM {schema}.jobs j
                                WHERE j.status = 'pending' AND j.queue = oq.queue
                                  AND j.task_name = tn.task_name
                                  AND j.lock_key IS NOT NULL AND j.priority = p.priority
                                  AND j.execution_time
                                      <= now() + make_interval(secs => lead)
                                LIMIT 1) l);
        END IF;
    END IF;
    open_queues := coalesce(open_queues, '{}');
    open_tasks := coalesce(open_tasks, '{}');
END
$$;
