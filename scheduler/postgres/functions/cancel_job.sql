-- cancel_job (0005) also cancels a blocked job at once.
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
