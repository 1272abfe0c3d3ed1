-- Rows written by plain SQL may hold times Python's datetime cannot (infinity, the year
-- 20000, BC dates). Inspection queries read every timestamp through this function, so a
-- row is always readable: such a time reads as the nearest one Python can hold (NULL
-- stays NULL).
CREATE OR REPLACE FUNCTION {schema}.readable_time(t timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN t < '0001-01-01 00:00:00Z' THEN '0001-01-01 00:00:00Z'::timestamptz
                WHEN t > '9999-12-31 23:59:59.999999Z' THEN '9999-12-31 23:59:59.999999Z'
                ELSE t END
$$;
