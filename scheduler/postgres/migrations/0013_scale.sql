-- Running at scale (issue 21): a claim index the flow-control claim can read per task,
-- autovacuum settings for the two tables every job churns, and fleet-wide passes.
--
-- claim_flow_jobs() (functions/) reads one range per (queue, task, priority) of this index,
-- so the pending rows of a task whose concurrency or rate limit is full, or that the
-- claiming worker does not run, are never read: a claim reads O(max_jobs) rows per range
-- whatever the backlog (jobs_claim_idx, led by (queue, priority), made it skip them one by
-- one, and that skip grew with the backlog). Building it on a large table holds a SHARE lock
-- on jobs (enqueues and claims wait) for the length of one scan of the table.
CREATE INDEX jobs_task_claim_idx ON {schema}.jobs (queue, task_name, priority, execution_time)
    WHERE status = 'pending';
-- The claim probes this index once per task the worker runs, with the task as a join
-- value, which the planner estimates as 1 / (distinct tasks in the statistics). A table
-- whose statistics saw one task would make jobs_claim_idx look as good, and the probe for a
-- task with no pending rows would then read every other task's backlog, row by row. Plan
-- as if jobs named 100 tasks, whatever ANALYZE saw (until it runs, the planner assumes 200).
ALTER TABLE {schema}.jobs ALTER COLUMN task_name SET (n_distinct = 100);

-- Autovacuum. Every job is written three times (enqueue, claim, outcome) and deleted by the
-- pruner, so dead tuples arrive at the job rate; PostgreSQL's default waits for 20% of the
-- table to be dead, which on a table of 10M finished rows is 2M dead tuples, left in the
-- pending-row indexes the claim reads. Vacuum after 1% (+1,000) instead, analyse after 2%
-- (+1,000) so the planner sees the pending rows it plans for, and give vacuum five times the
-- default cost budget per round, so it finishes a pass over a hot table before the next is
-- due. fillfactor stays 100: a claim and an outcome change `status`, which partial indexes
-- read, so those updates are never HOT and free room in the page would stay unused.
ALTER TABLE {schema}.jobs SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_analyze_threshold = 1000,
    autovacuum_vacuum_cost_limit = 1000
);
-- Attempt history: inserted once per attempt, deleted with its job by the pruner.
ALTER TABLE {schema}.job_attempts SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_vacuum_cost_limit = 1000
);

-- Fleet-wide passes: when each maintenance pass (the orphan sweep, housekeeping) last ran,
-- by any replica. A replica runs a pass only if it can move its row past the pass's
-- interval (queries.sql take_fleet_pass), so N replicas sweep as often as one: the work of
-- the fleet's sweeps no longer grows with the number of replicas times what each reads.
CREATE TABLE {schema}.fleet_passes (
    pass        text PRIMARY KEY CHECK (length(pass) BETWEEN 1 AND 100),
    last_run_at timestamptz NOT NULL
);
-- Every replica's reaper writes this table: a runtime role granted on an older release must
-- be able to, or no replica would sweep for orphans after the upgrade. Roles get here the
-- rights they hold on `workers` (what grant_runtime_role() gives on both).
DO $$
DECLARE
    granted record;
BEGIN
    FOR granted IN
        SELECT a.grantee::regrole::text AS grantee, a.privilege_type
        FROM pg_class c, aclexplode(c.relacl) AS a
        WHERE c.oid = '{schema}.workers'::regclass AND a.grantee <> c.relowner
          AND a.grantee <> 0
    LOOP
        EXECUTE format('GRANT %s ON {schema}.fleet_passes TO %s',
                       granted.privilege_type, granted.grantee);
    END LOOP;
END
$$;
