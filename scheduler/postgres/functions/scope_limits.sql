-- One row per queue or task with limits: every limit row as JSON (`limits`, an array of
-- {"kind", "settings"}), why any cannot be enforced (`problem`, NULL: all can; the claims
-- skip the scope's work until it is fixed), and, for readers from before limits were rows,
-- the concurrency and rate kinds' settings as columns (NULL while that row has a problem).
CREATE OR REPLACE VIEW {schema}.scope_limits AS
SELECT l.scope, l.name,
       max(CASE WHEN l.kind = 'concurrency' AND p.problem IS NULL
                THEN (l.settings ->> 'concurrency_limit')::integer END) AS concurrency_limit,
       max(CASE WHEN l.kind = 'rate' AND p.problem IS NULL
                THEN (l.settings ->> 'rate_limit')::integer END) AS rate_limit,
       coalesce(max(CASE WHEN l.kind = 'rate' AND p.problem IS NULL
                         THEN (l.settings ->> 'rate_period')::float8 END), 1) AS rate_period,
       coalesce(max(CASE WHEN l.kind = 'rate' AND p.problem IS NULL
                         THEN (l.settings ->> 'rate_burst')::integer END), 1) AS rate_burst,
       string_agg(p.problem, '; ' ORDER BY l.kind) AS problem,
       jsonb_agg(jsonb_build_object('kind', l.kind, 'settings', l.settings) ORDER BY l.kind)
           AS limits
FROM {schema}.limits l
CROSS JOIN LATERAL (SELECT {schema}.limit_problem(l.kind, l.settings) AS problem) p
GROUP BY l.scope, l.name;
