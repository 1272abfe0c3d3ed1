-- Set (replace) one limit of a queue or a task: `scope` 'queue' or 'task', `name` the
-- queue or task, `kind` a limit kind of this schema (limit_problem.sql), `settings` its
-- settings as JSON; NULL settings remove that limit. New settings start the kind's
-- bookkeeping afresh (a rate limit's bucket is full again); the same settings keep it.
-- Settings the kind refuses raise 22023 with its reason, and nothing is written.
CREATE OR REPLACE FUNCTION {schema}.set_limit(
    scope text, name text, kind text, settings jsonb
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    problem text;
BEGIN
    IF scope IS NULL OR scope NOT IN ('queue', 'task') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'scope must be ''queue'' or ''task'', got %s', coalesce(quote_literal(scope), 'NULL'));
    END IF;
    IF name IS NULL OR length(name) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            '%s must be a text of 1 to 255 characters',
            CASE scope WHEN 'queue' THEN 'queue' ELSE 'task_name' END);
    END IF;
    IF settings IS NULL THEN
        DELETE FROM {schema}.limits l
        WHERE l.scope = set_limit.scope AND l.name = set_limit.name AND l.kind = set_limit.kind;
        RETURN;
    END IF;
    problem := {schema}.limit_problem(kind, settings);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = problem;
    END IF;
    INSERT INTO {schema}.limits AS l (scope, name, kind, settings)
    VALUES (set_limit.scope, set_limit.name, set_limit.kind, set_limit.settings)
    ON CONFLICT ON CONSTRAINT limits_pkey DO UPDATE SET
        settings = excluded.settings,
        state = CASE WHEN l.settings = excluded.settings THEN l.state END,
        updated_at = CASE WHEN l.settings = excluded.settings THEN l.updated_at ELSE now() END;
END
$$;
