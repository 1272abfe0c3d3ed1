-- readable_time() (functions/readable_time.sql) arrived here; it has no table change.
SELECT 1;
