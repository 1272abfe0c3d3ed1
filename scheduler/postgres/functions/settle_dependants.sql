-- A job with dependants finished: a success counts down its blocked dependants (the last
-- one makes them pending); a failure or cancellation cancels them, naming this job, and
-- their own dependants in turn (the trigger fires again for them). Row locks on the edges
-- and the dependants make concurrent finishes of several dependencies count exactly once.
CREATE OR REPLACE FUNCTION {schema}.settle_dependants() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.status = 'succeeded' THEN
        WITH met AS (
            UPDATE {schema}.job_dependencies e SET satisfied = true
            WHERE e.depends_on = NEW.job_id AND NOT e.satisfied
            RETURNING e.job_id
        ), counted AS (
            SELECT m.job_id, count(*)::integer AS n FROM met m GROUP BY m.job_id
        )
        UPDATE {schema}.jobs d SET
            blocked_by = greatest(d.blocked_by - c.n, 0),
            status = CASE WHEN d.blocked_by - c.n <= 0 THEN 'pending' ELSE 'blocked' END,
            updated_at = now()
        FROM counted c
        WHERE d.job_id = c.job_id AND d.status = 'blocked';
    ELSE
        UPDATE {schema}.jobs d SET
            status = 'cancelled', finished_at = now(), updated_at = now(),
            last_error = format('cancelled: dependency %L %s', NEW.job_id,
                                CASE NEW.status WHEN 'failed' THEN 'failed'
                                                ELSE 'was cancelled' END)
        FROM {schema}.job_dependencies e
        WHERE e.depends_on = NEW.job_id AND d.job_id = e.job_id AND d.status = 'blocked';
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS jobs_settle_dependants ON {schema}.jobs;
CREATE TRIGGER jobs_settle_dependants AFTER UPDATE ON {schema}.jobs
    FOR EACH ROW
    WHEN (NEW.has_dependants AND NEW.status IS DISTINCT FROM OLD.status
          AND NEW.status IN ('succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION {schema}.settle_dependants();
