-- Jobs behind a held lock key (issue 21): a claim reads O(max_jobs) index entries whatever
-- waits under the keys that running jobs hold.
--
-- Before, claim_flow_jobs() read each (queue, task, priority) range of jobs_task_claim_idx
-- in due order and skipped, row by row, every job whose key a running job held: a key held
-- by a job with a million pending successors cost a read of all of them on every claim,
-- before the free work due after them (3.5 s per claim at 1M).
--
-- jobs_task_claim_idx now separates unkeyed from keyed rows inside each (queue, task) pair,
-- so the claim reads unkeyed work in its own range, never passing a keyed row, and keyed
-- work in another, at most a bounded window of it in due order (claim_flow_jobs.sql). The
-- pair stays the index's leading columns: fail_unrunnable_jobs skips through it by pair.
-- The new indexes are built first, under a SHARE lock on jobs (writes wait, reads do
-- not) for one scan of the table each; the old index is dropped and the new one takes its
-- name last, since a DROP INDEX holds an ACCESS EXCLUSIVE lock (reads wait too) until the
-- migration commits.
CREATE INDEX jobs_task_claim_idx_0015
    ON {schema}.jobs (queue, task_name, (lock_key IS NOT NULL), priority, execution_time)
    WHERE status = 'pending';
-- When that window is all jobs of held keys, the claim walks the distinct keys of pending
-- jobs instead (one probe per key, skipping each held key whatever waits under it) and
-- takes each free key's first due job in the order the claim ranks a key's jobs.
CREATE INDEX jobs_lock_key_claim_idx
    ON {schema}.jobs (lock_key, priority DESC, execution_time)
    WHERE status = 'pending' AND lock_key IS NOT NULL;
-- Where the last walk stopped: a walk visits a bounded number of keys, and the next goes on
-- after the last, so every key is visited in turn. One row, written only by the claim
-- (which runs as the schema's owner, under the fleet-wide flow lock).
CREATE TABLE {schema}.lock_key_walk (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    after_key text
);
INSERT INTO {schema}.lock_key_walk DEFAULT VALUES;
DROP INDEX {schema}.jobs_task_claim_idx;
ALTER INDEX {schema}.jobs_task_claim_idx_0015 RENAME TO jobs_task_claim_idx;
