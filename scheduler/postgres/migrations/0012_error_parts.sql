-- Issue 19.8: an error's type and message apart from its traceback. `last_error` (jobs)
-- and `error` (job_attempts) keep the full text; error_type and error_message are derived
-- by functions/error_parts.sql, whose file also fills them in for the rows that already
-- have an error, once, in the transaction that applies this migration (the function does
-- not exist yet here: the function files are applied after the migrations). The triggers
-- that derive them for writers who give only the text are in jobs_error_parts.sql and
-- job_attempts_error_parts.sql; the views recent_failures and attempt_history show them.
-- Nullable without a default: adding the columns rewrites no row.
ALTER TABLE {schema}.jobs ADD COLUMN error_type text, ADD COLUMN error_message text;
ALTER TABLE {schema}.job_attempts ADD COLUMN error_type text, ADD COLUMN error_message text;
