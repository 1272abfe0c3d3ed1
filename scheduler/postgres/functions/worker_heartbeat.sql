-- Extend a live lease by `lease` from now; false when the lease already lapsed (it is never
-- revived): the worker must stop the jobs it runs, their rows are a peer's to reap, and
-- register again under a new id.
CREATE OR REPLACE FUNCTION {schema}.worker_heartbeat(worker_id uuid, lease interval DEFAULT '30 seconds')
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF lease IS NULL OR lease <= interval '0' OR extract(epoch FROM lease) > 31557600000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'lease must be > 0 and at most 1000 years, got %s', coalesce(lease::text, 'NULL'));
    END IF;
    UPDATE {schema}.workers w SET lease_expires_at = now() + lease, heartbeat_at = now()
    WHERE w.worker_id = worker_heartbeat.worker_id AND w.lease_expires_at > now();
    RETURN FOUND;
END
$$;
