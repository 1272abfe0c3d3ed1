-- The dashboard's lists of failed, cancelled and blocked jobs (issue 14), newest change
-- first, without reading the succeeded rows that make most of a busy table. Partial: a job
-- that is claimed, runs and succeeds never has an entry here, so the claim path and the
-- success path write nothing more; a failure, a cancellation or a blocked insert writes
-- one entry.
CREATE INDEX jobs_needing_attention_idx ON {schema}.jobs (status, updated_at, job_id)
    WHERE status IN ('blocked', 'failed', 'cancelled');
