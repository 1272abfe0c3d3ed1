-- ---------------------------------------------------------------------------------------
-- Recurring schedules from SQL. SQL cannot compute cron fire times the way Python does
-- (croniter, zoneinfo, DST), so a schedule added here is stored with its trigger and
-- `needs_first_fire`; the first replica whose ticker sees it computes the next fire time
-- from the database clock or, if Python cannot build the trigger (an expression croniter
-- refuses, a zone zoneinfo lacks), pauses it and records why in `trigger_error`, shown by
-- schedule_status and get_schedule().

-- Add a recurring schedule of a cron expression (5 fields, or 6 with seconds first, in
-- `timezone`) or of an interval (`every`, elapsed time on a grid anchored at the Unix
-- epoch). The options mean what Scheduler.add_schedule()'s do; `conflict` on an existing
-- id: 'raise' (23505), 'ignore' (keep it), 'replace' (overwrite the definition; a changed
-- trigger gets a new first fire time; the paused state stays). Returns the schedule id.
CREATE OR REPLACE FUNCTION {schema}.add_schedule(
    schedule_id   text,
    task_name     text,
    cron          text DEFAULT NULL,
    every         interval DEFAULT NULL,
    timezone      text DEFAULT 'UTC',
    args          jsonb DEFAULT '[]',
    kwargs        jsonb DEFAULT '{}',
    priority      integer DEFAULT 5,
    max_retries   integer DEFAULT 0,
    timeout       interval DEFAULT NULL,
    coalesce_policy text DEFAULT 'latest',
    misfire_grace interval DEFAULT NULL,
    max_running   integer DEFAULT 1,
    jitter        interval DEFAULT NULL,
    conflict      text DEFAULT 'raise'
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    policy text := lower(conflict);
    request {schema}.job_request;
    trigger_json jsonb;
    written text;
BEGIN
    IF policy IS NULL OR policy NOT IN ('raise', 'ignore', 'replace') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'conflict must be ''raise'', ''ignore'' or ''replace'', got %L', conflict);
    END IF;
    IF schedule_id IS NULL OR schedule_id = '' OR length(schedule_id) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'schedule_id must be a text of 1 to 200 characters, got %L',
            left(schedule_id, 300));
    END IF;
    -- The job part of the schedule is checked like schedule_job()'s.
    request := {schema}.check_job_request({schema}.job_request(
        task_name, args, kwargs, NULL, NULL, NULL, priority, max_retries, timeout));
    IF (cron IS NULL) = (every IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'give exactly one of cron (an expression) or every (an interval)';
    END IF;
    IF cron IS NOT NULL THEN
        IF array_length(regexp_split_to_array(btrim(cron), '\s+'), 1) NOT IN (5, 6)
           OR cron !~ '^[[:space:][:alnum:]*/,?#-]+$' THEN
            RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
                'cron must have 5 fields (minute hour day month weekday), or 6 with seconds'
                ' first, of digits, names and * / , - ?; got %L', cron);
        END IF;
        IF timezone IS NULL
           OR NOT EXISTS (SELECT 1 FROM pg_timezone_names z WHERE z.name = timezone) THEN
            RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
                'unknown time zone %L; use an IANA name such as ''Europe/Berlin''', timezone);
        END IF;
        trigger_json := jsonb_build_object(
            'type', 'cron', 'expression', btrim(cron), 'timezone', timezone);
    ELSE
        IF every <= interval '0' OR extract(epoch FROM every) > 31557600000 THEN
            RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
                'every must be a positive interval of at most 1000 years, got %s', every);
        END IF;
        IF timezone IS DISTINCT FROM 'UTC' THEN
            RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE =
                'timezone applies to cron schedules; an interval runs on elapsed time'
                ' (leave timezone as ''UTC'')';
        END IF;
        trigger_json := jsonb_build_object('type', 'interval',
            'seconds', extract(epoch FROM every)::float8, 'start', NULL, 'end', NULL);
    END IF;
    IF coalesce_policy IS NULL OR coalesce_policy NOT IN ('latest', 'all', 'skip') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'coalesce_policy must be ''latest'', ''all'' or ''skip'', got %L',
            coalesce_policy);
    END IF;
    IF misfire_grace <= interval '0' OR extract(epoch FROM misfire_grace) > 31557600000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'misfire_grace must be > 0 and at most 1000 years (or NULL for no limit), got %s',
            misfire_grace);
    END IF;
    IF max_running < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'max_running must be >= 1 (or NULL for no limit), got %s', max_running);
    END IF;
    IF jitter < interval '0' OR extract(epoch FROM jitter) > 31557600000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('jitter must be from 0 to 1000 years, got %s', jitter);
    END IF;

    INSERT INTO {schema}.schedules AS s
        (schedule_id, task_name, args, kwargs, trigger, priority, max_retries,
         timeout_seconds, coalesce_policy, misfire_grace_seconds, max_running,
         jitter_seconds, next_fire_time, needs_first_fire)
    VALUES (add_schedule.schedule_id, request.task_name, request.args, request.kwargs,
            trigger_json, request.priority, request.max_retries,
            extract(epoch FROM request.timeout)::float8, add_schedule.coalesce_policy,
            extract(epoch FROM misfire_grace)::float8, add_schedule.max_running,
            coalesce(extract(epoch FROM jitter)::float8, 0), NULL, true)
    ON CONFLICT ON CONSTRAINT schedules_pkey DO NOTHING
    RETURNING s.schedule_id INTO written;
    IF written IS NOT NULL OR policy = 'ignore' THEN
        RETURN add_schedule.schedule_id;
    END IF;
    IF policy = 'raise' THEN
        RAISE EXCEPTION USING ERRCODE = '23505', MESSAGE = format(
            'a schedule with id %L already exists; pass conflict => ''ignore'' to keep it'
            ' or ''replace'' to overwrite its definition', add_schedule.schedule_id);
    END IF;
    UPDATE {schema}.schedules s SET
        task_name = request.task_name, args = request.args, kwargs = request.kwargs,
        priority = request.priority, max_retries = request.max_retries,
        timeout_seconds = extract(epoch FROM request.timeout)::float8,
        coalesce_policy = add_schedule.coalesce_policy,
        misfire_grace_seconds = extract(epoch FROM misfire_grace)::float8,
        max_running = add_schedule.max_running,
        jitter_seconds = coalesce(extract(epoch FROM jitter)::float8, 0),
        needs_first_fire = s.needs_first_fire OR s.trigger IS DISTINCT FROM trigger_json,
        trigger_error = CASE WHEN s.trigger IS DISTINCT FROM trigger_json THEN NULL
                             ELSE s.trigger_error END,
        trigger = trigger_json, updated_at = now()
    WHERE s.schedule_id = add_schedule.schedule_id;
    RETURN add_schedule.schedule_id;
END
$$;
