-- Tracing (issue 14): the trace context of the code that scheduled a job (a string map,
-- e.g. W3C `traceparent`), so the replica that runs the job continues the caller's trace.
-- NULL for jobs scheduled without tracing, by SQL, or by a recurring schedule.

ALTER TABLE {schema}.jobs ADD COLUMN trace_context jsonb;
