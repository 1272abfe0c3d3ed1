-- Every outcome of an attempt is now written by end_attempts() (functions/end_attempts.sql),
-- which also writes the attempt's history row: record_attempt(), the helper the SQL worker
-- functions used for that row, has no caller left.
DROP FUNCTION IF EXISTS {schema}.record_attempt(text, integer, uuid, text, text, timestamptz,
                                                timestamptz);
