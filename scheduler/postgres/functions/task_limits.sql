-- Every task with limits (scope_limits), as the table of that name held them before.
CREATE OR REPLACE VIEW {schema}.task_limits AS
SELECT s.name AS task_name, s.concurrency_limit, s.rate_limit, s.rate_period, s.rate_burst,
       s.problem, s.limits
FROM {schema}.scope_limits s WHERE s.scope = 'task';
