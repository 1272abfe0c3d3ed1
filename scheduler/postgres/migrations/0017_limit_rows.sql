-- Limits as rows of a kind (issue 20): a queue's or a task's limits are rows of `limits`,
-- one per kind, each with the kind's settings and its own bookkeeping as JSON. The claim
-- knows no kind: it asks each kind's functions (functions/limit_<kind>.sql, through the
-- dispatchers of functions/limit_problem.sql) how many jobs may start and what starting
-- them costs. Before, concurrency and rate limits were columns of `queues` and
-- `task_limits`, and a new kind of limit meant new columns, a new migration and edits to
-- every statement that read them.
CREATE TABLE {schema}.limits (
    -- What the limit governs: the jobs of one queue, or of one task in every queue.
    scope      text NOT NULL CHECK (scope IN ('queue', 'task')),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    -- The kind: functions {schema}.limit_<kind>_problem/_room/_spend/_wait exist for it.
    kind       text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,39}$'),
    -- What the operator set (checked by limit_<kind>_problem() when set, and again by
    -- every claim, which skips the scope's work while it is out of bounds).
    settings   jsonb NOT NULL,
    -- The kind's bookkeeping (a rate limit's bucket); NULL: none yet. Reset when the
    -- settings change.
    state      jsonb,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, name, kind)
);

-- The limits set so far become rows, their buckets' fill kept.
INSERT INTO {schema}.limits (scope, name, kind, settings, updated_at)
SELECT 'queue', q.queue, 'concurrency', jsonb_build_object('concurrency_limit', q.concurrency_limit),
       q.updated_at
FROM {schema}.queues q WHERE q.concurrency_limit IS NOT NULL
UNION ALL
SELECT 'task', t.task_name, 'concurrency', jsonb_build_object('concurrency_limit', t.concurrency_limit),
       t.updated_at
FROM {schema}.task_limits t WHERE t.concurrency_limit IS NOT NULL;

-- Numbers go as numeric (float8 text would follow the session's extra_float_digits); a
-- float8 JSON cannot hold (NaN, an infinity) becomes its text, which the rate kind's
-- problem function refuses, as the claim refused such a column before.
INSERT INTO {schema}.limits (scope, name, kind, settings, state, updated_at)
SELECT s.scope, s.name, 'rate',
       jsonb_build_object('rate_limit', s.rate_limit,
                          'rate_period', CASE WHEN s.rate_period::text IN ('NaN', 'Infinity',
                                                                           '-Infinity')
                                              THEN to_jsonb(s.rate_period::text)
                                              ELSE to_jsonb(s.rate_period::numeric) END,
                          'rate_burst', s.rate_burst),
       CASE WHEN s.tokens IS NOT NULL AND s.refilled_at IS NOT NULL AND isfinite(s.refilled_at)
                 AND s.tokens::text NOT IN ('NaN', 'Infinity', '-Infinity')
            THEN jsonb_build_object('tokens', s.tokens::numeric,
                                    'refilled_at', trim_scale(extract(epoch FROM s.refilled_at)))
       END,
       s.updated_at
FROM (SELECT 'queue' AS scope, q.queue AS name, q.rate_limit, q.rate_period, q.rate_burst,
             q.tokens, q.refilled_at, q.updated_at
      FROM {schema}.queues q WHERE q.rate_limit IS NOT NULL
      UNION ALL
      SELECT 'task', t.task_name, t.rate_limit, t.rate_period, t.rate_burst, t.tokens,
             t.refilled_at, t.updated_at
      FROM {schema}.task_limits t WHERE t.rate_limit IS NOT NULL) s;

-- `queues` keeps what is not a limit: the pause. The view and functions that read the old
-- columns go first (functions/ re-creates what still exists, with the new bodies).
DROP VIEW IF EXISTS {schema}.queue_stats;
DROP FUNCTION IF EXISTS {schema}.check_limits(integer, integer, double precision, integer);
DROP FUNCTION IF EXISTS {schema}.bucket_tokens(
    double precision, timestamptz, integer, double precision, integer, timestamptz);
DROP FUNCTION IF EXISTS {schema}.limits_problem(integer, integer, double precision, integer);
DELETE FROM {schema}.queues WHERE NOT paused;
ALTER TABLE {schema}.queues
    DROP COLUMN concurrency_limit, DROP COLUMN rate_limit, DROP COLUMN rate_period,
    DROP COLUMN rate_burst, DROP COLUMN tokens, DROP COLUMN refilled_at;
DROP TABLE {schema}.task_limits;
