-- Recurring schedules with their next fire time and unfinished jobs.
CREATE OR REPLACE VIEW {schema}.schedule_status AS
SELECT s.schedule_id, s.task_name, s.trigger, s.paused, s.next_fire_time,
       s.next_fire_time - now() AS next_fire_in, s.last_fire_time, s.trigger_error,
       (SELECT count(*) FROM {schema}.jobs j
        WHERE j.schedule_id = s.schedule_id AND j.status IN ('pending', 'running'))
           AS unfinished_jobs
FROM {schema}.schedules s;
