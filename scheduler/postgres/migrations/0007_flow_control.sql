-- Fleet-wide flow control: queues (routing, pause), concurrency limits and rate limits per
-- queue and per task, per-key locks and unique keys. Every limit is enforced by the
-- database in the claim (or, for unique keys, by an index), never by a replica's memory.
--
-- Two claim paths. The plain claim (queries.sql claim_jobs) takes only jobs no limit
-- applies to: no lock key, a queue and a task without limits, a queue not paused; it is as
-- cheap as before. Everything else goes through claim_flow_jobs() (functions/), which serialises
-- its callers on one transaction-scoped advisory lock and then counts, with a snapshot
-- taken after the lock, what runs: two claimers never both see the same free room.

ALTER TABLE {schema}.jobs
    ADD COLUMN queue      text NOT NULL DEFAULT 'default' CHECK (length(queue) BETWEEN 1 AND 255),
    ADD COLUMN lock_key   text CHECK (length(lock_key) BETWEEN 1 AND 255),
    ADD COLUMN unique_key text CHECK (length(unique_key) BETWEEN 1 AND 255);

-- Claim path: per queue, per priority, due time order, pending rows only. A replica reads
-- only the queues it works, whatever waits in the others.
DROP INDEX {schema}.jobs_claim_idx;
CREATE INDEX jobs_claim_idx ON {schema}.jobs (queue, priority, execution_time)
    WHERE status = 'pending';
-- Whether due lock-keyed work waits (the plain claim leaves it to claim_flow_jobs).
CREATE INDEX jobs_locked_pending_idx ON {schema}.jobs (queue, execution_time)
    WHERE status = 'pending' AND lock_key IS NOT NULL;
-- A lock key is held by at most one running job: the claim never tries otherwise, and this
-- index makes it a database guarantee whatever writes the rows.
CREATE UNIQUE INDEX jobs_running_lock_key_idx ON {schema}.jobs (lock_key)
    WHERE status = 'running' AND lock_key IS NOT NULL;
-- At most one unfinished (pending, blocked on dependencies (0006), or running) job per
-- unique key. An index entry of an insert that rolls back reserves nothing; two concurrent
-- inserts of one key cannot both commit.
CREATE UNIQUE INDEX jobs_unique_key_idx ON {schema}.jobs (unique_key)
    WHERE status IN ('pending', 'blocked', 'running') AND unique_key IS NOT NULL;

-- Queues that are paused or limited. A queue with no row is active and unlimited. The rate
-- limit is a token bucket: `rate_burst` tokens at most, refilled at rate_limit per
-- rate_period seconds; each start takes one. `tokens` NULL means full.
CREATE TABLE {schema}.queues (
    queue             text PRIMARY KEY CHECK (length(queue) BETWEEN 1 AND 255),
    paused            boolean NOT NULL DEFAULT false,
    concurrency_limit integer CHECK (concurrency_limit >= 1),
    rate_limit        integer CHECK (rate_limit >= 1),
    rate_period       double precision NOT NULL DEFAULT 1 CHECK (rate_period > 0),
    rate_burst        integer NOT NULL DEFAULT 1 CHECK (rate_burst >= 1),
    tokens            double precision,
    refilled_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Limits of one task across all its queues, with the same meaning.
CREATE TABLE {schema}.task_limits (
    task_name         text PRIMARY KEY CHECK (length(task_name) BETWEEN 1 AND 255),
    concurrency_limit integer CHECK (concurrency_limit >= 1),
    rate_limit        integer CHECK (rate_limit >= 1),
    rate_period       double precision NOT NULL DEFAULT 1 CHECK (rate_period > 0),
    rate_burst        integer NOT NULL DEFAULT 1 CHECK (rate_burst >= 1),
    tokens            double precision,
    refilled_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- The queue a recurring schedule's jobs go to.
ALTER TABLE {schema}.schedules
    ADD COLUMN queue text NOT NULL DEFAULT 'default' CHECK (length(queue) BETWEEN 1 AND 255);

-- The queues a worker works (NULL: a worker from before queues, which took every queue),
-- so the reaper fails only jobs no live worker can ever claim.
ALTER TABLE {schema}.workers ADD COLUMN queues text[];

-- The worker protocol's claim, now queue- and limit-aware: every claim of a foreign worker
-- goes through claim_flow_jobs(). `queue_names` defaults to the 'default' queue.
DROP FUNCTION IF EXISTS {schema}.claim_jobs(uuid, text[], integer);
