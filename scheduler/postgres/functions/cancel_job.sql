-- Cancel a job: a pending one becomes cancelled at once and never starts ('cancelled'); a
-- running one gets cancel_requested_at, its worker is notified (the trigger of 0001) and
-- records the outcome ('cancel_requested'). NULL: no such job, or it already finished.
-- A blocked job (0006) is cancelled at once too.
CREATE OR REPLACE FUNCTION {schema}.cancel_job(job_id text) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH previous AS (
        SELECT j.job_id, j.status FROM {schema}.jobs j WHERE j.job_id = $1 FOR UPDATE
    ), changed AS (
        UPDATE {schema}.jobs j SET
            status = CASE WHEN p.status IN ('pending', 'blocked') THEN 'cancelled'
                          ELSE j.status END,
            finished_at = CASE WHEN p.status IN ('pending', 'blocked') THEN now()
                               ELSE j.finished_at END,
            cancel_requested_at = coalesce(j.cancel_requested_at, now()),
            updated_at = now()
        FROM previous p
        WHERE j.job_id = p.job_id AND p.status IN ('pending', 'blocked', 'running')
        RETURNING p.status
    )
    SELECT CASE WHEN status = 'running' THEN 'cancel_requested' ELSE 'cancelled' END
    FROM changed
$$;
